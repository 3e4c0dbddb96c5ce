// Talking to the server: the API token, JSON and JSON-lines requests, and a
// resumable Server-Sent Events client built on fetch() (EventSource cannot
// send an Authorization header).

const KEY = 'errand.token';

/** 'serve' (errand serve) or 'local' (errand view), written into the page by the server. */
export const mode =
  document.querySelector('meta[name="errand-mode"]')?.getAttribute('content') === 'local' ? 'local' : 'serve';

export function getToken() {
  try {
    return localStorage.getItem(KEY) || '';
  } catch {
    return '';
  }
}

export function setToken(t) {
  try {
    if (t) localStorage.setItem(KEY, t);
    else localStorage.removeItem(KEY);
  } catch {
    /* storage disabled: the token lives only as long as the page */
  }
}

/**
 * A token handed over in the URL fragment (`#token=…`, never sent to the
 * server) is stored and removed from the address bar.
 */
export function takeTokenFromFragment() {
  const m = /^#token=([^&]+)/.exec(location.hash);
  if (!m) return false;
  let t = '';
  try {
    t = decodeURIComponent(m[1]).trim();
  } catch {
    t = '';
  }
  if (t) setToken(t);
  history.replaceState(null, '', location.pathname + location.search);
  return Boolean(t);
}

export class HttpError extends Error {
  constructor(status, code, message, field = null) {
    super(message);
    this.status = status;
    this.code = code;
    /** The request's field the error is about (`repo`, `model`, …), when the server says. */
    this.field = field;
  }
}

/** fetch() with the token; throws HttpError with the API's message when not ok. */
export async function request(path, { method = 'GET', body, headers = {}, signal, accept = 'application/json' } = {}) {
  const hs = { Accept: accept, ...headers };
  const t = getToken();
  if (t && !path.startsWith('/share/')) hs.Authorization = `Bearer ${t}`;
  let resp;
  try {
    resp = await fetch(path, { method, body, headers: hs, signal });
  } catch (e) {
    if (e && e.name === 'AbortError') throw e;
    throw new HttpError(0, 'network', `the server cannot be reached (${e && e.message ? e.message : e})`);
  }
  if (!resp.ok) {
    let code = 'http';
    let message = `${resp.status} ${resp.statusText}`;
    let field = null;
    try {
      const v = await resp.json();
      if (v && v.error) {
        code = v.error.code || code;
        message = v.error.message || message;
        field = typeof v.error.field === 'string' ? v.error.field : null;
      }
    } catch {
      /* not JSON */
    }
    throw new HttpError(resp.status, code, message, field);
  }
  return resp;
}

export async function getJson(path, opts) {
  return (await request(path, opts)).json();
}

/** POSTs `body` as JSON and reads the JSON answer. */
export async function postJson(path, body) {
  return getJson(path, { method: 'POST', body: JSON.stringify(body), headers: { 'Content-Type': 'application/json' } });
}

let caller = null;

/**
 * The token's name and scopes (`GET /api/v1/me`), asked once per page; a
 * token the server does not know gives `null`. Pages show only what the
 * token may do; the server refuses the rest anyway.
 */
export function whoAmI() {
  if (!caller) caller = getToken() ? getJson('/api/v1/me').catch(() => null) : Promise.resolve(null);
  return caller;
}

/** Whether `me` (from whoAmI) holds `scope`. */
export function may(me, scope) {
  return Boolean(me && Array.isArray(me.scopes) && me.scopes.includes(scope));
}

/** JSON lines as an array of values; unreadable lines are skipped. */
export function parseNdjson(text) {
  const out = [];
  let start = 0;
  while (start < text.length) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    if (end > start) {
      try {
        out.push(JSON.parse(text.slice(start, end)));
      } catch {
        /* a torn or foreign line */
      }
    }
    start = end + 1;
  }
  return out;
}

export async function getNdjson(path, opts) {
  const resp = await request(path, { accept: 'application/x-ndjson', ...opts });
  return parseNdjson(await resp.text());
}

/** Sends the browser to the login page when the API says the token is missing or wrong. */
export function loginIfUnauthorized(err) {
  if (err instanceof HttpError && err.status === 401 && mode === 'serve') {
    const next = location.pathname + location.search;
    location.assign(`/login?next=${encodeURIComponent(next)}`);
    return true;
  }
  return false;
}

