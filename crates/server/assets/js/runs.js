// The runs list: filters in the URL, paging, and live updates (polled every
// 2 s while the page is visible; a row changes in place when its run does).

import { h, fmtAge, fmtDuration, fmtCount, fmtCost, parseTime, stateBadge, STATES, safeUrl } from './util.js';
import { getJson, loginIfUnauthorized } from './api.js';
import { dropZone } from './drop.js';

const LIMIT = 50;

function cell(cls, ...children) {
  return h('td', { class: cls }, ...children);
}

function rowCells(r, now) {
  const started = parseTime(r.started_at);
  const finished = parseTime(r.finished_at);
  const created = parseTime(r.created_at);
  const dur = started !== null ? (finished ?? now) - started : null;
  const tokens = (r.input_tokens || 0) + (r.output_tokens || 0);
  const pr = safeUrl(r.pr_url);
  const prompt = (r.prompt || '').split('\n')[0];
  return [
    cell('c-state', stateBadge(r.state)),
    cell('c-run', h('a', { href: `/runs/${encodeURIComponent(r.id)}`, class: 'run-link' }, h('code', null, r.short_id)), ' ', h('span', { class: 'prompt dim', title: r.prompt || '' }, prompt.length > 60 ? `${prompt.slice(0, 60)}…` : prompt)),
    cell('c-repo', r.repo ? h('span', { class: 'cut', title: r.repo }, shortRepo(r.repo)) : h('span', { class: 'dim' }, 'new project')),
    cell('c-branch', r.branch ? h('code', { class: 'cut', title: r.branch }, r.branch) : ''),
    cell('c-harness', r.harness || ''),
    cell('c-model', r.model ? h('span', { class: 'cut', title: r.model }, r.model) : h('span', { class: 'dim' }, 'default')),
    cell('c-who', r.requested_by ? h('span', { class: 'cut', title: r.requested_by }, r.requested_by) : ''),
    cell('c-age num', created !== null ? h('span', { title: r.created_at }, fmtAge(created, now)) : ''),
    cell('c-dur num', dur !== null ? fmtDuration(dur) : ''),
    cell('c-turns num', r.turns ?? ''),
    cell('c-tokens num', tokens ? fmtCount(tokens) : ''),
    cell('c-cost num', fmtCost(r.cost_usd)),
    cell('c-pr', pr ? h('a', { href: pr, target: '_blank', rel: 'noopener noreferrer' }, 'PR') : ''),
    cell('c-group', r.group ? h('a', { href: `/groups/${encodeURIComponent(r.group)}`, class: 'cut', title: r.group }, r.group) : ''),
  ];
}

function shortRepo(repo) {
  const s = String(repo);
  const m = /([^/:]+\/[^/]+?)(?:\.git)?\/?$/.exec(s);
  return m ? m[1] : s;
}

