// Logging in: an API token pasted here (or handed over as #token=… in the
// URL fragment, which never reaches the server) is kept in localStorage and
// sent as `Authorization: Bearer` to this server's API.

import { h } from './util.js';
import { getJson, getToken, setToken, HttpError } from './api.js';

export function loginPage(root) {
  document.title = 'log in · errand';
  const next = new URLSearchParams(location.search).get('next');
  const safeNext = next && next.startsWith('/') && !next.startsWith('//') ? next : '/';
  const input = h('input', { type: 'password', name: 'token', placeholder: 'errand_…', autocomplete: 'off', spellcheck: 'false', class: 'token-input' });
  const msg = h('div', { class: 'msg-line' });
  const form = h(
    'form',
    { class: 'login' },
    h('h1', null, 'Log in'),
    h('p', null, 'Paste an API token of this errand server. Create one on the server with ', h('code', null, 'errand token create NAME'), '.'),
    input,
    h('div', { class: 'row' }, h('button', { type: 'submit' }, 'Use this token'), getToken() ? h('button', { type: 'button', class: 'forget' }, 'Forget the saved token') : null),
    msg,
    h('p', { class: 'dim small' }, 'The token is kept in this browser (localStorage) and sent only to this server, as an Authorization header. A link ending in #token=… logs in too: the part after # never leaves the browser.'),
  );
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const t = input.value.trim();
    if (!t) return;
    const before = getToken();
    setToken(t);
    try {
      await getJson('/api/v1/runs?limit=1');
      msg.className = 'msg-line ok';
      msg.textContent = 'Token accepted.';
      location.assign(safeNext);
    } catch (e) {
      setToken(before);
      msg.className = 'msg-line bad';
      msg.textContent = e instanceof HttpError && e.status === 401 ? `This token is not accepted: ${e.message}` : `Could not check the token: ${e.message}`;
    }
  });
  const forget = form.querySelector('.forget');
  if (forget) {
    forget.addEventListener('click', () => {
      setToken('');
      msg.className = 'msg-line';
      msg.textContent = 'The token was removed from this browser.';
      forget.remove();
    });
  }
  root.replaceChildren(h('div', { class: 'login-page' }, form));
  input.focus();
}
