// ANSI SGR escape sequences → DOM: colours (16, 256 and true colour), bold,
// dim, italic, underline, inverse. Every other escape sequence is dropped;
// text is only ever set as text, never parsed as HTML.

const PALETTE16 = [
  '#000000', '#cd3131', '#0dbc79', '#e5e510', '#2472c8', '#bc3fbc', '#11a8cd', '#e5e5e5',
  '#666666', '#f14c4c', '#23d18b', '#f5f543', '#3b8eea', '#d670d6', '#29b8db', '#ffffff',
];

function color256(n) {
  if (n < 16) return PALETTE16[n];
  if (n < 232) {
    const i = n - 16;
    const c = (v) => (v === 0 ? 0 : 55 + v * 40);
    return `rgb(${c(Math.floor(i / 36))},${c(Math.floor(i / 6) % 6)},${c(i % 6)})`;
  }
  const g = 8 + (n - 232) * 10;
  return `rgb(${g},${g},${g})`;
}

// eslint-disable-next-line no-control-regex
const ESCAPES = /\x1b\[([0-9;:?]*)([A-Za-z])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[()][A-Za-z0-9]|\x1b[=>NOM78c]/g;

/** Whether `text` holds any escape sequence. */
export function hasAnsi(text) {
  return String(text).includes('\x1b');
}

/** Applies carriage returns the way a terminal shows them: the last rewrite of each line. */
function applyCarriageReturns(text) {
  if (!text.includes('\r')) return text;
  return text
    .split('\n')
    .map((l) => {
      const t = l.endsWith('\r') ? l.slice(0, -1) : l;
      const i = t.lastIndexOf('\r');
      return i >= 0 ? t.slice(i + 1) : t;
    })
    .join('\n');
}

/** Text with escape sequences stripped (for search). */
export function stripAnsi(text) {
  return applyCarriageReturns(String(text ?? '')).replace(ESCAPES, '');
}

/** A fragment showing `text` with its SGR styling. */
export function ansiToFragment(text) {
  const frag = document.createDocumentFragment();
  const src = applyCarriageReturns(String(text ?? ''));
  if (!src.includes('\x1b')) {
    frag.appendChild(document.createTextNode(src));
    return frag;
  }
  let st = {};
  let pos = 0;
  const emit = (s) => {
    if (!s) return;
    const keys = Object.keys(st);
    if (!keys.length) {
      frag.appendChild(document.createTextNode(s));
      return;
    }
    const span = document.createElement('span');
    span.textContent = s;
    let fg = st.fg;
    let bg = st.bg;
    if (st.inverse) [fg, bg] = [bg || 'var(--bg)', fg || 'var(--fg)'];
    if (fg) span.style.color = fg;
    if (bg) span.style.backgroundColor = bg;
    if (st.bold) span.style.fontWeight = 'bold';
    if (st.dim) span.style.opacity = '0.7';
    if (st.italic) span.style.fontStyle = 'italic';
    if (st.underline) span.style.textDecoration = 'underline';
    frag.appendChild(span);
  };
  ESCAPES.lastIndex = 0;
  let m;
  while ((m = ESCAPES.exec(src))) {
    emit(src.slice(pos, m.index));
    pos = m.index + m[0].length;
    if (m[2] !== 'm') continue;
    const ps = (m[1] || '0').split(/[;:]/).map((x) => (x === '' ? 0 : Number(x)));
    for (let i = 0; i < ps.length; i++) {
      const p = ps[i];
      if (p === 0) st = {};
      else if (p === 1) st.bold = true;
      else if (p === 2) st.dim = true;
      else if (p === 3) st.italic = true;
      else if (p === 4) st.underline = true;
      else if (p === 7) st.inverse = true;
      else if (p === 22) {
        delete st.bold;
        delete st.dim;
      }
      else if (p === 23) delete st.italic;
      else if (p === 24) delete st.underline;
      else if (p === 27) delete st.inverse;
      else if (p >= 30 && p <= 37) st.fg = PALETTE16[p - 30];
      else if (p === 39) delete st.fg;
      else if (p >= 40 && p <= 47) st.bg = PALETTE16[p - 40];
      else if (p === 49) delete st.bg;
      else if (p >= 90 && p <= 97) st.fg = PALETTE16[p - 90 + 8];
      else if (p >= 100 && p <= 107) st.bg = PALETTE16[p - 100 + 8];
      else if (p === 38 || p === 48) {
        let c = null;
        if (ps[i + 1] === 5 && i + 2 < ps.length) {
          c = color256(Math.min(255, Math.max(0, ps[i + 2])));
          i += 2;
        } else if (ps[i + 1] === 2 && i + 4 < ps.length) {
          const [r, g, b] = ps.slice(i + 2, i + 5).map((v) => Math.min(255, Math.max(0, v)));
          c = `rgb(${r},${g},${b})`;
          i += 4;
        }
        if (c) st[p === 38 ? 'fg' : 'bg'] = c;
      }
    }
  }
  emit(src.slice(pos));
  return frag;
}
