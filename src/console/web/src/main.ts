// materializer console: hash routing over the pages, login state and the top bar.

import { ApiError, auth, forgetInfo, get, getInfo, setAuthFailureHandler } from './api';
import { fill, h } from './dom';
import { loginPage } from './pages/login';
import { runPage, runsPage } from './pages/runs';
import { sourceEventsPage } from './pages/source-events';
import { topicsPage } from './pages/topics';
import { workbenchPage } from './pages/workbench';

const topbar = document.getElementById('topbar') ?? document.body.insertBefore(h('header', { id: 'topbar' }), document.body.firstChild);
const main = (document.getElementById('app') as HTMLElement | null) ?? document.body.appendChild(h('main', { id: 'app' }));

let page: AbortController | null = null;
let loginMessage = '';
let firstRender = true;

function renderTopbar(loggedIn: boolean, version: string) {
  topbar.className = 'topbar';
  const logout = h('button', { type: 'button', id: 'logout', class: 'link-button' }, 'Log out');
  logout.addEventListener('click', () => {
    auth.clear();
    forgetInfo();
    loginMessage = 'You are logged out.';
    route();
  });
  fill(
    topbar,
    h('a', { href: '#/topics', class: 'brand' }, 'materializer'),
    loggedIn ? h('nav', { 'aria-label': 'Main' }, h('a', { href: '#/topics', id: 'nav-topics' }, 'Topics')) : null,
    h('span', { class: 'spacer' }),
    version ? h('span', { class: 'version muted small' }, `v${version}`) : null,
    loggedIn && auth.token() ? logout : null,
    loggedIn && auth.token() === '' ? h('span', { id: 'no-login', class: 'no-login small', title: 'This server asks for no token' }, 'no login needed') : null,
  );
}

setAuthFailureHandler((message) => {
  if (auth.token() === null) return; // already on the login page
  auth.clear();
  forgetInfo();
  loginMessage = message;
  route();
});

function route() {
  page?.abort();
  page = new AbortController();
  const signal = page.signal;
  const moveFocus = !firstRender;
  firstRender = false;
  // Each page renders into its own element: late answers of a page left
  // behind land in a detached element, never in the page shown now.
  const view = h('div', { class: 'view' });
  main.replaceChildren(view);

  if (auth.token() === null) {
    renderTopbar(false, '');
    document.title = 'Log in · materializer';
    const message = loginMessage;
    loginMessage = '';
    loginPage(view, message, () => route());
    return;
  }
  renderTopbar(true, '');
  getInfo().then(
    (info) => {
      if (!signal.aborted && info.version) renderTopbar(true, info.version);
    },
    () => {},
  );

  const hash = location.hash || '#/topics';
  const parts = hash.replace(/^#\/?/, '').split('/').filter(Boolean).map(decodeURIComponent);
  if (parts.length === 0 || (parts[0] === 'topics' && parts.length === 1)) {
    document.title = 'Topics · materializer';
    topicsPage(view, signal);
  } else if (parts[0] === 'topics' && parts.length === 2) {
    document.title = `${parts[1]} · mapping · materializer`;
    workbenchPage(view, parts[1], signal);
  } else if (parts[0] === 'topics' && parts.length === 3 && parts[2] === 'runs') {
    document.title = `${parts[1]} · runs · materializer`;
    runsPage(view, parts[1], signal);
  } else if (parts[0] === 'topics' && parts.length === 3 && parts[2] === 'events') {
    document.title = `${parts[1]} · source events · materializer`;
    sourceEventsPage(view, parts[1], signal);
  } else if (parts[0] === 'runs' && parts.length === 2) {
    document.title = `Run ${parts[1]} · materializer`;
    runPage(view, parts[1], signal);
  } else {
    document.title = 'Not found · materializer';
    view.replaceChildren(h('h1', { tabindex: '-1' }, 'Page not found'), h('p', null, h('a', { href: '#/topics' }, 'All topics')));
  }
  if (moveFocus) {
    window.scrollTo(0, 0);
    main.focus({ preventScroll: true });
  }
  const nav = document.getElementById('nav-topics');
  if (nav) nav.toggleAttribute('aria-current', parts[0] === 'topics' && parts.length <= 1);
}

window.addEventListener('hashchange', route);

// A server without tokens (loopback) needs no login: try once without one.
async function start() {
  if (auth.token() === null) {
    try {
      await get('/topics', { token: null, own: [401, 403] });
      auth.set('');
    } catch (e) {
      if (!(e instanceof ApiError)) throw e;
    }
  }
  route();
}
void start();
