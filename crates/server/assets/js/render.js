// Trace entries → DOM: the conversation (Markdown), tool calls by kind
// (shell, edit, read, todo, sub-agent, other), system lines, errors and the
// run's diff. Every entry has a "raw" toggle showing its normalized events
// and the harness's own lines.

import { h, fmtBytes, fmtDuration, fmtCount, fmtCost, parseTime, fmtClock, lines as splitLines } from './util.js';
import { markdown } from './md.js';
import { highlight, langOf } from './hl.js';
import { ansiToFragment } from './ansi.js';
import { editFiles, parseUnified, renderFiles } from './diff.js';
import { shellCommand, toolPath, toolSummary, todoItems } from './trace.js';

const FOLD = 20;

/** The entry's signature: it is drawn again when this changes. */
export function entrySig(e) {
  return `${e.kind}:${e.events.length}:${e.ui.v || 0}`;
}

/** A guess of an entry's height before it is drawn. */
export function estimateHeight(e) {
  switch (e.kind) {
    case 'tool':
      return e.cat === 'shell' ? 90 : e.cat === 'edit' ? 140 : 44;
    case 'assistant':
    case 'user': {
      const t = e.events[0].text || '';
      return 28 + Math.min(600, Math.ceil(t.length / 90) * 20 + (t.match(/\n/g) || []).length * 8);
    }
    case 'diff':
      return 300;
    case 'result':
      return 80;
    default:
      return 26;
  }
}

function changed(e, ctx) {
  e.ui.v = (e.ui.v || 0) + 1;
  ctx.changed(e);
}

/** A <pre> of `text`, folded after `limit` lines unless the entry is open. */
function folded(text, e, ctx, { ansi = false, limit = FOLD, cls = 'out' } = {}) {
  const all = String(text ?? '');
  const ls = splitLines(all);
  const pre = h('pre', { class: cls });
  const open = e.ui.open || ls.length <= limit + 3;
  const shown = open ? all : ls.slice(0, limit).join('\n');
  if (ansi) pre.appendChild(ansiToFragment(shown));
  else pre.textContent = shown;
  if (open) return pre;
  const more = h('button', { class: 'fold', type: 'button' }, `show all ${ls.length} lines (${ls.length - limit} more)`);
  more.addEventListener('click', () => {
    e.ui.open = true;
    changed(e, ctx);
  });
  return h('div', { class: 'folded' }, pre, more);
}

function md(text) {
  return h('div', { class: 'md', html: markdown(text) });
}

function exitCodeOf(result) {
  if (!result) return null;
  if (Number.isInteger(result.exit_code)) return result.exit_code;
  const m = /^Exit code: (-?\d+)/m.exec(result.output || '');
  return m ? Number(m[1]) : null;
}

function durationOf(a, b) {
  const t0 = parseTime(a && a.ts);
  const t1 = parseTime(b && b.ts);
  return t0 !== null && t1 !== null ? t1 - t0 : null;
}

function usageNote(e) {
  const us = e.events.filter((x) => x.type === 'usage');
  if (!us.length) return null;
  let i = 0;
  let o = 0;
  let c = null;
  for (const u of us) {
    i += Number(u.input_tokens) || 0;
    o += Number(u.output_tokens) || 0;
    if (typeof u.cost_usd === 'number') c = (c || 0) + u.cost_usd;
  }
  return h('span', { class: 'usage-note', title: 'tokens reported after this step' }, `${fmtCount(i)} in · ${fmtCount(o)} out${c !== null ? ` · ${fmtCost(c)}` : ''}`);
}