const liveStreams = new Set();

/** Test hook: drops every open stream's connection (each reconnects and resumes). */
window.__errandDropStream = () => {
  let n = 0;
  for (const s of liveStreams) {
    if (s.drop()) n += 1;
  }
  return n;
};

/**
 * Reads a run's event stream: `onEvent(ev)` for each event in order, once
 * (deduplicated by seq), `onEnd()` after `event: end`. A dropped connection
 * is reopened with backoff, resuming after the last seq seen
 * (`Last-Event-ID`), so nothing is lost and nothing repeats.
 * `onStatus(s)`: 'connecting' | 'live' | 'reconnecting' | 'ended' | 'error'.
 */
export function streamEvents(url, { after = 0, onEvent, onEnd, onStatus = () => {}, onError = () => {} }) {
  let last = after;
  let closed = false;
  let ctrl = null;
  let delay = 250;
  let attempts = 0;
  const self = {
    get last() {
      return last;
    },
    get attempts() {
      return attempts;
    },
    close() {
      closed = true;
      liveStreams.delete(self);
      if (ctrl) ctrl.abort();
    },
    drop() {
      if (ctrl && !closed) {
        ctrl.abort();
        return true;
      }
      return false;
    },
  };
  liveStreams.add(self);

  const dispatch = (msg) => {
    if (msg.event === 'end') {
      return true;
    }
    if (msg.event !== 'event' && msg.event !== 'message') return false;
    let ev;
    try {
      ev = JSON.parse(msg.data);
    } catch {
      return false;
    }
    const seq = Number(msg.id ?? ev.seq);
    if (!Number.isFinite(seq) || seq <= last) return false;
    last = seq;
    delay = 250;
    onEvent(ev);
    return false;
  };

  const once = async () => {
    ctrl = new AbortController();
    const headers = { Accept: 'text/event-stream' };
    const t = getToken();
    if (t && !url.startsWith('/share/')) headers.Authorization = `Bearer ${t}`;
    if (last > 0) headers['Last-Event-ID'] = String(last);
    attempts += 1;
    const resp = await fetch(url, { headers, signal: ctrl.signal, cache: 'no-store' });
    if (!resp.ok) {
      const err = new HttpError(resp.status, 'http', `${resp.status} ${resp.statusText}`);
      try {
        const v = await resp.json();
        if (v && v.error) err.message = v.error.message;
      } catch {
        /* not JSON */
      }
      throw err;
    }
    onStatus('live');
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    let msg = { id: null, event: 'message', data: [] };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return false;
      buf += value;
      let nl;
      while ((nl = buf.search(/\r\n|\n|\r/)) >= 0) {
        let line = buf.slice(0, nl);
        const sepLen = buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1;
        if (buf[nl] === '\r' && nl + 1 === buf.length) break; // maybe half of \r\n
        buf = buf.slice(nl + sepLen);
        if (line === '') {
          if (msg.data.length || msg.event !== 'message') {
            const ended = dispatch({ id: msg.id, event: msg.event, data: msg.data.join('\n') });
            if (ended) {
              ctrl.abort();
              return true;
            }
          }
          msg = { id: null, event: 'message', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        let field = line;
        let value2 = '';
        if (colon >= 0) {
          field = line.slice(0, colon);
          value2 = line.slice(colon + 1);
          if (value2.startsWith(' ')) value2 = value2.slice(1);
        }
        if (field === 'data') msg.data.push(value2);
        else if (field === 'event') msg.event = value2;
        else if (field === 'id') msg.id = value2;
        line = '';
      }
    }
  };

  (async () => {
    onStatus('connecting');
    while (!closed) {
      let ended = false;
      try {
        ended = await once();
      } catch (e) {
        if (closed) break;
        if (e instanceof HttpError && [401, 403, 404].includes(e.status)) {
          onStatus('error');
          onError(e);
          self.close();
          return;
        }
      }
      if (closed) break;
      if (ended) {
        onStatus('ended');
        liveStreams.delete(self);
        closed = true;
        if (onEnd) onEnd();
        return;
      }
      onStatus('reconnecting');
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 8000);
    }
  })();
  return self;
}
