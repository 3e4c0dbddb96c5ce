// The run page: header, the trace as a virtualized conversation, search,
// keyboard navigation, follow mode, and progressive loading (the newest
// events first, then older ones in the background, then the live stream).

import { h, typing, onCtrlEnter, fmtDuration, fmtCount, fmtCost, fmtBytes, parseTime, TERMINAL, stateBadge, copyText, debounce, safeUrl, problemText } from './util.js';
import { getJson, getNdjson, postJson, request, streamEvents, HttpError, loginIfUnauthorized, whoAmI, may } from './api.js';
import { Trace } from './trace.js';
import { VList } from './vlist.js';
import { renderEntry, entrySig, estimateHeight } from './render.js';

const TAIL = 300;
const PAGE = 4000;

function qs(q) {
  const p = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined && v !== null) p.set(k, String(v));
  return p.toString();
}

function rawFetcher(eventsUrl) {
  const cache = new Map();
  return (line) => {
    if (!cache.has(line)) {
      cache.set(
        line,
        request(`${eventsUrl}?${qs({ raw: 1, after: line - 1, limit: 1 })}`, { accept: 'application/x-ndjson' })
          .then((r) => r.text())
          .then((t) => {
            const l = t.split('\n')[0];
            return t === '' ? null : l;
          }),
      );
    }
    return cache.get(line);
  };
}

/** A run of the API (needs the token). */
export function apiSource(id) {
  const base = `/api/v1/runs/${encodeURIComponent(id)}`;
  return {
    kind: 'api',
    meta: () => getJson(base),
    events: (q) => getNdjson(`${base}/events?${qs(q)}`),
    streamUrl: `${base}/events/stream`,
    raw: rawFetcher(`${base}/events`),
    cancel: () => getJson(`${base}/cancel`, { method: 'POST' }),
    share: () => getJson(`${base}/share`, { method: 'POST' }),
    followUp: (message) => postJson(`${base}/messages`, { message }),
  };
}

/** A run behind a share link (no token: the link is the key). */
export function shareSource(token) {
  const base = `/share/${encodeURIComponent(token)}`;
  return {
    kind: 'share',
    meta: () => getJson(base),
    events: (q) => getNdjson(`${base}/events?${qs(q)}`),
    streamUrl: `${base}/events/stream`,
    raw: rawFetcher(`${base}/events`),
  };
}

/** A trace file served by `errand view`. */
export function localSource(n) {
  const base = `/api/v1/local/files/${encodeURIComponent(n)}`;
  return {
    kind: 'local',
    meta: () => getJson(base),
    events: (q) => getNdjson(`${base}/events?${qs(q)}`),
    streamUrl: null,
    raw: rawFetcher(`${base}/events`),
  };
}

/** A dropped file, parsed by the server and held here. */
export function memorySource(parsed, file) {
  const events = parsed.trace || [];
  let fileLines = null;
  return {
    kind: 'memory',
    meta: async () => ({ ...parsed, trace: undefined, name: file.name, size: file.size }),
    events: async ({ after = 0, limit = 10000, tail }) => {
      let a = after;
      let l = limit;
      if (tail) {
        a = Math.max(a, events.length - tail);
        l = tail;
      }
      return events.slice(a, a + l);
    },
    streamUrl: null,
    raw: async (line) => {
      if (!fileLines) fileLines = (await file.text()).split(/\r?\n/);
      return fileLines[line - 1] ?? null;
    },
  };
}

