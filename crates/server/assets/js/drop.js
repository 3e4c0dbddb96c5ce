// Viewing a trace file dropped on the page (or chosen): it is sent to this
// server's POST /api/v1/local/parse, parsed in memory, shown, and not stored.

import { h, fmtBytes, problemText } from './util.js';
import { mode, request, loginIfUnauthorized, getToken } from './api.js';
import { runPage, memorySource } from './run.js';

function where() {
  return mode === 'local'
    ? 'It is parsed by errand view on this machine and never leaves it.'
    : `It is sent to this errand server (${location.host}), parsed in memory and not stored.`;
}

let current = null;

/** Shows `file` as a trace in `root` (or a clear message when it cannot be read). */
export async function viewDropped(file, root) {
  const box = h('div', { class: 'drop-result' }, `Reading ${file.name} (${fmtBytes(file.size)})…`);
  root.replaceChildren(box);
  if (mode === 'serve' && !getToken()) {
    box.replaceChildren(h('p', { class: 'bad' }, 'Log in first: the file is parsed by this server, which needs your API token. '), h('a', { href: '/login' }, 'Log in'));
    return;
  }
  let parsed;
  try {
    const resp = await request('/api/v1/local/parse', { method: 'POST', body: file, headers: { 'Content-Type': 'application/octet-stream' } });
    parsed = await resp.json();
  } catch (e) {
    if (loginIfUnauthorized(e)) return;
    box.replaceChildren(h('p', { class: 'bad' }, `${file.name} could not be read: ${e.message}`));
    return;
  }
  if (!parsed.format && !(parsed.trace || []).some((ev) => ev.type !== 'raw')) {
    box.className = 'drop-result unknown';
    box.replaceChildren(
      h('h2', null, `Unknown format: ${file.name}`),
      h('p', null, 'errand could not recognise this file as a Claude Code transcript or stream-json, a Codex rollout or exec --json log, a Gemini CLI or OpenCode log, or an errand event log. Each line should be one JSON object of one of those formats.'),
      parsed.problems && parsed.problems.length ? h('ul', null, parsed.problems.slice(0, 10).map((p) => h('li', null, problemText(p)))) : null,
    );
    return;
  }
  if (current && current.dispose) current.dispose();
  history.pushState(null, '', `${location.pathname}${location.search}#dropped`);
  current = await runPage(root, memorySource(parsed, file), { title: `${file.name} · errand` });
}

/** A drop zone with a file chooser. */
export function dropZone() {
  const inputEl = h('input', { type: 'file', accept: '.jsonl,.json,.ndjson,.log,.txt,application/json', class: 'file-input' });
  inputEl.addEventListener('change', () => {
    const f = inputEl.files && inputEl.files[0];
    if (f) viewDropped(f, document.getElementById('app'));
  });
  return h(
    'div',
    { class: 'drop-zone' },
    h('strong', null, 'View a trace file: '),
    'drop a trace file (Claude Code, Codex, Gemini CLI, OpenCode, errand) anywhere on this page, or ',
    h('label', { class: 'file-label' }, 'choose one', inputEl),
    '. ',
    h('span', { class: 'dim where' }, where()),
  );
}

/** Lets the whole page take a dropped file. */
export function installDrop() {
  const overlay = document.getElementById('drop-overlay');
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && Array.from(ev.dataTransfer.types || []).includes('Files');
  document.addEventListener('dragenter', (ev) => {
    if (!hasFiles(ev)) return;
    depth += 1;
    if (overlay) {
      overlay.hidden = false;
      overlay.firstElementChild.textContent = `Drop the trace file to view it. ${where()}`;
    }
  });
  document.addEventListener('dragleave', () => {
    depth = Math.max(0, depth - 1);
    if (!depth && overlay) overlay.hidden = true;
  });
  document.addEventListener('dragover', (ev) => {
    if (hasFiles(ev)) ev.preventDefault();
  });
  document.addEventListener('drop', (ev) => {
    depth = 0;
    if (overlay) overlay.hidden = true;
    const f = ev.dataTransfer && ev.dataTransfer.files && ev.dataTransfer.files[0];
    if (!f) return;
    ev.preventDefault();
    viewDropped(f, document.getElementById('app'));
  });
}
