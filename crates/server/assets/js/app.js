// The viewer's entry point: routes on the path. Pages are plain links (each
// navigation loads the page again); data comes from the API.

import { h, typing } from './util.js';
import { mode, getToken, setToken, takeTokenFromFragment, whoAmI, may } from './api.js';
import { installDrop } from './drop.js';

const root = document.getElementById('app');

function nav() {
  const n = document.getElementById('nav');
  const who = document.getElementById('who');
  if (mode === 'local') {
    n.replaceChildren(h('a', { href: '/local' }, 'Files'));
    who.replaceChildren(h('span', { class: 'dim' }, 'errand view · local files, on this machine only'));
    return;
  }
  n.replaceChildren(h('a', { href: '/' }, 'Runs'));
  if (location.pathname.startsWith('/share/')) {
    who.replaceChildren(h('span', { class: 'dim' }, 'shared run · read-only'));
    return;
  }
  if (getToken()) {
    // Start is shown only to a token that may start runs (the server refuses the others anyway).
    whoAmI().then((me) => {
      if (may(me, 'run')) n.append(h('a', { href: '/new', class: 'new-run-link button', title: 'start a run (n)' }, 'New run'));
      if (me) who.prepend(h('span', { class: 'dim me', title: `scopes: ${me.scopes.join(', ')}` }, me.name), ' ');
    });
    const out = h('button', { type: 'button', class: 'linkish' }, 'log out');
    out.addEventListener('click', () => {
      setToken('');
      location.assign('/login');
    });
    who.replaceChildren(out);
  } else who.replaceChildren(h('a', { href: '/login' }, 'log in'));
}

function notFound() {
  root.replaceChildren(h('div', { class: 'empty-page' }, h('h1', null, 'Not found'), h('p', null, 'There is no page here. '), h('a', { href: '/' }, 'Back to the start')));
}

function needToken() {
  if (mode === 'serve' && !getToken()) {
    location.replace(`/login?next=${encodeURIComponent(location.pathname + location.search)}`);
    return true;
  }
  return false;
}

async function main() {
  takeTokenFromFragment();
  nav();
  installDrop();
  const path = location.pathname.replace(/\/+$/, '') || '/';
  let m;
  if (mode === 'local') {
    if (path === '/' || path === '/local') return (await import('./local.js')).localPage(root);
    if ((m = /^\/local\/(\d+)$/.exec(path))) {
      const run = await import('./run.js');
      return run.runPage(root, run.localSource(m[1]));
    }
    return notFound();
  }
  if ((m = /^\/share\/([^/]+)$/.exec(path))) {
    const run = await import('./run.js');
    return run.runPage(root, run.shareSource(decodeURIComponent(m[1])));
  }
  if (path === '/login') return (await import('./login.js')).loginPage(root);
  if (needToken()) return undefined;
  document.addEventListener('keydown', (ev) => {
    if (ev.defaultPrevented || ev.ctrlKey || ev.metaKey || ev.altKey || ev.key !== 'n' || typing(ev)) return;
    if (path !== '/new') location.assign('/new');
  });
  if (path === '/') return (await import('./runs.js')).runsPage(root);
  if (path === '/new') return (await import('./newrun.js')).newRunPage(root);
  if ((m = /^\/runs\/([^/]+)$/.exec(path))) {
    const run = await import('./run.js');
    return run.runPage(root, run.apiSource(decodeURIComponent(m[1])));
  }
  if ((m = /^\/groups\/([^/]+)$/.exec(path))) return (await import('./group.js')).groupPage(root, decodeURIComponent(m[1]));
  return notFound();
}

main().catch((e) => {
  root.replaceChildren(h('div', { class: 'empty-page bad' }, `The viewer failed: ${e && e.message ? e.message : e}`));
});
