// Small DOM and formatting helpers shared by every page.

const ESC = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** `s` with every HTML-special character escaped. */
export function esc(s) {
  return String(s ?? '').replace(/[&<>"']/g, (c) => ESC[c]);
}

/**
 * An element: h('a', {class: 'x', href: '/', onclick: fn}, 'text', child…).
 * Strings are text (never HTML); `html` sets already-escaped markup.
 */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  if (attrs) {
    for (const [k, v] of Object.entries(attrs)) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'text') el.textContent = v;
      else if (k === 'html') el.innerHTML = v;
      else if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (v === true) el.setAttribute(k, '');
      else el.setAttribute(k, String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else if (c instanceof Node) el.appendChild(c);
    else el.appendChild(document.createTextNode(String(c)));
  }
}

/** A link that is only followed when `url` has a safe protocol. */
export function safeUrl(url) {
  const u = String(url ?? '').trim();
  if (/^(https?:\/\/|mailto:)/i.test(u) || /^\/(?!\/)/.test(u) || u.startsWith('#')) return u;
  return null;
}

export function parseTime(s) {
  if (!s) return null;
  const t = Date.parse(s);
  return Number.isFinite(t) ? t : null;
}

/** 3.2s, 4m 05s, 1h 02m. */
export function fmtDuration(ms) {
  if (ms === null || ms === undefined || !Number.isFinite(ms) || ms < 0) return '';
  if (ms < 1000) return `${Math.round(ms)}ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m ${String(Math.floor(s % 60)).padStart(2, '0')}s`;
  const hh = Math.floor(m / 60);
  return `${hh}h ${String(m % 60).padStart(2, '0')}m`;
}

/** 12s ago, 5m ago, 3h ago, 2d ago. */
export function fmtAge(t, now = Date.now()) {
  if (t === null) return '';
  const s = Math.max(0, (now - t) / 1000);
  if (s < 60) return `${Math.floor(s)}s ago`;
  if (s < 3600) return `${Math.floor(s / 60)}m ago`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ago`;
  return `${Math.floor(s / 86400)}d ago`;
}

export function fmtCount(n) {
  if (n === null || n === undefined) return '';
  if (n < 1000) return String(n);
  if (n < 1e6) return `${(n / 1000).toFixed(n < 1e4 ? 1 : 0)}k`;
  return `${(n / 1e6).toFixed(1)}M`;
}

export function fmtCost(c) {
  if (c === null || c === undefined || !Number.isFinite(c)) return '';
  return c < 0.01 ? `$${c.toFixed(4)}` : `$${c.toFixed(2)}`;
}

export function fmtBytes(n) {
  if (!Number.isFinite(n)) return '';
  if (n < 1024) return `${n} B`;
  if (n < 1 << 20) return `${(n / 1024).toFixed(1)} KB`;
  if (n < 1 << 30) return `${(n / (1 << 20)).toFixed(1)} MB`;
  return `${(n / (1 << 30)).toFixed(2)} GB`;
}

export function fmtClock(t) {
  if (t === null) return '';
  const d = new Date(t);
  return d.toLocaleTimeString([], { hour12: false });
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled', 'timed_out']);
export const STATES = ['queued', 'preparing', 'running', 'finishing', 'succeeded', 'failed', 'cancelled', 'timed_out'];

export function stateBadge(state) {
  const s = state || 'unknown';
  return h('span', { class: `badge state-${s}`, 'data-state': s }, s.replace('_', ' '));
}

/** Calls `fn` at most once per animation frame. */
export function rafThrottle(fn) {
  let queued = false;
  return (...args) => {
    if (queued) return;
    queued = true;
    requestAnimationFrame(() => {
      queued = false;
      fn(...args);
    });
  };
}

export function debounce(fn, ms) {
  let t = null;
  return (...args) => {
    clearTimeout(t);
    t = setTimeout(() => fn(...args), ms);
  };
}

/** Copies text to the clipboard; falls back to a selected text field. */
export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    const ta = h('textarea', { class: 'offscreen' });
    ta.value = text;
    document.body.appendChild(ta);
    ta.select();
    let ok = false;
    try {
      ok = document.execCommand('copy');
    } catch {
      ok = false;
    }
    ta.remove();
    return ok;
  }
}

/** Lines of `text`, without a final empty line. */
export function lines(text) {
  const ls = String(text ?? '').split(/\r?\n/);
  if (ls.length > 1 && ls[ls.length - 1] === '') ls.pop();
  return ls;
}

/** The file extension of a path, lower case. */
export function extOf(path) {
  const m = /\.([A-Za-z0-9_+-]+)$/.exec(String(path ?? ''));
  return m ? m[1].toLowerCase() : '';
}

/** A parser problem as one line: "line 12 could not be read: …" (line 0: the whole file). */
export function problemText(p) {
  const msg = String(p.message ?? '');
  if (!p.line) return msg;
  const rest = msg.replace(new RegExp(`^line ${p.line}\\b[:,]?\\s*(is\\s+)?`), '');
  return `line ${p.line} could not be read: ${rest}`;
}

/** Whether a key press is typing into a field (page shortcuts leave it alone). */
export function typing(ev) {
  const t = ev.target;
  return Boolean(t && (t.tagName === 'INPUT' || t.tagName === 'TEXTAREA' || t.tagName === 'SELECT' || t.isContentEditable));
}

/** Calls `send` on Ctrl-Enter (Cmd-Enter on a Mac) inside `el`. */
export function onCtrlEnter(el, send) {
  el.addEventListener('keydown', (ev) => {
    if (ev.key === 'Enter' && (ev.ctrlKey || ev.metaKey)) {
      ev.preventDefault();
      send();
    }
  });
}