function readSnippet(path, output, offset, e, ctx) {
  const ls = splitLines(output);
  const numbered = ls.length > 0 && ls.filter((l) => /^\s*\d+(→|\t)/.test(l)).length >= Math.min(ls.length, 3) * 0.8;
  const lang = langOf(path);
  const limit = e.ui.open ? Infinity : 40;
  const table = h('div', { class: 'snippet' });
  let html = '';
  let n = Number.isInteger(offset) && offset > 0 ? offset : 1;
  const shown = ls.slice(0, limit);
  for (const l of shown) {
    let num = n;
    let code = l;
    if (numbered) {
      const m = /^\s*(\d+)(?:→|\t)(.*)$/.exec(l);
      if (m) {
        num = Number(m[1]);
        code = m[2];
      }
    }
    html += `<div class="sl"><span class="lno">${num}</span><span class="code">${highlight(code, lang)}</span></div>`;
    n = num + 1;
  }
  table.innerHTML = html;
  if (ls.length > shown.length) {
    const more = h('button', { class: 'fold', type: 'button' }, `show all ${ls.length} lines`);
    more.addEventListener('click', () => {
      e.ui.open = true;
      changed(e, ctx);
    });
    return h('div', { class: 'folded' }, table, more);
  }
  return table;
}

function checklist(items) {
  return h(
    'ul',
    { class: 'todos' },
    items.map((t) => h('li', { class: `todo ${t.status}` }, h('span', { class: 'box' }, t.status === 'completed' ? '✓' : t.status === 'in_progress' ? '◐' : t.status === 'cancelled' ? '✗' : ''), h('span', { class: 'todo-text' }, t.text))),
  );
}

function jsonBlock(v, e, ctx) {
  let text;
  try {
    text = typeof v === 'string' ? v : JSON.stringify(v, null, 2);
  } catch {
    text = String(v);
  }
  return folded(text, e, ctx, { cls: 'json', limit: 12 });
}

function toolBody(e, ctx) {
  const call = e.call;
  const res = e.result;
  const body = h('div', { class: 'e-body' });
  const input = call.input;
  const errOut = res && res.is_error ? folded(res.output, e, ctx, { ansi: true, cls: 'out err' }) : null;
  switch (e.cat) {
    case 'shell': {
      const cmd = shellCommand(input);
      const pre = h('pre', { class: 'cmd' });
      pre.innerHTML = `<span class="prompt">$ </span>${highlight(cmd, 'shell')}`;
      body.appendChild(pre);
      const wd = input && (input.workdir || input.cwd);
      if (wd) body.appendChild(h('div', { class: 'dim small' }, `in ${wd}`));
      if (input && typeof input.description === 'string') body.appendChild(h('div', { class: 'dim small' }, input.description));
      if (res && res.output) body.appendChild(folded(res.output, e, ctx, { ansi: true, cls: res.is_error ? 'out err' : 'out' }));
      break;
    }
    case 'edit': {
      let files = [];
      const withDiff = e.edits.filter((x) => typeof x.diff === 'string' && x.diff);
      if (withDiff.length) {
        for (const x of withDiff) {
          const fs = parseUnified(x.diff, x.path);
          for (const f of fs) if (!f.path) f.path = x.path;
          files.push(...fs);
        }
      } else {
        files = editFiles(call.name, Array.isArray(input?.command) ? input.command[1] : input) || [];
        if (!files.length && typeof shellCommand(input) === 'string') {
          const c = shellCommand(input);
          if (c.includes('*** Begin Patch')) files = editFiles('apply_patch', c.slice(c.indexOf('*** Begin Patch'))) || [];
        }
      }
      if (files.length) body.appendChild(renderFiles(files, { collapsible: files.length > 1, openLimit: e.ui.open ? Infinity : 300 }));
      else body.appendChild(jsonBlock(input, e, ctx));
      if (errOut) body.appendChild(errOut);
      break;
    }
    case 'read': {
      const path = toolPath(input);
      if (res && !res.is_error && res.output) body.appendChild(readSnippet(path, res.output, input && (input.offset || input.start_line), e, ctx));
      if (errOut) body.appendChild(errOut);
      break;
    }
    case 'todo': {
      const items = todoItems(input);
      if (items) body.appendChild(checklist(items));
      else body.appendChild(jsonBlock(input, e, ctx));
      if (errOut) body.appendChild(errOut);
      break;
    }
    case 'agent': {
      const prompt = input && (input.prompt || input.message);
      if (input && input.subagent_type) body.appendChild(h('div', { class: 'dim small' }, `agent: ${input.subagent_type}`));
      if (prompt) {
        const d = h('details', { class: 'sub-prompt' }, h('summary', null, 'prompt'), md(prompt));
        if (e.ui.open) d.open = true;
        body.appendChild(d);
      }
      if (e.children) {
        const btn = h('button', { class: 'fold', type: 'button' }, e.ui.collapsed ? `show ${e.children} sub-agent call${e.children > 1 ? 's' : ''}` : `hide ${e.children} sub-agent call${e.children > 1 ? 's' : ''}`);
        btn.addEventListener('click', () => {
          e.ui.collapsed = !e.ui.collapsed;
          changed(e, ctx);
          ctx.collapse(e);
        });
        body.appendChild(btn);
      }
      if (res && res.output) {
        if (res.is_error) body.appendChild(errOut);
        else {
          const d = h('details', { class: 'sub-result' }, h('summary', null, 'result'), md(res.output));
          if (e.ui.open || res.output.length < 600) d.open = true;
          body.appendChild(d);
        }
      }
      break;
    }
    default: {
      if (input !== undefined && !(input && typeof input === 'object' && !Array.isArray(input) && Object.keys(input).length === 0)) body.appendChild(jsonBlock(input, e, ctx));
      if (res && res.output) body.appendChild(folded(res.output, e, ctx, { ansi: true, cls: res.is_error ? 'out err' : 'out' }));
    }
  }
  return body;
}

