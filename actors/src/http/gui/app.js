// The app's shell: hash routing (`#/resources?type=…`), the top bar, and the session
// check. Each page is a function in pages.js that renders into a fresh element; leaving a
// page runs its clean-ups (pollers), so nothing keeps calling the API in the background.

import { h, fill } from './dom.js';
import * as api from './api.js';
import * as pages from './pages.js';

const ROUTES = [
  [/^\/login$/, pages.login, { open: true }],
  [/^\/$/, pages.dashboard, { nav: 'dashboard' }],
  [/^\/resources$/, pages.resources, { nav: 'resources' }],
  [/^\/resources\/([^/]+)$/, pages.resource, { nav: 'resources' }],
  [/^\/insights$/, pages.insights, { nav: 'insights' }],
  [/^\/insights\/([^/]+)$/, pages.insight, { nav: 'insights' }],
  [/^\/clouds\/new$/, pages.newCloud, { nav: 'new-cloud' }],
];

let cleanups = [];
let flash = null;
let generation = 0;

/** Go to a route: `go('/resources', {type: 'aws.s3.bucket'})`. */
export function go(path, params = {}) {
  const target = `#${path}${api.query(params)}`;
  if (location.hash === target) render();
  else location.hash = target;
}

/** A message shown once on the next page. */
export function say(text, kind = 'ok') {
  flash = { text, kind };
}

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/';
  const [path, q] = raw.split('?');
  return { path: path || '/', params: new URLSearchParams(q || '') };
}

function leave() {
  for (const f of cleanups) {
    try {
      f();
    } catch (e) {
      /* a clean-up that fails must not stop the others */
    }
  }
  cleanups = [];
}

function topbar(active) {
  const bar = document.getElementById('topbar');
  const user = api.currentUser();
  bar.hidden = !user;
  if (!user) return;
  const link = (id, href, text) =>
    h('a', { href, class: active === id ? 'active' : '', 'data-nav': id }, text);
  fill(
    document.getElementById('nav'),
    link('dashboard', '#/', 'Dashboard'),
    link('resources', '#/resources', 'Resources'),
    link('insights', '#/insights', 'Insights'),
    api.hasRole('operator') ? link('new-cloud', '#/clouds/new', 'Add cloud') : null,
  );
  fill(
    document.getElementById('who'),
    h('span', { class: 'who-name', id: 'who-name' }, user.user),
    h('span', { class: 'badge badge-role' }, user.role),
    h(
      'button',
      {
        class: 'btn btn-ghost',
        id: 'sign-out',
        type: 'button',
        onclick: async () => {
          try {
            await api.logout();
          } catch (e) {
            /* signed out here either way */
          }
          say('Signed out.');
          go('/login');
        },
      },
      'Sign out',
    ),
  );
}

async function render() {
  leave();
  const mine = ++generation;
  const { path, params } = parseHash();
  const main = document.getElementById('main');
  let route = null;
  let args = [];
  for (const [re, page, opts] of ROUTES) {
    const m = path.match(re);
    if (m) {
      route = { page, opts };
      args = m.slice(1).map(decodeURIComponent);
      break;
    }
  }
  if (!route) {
    go('/');
    return;
  }
  if (!route.opts.open && !api.currentUser()) {
    // A tab opened on a live session: ask the server who it is.
    try {
      await api.whoami();
    } catch (e) {
      if (mine === generation && !(e instanceof api.ApiError && e.status === 401)) {
        fill(main, h('div', { class: 'alert' }, e.message));
      }
      return;
    }
    if (mine !== generation) return;
  }
  topbar(route.opts.nav);
  const view = h('div', { class: 'page' });
  const shown = flash;
  flash = null;
  fill(main, shown ? h('div', { class: `flash flash-${shown.kind}`, role: 'status' }, shown.text) : null, view);
  const ctx = {
    params,
    args,
    view,
    go,
    say,
    alive: () => mine === generation,
    onLeave: (f) => cleanups.push(f),
  };
  try {
    await route.page(ctx);
  } catch (e) {
    if (ctx.alive() && !(e instanceof api.ApiError && e.status === 401)) {
      view.appendChild(h('div', { class: 'alert', role: 'alert' }, e.message || String(e)));
    }
  }
}

api.setOnUnauthenticated((hadSession) => {
  if (parseHash().path !== '/login') {
    if (hadSession) say('Your session has ended. Please sign in again.', 'warn');
    go('/login');
  }
});

window.addEventListener('hashchange', render);
render();
