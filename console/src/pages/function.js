import { h, mount, toast, busy, confirmDialog } from '../dom.js';
import { lambda, fnPath } from '../api.js';
import { pageHeader, tabs, badge, facts, loading, errorBox, copyButton } from '../ui.js';
import { fmtBytes, fmtDate, fmtAgo } from '../util.js';
import { codeTab } from './fn-code.js';
import { testTab } from './fn-test.js';
import { configTab } from './fn-config.js';
import { versionsTab } from './fn-versions.js';
import { triggersTab } from './fn-triggers.js';
import { monitorTab } from './fn-monitor.js';

/**
 * The function page. Tabs share `fn`: the name, the latest GetFunction answer, and
 * `reload()`, which refreshes it (and the summary) after a change.
 */
export async function functionPage(ctx) {
  const [name, tabParam] = ctx.params;
  const summary = h('div', { class: 'fn-summary' }, loading());
  const head = h('div');
  mount(ctx.el, head, summary);

  const fn = {
    name,
    ctx,
    data: null,
    listeners: new Set(),
    get config() {
      return this.data?.Configuration || {};
    },
    async reload() {
      this.data = await lambda('GET', fnPath(name));
      renderSummary();
      for (const l of this.listeners) l(this.data);
      return this.data;
    },
    onChange(l) {
      this.listeners.add(l);
    },
  };

  try {
    await fn.reload();
  } catch (err) {
    mount(head, pageHeader(name, { crumbs: [['Functions', '#/functions'], [name]] }));
    mount(summary, errorBox(err, () => functionPage(ctx)));
    return;
  }
  if (!ctx.alive) return;

  const deleteButton = h('button', {
    id: 'fn-delete',
    class: 'btn btn-danger-outline',
    type: 'button',
    onClick: () => busy(deleteButton, async () => {
      if (!(await confirmDialog(`Delete function ${name}, its versions, aliases and triggers' permissions? This cannot be undone.`, { title: 'Delete function' }))) return;
      await lambda('DELETE', fnPath(name));
      toast(`Deleted ${name}`, 'success');
      location.hash = '#/functions';
    }),
  }, 'Delete');

  mount(head, pageHeader(name, {
    crumbs: [['Functions', '#/functions'], [name]],
    actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, () => fn.reload()) }, 'Refresh'), deleteButton],
  }));

  function renderSummary() {
    const c = fn.config;
    mount(summary, facts([
      ['State', h('span', { id: 'fn-state' }, badge(c.State || 'Active'), c.LastUpdateStatus && c.LastUpdateStatus !== 'Successful' ? [' ', badge(`Update ${c.LastUpdateStatus}`)] : null)],
      ['Runtime', c.PackageType === 'Image' ? 'container image' : c.Runtime],
      ['Handler', c.Handler ? h('code', null, c.Handler) : '—'],
      ['Memory', `${c.MemorySize} MB`],
      ['Timeout', `${c.Timeout} s`],
      ['Code size', fmtBytes(c.CodeSize)],
      ['Last modified', h('span', { title: fmtDate(c.LastModified) }, fmtAgo(c.LastModified))],
      ['ARN', h('span', { class: 'arn' }, h('code', null, c.FunctionArn), ' ', copyButton(c.FunctionArn)), true],
      c.StateReason ? ['Reason', c.StateReason] : null,
    ]));
  }
  renderSummary();

  const list = [
    { id: 'code', label: 'Code', render: (pane) => codeTab(pane, fn) },
    { id: 'test', label: 'Test', render: (pane) => testTab(pane, fn) },
    { id: 'config', label: 'Configuration', render: (pane) => configTab(pane, fn) },
    { id: 'versions', label: 'Versions & aliases', render: (pane) => versionsTab(pane, fn) },
    { id: 'triggers', label: 'Triggers', render: (pane) => triggersTab(pane, fn) },
    { id: 'monitor', label: 'Monitor', render: (pane) => monitorTab(pane, fn), onShow: (pane) => pane.refresh?.() },
  ];
  const t = tabs(list, tabParam || 'code', (id) => {
    const want = `#/functions/${encodeURIComponent(name)}${id === 'code' ? '' : `/${id}`}`;
    if (ctx.alive && location.hash !== want) history.replaceState(null, '', want);
  });
  ctx.el.appendChild(t.el);
}