function toolHead(e, ctx) {
  const call = e.call;
  const res = e.result;
  const parts = [h('span', { class: `tool-name cat-${e.cat}` }, call.name)];
  let summary = toolSummary(call.name, call.input);
  if (e.cat === 'edit' && e.edits.length) {
    const a = e.edits.reduce((s, x) => s + (x.added || 0), 0);
    const r = e.edits.reduce((s, x) => s + (x.removed || 0), 0);
    summary = `${summary}`;
    parts.push(h('span', { class: 'summary' }, summary), h('span', { class: 'counts' }, h('span', { class: 'plus' }, `+${a}`), ' ', h('span', { class: 'minus' }, `-${r}`)));
  } else parts.push(h('span', { class: 'summary' }, summary));
  const meta = h('span', { class: 'meta' });
  if (res) {
    const code = exitCodeOf(res);
    if (code !== null) meta.appendChild(h('span', { class: code === 0 ? 'exit ok' : 'exit bad' }, `exit ${code}`));
    else if (res.is_error) meta.appendChild(h('span', { class: 'exit bad' }, 'error'));
    const d = durationOf(call, res);
    if (d !== null) meta.appendChild(h('span', { class: 'dur' }, fmtDuration(d)));
  } else if (ctx.live()) meta.appendChild(h('span', { class: 'running' }, 'running…'));
  else meta.appendChild(h('span', { class: 'dim' }, 'no result'));
  parts.push(meta);
  return parts;
}

const SHOWN_IMAGES = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];

/** An image event as a picture (a data URI of the trace's own base64: nothing is fetched), or a line saying why not. */
export function imageEl(ev) {
  const type = String(ev.media_type || '');
  const size = fmtBytes(Number(ev.bytes) || 0);
  const data = typeof ev.data === 'string' ? ev.data : '';
  if (SHOWN_IMAGES.includes(type) && data && /^[A-Za-z0-9+/]+={0,2}$/.test(data)) {
    const img = h('img', { class: 'trace-img', src: `data:${type};base64,${data}`, alt: `image (${type}, ${size})`, title: `${type}, ${size}`, loading: 'lazy', decoding: 'async' });
    return h('figure', { class: 'trace-fig' }, img, h('figcaption', { class: 'dim' }, `${type} · ${size}`));
  }
  return h('div', { class: 'sysline notice img-omitted' }, `· image (${type || 'unknown type'}, ${size}) not shown: too large or not a picture`);
}

