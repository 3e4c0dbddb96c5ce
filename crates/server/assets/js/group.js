// A fan-out group side by side: one column per run (harness, model, state,
// turns, tokens, cost, duration, diff stat, tests, links) with a live
// mini-trace of its tool calls, and "Pick this one" once they have all ended
// (POST /api/v1/groups/{group}/pick: the chosen run's pull request opened or
// marked; with the box ticked, the others' closed and their branches deleted).

import { h, fmtDuration, fmtCount, fmtCost, parseTime, stateBadge, safeUrl, TERMINAL } from './util.js';
import { getJson, getNdjson, postJson, streamEvents, loginIfUnauthorized, whoAmI, may } from './api.js';
import { toolSummary } from './trace.js';

const MAX_LINES = 400;

function stats(r, now) {
  const s = parseTime(r.started_at);
  const f = parseTime(r.finished_at);
  const pr = safeUrl(r.pr_url);
  const row = (k, v, cls) => h('tr', { class: cls || '' }, h('th', null, k), h('td', null, v));
  return h(
    'table',
    { class: 'gstats' },
    row('state', stateBadge(r.state), 'g-state'),
    row('turns', r.turns ?? '–'),
    row('tokens', r.input_tokens || r.output_tokens ? `${fmtCount(r.input_tokens || 0)} in / ${fmtCount(r.output_tokens || 0)} out` : '–'),
    row('cost', fmtCost(r.cost_usd) || '–'),
    row('duration', s !== null ? fmtDuration((f ?? now) - s) : '–'),
    row('diff', r.diffstat || '–'),
    row('tests', r.tests_passed === true ? h('span', { class: 'ok' }, 'passed') : r.tests_passed === false ? h('span', { class: 'bad' }, 'failed') : '–'),
    row('branch', r.branch ? h('code', null, r.branch) : '–'),
    r.picked === true ? row('picked', h('span', { class: 'ok picked' }, 'the one picked')) : r.picked === false ? row('picked', h('span', { class: 'dim not-picked' }, 'not picked')) : null,
    row('links', h('span', null, h('a', { href: `/runs/${encodeURIComponent(r.id)}` }, 'trace'), pr ? ' · ' : '', pr ? h('a', { href: pr, target: '_blank', rel: 'noopener noreferrer' }, 'PR') : '')),
    r.reason && TERMINAL.has(r.state) && r.state !== 'succeeded' ? row('reason', h('span', { class: 'bad' }, r.reason)) : null,
  );
}

function miniTrace(r) {
  const box = h('div', { class: 'mini-trace' });
  const calls = new Map();
  let count = 0;
  const add = (el) => {
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 4;
    box.appendChild(el);
    while (box.children.length > MAX_LINES) box.firstElementChild.remove();
    if (atBottom) box.scrollTop = box.scrollHeight;
  };
  const onEvent = (ev) => {
    count += 1;
    box.dataset.events = String(count);
    switch (ev.type) {
      case 'tool_call': {
        const el = h('div', { class: 'ml tool', 'data-seq': ev.seq }, h('span', { class: 'tool-name' }, ev.name), ' ', h('span', { class: 'summary' }, toolSummary(ev.name, ev.input)), h('span', { class: 'meta' }));
        if (ev.parent_id) el.classList.add('nested');
        calls.set(ev.id, { el, ev });
        add(el);
        break;
      }
      case 'tool_result': {
        const c = calls.get(ev.id);
        if (!c) break;
        const d = (parseTime(ev.ts) ?? 0) - (parseTime(c.ev.ts) ?? 0);
        const bits = [];
        if (Number.isInteger(ev.exit_code)) bits.push(`exit ${ev.exit_code}`);
        else if (ev.is_error) bits.push('error');
        if (d > 0) bits.push(fmtDuration(d));
        c.el.querySelector('.meta').textContent = bits.length ? ` (${bits.join(', ')})` : '';
        if (ev.is_error) c.el.classList.add('bad');
        break;
      }
      case 'state':
        add(h('div', { class: `ml state st-${ev.state}` }, `── ${ev.state}${ev.reason ? `: ${ev.reason}` : ''}`));
        break;
      case 'assistant_message': {
        const t = (ev.text || '').split('\n').find((l) => l.trim()) || '';
        add(h('div', { class: 'ml text dim' }, t.length > 160 ? `${t.slice(0, 160)}…` : t));
        break;
      }
      case 'error':
        add(h('div', { class: 'ml bad' }, `error: ${ev.message}`));
        break;
      case 'run_diff':
        add(h('div', { class: 'ml diffline' }, `diff: ${(ev.stat || '').split('\n').filter(Boolean).pop() || ''}`));
        break;
      default:
        break;
    }
  };
  follow(r.id, onEvent, () => box.classList.add('ended'));
  return { box };
}

// A browser keeps about six connections to one server: stream at most four
// runs live, and poll the others' events every 2 s.
const MAX_STREAMS = 4;
let streams = 0;

