// Shared pieces of pages: headers, tables, badges, fields, tabs.

import { h, mount } from './dom.js';

const GOOD = ['running', 'active', 'successful', 'available', 'enabled', 'complete', 'succeeded', 'primary', 'healthy', 'steady', 'completed'];
const BUSY = ['pending', 'provisioning', 'inprogress', 'in_progress', 'activating', 'deprovisioning', 'stopping', 'draining', 'creating', 'updating', 'enabling', 'disabling', 'deleting'];
const BAD = ['failed', 'unavailable', 'error', 'inactive_error', 'unhealthy'];

export function badge(label, kind) {
  const key = String(label || '').toLowerCase().replace(/\s+/g, '');
  kind = kind || (GOOD.includes(key) ? 'ok' : BUSY.includes(key) ? 'busy' : BAD.includes(key) ? 'bad' : 'muted');
  return h('span', { class: ['badge', `badge-${kind}`] }, label || '—');
}

/** A page title row with breadcrumbs and actions. */
export function pageHeader(title, { crumbs = [], actions = [], sub } = {}) {
  return h('div', { class: 'page-head' },
    crumbs.length ? h('nav', { class: 'crumbs', 'aria-label': 'Breadcrumbs' },
      crumbs.map(([label, href], i) => [
        i ? h('span', { class: 'crumb-sep' }, '/') : null,
        href ? h('a', { href }, label) : h('span', null, label),
      ])) : null,
    h('div', { class: 'page-title-row' },
      h('div', null, h('h1', null, title), sub ? h('div', { class: 'page-sub' }, sub) : null),
      h('div', { class: 'page-actions' }, actions)),
  );
}

/**
 * A table. `columns`: labels (or { label, class }); `rows`: arrays of cells, or
 * ready `tr` elements. A table made without rows stays hidden until fillRows()
 * first fills it, so that waiting for its selector means waiting for its data.
 */
export function table(id, columns, rows, { empty = 'Nothing here yet.', className } = {}) {
  const head = h('thead', null, h('tr', null, columns.map((c) =>
    typeof c === 'string' ? h('th', null, c) : h('th', { class: c.class }, c.label))));
  const body = h('tbody');
  const wrap = h('div', { class: 'table-wrap' }, h('table', { id, class: ['table', className] }, head, body));
  if (rows.length) fillRows(body, columns.length, rows, empty);
  else wrap.hidden = true;
  return wrap;
}

export function fillRows(body, width, rows, empty = 'Nothing here yet.') {
  mount(body, rows.length
    ? rows.map((row) => (row instanceof Node ? row : h('tr', null, row.map((cell) =>
      cell instanceof Node && cell.tagName === 'TD' ? cell : h('td', null, cell)))))
    : h('tr', { class: 'empty-row' }, h('td', { colspan: width }, empty)));
  const wrap = body.closest('.table-wrap');
  if (wrap) wrap.hidden = false;
}

export function panel(title, body, { actions = [], id, className } = {}) {
  return h('section', { class: ['panel', className], id },
    title || actions.length ? h('div', { class: 'panel-head' }, h('h2', null, title), h('div', { class: 'panel-actions' }, actions)) : null,
    h('div', { class: 'panel-body' }, body));
}

export function loading(label = 'Loading…') {
  return h('div', { class: 'loading' }, h('span', { class: 'spinner' }), label);
}

export function errorBox(err, retry) {
  return h('div', { class: 'alert alert-error', role: 'alert' },
    h('strong', null, 'Error: '), err?.message || String(err),
    retry ? h('button', { class: 'btn btn-small', type: 'button', onClick: retry, style: { marginLeft: '12px' } }, 'Retry') : null);
}

export function note(children, kind = 'info') {
  return h('div', { class: ['alert', `alert-${kind}`] }, children);
}

/** A labelled form field around `control`. */
export function field(label, control, help) {
  const id = control.id;
  return h('div', { class: 'field' },
    h('label', id ? { for: id } : null, label),
    control,
    help ? h('div', { class: 'help' }, help) : null);
}

export function select(props, options, value) {
  return h('select', props, options.map((o) => {
    const [val, label] = Array.isArray(o) ? o : [o, o];
    return h('option', { value: val, selected: String(val) === String(value) }, label);
  }));
}

/**
 * Tabs: `tabs([{ id: 'code', label: 'Code', render: (el) => ... }], active, onSwitch)`.
 * Each tab's button has id `tab-<id>`; panes render once, when first shown.
 */
export function tabs(list, active, onSwitch) {
  const bar = h('div', { class: 'tabs', role: 'tablist' });
  const panes = h('div', { class: 'tab-panes' });
  const state = new Map();
  const show = (id) => {
    for (const tab of list) {
      const { button, pane } = state.get(tab.id);
      const on = tab.id === id;
      button.classList.toggle('active', on);
      button.setAttribute('aria-selected', String(on));
      pane.hidden = !on;
      if (on && !pane.dataset.rendered) {
        pane.dataset.rendered = '1';
        tab.render(pane);
      }
      if (on) tab.onShow?.(pane);
    }
    onSwitch?.(id);
  };
  for (const tab of list) {
    const button = h('button', { id: `tab-${tab.id}`, class: 'tab', type: 'button', role: 'tab', onClick: () => show(tab.id) }, tab.label);
    const pane = h('div', { class: 'tab-pane', role: 'tabpanel', hidden: true, id: `pane-${tab.id}` });
    pane.hidden = true;
    state.set(tab.id, { button, pane });
    bar.appendChild(button);
    panes.appendChild(pane);
  }
  queueMicrotask(() => show(list.some((t) => t.id === active) ? active : list[0].id));
  return { el: h('div', { class: 'tabs-wrap' }, bar, panes), show };
}

/** A key/value list (definition list) of [label, value] pairs. */
export function facts(pairs) {
  return h('dl', { class: 'facts' }, pairs.filter(Boolean).map(([k, v, wide]) => h('div', { class: ['fact', wide && 'fact-wide'] }, h('dt', null, k), h('dd', null, v ?? '—'))));
}

export function copyButton(getText, label = 'Copy') {
  const button = h('button', {
    class: 'btn btn-small',
    type: 'button',
    onClick: async () => {
      const value = typeof getText === 'function' ? getText() : getText;
      try {
        await navigator.clipboard.writeText(value);
      } catch {
        const area = h('textarea', { value, style: { position: 'fixed', opacity: '0' } });
        document.body.appendChild(area);
        area.select();
        document.execCommand('copy');
        area.remove();
      }
      button.textContent = 'Copied';
      setTimeout(() => { button.textContent = label; }, 1200);
    },
  }, label);
  return button;
}

/** The console page of a queue's, topic's or function's ARN; null for anything else. */
export function resourceHref(arn = '') {
  const [, , service, , , resource, name] = arn.split(':');
  const page = { sqs: 'queues', sns: 'topics', lambda: 'functions' }[service];
  const id = service === 'lambda' ? name : resource;
  return page && id ? `#/${page}/${encodeURIComponent(id)}` : null;
}

export function mono(textValue, props = {}) {
  return h('span', { class: 'mono', ...props }, textValue);
}

/** Load into `el` with a spinner; render the result, or an error with Retry. */
export async function load(el, fetcher, render) {
  mount(el, loading());
  try {
    const data = await fetcher();
    mount(el, render(data));
  } catch (err) {
    mount(el, errorBox(err, () => load(el, fetcher, render)));
  }
}