function images(e) {
  return (e.images || []).map(imageEl);
}

function systemLine(text, cls) {
  return h('div', { class: `sysline ${cls || ''}` }, text);
}

function body(e, ctx) {
  const ev = e.events[0];
  switch (e.kind) {
    case 'user':
      return [h('div', { class: 'who' }, ctx.isFirstUser(e) ? 'Prompt' : 'User'), md(ev.text), ...images(e)];
    case 'image':
      return [h('div', { class: 'who' }, ev.tool_id ? 'Image (tool result)' : 'Image'), imageEl(ev)];
    case 'note': {
      const text = String(ev.text || '');
      const nl = text.indexOf('\n');
      if (nl < 0) return [systemLine(`· ${text}`, 'notice note')];
      const d = h('details', { class: 'sysline notice note' }, h('summary', null, `· ${text.slice(0, nl)}`), h('pre', { class: 'msg' }, text.slice(nl + 1)));
      if (e.ui.open) d.open = true;
      d.addEventListener('toggle', () => {
        e.ui.open = d.open;
      });
      return [d];
    }
    case 'assistant':
      return [md(ev.text)];
    case 'thinking': {
      const first = (ev.text || '').split('\n').find((l) => l.trim()) || '';
      const d = h('details', { class: 'thinking' }, h('summary', null, h('span', { class: 'who' }, 'Thinking'), ' ', h('span', { class: 'dim' }, first.length > 100 ? `${first.slice(0, 100)}…` : first)), md(ev.text));
      if (e.ui.open) d.open = true;
      d.addEventListener('toggle', () => {
        e.ui.open = d.open;
      });
      return [d];
    }
    case 'tool':
      return [h('div', { class: 'e-head' }, toolHead(e, ctx)), toolBody(e, ctx), ...images(e)];
    case 'orphan': {
      const out = [h('div', { class: 'e-head' }, h('span', { class: 'tool-name' }, 'result'), h('span', { class: 'summary dim' }, `of call ${ev.id} (its call is not loaded yet)`))];
      if (ev.output) out.push(folded(ev.output, e, ctx, { ansi: true, cls: ev.is_error ? 'out err' : 'out' }));
      return out;
    }
    case 'edit': {
      const files = ev.diff ? parseUnified(ev.diff, ev.path) : [];
      for (const f of files) if (!f.path) f.path = ev.path;
      return [
        h('div', { class: 'e-head' }, h('span', { class: 'tool-name cat-edit' }, 'edit'), h('span', { class: 'summary' }, ev.path), h('span', { class: 'counts' }, h('span', { class: 'plus' }, `+${ev.added || 0}`), ' ', h('span', { class: 'minus' }, `-${ev.removed || 0}`))),
        files.length ? renderFiles(files, { collapsible: false }) : null,
      ];
    }
    case 'state': {
      const bad = ['failed', 'timed_out', 'cancelled'].includes(ev.state);
      return [systemLine(`── ${String(ev.state).replace('_', ' ')}${ev.reason ? `: ${ev.reason}` : ''}`, `state st-${ev.state}${bad ? ' bad' : ''}`)];
    }
    case 'notice':
      return [systemLine(`· ${ev.message}`, 'notice')];
    case 'session': {
      const bits = ['session started'];
      if (ev.model) bits.push(ev.model);
      if (ev.cwd) bits.push(ev.cwd);
      if (Array.isArray(ev.tools) && ev.tools.length) bits.push(`${ev.tools.length} tools`);
      return [systemLine(`· ${bits.join(' · ')}`, 'notice')];
    }
    case 'model': {
      const u = ev.usage || {};
      const bits = [`model ${ev.provider || ''} ${ev.model || ''}`.trim(), String(ev.status || '')];
      bits.push(`${fmtCount(u.input_tokens || 0)} in / ${fmtCount(u.output_tokens || 0)} out tokens`);
      if (u.cache_read_tokens || u.cache_write_tokens) bits.push(`cache ${fmtCount(u.cache_read_tokens || 0)} read / ${fmtCount(u.cache_write_tokens || 0)} written`);
      if (typeof u.cost_usd === 'number') bits.push(fmtCost(u.cost_usd));
      if (typeof ev.ttfb_ms === 'number') bits.push(`first byte ${fmtDuration(ev.ttfb_ms)}`);
      if (ev.duration_ms) bits.push(fmtDuration(ev.duration_ms));
      if (ev.error) bits.push(ev.error);
      const bad = (ev.status || 0) >= 400 || ev.error;
      return [systemLine(`· ${bits.join(' · ')}`, bad ? 'notice bad model' : 'notice model')];
    }
    case 'usage':
      return [systemLine(`· ${fmtCount(ev.input_tokens || 0)} in / ${fmtCount(ev.output_tokens || 0)} out tokens${typeof ev.cost_usd === 'number' ? ` · ${fmtCost(ev.cost_usd)}` : ''}`, 'notice')];
    case 'result': {
      const u = ev.usage || {};
      const bits = [`agent ${ev.is_error ? 'failed' : 'finished'}`];
      if (ev.turns !== undefined && ev.turns !== null) bits.push(`${ev.turns} turn${ev.turns === 1 ? '' : 's'}`);
      bits.push(`${fmtCount(u.input_tokens || 0)} in / ${fmtCount(u.output_tokens || 0)} out tokens`);
      if (typeof u.cost_usd === 'number') bits.push(fmtCost(u.cost_usd));
      if (ev.duration_ms) bits.push(fmtDuration(ev.duration_ms));
      return [h('div', { class: 'who' }, bits.join(' · ')), ev.text ? md(ev.text) : null];
    }
    case 'error':
      return [h('div', { class: 'who' }, 'Error'), h('pre', { class: 'msg' }, ev.message)];
    case 'warning':
      return [h('div', { class: 'who' }, 'Warning'), h('pre', { class: 'msg' }, ev.message)];
    case 'diff': {
      const files = parseUnified(ev.diff || '');
      const head = h('div', { class: 'e-head' }, h('span', { class: 'tool-name cat-edit' }, 'diff'), h('span', { class: 'summary' }, `changes of the whole run: ${files.length} file${files.length === 1 ? '' : 's'}`), h('span', { class: 'meta dim' }, `${String(ev.base_commit || '').slice(0, 8)}..${String(ev.commit || '').slice(0, 8)}`));
      const out = [head];
      if (ev.stat) out.push(h('pre', { class: 'stat' }, ev.stat));
      if (ev.truncated) out.push(h('div', { class: 'warnline' }, 'The diff was cut to size: see the branch for the whole change.'));
      out.push(renderFiles(files, { collapsible: true, openLimit: e.ui.open ? Infinity : 400 }));
      return out;
    }
    case 'raw':
    default: {
      const line = ev.line !== undefined ? ev.line : JSON.stringify(ev);
      let pretty = line;
      try {
        pretty = JSON.stringify(JSON.parse(line), null, 2);
      } catch {
        /* not JSON */
      }
      const d = h('details', { class: 'rawline' }, h('summary', null, h('span', { class: 'dim' }, `unrecognised line: ${String(line).slice(0, 120)}`)), h('pre', { class: 'json' }, pretty));
      if (e.ui.open) d.open = true;
      return [d];
    }
  }
}

