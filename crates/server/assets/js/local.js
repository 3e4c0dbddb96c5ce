// `errand view`: the trace files given on the command line, newest first.

import { h, fmtBytes, fmtCount, fmtAge, parseTime } from './util.js';
import { getJson } from './api.js';
import { dropZone } from './drop.js';

export async function localPage(root) {
  document.title = 'traces · errand view';
  const tbody = h('tbody');
  const msg = h('div', { class: 'msg-line' });
  root.replaceChildren(
    h(
      'div',
      { class: 'local-page' },
      h('div', { class: 'page-head' }, h('h1', null, 'Trace files')),
      msg,
      h('div', { class: 'table-wrap' }, h('table', { class: 'runs files' }, h('thead', null, h('tr', null, ['file', 'format', 'size', 'modified', 'events', 'problems'].map((c) => h('th', null, c)))), tbody)),
      dropZone(),
    ),
  );
  const load = async () => {
    let v;
    try {
      v = await getJson('/api/v1/local/files');
    } catch (e) {
      msg.textContent = `Could not list the files: ${e.message}`;
      msg.className = 'msg-line bad';
      return true;
    }
    const now = Date.now();
    // By project (the one with the newest session first), newest first within.
    const groups = new Map();
    for (const f of v.files || []) {
      const key = f.project || '';
      if (!groups.has(key)) groups.set(key, []);
      groups.get(key).push(f);
    }
    const grouped = groups.size > 1 || (groups.size === 1 && !groups.has(''));
    const rows = [];
    for (const [project, files] of groups) {
      if (grouped) rows.push(h('tr', { class: 'group-row' }, h('th', { colspan: 6, scope: 'rowgroup' }, project || 'other', h('span', { class: 'dim' }, ` · ${files.length} session${files.length === 1 ? '' : 's'}`))));
      for (const f of files) rows.push(row(f));
    }
    function row(f) {
      return h(
        'tr',
        { 'data-n': f.n },
        h('td', null, h('a', { href: `/local/${f.n}` }, f.name)),
        h('td', null, f.parsed ? (f.format ? f.format.replace(/_/g, ' ') : h('span', { class: 'bad' }, 'unknown format')) : h('span', { class: 'dim' }, 'reading…')),
        h('td', { class: 'num' }, fmtBytes(f.size)),
        h('td', { class: 'num' }, f.modified ? fmtAge(parseTime(f.modified), now) : ''),
        h('td', { class: 'num' }, f.parsed ? fmtCount(f.events) : ''),
        h('td', { class: 'num' }, f.parsed ? (f.problems ? h('span', { class: 'warn' }, String(f.problems)) : '0') : ''),
      );
    }
    tbody.replaceChildren(...rows);
    if (!rows.length) tbody.replaceChildren(h('tr', null, h('td', { colspan: 6, class: 'dim empty' }, 'No trace files.')));
    return (v.files || []).every((f) => f.parsed);
  };
  let done = await load();
  while (!done) {
    await new Promise((r) => setTimeout(r, 1000));
    done = await load();
  }
}