function headerFor(meta, source, trace, actions) {
  const head = h('div', { class: 'run-head' });
  if (source.kind === 'local' || source.kind === 'memory') {
    append(
      head,
      h('div', { class: 'title-row' }, h('h1', { class: 'run-title' }, meta.name || 'trace'), meta.format ? h('span', { class: 'badge fmt' }, meta.format.replace(/_/g, ' ')) : h('span', { class: 'badge state-failed' }, 'unknown format')),
      h(
        'div',
        { class: 'facts' },
        fact('size', fmtBytes(meta.size)),
        fact('lines', fmtCount(meta.lines)),
        fact('events', h('span', { class: 'ev-count' }, fmtCount(meta.events))),
        fact('tokens', h('span', { class: 'tok' }, '')),
        fact('cost', h('span', { class: 'cost' }, '')),
        source.kind === 'memory' ? fact('source', 'dropped file, parsed in memory') : null,
      ),
    );
    return head;
  }
  const title = (meta.prompt || '').split('\n')[0];
  const pr = safeUrl(meta.pr_url);
  append(
    head,
    h('div', { class: 'title-row' }, stateBadge(meta.state), h('h1', { class: 'run-title', title: meta.prompt || '' }, title.length > 140 ? `${title.slice(0, 140)}…` : title || `run ${meta.short_id}`), h('span', { class: 'spacer' }), actions),
    h(
      'div',
      { class: 'facts' },
      fact('run', h('code', null, meta.short_id || '')),
      fact('harness', `${meta.harness || ''}${meta.model ? ` · ${meta.model}` : ''}`),
      meta.repo ? fact('repo', meta.repo) : null,
      meta.branch ? fact('branch', h('code', null, meta.branch)) : null,
      pr ? fact('PR', h('a', { href: pr, target: '_blank', rel: 'noopener noreferrer' }, meta.pr_url)) : null,
      fact('elapsed', h('span', { class: 'elapsed' }, '')),
      fact('tokens', h('span', { class: 'tok' }, '')),
      fact('cost', h('span', { class: 'cost' }, '')),
      meta.diffstat ? fact('diff', meta.diffstat) : null,
      meta.tests_passed === true ? fact('tests', h('span', { class: 'ok' }, 'passed')) : meta.tests_passed === false ? fact('tests', h('span', { class: 'bad' }, 'failed')) : null,
      meta.group ? fact('group', h('a', { href: `/groups/${encodeURIComponent(meta.group)}` }, meta.group)) : null,
    ),
    meta.reason && TERMINAL.has(meta.state) && meta.state !== 'succeeded' ? h('div', { class: 'reason bad' }, meta.reason) : null,
  );
  return head;
}

function append(el, ...children) {
  for (const c of children) if (c) el.append(c);
}

function fact(label, value) {
  return h('span', { class: 'fact' }, h('span', { class: 'label' }, label), ' ', value);
}