export async function runsPage(root) {
  const params = new URLSearchParams(location.search);
  const f = {
    state: params.get('state') || '',
    repo: params.get('repo') || '',
    harness: params.get('harness') || '',
    group: params.get('group') || '',
  };
  let offset = Math.max(0, parseInt(params.get('offset') || '0', 10) || 0);
  let nextOffset = null;
  const rows = new Map();

  const stateSel = h('select', { name: 'state' }, h('option', { value: '' }, 'any state'), STATES.map((s) => h('option', { value: s }, s.replace('_', ' '))));
  stateSel.value = f.state;
  const input = (name, ph) => {
    const i = h('input', { type: 'text', name, placeholder: ph, spellcheck: 'false' });
    i.value = f[name];
    return i;
  };
  const repo = input('repo', 'repository');
  const harness = input('harness', 'harness');
  const group = input('group', 'group');
  const form = h('form', { class: 'filters' }, stateSel, repo, harness, group, h('button', { type: 'submit' }, 'Filter'), h('a', { href: '/', class: 'clear' }, 'clear'));
  const tbody = h('tbody');
  const table = h(
    'table',
    { class: 'runs' },
    h('thead', null, h('tr', null, [['state', 'c-state'], ['run', 'c-run'], ['repo', 'c-repo'], ['branch', 'c-branch'], ['harness', 'c-harness'], ['model', 'c-model'], ['requested by', 'c-who'], ['age', 'c-age'], ['duration', 'c-dur'], ['turns', 'c-turns'], ['tokens', 'c-tokens'], ['cost', 'c-cost'], ['PR', 'c-pr'], ['group', 'c-group']].map(([c, cls]) => h('th', { class: cls }, c)))),
    tbody,
  );
  const newer = h('button', { type: 'button' }, '← newer');
  const older = h('button', { type: 'button' }, 'older →');
  const info = h('span', { class: 'dim' });
  const pager = h('div', { class: 'pager' }, newer, info, older);
  const msg = h('div', { class: 'msg-line' });
  root.replaceChildren(h('div', { class: 'runs-page' }, h('div', { class: 'page-head' }, h('h1', null, 'Runs'), form), msg, h('div', { class: 'table-wrap' }, table), pager, dropZone()));
  document.title = 'runs · errand';

  const syncUrl = () => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
    if (offset) p.set('offset', String(offset));
    const q = p.toString();
    history.replaceState(null, '', q ? `/?${q}` : '/');
  };

  const load = async () => {
    const p = new URLSearchParams();
    for (const [k, v] of Object.entries(f)) if (v) p.set(k, v);
    p.set('limit', String(LIMIT));
    p.set('offset', String(offset));
    let v;
    try {
      v = await getJson(`/api/v1/runs?${p}`);
    } catch (e) {
      if (loginIfUnauthorized(e)) return;
      msg.textContent = `Could not load runs: ${e.message}`;
      msg.className = 'msg-line bad';
      return;
    }
    msg.textContent = '';
    nextOffset = v.next_offset ?? null;
    const now = Date.now();
    const seen = new Set();
    const order = [];
    for (const r of v.runs || []) {
      seen.add(r.id);
      const sig = JSON.stringify(r);
      let rec = rows.get(r.id);
      if (!rec) {
        const tr = h('tr', { 'data-id': r.id });
        tr.addEventListener('click', (ev) => {
          if (ev.target.closest('a, button')) return;
          location.assign(`/runs/${encodeURIComponent(r.id)}`);
        });
        rec = { tr, sig: null };
        rows.set(r.id, rec);
      }
      // Age and duration move with the clock: cells are drawn again on every poll.
      rec.tr.replaceChildren(...rowCells(r, now));
      rec.tr.dataset.state = r.state;
      rec.tr.classList.toggle('changed', rec.sig !== null && rec.sig !== sig);
      rec.sig = sig;
      order.push(rec.tr);
    }
    for (const id of Array.from(rows.keys())) if (!seen.has(id)) rows.delete(id);
    const same = order.length === tbody.children.length && order.every((tr, i) => tbody.children[i] === tr);
    if (!same) tbody.replaceChildren(...order);
    if (!order.length) tbody.replaceChildren(h('tr', null, h('td', { colspan: 14, class: 'dim empty' }, Object.values(f).some(Boolean) ? 'No run matches these filters.' : 'No runs yet. Start one with `errand run --server …` or POST /api/v1/runs.')));
    newer.disabled = offset === 0;
    older.disabled = nextOffset === null;
    info.textContent = order.length ? `${offset + 1}–${offset + order.length}` : '';
  };

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    f.state = stateSel.value;
    f.repo = repo.value.trim();
    f.harness = harness.value.trim();
    f.group = group.value.trim();
    offset = 0;
    syncUrl();
    load();
  });
  stateSel.addEventListener('change', () => form.requestSubmit());
  newer.addEventListener('click', () => {
    offset = Math.max(0, offset - LIMIT);
    syncUrl();
    load();
  });
  older.addEventListener('click', () => {
    if (nextOffset === null) return;
    offset = nextOffset;
    syncUrl();
    load();
  });

  await load();
  let busy = false;
  const poll = async () => {
    if (busy || document.visibilityState !== 'visible') return;
    busy = true;
    try {
      await load();
    } finally {
      busy = false;
    }
  };
  setInterval(poll, 2000);
  document.addEventListener('visibilitychange', poll);
}
