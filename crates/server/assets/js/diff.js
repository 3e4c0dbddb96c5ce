// Diffs: parsing unified diffs and Codex patches, line diffs of edits, and
// rendering them with +/- colouring and syntax colouring.

import { h, esc, lines as splitLines } from './util.js';
import { highlight, langOf } from './hl.js';

/**
 * A file's change: { path, oldPath, status, hunks: [{ header, lines: [{ t, text, o, n }] }],
 * added, removed, binary }. `t` is '+', '-', ' ' or '\\' (no newline at end).
 */
function newFile(path) {
  return { path, oldPath: path, status: 'modified', hunks: [], added: 0, removed: 0, binary: false, meta: [] };
}

function stripPrefix(p) {
  const s = String(p ?? '').trim().replace(/\t.*$/, '');
  if (s === '/dev/null') return null;
  const unq = s.startsWith('"') && s.endsWith('"') ? s.slice(1, -1) : s;
  return unq.replace(/^[ab]\//, '');
}

/** The files of a unified diff (git's or plain). `pathHint` names a diff without headers. */
export function parseUnified(text, pathHint = '') {
  const files = [];
  let f = null;
  let hunk = null;
  let o = 0;
  let n = 0;
  const inHunk = () => hunk && (hunk.oldLeft > 0 || hunk.newLeft > 0);
  for (const line of splitLines(text)) {
    if (inHunk() && /^[ +-]/.test(line)) {
      const t = line[0];
      const body = line.slice(1);
      if (t === '+') {
        hunk.lines.push({ t, text: body, o: null, n: n++ });
        hunk.newLeft -= 1;
        f.added += 1;
      } else if (t === '-') {
        hunk.lines.push({ t, text: body, o: o++, n: null });
        hunk.oldLeft -= 1;
        f.removed += 1;
      } else {
        hunk.lines.push({ t, text: body, o: o++, n: n++ });
        hunk.oldLeft -= 1;
        hunk.newLeft -= 1;
      }
      continue;
    }
    if (hunk && line.startsWith('\\')) {
      hunk.lines.push({ t: '\\', text: line.slice(1), o: null, n: null });
      continue;
    }
    if (line.startsWith('diff --git ')) {
      const m = /^diff --git "?a\/(.+?)"? "?b\/(.+?)"?$/.exec(line);
      f = newFile(m ? m[2] : line.slice(11));
      if (m) f.oldPath = m[1];
      files.push(f);
      hunk = null;
      continue;
    }
    if (line.startsWith('--- ')) {
      const p = stripPrefix(line.slice(4));
      if (!f || f.hunks.length) {
        f = newFile(p ?? pathHint);
        files.push(f);
      }
      f.oldPath = p;
      if (p === null) f.status = 'added';
      hunk = null;
      continue;
    }
    if (line.startsWith('+++ ') && f && !f.hunks.length) {
      const p = stripPrefix(line.slice(4));
      if (p === null) f.status = 'deleted';
      else f.path = p;
      continue;
    }
    const hm = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@(.*)$/.exec(line);
    if (hm) {
      if (!f) {
        f = newFile(pathHint);
        files.push(f);
      }
      o = Number(hm[1]);
      n = Number(hm[3]);
      hunk = { header: line, lines: [], oldLeft: hm[2] === undefined ? 1 : Number(hm[2]), newLeft: hm[4] === undefined ? 1 : Number(hm[4]) };
      if (!f.hunks.length && hm[1] === '0' && hm[2] === '0' && f.status === 'modified') f.status = 'added';
      f.hunks.push(hunk);
      continue;
    }
    if (f) {
      if (/^new file mode/.test(line)) f.status = 'added';
      else if (/^deleted file mode/.test(line)) f.status = 'deleted';
      else if (/^rename to /.test(line)) f.status = 'renamed';
      else if (/^Binary files /.test(line) || line === 'GIT binary patch') f.binary = true;
      if (line && !hunk) f.meta.push(line);
    }
  }
  return files;
}

/** Codex's patch format (`*** Begin Patch` … `*** End Patch`) as files. */
export function parsePatch(text) {
  const files = [];
  let f = null;
  let hunk = null;
  for (const line of splitLines(text)) {
    let m;
    if ((m = /^\*\*\* (Add|Update|Delete) File: (.+)$/.exec(line))) {
      f = newFile(m[2].trim());
      f.status = { Add: 'added', Update: 'modified', Delete: 'deleted' }[m[1]];
      files.push(f);
      hunk = null;
      continue;
    }
    if ((m = /^\*\*\* Move to: (.+)$/.exec(line)) && f) {
      f.oldPath = f.path;
      f.path = m[1].trim();
      f.status = 'renamed';
      continue;
    }
    if (line.startsWith('*** ')) continue;
    if (!f) continue;
    if (line.startsWith('@@')) {
      hunk = { header: line, lines: [] };
      f.hunks.push(hunk);
      continue;
    }
    if (!hunk) {
      hunk = { header: '', lines: [] };
      f.hunks.push(hunk);
    }
    const t = line[0];
    if (t === '+' || t === '-' || t === ' ') {
      hunk.lines.push({ t, text: line.slice(1), o: null, n: null });
      if (t === '+') f.added += 1;
      if (t === '-') f.removed += 1;
    } else if (line === '') {
      hunk.lines.push({ t: ' ', text: '', o: null, n: null });
    }
  }
  if (files.length) {
    for (const file of files) {
      if (file.status === 'added') {
        let k = 1;
        for (const hk of file.hunks) for (const l of hk.lines) l.n = k++;
      }
    }
  }
  return files;
}

/** A line diff of two texts as hunks with `context` lines around changes (LCS; big inputs fall back to replace-all). */
export function lineDiff(aText, bText, context = 3, numbered = false) {
  const a = aText === '' ? [] : splitLines(aText);
  const b = bText === '' ? [] : splitLines(bText);
  let pre = 0;
  while (pre < a.length && pre < b.length && a[pre] === b[pre]) pre++;
  let suf = 0;
  while (suf < a.length - pre && suf < b.length - pre && a[a.length - 1 - suf] === b[b.length - 1 - suf]) suf++;
  const A = a.slice(pre, a.length - suf);
  const B = b.slice(pre, b.length - suf);
  const ops = [];
  for (let i = 0; i < pre; i++) ops.push({ t: ' ', text: a[i] });
  if (A.length * B.length > 4e6) {
    for (const x of A) ops.push({ t: '-', text: x });
    for (const x of B) ops.push({ t: '+', text: x });
  } else {
    const n = A.length;
    const m = B.length;
    const w = m + 1;
    const L = new Uint32Array((n + 1) * w);
    for (let i = n - 1; i >= 0; i--) {
      for (let j = m - 1; j >= 0; j--) {
        L[i * w + j] = A[i] === B[j] ? L[(i + 1) * w + j + 1] + 1 : Math.max(L[(i + 1) * w + j], L[i * w + j + 1]);
      }
    }
    let i = 0;
    let j = 0;
    while (i < n || j < m) {
      if (i < n && j < m && A[i] === B[j]) {
        ops.push({ t: ' ', text: A[i] });
        i++;
        j++;
      } else if (i < n && (j >= m || L[(i + 1) * w + j] >= L[i * w + j + 1])) {
        ops.push({ t: '-', text: A[i] });
        i++;
      } else {
        ops.push({ t: '+', text: B[j] });
        j++;
      }
    }
  }
  for (let i = a.length - suf; i < a.length; i++) ops.push({ t: ' ', text: a[i] });
  let o = 1;
  let nn = 1;
  for (const op of ops) {
    op.o = op.t !== '+' && numbered ? o : null;
    op.n = op.t !== '-' && numbered ? nn : null;
    if (op.t !== '+') o++;
    if (op.t !== '-') nn++;
  }
  const hunks = [];
  let cur = null;
  let lastChange = -Infinity;
  for (let k = 0; k < ops.length; k++) {
    if (ops[k].t === ' ') continue;
    const from = Math.max(0, k - context);
    if (!cur || from > lastChange + context + 1) {
      cur = { header: '', lines: [], from };
      hunks.push(cur);
      for (let x = from; x < k; x++) cur.lines.push(ops[x]);
    } else {
      for (let x = lastChange + 1; x < k; x++) cur.lines.push(ops[x]);
    }
    cur.lines.push(ops[k]);
    lastChange = k;
    cur.to = k;
  }
  for (const hk of hunks) {
    for (let x = hk.to + 1; x < Math.min(ops.length, hk.to + 1 + context); x++) hk.lines.push(ops[x]);
  }
  return hunks;
}

function str(v) {
  return typeof v === 'string' ? v : null;
}

/** The files a file-changing tool call changes, from its input; null when it is no edit. */
export function editFiles(name, input) {
  const lname = String(name).toLowerCase();
  if (typeof input === 'string' && input.includes('*** Begin Patch')) return parsePatch(input);
  if (!input || typeof input !== 'object') return null;
  const path = str(input.file_path) ?? str(input.filePath) ?? str(input.path) ?? str(input.absolute_path) ?? str(input.notebook_path) ?? '';
  const mk = (hunks, status = 'modified') => {
    const f = newFile(path);
    f.status = status;
    f.hunks = hunks;
    for (const hk of hunks) for (const l of hk.lines) {
      if (l.t === '+') f.added++;
      if (l.t === '-') f.removed++;
    }
    return [f];
  };
  if (typeof input.input === 'string' && input.input.includes('*** Begin Patch')) return parsePatch(input.input);
  if (typeof input.patch === 'string') {
    return input.patch.includes('*** Begin Patch') ? parsePatch(input.patch) : parseUnified(input.patch, path);
  }
  if (Array.isArray(input.changes)) {
    const out = [];
    for (const c of input.changes) {
      if (!c || typeof c !== 'object') continue;
      const p = str(c.path) ?? '';
      if (typeof c.diff === 'string' && c.diff) {
        const fs = parseUnified(c.diff, p);
        for (const f of fs) if (!f.path) f.path = p;
        out.push(...fs);
      } else if (typeof c.unified_diff === 'string') {
        out.push(...parseUnified(c.unified_diff, p));
      } else if (typeof c.content === 'string') {
        const f = newFile(p);
        f.status = 'added';
        f.hunks = lineDiff('', c.content, 3, true);
        f.added = f.hunks.reduce((s, hk) => s + hk.lines.length, 0);
        out.push(f);
      } else {
        const f = newFile(p);
        f.status = { add: 'added', delete: 'deleted', update: 'modified' }[c.kind] || c.kind || 'modified';
        out.push(f);
      }
    }
    return out;
  }
  if (Array.isArray(input.edits)) {
    const hunks = [];
    for (const e of input.edits) {
      if (!e || typeof e !== 'object') continue;
      const a = str(e.old_string) ?? str(e.oldString) ?? '';
      const b = str(e.new_string) ?? str(e.newString) ?? '';
      hunks.push(...lineDiff(a, b));
    }
    return mk(hunks);
  }
  const oldS = str(input.old_string) ?? str(input.oldString) ?? str(input.old_str);
  const newS = str(input.new_string) ?? str(input.newString) ?? str(input.new_str);
  if (oldS !== null || newS !== null) return mk(lineDiff(oldS ?? '', newS ?? ''));
  const content = str(input.content) ?? str(input.file_text) ?? str(input.new_source) ?? str(input.contents);
  if (content !== null && /write|create|notebook|str_replace/.test(lname)) return mk(lineDiff('', content, 3, true), 'added');
  return null;
}

const MAX_LINES = 1500;

function renderLines(file, lines, container) {
  const lang = langOf(file.path || file.oldPath || '');
  let html = '';
  for (const l of lines) {
    const cls = l.t === '+' ? 'add' : l.t === '-' ? 'del' : l.t === '\\' ? 'note' : 'ctx';
    html +=
      `<div class="dl ${cls}"><span class="lno">${l.o ?? ''}</span><span class="lno">${l.n ?? ''}</span>` +
      `<span class="sign">${l.t === '\\' ? '' : esc(l.t)}</span><span class="code">${l.t === '\\' ? esc(`\\${l.text}`) : highlight(l.text, lang)}</span></div>`;
  }
  container.insertAdjacentHTML('beforeend', html);
}

function renderHunks(file, body) {
  const all = [];
  for (const hk of file.hunks) {
    if (hk.header) all.push({ t: 'hunk', text: hk.header });
    else if (file.hunks.length > 1) all.push({ t: 'hunk', text: '⋯' });
    all.push(...hk.lines);
  }
  const draw = (from, to) => {
    const chunk = [];
    for (let i = from; i < to; i++) {
      const l = all[i];
      if (l.t === 'hunk') {
        if (chunk.length) renderLines(file, chunk.splice(0), body);
        body.appendChild(h('div', { class: 'dl hunk' }, l.text));
      } else chunk.push(l);
    }
    if (chunk.length) renderLines(file, chunk, body);
  };
  draw(0, Math.min(all.length, MAX_LINES));
  if (all.length > MAX_LINES) {
    const more = h('button', { class: 'more' }, `show ${all.length - MAX_LINES} more lines`);
    more.addEventListener('click', () => {
      more.remove();
      draw(MAX_LINES, all.length);
    });
    body.appendChild(more);
  }
}

/** One file's diff as an element; `collapsible` puts it in a <details> (rendered when opened). */
export function renderFile(file, { collapsible = false, open = true } = {}) {
  const title = [
    h('span', { class: `fstatus st-${file.status}` }, file.status === 'modified' ? 'M' : (file.status || 'M')[0].toUpperCase()),
    h('span', { class: 'fpath' }, file.oldPath && file.oldPath !== file.path && file.status === 'renamed' ? `${file.oldPath} → ${file.path}` : file.path || '(file)'),
    h('span', { class: 'fcount' }, h('span', { class: 'plus' }, `+${file.added}`), ' ', h('span', { class: 'minus' }, `-${file.removed}`)),
  ];
  const body = h('div', { class: 'diff-body' });
  const fill = () => {
    if (body.dataset.filled) return;
    body.dataset.filled = '1';
    if (file.binary) body.appendChild(h('div', { class: 'dl note' }, 'binary file'));
    else if (!file.hunks.length) body.appendChild(h('div', { class: 'dl note' }, file.meta?.length ? file.meta.join('\n') : 'no textual change shown'));
    else renderHunks(file, body);
  };
  if (!collapsible) {
    fill();
    return h('div', { class: 'diff-file' }, h('div', { class: 'diff-head' }, title), body);
  }
  const d = h('details', { class: 'diff-file' }, h('summary', { class: 'diff-head' }, title), body);
  d.addEventListener('toggle', () => {
    if (d.open) fill();
  });
  if (open) {
    d.open = true;
    fill();
  }
  return d;
}

/** Several files' diffs; files open while the total stays small. */
export function renderFiles(files, { collapsible = true, openLimit = 400 } = {}) {
  const wrap = h('div', { class: 'diff' });
  let budget = openLimit;
  for (const f of files) {
    const size = f.hunks.reduce((s, hk) => s + hk.lines.length, 0);
    const open = size <= budget;
    if (open) budget -= size;
    wrap.appendChild(renderFile(f, { collapsible, open }));
  }
  return wrap;
}