/** Renders the run page for `source` into `root`. */
export async function runPage(root, source, { title } = {}) {
  const trace = new Trace();
  const t0 = performance.now();
  let meta = null;
  let live = false;
  let stream = null;
  let streamAttempts = 0;
  let streamStatus = source.streamUrl ? 'connecting' : 'none';
  let streamDelivered = 0;
  let streamDup = 0;
  let lastStreamSeq = 0;
  let complete = false;
  let query = '';
  let matches = [];
  let matchAt = -1;
  let currentKey = null;
  let focusKey = null;
  let firstUser = null;
  let lastVersion = -1;
  let disposed = false;
  /** The token's name and scopes (API runs only): which buttons show. */
  let me = null;

  const headBox = h('div', { class: 'head-box' });
  const problemsBox = h('div', { class: 'problems-box' });
  const search = h('input', { type: 'search', class: 'search', placeholder: 'Search the trace  ( / )', 'aria-label': 'search the trace', spellcheck: 'false' });
  const count = h('span', { class: 'match-count' });
  const prevBtn = h('button', { type: 'button', title: 'previous match (Shift+Enter)' }, '▲');
  const nextBtn = h('button', { type: 'button', title: 'next match (Enter)' }, '▼');
  const follow = h('input', { type: 'checkbox', checked: true });
  const status = h('span', { class: 'load-status' });
  const diffBtn = h('button', { type: 'button', class: 'jump-diff', hidden: true }, 'Diff');
  const toolbar = h(
    'div',
    { class: 'toolbar' },
    search,
    count,
    prevBtn,
    nextBtn,
    h('label', { class: 'follow', title: 'keep the newest events in view (End)' }, follow, ' follow'),
    diffBtn,
    h('span', { class: 'spacer' }),
    h('span', { class: 'keys dim' }, source.kind === 'api' ? 'j/k tool calls · / search · Esc clear · r re-run · n new run' : 'j/k tool calls · / search · Esc clear'),
    status,
  );
  const scroller = h('div', { class: 'trace-scroller', tabindex: '-1' });
  const minimap = h('div', { class: 'minimap' });
  const empty = h('div', { class: 'empty-trace dim' }, 'Loading the trace…');
  const followText = h('textarea', { class: 'follow-text', rows: 2, placeholder: 'Send a follow-up: the agent continues in the same session and workspace  (Ctrl-Enter)', 'aria-label': 'follow-up message' });
  const followSend = h('button', { type: 'submit', class: 'primary' }, 'Send');
  const followErr = h('div', { class: 'field-error', role: 'alert', hidden: true });
  const followBox = h('form', { class: 'follow-up', hidden: true }, followText, followSend, followErr);
  const page = h('div', { class: 'run-page' }, headBox, problemsBox, toolbar, h('div', { class: 'trace-wrap' }, scroller, minimap, empty), followBox);
  root.replaceChildren(page);
  if (title) document.title = title;

  const ctx = {
    changed: () => list.refresh(),
    collapse: () => {
      trace.invalidate();
      scheduleUpdate();
    },
    raw: (line) => source.raw(line),
    live: () => live,
    isFirstUser: (e) => e === firstUser,
    get query() {
      return query;
    },
    get currentKey() {
      return currentKey;
    },
    get focusKey() {
      return focusKey;
    },
  };
  const list = new VList(scroller, {
    key: (e) => e.key,
    sig: (e) => `${entrySig(e)}|${query}|${e.key === currentKey ? 'c' : ''}${e.key === focusKey ? 'f' : ''}|${e.kind === 'tool' && !e.result ? (live ? 'L' : 'D') : ''}`,
    estimate: estimateHeight,
    render: (e) => renderEntry(e, ctx),
    onRender: () => {
      follow.checked = list.following;
    },
  });

  const updateStatus = () => {
    const total = meta && meta.events !== undefined && source.kind !== 'api' && source.kind !== 'share' ? meta.events : trace.maxSeq;
    const bits = [`${fmtCount(trace.size)}${total && trace.size < total ? ` of ${fmtCount(total)}` : ''} events`];
    if (!complete) bits.push('loading older…');
    if (source.streamUrl) bits.push(streamStatus === 'live' ? 'live' : streamStatus === 'reconnecting' ? 'reconnecting…' : streamStatus === 'ended' ? 'ended' : streamStatus);
    status.textContent = bits.join(' · ');
    status.dataset.stream = streamStatus;
  };

  const updateHeader = () => {
    const tot = trace.totals();
    const tok = headBox.querySelector('.tok');
    const inTok = Math.max(tot.input, meta && meta.input_tokens ? meta.input_tokens : 0);
    const outTok = Math.max(tot.output, meta && meta.output_tokens ? meta.output_tokens : 0);
    if (tok) tok.textContent = `${fmtCount(inTok)} in / ${fmtCount(outTok)} out`;
    const cost = headBox.querySelector('.cost');
    const c = meta && typeof meta.cost_usd === 'number' ? Math.max(meta.cost_usd, tot.cost || 0) : tot.cost;
    if (cost) {
      cost.textContent = c !== null && c !== undefined ? fmtCost(c) : '–';
      // A metered run's cost is the gateway's; the harness's own figure is shown beside it when it differs.
      const h = tot.metered ? tot.harness : meta && meta.harness_usage ? { cost: meta.harness_usage.cost_usd } : null;
      const metered = tot.metered || (meta && meta.metered);
      if (metered) {
        const differs = h && typeof h.cost === 'number' && c !== null && c !== undefined && Math.abs(h.cost - c) >= 0.00005;
        if (differs) cost.textContent += ` (harness: ${fmtCost(h.cost)})`;
        cost.title = `metered by errand's model gateway from the provider's answers${differs ? `; the harness reported ${fmtCost(h.cost)}` : ''}`;
        cost.dataset.metered = 'true';
      }
    }
    const el = headBox.querySelector('.elapsed');
    if (el && meta) {
      const s = parseTime(meta.started_at) ?? parseTime(meta.created_at);
      const f = parseTime(meta.finished_at);
      el.textContent = s !== null ? fmtDuration((f ?? Date.now()) - s) : '–';
    }
    const ec = headBox.querySelector('.ev-count');
    if (ec && meta) ec.textContent = fmtCount(Math.max(meta.events || 0, trace.size));
  };

  const renderMinimap = () => {
    minimap.replaceChildren();
    const items = list.items;
    const total = list.offsets[items.length] || 1;
    if (!items.length) return;
    const index = list.index;
    let n = 0;
    const tick = (e, cls) => {
      const i = index.get(e.key);
      if (i === undefined || n > 3000) return;
      n += 1;
      const d = h('div', { class: `tick ${cls}` });
      d.style.top = `${(list.offsets[i] / total) * 100}%`;
      minimap.appendChild(d);
    };
    for (const e of items) if (e.kind === 'error' || (e.kind === 'tool' && e.result && e.result.is_error)) tick(e, 'err');
    for (const m of matches) tick(trace.entries[m], 'match');
  };

  const recomputeMatches = () => {
    if (!query) {
      matches = [];
      matchAt = -1;
      count.textContent = '';
      renderMinimap();
      return;
    }
    const prevKey = matchAt >= 0 && matches[matchAt] !== undefined ? trace.entries[matches[matchAt]]?.key : null;
    matches = trace.search(query, trace.entries);
    matchAt = prevKey !== null ? matches.findIndex((i) => trace.entries[i].key === prevKey) : -1;
    count.textContent = matches.length ? `${matchAt >= 0 ? matchAt + 1 : 0} / ${matches.length}` : 'no match';
    count.classList.toggle('none', !matches.length);
    renderMinimap();
  };
  const recomputeLater = debounce(recomputeMatches, 250);

  const update = () => {
    if (disposed) return;
    if (trace.version !== lastVersion) {
      lastVersion = trace.version;
      firstUser = trace.entries.find((e) => e.kind === 'user') || null;
      list.setItems(trace.visible());
      const d = trace.entries.findLast ? trace.entries.findLast((e) => e.kind === 'diff') : null;
      diffBtn.hidden = !d;
      empty.hidden = trace.size > 0;
      if (query) recomputeLater();
      else renderMinimap();
    } else list.refresh();
    updateStatus();
    updateHeader();
  };
  let updQueued = false;
  const scheduleUpdate = () => {
    if (updQueued) return;
    updQueued = true;
    requestAnimationFrame(() => {
      updQueued = false;
      update();
    });
  };

  /** Shows entry `e` (expanding what hides it), centred. */
  const reveal = (e, { open = false, block = 'center' } = {}) => {
    let p = e.parent;
    let expanded = false;
    while (p) {
      if (p.ui.collapsed) {
        p.ui.collapsed = false;
        p.ui.v = (p.ui.v || 0) + 1;
        expanded = true;
      }
      p = p.parent;
    }
    if (open && !e.ui.open) {
      e.ui.open = true;
      e.ui.v = (e.ui.v || 0) + 1;
    }
    if (expanded) {
      trace.invalidate();
      update();
    }
    const i = list.index.get(e.key);
    if (i === undefined) return;
    list.scrollToIndex(i, block);
    follow.checked = false;
    const node = list.nodeAt(i);
    const mark = node && node.querySelector('mark');
    if (mark) {
      const sr = scroller.getBoundingClientRect();
      const mr = mark.getBoundingClientRect();
      if (mr.top < sr.top || mr.bottom > sr.bottom) {
        scroller.scrollTop += mr.top - sr.top - scroller.clientHeight / 2;
        list.render();
      }
    }
  };

  const gotoMatch = (dir) => {
    if (!matches.length) return;
    if (matchAt < 0) {
      const top = list.topIndex();
      const topKey = list.items[top] ? list.items[top].key : 0;
      matchAt = dir > 0 ? matches.findIndex((i) => trace.entries[i].key >= topKey) : -1;
      if (matchAt < 0) matchAt = dir > 0 ? 0 : matches.length - 1;
    } else matchAt = (matchAt + dir + matches.length) % matches.length;
    const e = trace.entries[matches[matchAt]];
    currentKey = e.key;
    count.textContent = `${matchAt + 1} / ${matches.length}`;
    reveal(e, { open: true });
  };

  const setQuery = (q) => {
    query = q;
    matchAt = -1;
    currentKey = null;
    recomputeMatches();
    list.refresh();
    if (matches.length) gotoMatch(1);
  };
  search.addEventListener('input', debounce(() => setQuery(search.value.trim()), 150));
  search.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter') {
      ev.preventDefault();
      if (search.value.trim() !== query) setQuery(search.value.trim());
      else gotoMatch(ev.shiftKey ? -1 : 1);
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      search.value = '';
      setQuery('');
      search.blur();
    }
  });
  prevBtn.addEventListener('click', () => gotoMatch(-1));
  nextBtn.addEventListener('click', () => gotoMatch(1));
  follow.addEventListener('change', () => {
    if (follow.checked) list.scrollToBottom();
    else list.following = false;
  });
  diffBtn.addEventListener('click', () => {
    const d = trace.entries.findLast((e) => e.kind === 'diff');
    if (d) reveal(d, { block: 'start' });
  });

  const jumpTool = (dir) => {
    const items = list.items;
    if (!items.length) return;
    let cur = focusKey !== null ? list.index.get(focusKey) : undefined;
    if (cur === undefined || cur < list.first || cur > list.last) cur = dir > 0 ? list.topIndex() - 1 : list.topIndex() + 1;
    for (let i = cur + dir; i >= 0 && i < items.length; i += dir) {
      if (items[i].kind === 'tool') {
        focusKey = items[i].key;
        list.refresh();
        reveal(items[i], { block: 'center' });
        return;
      }
    }
  };
  const onKey = (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || typing(ev)) return;
    if (ev.key === 'r' && source.kind === 'api' && meta && may(me, 'run')) {
      ev.preventDefault();
      location.assign(`/new?from=${encodeURIComponent(meta.id)}`);
    } else if (ev.key === 'j') {
      ev.preventDefault();
      jumpTool(1);
    } else if (ev.key === 'k' || ev.key === 'p') {
      ev.preventDefault();
      jumpTool(-1);
    } else if (ev.key === '/') {
      ev.preventDefault();
      search.focus();
      search.select();
    } else if (ev.key === 'Escape') {
      search.value = '';
      setQuery('');
      focusKey = null;
      list.refresh();
    } else if (ev.key === 'End' || ev.key === 'G') {
      ev.preventDefault();
      list.scrollToBottom();
    } else if (ev.key === 'Home' || ev.key === 'g') {
      ev.preventDefault();
      list.scrollToIndex(0, 'start');
    }
  };
  document.addEventListener('keydown', onKey);

  const tick = setInterval(() => {
    if (live) updateHeader();
  }, 1000);

  const actions = h('span', { class: 'actions' });
  const drawHeader = () => {
    headBox.replaceChildren(headerFor(meta, source, trace, actions));
    updateHeader();
    if (meta && Array.isArray(meta.problems) && meta.problems.length) {
      const ps = meta.problems;
      problemsBox.replaceChildren(
        h(
          'div',
          { class: 'problems' },
          h('strong', null, `${ps.length} line${ps.length === 1 ? '' : 's'} could not be read`),
          h('ul', null, ps.slice(0, 50).map((p) => h('li', null, problemText(p)))),
          ps.length > 50 ? h('div', { class: 'dim' }, `… and ${ps.length - 50} more`) : null,
        ),
      );
    }
    if ((source.kind === 'local' || source.kind === 'memory') && meta && !meta.format) {
      problemsBox.prepend(h('div', { class: 'problems bad' }, 'errand could not recognise this file: it is not a Claude Code, Codex, Gemini CLI, OpenCode or errand trace it knows (each line should be a JSON object of one of those formats).'));
    }
  };

  const drawActions = () => {
    actions.replaceChildren();
    followBox.hidden = true;
    // Buttons only for a token that may use them; the server refuses the rest anyway.
    if (source.kind !== 'api' || !meta || !may(me, 'run')) return;
    followBox.hidden = !(meta.state === 'succeeded' || meta.state === 'failed');
    actions.appendChild(h('a', { href: `/new?from=${encodeURIComponent(meta.id)}`, class: 'button rerun', title: 'start this run again, edited or not (r)' }, 'Re-run'));
    if (!TERMINAL.has(meta.state)) {
      const b = h('button', { type: 'button', class: 'danger cancel' }, meta.cancel_requested ? 'Cancelling…' : 'Cancel');
      b.disabled = Boolean(meta.cancel_requested);
      b.addEventListener('click', async () => {
        b.disabled = true;
        try {
          meta = { ...meta, ...(await source.cancel()) };
          drawHeader();
          drawActions();
        } catch (e) {
          b.disabled = false;
          b.textContent = `Cancel failed: ${e.message}`;
        }
      });
      actions.appendChild(b);
    }
    const sb = h('button', { type: 'button', class: 'share' }, 'Copy share link');
    const shown = h('input', { type: 'text', class: 'share-url', readonly: true, hidden: true });
    sb.addEventListener('click', async () => {
      try {
        const v = await source.share();
        const url = new URL(v.path, location.origin).href;
        shown.value = url;
        shown.hidden = false;
        const ok = await copyText(url);
        sb.textContent = ok ? 'Link copied' : 'Copy the link:';
        shown.select();
      } catch (e) {
        sb.textContent = `Share failed: ${e.message}`;
      }
    });
    actions.append(sb, shown);
  };

  const sendFollowUp = async () => {
    const text = followText.value;
    if (!text.trim()) return;
    followSend.disabled = true;
    followErr.hidden = true;
    try {
      meta = { ...meta, ...(await source.followUp(text)) };
      followText.value = '';
      drawHeader();
      drawActions();
      // The run is queued again: follow it live from where the trace is.
      await refreshMeta();
    } catch (e) {
      if (loginIfUnauthorized(e)) return;
      followErr.textContent = `Not sent: ${e.message || e}`;
      followErr.hidden = false;
    } finally {
      followSend.disabled = false;
    }
  };
  followBox.addEventListener('submit', (ev) => {
    ev.preventDefault();
    sendFollowUp();
  });
  onCtrlEnter(followText, sendFollowUp);

  const fail = (e) => {
    if (loginIfUnauthorized(e)) return;
    empty.hidden = false;
    empty.className = 'empty-trace bad';
    empty.textContent = e instanceof HttpError && e.status === 404 ? `Not found: ${e.message}` : `Could not load the trace: ${e.message || e}`;
  };

  const refreshMeta = async () => {
    try {
      const m = await source.meta();
      const was = meta ? meta.state : null;
      meta = m;
      if (m.state !== was) {
        // The tab's title follows the state, so a background tab tells when the run finished.
        if (!title && source.kind !== 'local' && source.kind !== 'memory') document.title = `${m.short_id} ${String(m.state).replace('_', ' ')} · errand`;
        drawHeader();
        drawActions();
      } else updateHeader();
      const wasLive = live;
      live = source.streamUrl ? !TERMINAL.has(m.state) : false;
      if (wasLive !== live) list.refresh();
      if (live && !stream && source.streamUrl) openStream();
    } catch (e) {
      if (!meta) throw e;
    }
  };

  const openStream = () => {
    if (stream) {
      streamAttempts += stream.attempts;
      stream.close();
    }
    const s = streamEvents(source.streamUrl, {
      after: trace.maxSeq,
      onEvent: (ev) => {
        streamDelivered += 1;
        if (ev.seq <= lastStreamSeq) streamDup += 1;
        lastStreamSeq = ev.seq;
        if (trace.add([ev])) scheduleUpdate();
        if (ev.type === 'state') refreshMeta();
      },
      onStatus: (s) => {
        streamStatus = s;
        updateStatus();
      },
      onEnd: () => {
        streamAttempts += s.attempts;
        stream = null;
        live = false;
        refreshMeta();
        scheduleUpdate();
      },
      onError: (e) => {
        streamAttempts += s.attempts;
        stream = null;
        fail(e);
      },
    });
    stream = s;
  };

  const backfill = async () => {
    while (!disposed && trace.minSeq !== Infinity && trace.minSeq > 1) {
      const hi = trace.minSeq - 1;
      const lo = Math.max(0, hi - PAGE);
      const evs = await source.events({ after: lo, limit: hi - lo });
      if (!evs.length) break;
      trace.add(evs);
      scheduleUpdate();
      await new Promise((r) => setTimeout(r, 0));
    }
    complete = true;
    scheduleUpdate();
  };

  let polls = 0;
  const poll = setInterval(() => {
    polls += 1;
    if (disposed || !meta || !source.streamUrl || document.visibilityState !== 'visible') return;
    // While it runs: the header every 2 s. Once finished: now and then, as a
    // follow-up can bring the run back.
    if (live || (!stream && polls % 5 === 0)) refreshMeta();
  }, 2000);

  window.__errand = {
    trace,
    list,
    stats: () => {
      const seqs = Array.from(trace.bySeq.keys()).sort((a, b) => a - b);
      const rendered = Array.from(scroller.querySelectorAll('.entry')).map((n) => Number(n.dataset.seq));
      return {
        events: trace.size,
        minSeq: seqs.length ? seqs[0] : 0,
        maxSeq: trace.maxSeq,
        gapFree: seqs.every((s, i) => s === i + 1),
        toolCalls: trace.entries.filter((e) => e.kind === 'tool').length,
        entries: trace.entries.length,
        rendered: rendered.length,
        renderedUnique: new Set(rendered).size,
        complete,
        live,
        state: meta ? meta.state : null,
        stream: streamStatus,
        streamAttempts: streamAttempts + (stream ? stream.attempts : 0),
        streamDelivered,
        streamDup,
        following: list.following,
      };
    },
    /** Scrolls to `fraction` of the trace; resolves with ms until it is drawn. */
    jump: (fraction) =>
      new Promise((resolve) => {
        const start = performance.now();
        const i = Math.floor(list.items.length * fraction);
        list.scrollToIndex(i, 'start');
        requestAnimationFrame(() => requestAnimationFrame(() => resolve({ ms: performance.now() - start, index: i, rendered: scroller.querySelectorAll('.entry').length })));
      }),
  };

  try {
    const [m, tail, who] = await Promise.all([source.meta(), source.events({ tail: TAIL }), source.kind === 'api' ? whoAmI() : null]);
    me = who;
    meta = m;
    live = source.streamUrl ? !TERMINAL.has(m.state) : false;
    if (!title) document.title = source.kind === 'local' || source.kind === 'memory' ? `${m.name} · errand` : `${m.short_id} ${m.state} · errand`;
    drawHeader();
    drawActions();
    trace.add(tail);
    update();
    list.scrollToBottom();
    if (!trace.size) {
      empty.hidden = false;
      empty.textContent = live ? 'No events yet: the run is waiting to start.' : 'This trace has no events.';
    }
    requestAnimationFrame(() => {
      window.__errandFirstPaintMs = performance.now();
      window.__errandFirstPaintFromStartMs = performance.now() - t0;
    });
  } catch (e) {
    fail(e);
    return;
  }
  if (source.streamUrl) openStream();
  try {
    await backfill();
  } catch (e) {
    status.textContent = `loading older events failed: ${e.message}`;
  }
  return {
    dispose: () => {
      disposed = true;
      clearInterval(tick);
      clearInterval(poll);
      if (stream) stream.close();
      document.removeEventListener('keydown', onKey);
    },
  };
}