function follow(id, onEvent, onEnd) {
  const url = `/api/v1/runs/${encodeURIComponent(id)}`;
  if (streams < MAX_STREAMS) {
    streams += 1;
    streamEvents(`${url}/events/stream`, {
      after: 0,
      onEvent,
      onEnd: () => {
        streams -= 1;
        onEnd();
      },
      onError: () => {
        streams -= 1;
      },
    });
    return;
  }
  let last = 0;
  const poll = async () => {
    try {
      const evs = await getNdjson(`${url}/events?after=${last}`);
      let ended = false;
      for (const ev of evs) {
        if (ev.seq <= last) continue;
        last = ev.seq;
        onEvent(ev);
        if (ev.type === 'state' && TERMINAL.has(ev.state)) ended = true;
      }
      if (ended) {
        onEnd();
        return;
      }
    } catch {
      /* try again */
    }
    setTimeout(poll, 2000);
  };
  poll();
}

export async function groupPage(root, group) {
  document.title = `group ${group} · errand`;
  const grid = h('div', { class: 'group-grid' });
  const msg = h('div', { class: 'msg-line' });
  const me = await whoAmI();
  const closeOthers = h('input', { type: 'checkbox', id: 'pick-close-others' });
  const pickBar = h('label', { class: 'pick-bar dim', hidden: '' }, closeOthers, " when picking, close the others' pull requests and delete their branches");
  root.replaceChildren(h('div', { class: 'group-page' }, h('div', { class: 'page-head' }, h('h1', null, 'Fan-out group ', h('code', null, group)), h('a', { href: `/?group=${encodeURIComponent(group)}` }, 'as a list')), pickBar, msg, grid));
  const cols = new Map();
  let picking = false;
  const pick = async (r) => {
    if (picking) return;
    picking = true;
    msg.className = 'msg-line';
    msg.textContent = `Picking ${r.short_id || r.id}…`;
    try {
      const v = await postJson(`/api/v1/groups/${encodeURIComponent(group)}/pick`, { run: r.id, close_others: closeOthers.checked });
      msg.replaceChildren(...(v.done || []).map((d) => h('div', { class: 'ok' }, d)));
      msg.className = 'msg-line picked-msg';
    } catch (e) {
      if (!loginIfUnauthorized(e)) {
        msg.textContent = `Could not pick: ${e.message}`;
        msg.className = 'msg-line bad';
      }
    }
    picking = false;
    load();
  };
  const load = async () => {
    let v;
    try {
      v = await getJson(`/api/v1/runs?group=${encodeURIComponent(group)}&limit=100`);
    } catch (e) {
      if (loginIfUnauthorized(e)) return;
      msg.textContent = `Could not load the group: ${e.message}`;
      msg.className = 'msg-line bad';
      return;
    }
    const runs = (v.runs || []).slice().sort((a, b) => String(a.created_at).localeCompare(String(b.created_at)) || String(a.harness).localeCompare(String(b.harness)) || String(a.id).localeCompare(String(b.id)));
    if (!runs.length) {
      msg.textContent = 'No runs in this group.';
      return;
    }
    grid.style.gridTemplateColumns = `repeat(${runs.length}, minmax(320px, 1fr))`;
    const now = Date.now();
    // A run may be picked once every run has ended and none was picked yet.
    // A background tab tells when the group is done.
    const ended = runs.filter((r) => TERMINAL.has(r.state)).length;
    const chosen = runs.find((r) => r.picked === true);
    document.title = `group ${group} · ${chosen ? `picked ${chosen.short_id}` : `${ended}/${runs.length} ended`} · errand`;
    const open = may(me, 'run') && runs.length > 1 && runs.every((r) => TERMINAL.has(r.state)) && !runs.some((r) => r.picked === true);
    pickBar.hidden = !open;
    for (const r of runs) {
      let c = cols.get(r.id);
      if (!c) {
        const statBox = h('div', { class: 'gstat-box' });
        const actions = h('div', { class: 'g-actions' });
        const mt = miniTrace(r);
        const col = h('section', { class: 'group-col', 'data-id': r.id }, h('header', null, h('div', { class: 'g-harness' }, r.harness), h('div', { class: 'g-model dim' }, r.model || 'default model')), statBox, actions, h('div', { class: 'mini-label dim' }, 'trace'), mt.box);
        c = { col, statBox, actions };
        cols.set(r.id, c);
        grid.appendChild(col);
      }
      c.col.dataset.state = r.state;
      c.col.classList.toggle('picked', r.picked === true);
      c.statBox.replaceChildren(stats(r, now));
      c.actions.replaceChildren(open && r.state === 'succeeded' ? h('button', { class: 'btn pick-btn', type: 'button', title: r.push ? 'Open (or mark) its pull request' : 'Mark it as the result', onclick: () => pick(r) }, 'Pick this one') : '');
    }
  };
  await load();
  setInterval(() => {
    if (document.visibilityState === 'visible' && !picking) load();
  }, 2000);
}