function rawPanel(e, ctx) {
  const box = h('div', { class: 'e-raw' });
  for (const ev of e.events) {
    box.appendChild(h('div', { class: 'raw-label' }, `event #${ev.seq} (${ev.type})`));
    box.appendChild(h('pre', { class: 'json' }, JSON.stringify(ev, null, 2)));
    if (ev.raw_line) {
      const pre = h('pre', { class: 'json harness' }, `loading line ${ev.raw_line} of the harness's output…`);
      box.appendChild(h('div', { class: 'raw-label' }, `harness line ${ev.raw_line}`));
      box.appendChild(pre);
      ctx.raw(ev.raw_line).then(
        (text) => {
          if (text === null || text === undefined) {
            pre.textContent = '(this line is not available)';
            return;
          }
          let t = text;
          try {
            t = JSON.stringify(JSON.parse(text), null, 2);
          } catch {
            /* keep as is */
          }
          pre.textContent = t;
        },
        (err) => {
          pre.textContent = `(could not load: ${err.message || err})`;
        },
      );
    }
  }
  return box;
}

function isError(e) {
  const ev = e.events[0];
  if (e.kind === 'error') return true;
  if (e.kind === 'tool' || e.kind === 'orphan') return Boolean(e.result && e.result.is_error);
  if (e.kind === 'result') return Boolean(ev.is_error);
  if (e.kind === 'state') return ['failed', 'timed_out', 'cancelled'].includes(ev.state);
  return false;
}

