import './style.css';
import { h, s as svg, mount, toast } from './dom.js';
import { session, loadSession, signOut, whenSignedOut } from './api.js';
import { errorBox } from './ui.js';
import { signInPage } from './pages/signin.js';
import { dashboardPage } from './pages/dashboard.js';

const app = document.getElementById('app');

// Pages other than the dashboard load on first use, so the first load stays light.
const lazy = (load, name) => async (ctx) => (await load())[name](ctx);
const functions = () => import('./pages/functions.js');
const createFunction = () => import('./pages/function-create.js');
const fnPage = () => import('./pages/function.js');
const logs = () => import('./pages/logs.js');
const buckets = () => import('./pages/buckets.js');
const queues = () => import('./pages/queues.js');
const topics = () => import('./pages/topics.js');
const rules = () => import('./pages/rules.js');
const apis = () => import('./pages/apis.js');
const registry = () => import('./pages/registry.js');
const containers = () => import('./pages/containers.js');

const ROUTES = [
  [/^$/, dashboardPage, ''],
  [/^functions$/, lazy(functions, 'functionsPage'), 'functions'],
  [/^functions\/new$/, lazy(createFunction, 'createFunctionPage'), 'functions'],
  [/^functions\/([^/]+)(?:\/([a-z]+))?$/, lazy(fnPage, 'functionPage'), 'functions'],
  [/^logs$/, lazy(logs, 'logGroupsPage'), 'logs'],
  [/^logs\/(.+)$/, lazy(logs, 'logGroupPage'), 'logs'],
  [/^buckets$/, lazy(buckets, 'bucketsPage'), 'buckets'],
  [/^buckets\/([^/]+)$/, lazy(buckets, 'bucketPage'), 'buckets'],
  [/^queues$/, lazy(queues, 'queuesPage'), 'queues'],
  [/^queues\/([^/]+)$/, lazy(queues, 'queuePage'), 'queues'],
  [/^topics$/, lazy(topics, 'topicsPage'), 'topics'],
  [/^topics\/([^/]+)$/, lazy(topics, 'topicPage'), 'topics'],
  [/^rules$/, lazy(rules, 'rulesPage'), 'rules'],
  [/^rules\/new$/, lazy(rules, 'createRulePage'), 'rules'],
  [/^rules\/([^/]+)\/([^/]+)$/, lazy(rules, 'rulePage'), 'rules'],
  [/^apis$/, lazy(apis, 'apisPage'), 'apis'],
  [/^apis\/([^/]+)$/, lazy(apis, 'apiPage'), 'apis'],
  [/^restapis\/([^/]+)$/, lazy(apis, 'restApiPage'), 'apis'],
  [/^registry$/, lazy(registry, 'registryPage'), 'registry'],
  [/^registry\/(.+)$/, lazy(registry, 'repositoryPage'), 'registry'],
  [/^containers$/, lazy(containers, 'clustersPage'), 'containers'],
  [/^containers\/([^/]+)$/, lazy(containers, 'clusterPage'), 'containers'],
  [/^containers\/([^/]+)\/services\/([^/]+)$/, lazy(containers, 'servicePage'), 'containers'],
  [/^taskdefs\/(.+)$/, lazy(containers, 'taskDefinitionPage'), 'containers'],
];

const NAV = [
  ['#/', 'Dashboard', '', 'M3 3h6v6H3zM11 3h6v4h-6zM11 9h6v8h-6zM3 11h6v6H3z'],
  ['#/functions', 'Functions', 'functions', 'M4 16 9 4h2l-5 12zM12 6h5M12 10h4M12 14h5'],
  ['#/logs', 'Logs', 'logs', 'M4 4h12v12H4zM7 8h6M7 11h6M7 14h3'],
  ['#/buckets', 'Buckets', 'buckets', 'M3 6c0-2 14-2 14 0l-2 10c0 1.5-10 1.5-10 0zM3 6c0 2 14 2 14 0'],
  ['#/queues', 'Queues', 'queues', 'M2 7h4v6H2zM8 7h4v6H8zM14 7h4v6h-4z'],
  ['#/topics', 'Topics', 'topics', 'M8 10a2 2 0 1 0 4 0a2 2 0 1 0-4 0M6 6a6 6 0 0 0 0 8M14 6a6 6 0 0 1 0 8M3.5 3.5a9 9 0 0 0 0 13M16.5 3.5a9 9 0 0 1 0 13'],
  ['#/rules', 'Rules', 'rules', 'M3 4h14l-5.5 6.5V16l-3 1.5v-7z'],
  ['#/apis', 'APIs', 'apis', 'M7 5 3 10l4 5M13 5l4 5-4 5M11 4 9 16'],
  ['#/registry', 'Registry', 'registry', 'M3 7l7-4 7 4v7l-7 4-7-4zM3 7l7 4 7-4M10 11v7'],
  ['#/containers', 'Containers', 'containers', 'M3 5h14v4H3zM3 11h14v4H3zM6 7h1M6 13h1'],
];

