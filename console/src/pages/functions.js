import { h, mount } from '../dom.js';
import { listFunctions } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, badge } from '../ui.js';
import { fmtBytes, fmtAgo, fmtDate } from '../util.js';

export async function functionsPage(ctx) {
  const filter = h('input', { type: 'search', class: 'input-search', placeholder: 'Filter by name', 'aria-label': 'Filter functions' });
  const body = h('div', null, loading());
  const refresh = h('button', { class: 'btn', type: 'button', onClick: () => load() }, 'Refresh');
  mount(ctx.el,
    pageHeader('Functions', {
      sub: 'Lambda functions on this server.',
      actions: [refresh, h('a', { id: 'create-function', class: 'btn btn-primary', href: '#/functions/new' }, 'Create function')],
    }),
    h('div', { class: 'toolbar' }, filter),
    body);

  let functions = [];
  const columns = ['Function name', 'Runtime', 'Package', 'Memory', 'Timeout', 'Code size', 'Last modified'];
  const tableEl = table('functions-table', columns, []);
  const tbody = tableEl.querySelector('tbody');

  const render = () => {
    const q = filter.value.trim().toLowerCase();
    const rows = functions
      .filter((f) => !q || f.FunctionName.toLowerCase().includes(q))
      .map((f) => h('tr', { dataset: { name: f.FunctionName } },
        h('td', null, h('a', { href: `#/functions/${encodeURIComponent(f.FunctionName)}`, class: 'strong' }, f.FunctionName),
          f.Description ? h('div', { class: 'muted small' }, f.Description) : null),
        h('td', null, f.Runtime || (f.PackageType === 'Image' ? 'container image' : '—')),
        h('td', null, badge(f.PackageType || 'Zip', 'muted')),
        h('td', null, `${f.MemorySize} MB`),
        h('td', null, `${f.Timeout} s`),
        h('td', null, fmtBytes(f.CodeSize)),
        h('td', { title: fmtDate(f.LastModified) }, fmtAgo(f.LastModified))));
    fillRows(tbody, columns.length, rows, functions.length
      ? 'No function matches the filter.'
      : h('span', null, 'No functions yet. ', h('a', { href: '#/functions/new' }, 'Create one'), '.'));
  };
  filter.addEventListener('input', render);

  async function load() {
    try {
      functions = await listFunctions();
      functions.sort((a, b) => a.FunctionName.localeCompare(b.FunctionName));
      if (!ctx.alive) return;
      render();
      if (!tableEl.isConnected) mount(body, tableEl);
    } catch (err) {
      mount(body, errorBox(err, load));
    }
  }
  await load();
}