/** Wraps each case-insensitive occurrence of `q` in text nodes under `root` in <mark>. */
export function markMatches(root, q) {
  if (!q) return 0;
  const needle = q.toLowerCase();
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {
    acceptNode: (n) => (n.parentElement && n.parentElement.closest('button, .e-gutter') ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT),
  });
  const hits = [];
  let n;
  while ((n = walker.nextNode())) {
    if (n.nodeValue.toLowerCase().includes(needle)) hits.push(n);
  }
  let count = 0;
  for (const t of hits) {
    const text = t.nodeValue;
    const lower = text.toLowerCase();
    const frag = document.createDocumentFragment();
    let pos = 0;
    let i;
    while ((i = lower.indexOf(needle, pos)) >= 0) {
      if (i > pos) frag.appendChild(document.createTextNode(text.slice(pos, i)));
      frag.appendChild(h('mark', null, text.slice(i, i + needle.length)));
      pos = i + needle.length;
      count += 1;
    }
    if (pos < text.length) frag.appendChild(document.createTextNode(text.slice(pos)));
    t.parentNode.replaceChild(frag, t);
  }
  return count;
}

/**
 * One entry as an element. ctx: { changed(e), collapse(e), raw(line) → Promise<string|null>,
 * live() → bool, isFirstUser(e), query, currentKey, focusKey }.
 */
export function renderEntry(e, ctx) {
  const ev = e.events[0];
  const cls = ['entry', `k-${e.kind}`];
  if (e.kind === 'tool') cls.push(`cat-${e.cat}`);
  if (isError(e)) cls.push('is-error');
  if (e.kind === 'warning') cls.push('is-warning');
  if (e.depth) cls.push('nested');
  if (ctx.currentKey === e.key) cls.push('current');
  if (ctx.focusKey === e.key) cls.push('focused');
  const el = h('div', { class: cls.join(' '), 'data-seq': e.key, 'data-kind': e.kind });
  if (e.depth) el.style.paddingLeft = `${e.depth * 22}px`;
  const t = parseTime(ev.ts);
  const gutter = h('div', { class: 'e-gutter' }, h('span', { class: 'e-time' }, t !== null ? fmtClock(t) : ''), h('span', { class: 'e-seq' }, `#${e.key}`));
  const main = h('div', { class: 'e-main' });
  if (e.depth && e.parent) main.appendChild(h('div', { class: 'sub-of' }, `↳ in ${e.parent.call.name}: ${toolSummary(e.parent.call.name, e.parent.call.input)}`));
  for (const part of body(e, ctx)) if (part) main.appendChild(part);
  const note = usageNote(e);
  const rawBtn = h('button', { class: `rawbtn${e.ui.raw ? ' on' : ''}`, type: 'button', title: 'show the raw events' }, 'raw');
  rawBtn.addEventListener('click', () => {
    e.ui.raw = !e.ui.raw;
    changed(e, ctx);
  });
  const tools = h('div', { class: 'e-tools' }, note, rawBtn);
  if (e.ui.raw) main.appendChild(rawPanel(e, ctx));
  el.append(gutter, main, tools);
  if (ctx.query) markMatches(main, ctx.query);
  return el;
}