let current = null; // the page context on screen
let shell = null;

/** What a page gets: its element, route parameters, and lifecycle helpers. */
function makeContext(params, query) {
  const cleanups = [];
  const ctx = {
    params,
    query,
    alive: true,
    el: h('div', { class: 'page' }),
    onCleanup(fn) {
      cleanups.push(fn);
    },
    /** Runs `fn` every `ms` while this page is shown (skips while hidden or busy). */
    every(ms, fn) {
      let running = false;
      const id = setInterval(async () => {
        if (!ctx.alive || running || document.hidden) return;
        running = true;
        try {
          await fn();
        } catch { /* the next tick retries */ } finally {
          running = false;
        }
      }, ms);
      cleanups.push(() => clearInterval(id));
      return () => clearInterval(id);
    },
    dispose() {
      ctx.alive = false;
      for (const fn of cleanups.splice(0)) {
        try { fn(); } catch { /* ignore */ }
      }
    },
  };
  return ctx;
}

function parseHash() {
  let raw = location.hash.replace(/^#\/?/, '');
  let queryString = '';
  const q = raw.indexOf('?');
  if (q >= 0) {
    queryString = raw.slice(q + 1);
    raw = raw.slice(0, q);
  }
  return { path: raw.replace(/\/+$/, ''), query: new URLSearchParams(queryString) };
}

function buildShell() {
  const s = session.current;
  const signOutButton = h('button', {
    id: 'sign-out',
    class: 'btn btn-ghost btn-small',
    type: 'button',
    onClick: async () => {
      signOutButton.disabled = true;
      try {
        await signOut();
      } catch (err) {
        toast(err.message, 'error');
      }
      showSignIn();
    },
  }, 'Sign out');
  const nav = h('nav', { class: 'sidenav', 'aria-label': 'Services' },
    NAV.map(([href, label, section, icon]) => h('a', { href, dataset: { section } },
      svg('svg', { viewBox: '0 0 20 20', class: 'nav-icon', 'aria-hidden': 'true' }, svg('path', { d: icon })),
      h('span', null, label))),
    h('div', { class: 'nav-foot' }, h('a', { href: '/_nimbus/health', target: '_blank', rel: 'noopener', class: 'nav-small' }, 'Health JSON')));
  const main = h('main', { id: 'main', class: 'main' });
  const root = h('div', { class: 'shell' },
    h('header', { class: 'topbar' },
      h('a', { class: 'brand', href: '#/' },
        h('span', { class: 'brand-mark', 'aria-hidden': 'true' }),
        h('span', null, 'nimbus'), h('span', { class: 'brand-sub' }, 'console')),
      h('div', { class: 'topbar-spacer' }),
      h('span', { class: 'topbar-item', title: 'Region' }, s.region || ''),
      h('span', { class: 'topbar-item', title: 'Account' }, s.account || ''),
      h('span', { id: 'principal', class: 'topbar-principal', title: s.principal }, s.principal),
      signOutButton),
    nav,
    main);
  return { root, main, nav };
}

function route() {
  if (!session.current) return;
  if (!shell || !shell.root.isConnected) {
    shell = buildShell();
    mount(app, shell.root);
  }
  const { path, query } = parseHash();
  let match = null;
  let page = null;
  let section = '';
  for (const [pattern, fn, sec] of ROUTES) {
    match = path.match(pattern);
    if (match) {
      page = fn;
      section = sec;
      break;
    }
  }
  current?.dispose();
  const params = match ? match.slice(1).map((p) => (p == null ? p : safeDecode(p))) : [];
  const ctx = makeContext(params, query);
  current = ctx;
  for (const a of shell.nav.querySelectorAll('a[data-section]')) {
    a.classList.toggle('active', a.dataset.section === section);
  }
  mount(shell.main, ctx.el);
  shell.main.scrollTop = 0;
  if (!page) {
    mount(ctx.el, h('div', { class: 'empty-page' }, h('h1', null, 'Not found'), h('p', null, 'No page at ', h('code', null, location.hash), '. ', h('a', { href: '#/' }, 'Go to the dashboard'))));
    return;
  }
  Promise.resolve()
    .then(() => page(ctx))
    .catch((err) => {
      if (ctx.alive) mount(ctx.el, errorBox(err, route));
    });
}

function safeDecode(p) {
  try {
    return decodeURIComponent(p);
  } catch {
    return p;
  }
}

function showSignIn(message) {
  current?.dispose();
  current = null;
  shell = null;
  mount(app, signInPage({ message, onSignedIn: () => route() }));
}

whenSignedOut(() => showSignIn('Your session has ended. Sign in again.'));
window.addEventListener('hashchange', route);

(async function boot() {
  try {
    const s = await loadSession();
    if (s) route();
    else showSignIn();
  } catch (err) {
    mount(app, h('div', { class: 'signin-wrap' }, errorBox(err, boot)));
  }
})();
