// A small Markdown renderer for agent messages. Text is escaped before any
// markup is added; links keep only safe protocols (http, https, mailto,
// same-site paths). Supports code fences (highlighted), inline code, bold,
// italic, strikethrough, links, headings, lists (with task boxes),
// blockquotes, rules and pipe tables.

import { esc, safeUrl } from './util.js';
import { highlight, langOf } from './hl.js';

const UNESC = { '&amp;': '&', '&lt;': '<', '&gt;': '>', '&quot;': '"', '&#39;': "'" };
const unesc = (s) => s.replace(/&(amp|lt|gt|quot|#39);/g, (m) => UNESC[m]);

function link(text, url) {
  const u = safeUrl(unesc(url));
  if (!u) return text;
  return `<a href="${esc(u)}" target="_blank" rel="noopener noreferrer">${text}</a>`;
}

/** Inline markup of one block of text, as HTML. */
export function inline(src) {
  const codes = [];
  let s = String(src).replace(/\u0000/g, '');
  s = s.replace(/(`+)([^`]|[^`][\s\S]*?[^`])\1(?!`)/g, (_, _t, c) => {
    codes.push(c.length > 2 && c.startsWith(' ') && c.endsWith(' ') ? c.slice(1, -1) : c);
    return `\u0000${codes.length - 1}\u0000`;
  });
  s = esc(s);
  s = s.replace(/\[([^\]\n]+)\]\(([^)\s]+)(?:\s+&quot;[^\n]*?&quot;)?\)/g, (_, t, u) => link(t, u));
  s = s.replace(/&lt;((?:https?:\/\/|mailto:)[^\s&]+)&gt;/g, (_, u) => link(u, u));
  s = s.replace(/\*\*(?=\S)([\s\S]*?\S)\*\*/g, '<strong>$1</strong>');
  s = s.replace(/(^|[^\w])__(?=\S)([\s\S]*?\S)__(?!\w)/g, '$1<strong>$2</strong>');
  s = s.replace(/(^|[^*\w])\*(?=[^\s*])([^*\n]*?[^\s*])\*(?!\*)/g, '$1<em>$2</em>');
  s = s.replace(/(^|[^_\w])_(?=[^\s_])([^_\n]*?[^\s_])_(?![_\w])/g, '$1<em>$2</em>');
  s = s.replace(/~~(?=\S)([\s\S]*?\S)~~/g, '<del>$1</del>');
  s = s.replace(/\u0000(\d+)\u0000/g, (_, i) => `<code>${esc(codes[Number(i)])}</code>`);
  return s;
}

const FENCE = /^ {0,3}(`{3,}|~{3,})\s*([^`\s]*)[^`]*$/;
const HEADING = /^ {0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$/;
const RULE = /^ {0,3}([-*_])(?:\s*\1){2,}\s*$/;
const QUOTE = /^ {0,3}>\s?(.*)$/;
const ITEM = /^(\s*)([-*+]|\d{1,9}[.)])\s+(.*)$/;
const TABLE_SEP = /^\s*\|?\s*:?-{2,}:?\s*(\|\s*:?-{2,}:?\s*)*\|?\s*$/;

function cells(line) {
  let l = line.trim();
  if (l.startsWith('|')) l = l.slice(1);
  if (l.endsWith('|') && !l.endsWith('\\|')) l = l.slice(0, -1);
  return l.split(/(?<!\\)\|/).map((c) => c.trim());
}

function startsBlock(line, next) {
  return (
    FENCE.test(line) ||
    HEADING.test(line) ||
    RULE.test(line) ||
    QUOTE.test(line) ||
    ITEM.test(line) ||
    (line.includes('|') && next !== undefined && TABLE_SEP.test(next))
  );
}

function blocks(lines, depth) {
  let out = '';
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) {
      i += 1;
      continue;
    }
    let m = FENCE.exec(line);
    if (m) {
      const mark = m[1];
      const lang = m[2];
      const body = [];
      i += 1;
      while (i < lines.length) {
        const l = lines[i];
        const t = l.trim();
        if (t.startsWith(mark[0].repeat(mark.length)) && /^[`~]+$/.test(t)) {
          i += 1;
          break;
        }
        body.push(l);
        i += 1;
      }
      const l = langOf(lang);
      out += `<pre class="code"${lang ? ` data-lang="${esc(lang)}"` : ''}><code>${highlight(body.join('\n'), l)}</code></pre>`;
      continue;
    }
    m = HEADING.exec(line);
    if (m) {
      const n = m[1].length;
      out += `<h${n}>${inline(m[2])}</h${n}>`;
      i += 1;
      continue;
    }
    if (RULE.test(line)) {
      out += '<hr>';
      i += 1;
      continue;
    }
    if (QUOTE.test(line)) {
      const body = [];
      while (i < lines.length && lines[i].trim()) {
        const q = QUOTE.exec(lines[i]);
        body.push(q ? q[1] : lines[i]);
        i += 1;
      }
      out += `<blockquote>${depth < 8 ? blocks(body, depth + 1) : esc(body.join('\n'))}</blockquote>`;
      continue;
    }
    m = ITEM.exec(line);
    if (m) {
      const base = m[1].length;
      const ordered = /\d/.test(m[2]);
      const start = ordered ? parseInt(m[2], 10) : 1;
      let html = '';
      while (i < lines.length) {
        const im = ITEM.exec(lines[i]);
        if (!im || im[1].length !== base || /\d/.test(im[2]) !== ordered) break;
        const body = [im[3]];
        i += 1;
        while (i < lines.length) {
          const l = lines[i];
          if (!l.trim()) {
            const nxt = lines[i + 1];
            if (nxt !== undefined && nxt.trim() && /^\s*/.exec(nxt)[0].length > base + 1) {
              body.push('');
              i += 1;
              continue;
            }
            break;
          }
          const ind = /^\s*/.exec(l)[0].length;
          const sub = ITEM.exec(l);
          if (sub && sub[1].length <= base) break;
          if (ind <= base && startsBlock(l, lines[i + 1])) break;
          body.push(l.slice(Math.min(ind, base + 2)));
          i += 1;
        }
        let first = body[0];
        let box = '';
        const tm = /^\[([ xX])\]\s+(.*)$/.exec(first);
        if (tm) {
          box = tm[1] === ' ' ? '<span class="box"></span>' : '<span class="box done"></span>';
          first = tm[2];
          body[0] = first;
        }
        let inner = depth < 8 ? blocks(body, depth + 1) : esc(body.join('\n'));
        const single = /^<p>([\s\S]*)<\/p>$/.exec(inner);
        if (single && !single[1].includes('<p>')) inner = single[1];
        html += `<li${box ? ' class="task"' : ''}>${box}${inner}</li>`;
        while (i < lines.length && !lines[i].trim()) {
          const nx = ITEM.exec(lines[i + 1] || '');
          if (nx && nx[1].length === base) i += 1;
          else break;
        }
      }
      out += ordered ? `<ol${start !== 1 ? ` start="${start}"` : ''}>${html}</ol>` : `<ul>${html}</ul>`;
      continue;
    }
    if (line.includes('|') && i + 1 < lines.length && TABLE_SEP.test(lines[i + 1])) {
      const head = cells(line);
      i += 2;
      let body = '';
      while (i < lines.length && lines[i].trim() && lines[i].includes('|')) {
        body += `<tr>${cells(lines[i]).map((c) => `<td>${inline(c)}</td>`).join('')}</tr>`;
        i += 1;
      }
      out += `<table><thead><tr>${head.map((c) => `<th>${inline(c)}</th>`).join('')}</tr></thead><tbody>${body}</tbody></table>`;
      continue;
    }
    const para = [line];
    i += 1;
    while (i < lines.length && lines[i].trim() && !startsBlock(lines[i], lines[i + 1])) {
      para.push(lines[i]);
      i += 1;
    }
    out += `<p>${para.map((p) => inline(p.trim())).join('<br>')}</p>`;
  }
  return out;
}

/** `text` (Markdown) as HTML; safe to assign to innerHTML. */
export function markdown(text) {
  const src = String(text ?? '').replace(/\r\n?/g, '\n');
  if (src.length > 400000) return `<pre class="plain">${esc(src)}</pre>`;
  return blocks(src.split('\n'), 0);
}
