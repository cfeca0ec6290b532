import { h, mount, toast, busy, confirmDialog } from '../dom.js';
import { call } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, panel, select, facts } from '../ui.js';
import { fmtBytes, fmtDate, fmtAgo, fmtClock } from '../util.js';

export const groupHref = (group, stream) => `#/logs/${encodeURIComponent(group)}${stream ? `?stream=${encodeURIComponent(stream)}` : ''}`;

export async function logGroupsPage(ctx) {
  const prefix = h('input', { type: 'search', class: 'input-search', placeholder: 'Log group name prefix', id: 'log-group-prefix', 'aria-label': 'Prefix' });
  const cols = ['Log group', 'Retention', 'Stored bytes', 'Created'];
  const tableEl = table('log-groups-table', cols, []);
  const more = h('button', { class: 'btn', type: 'button', hidden: true }, 'Load more');
  const status = h('div', null, loading());
  let token;
  let groups = [];

  async function load(reset) {
    if (reset) {
      token = undefined;
      groups = [];
    }
    try {
      const res = await call('logs', 'DescribeLogGroups', {
        limit: 50,
        ...(prefix.value.trim() ? { logGroupNamePrefix: prefix.value.trim() } : {}),
        ...(token ? { nextToken: token } : {}),
      });
      groups.push(...(res.logGroups || []));
      token = res.nextToken;
      more.hidden = !token;
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, groups.map((g) => [
        h('a', { href: groupHref(g.logGroupName), class: 'strong' }, g.logGroupName),
        g.retentionInDays ? `${g.retentionInDays} days` : 'Never expire',
        fmtBytes(g.storedBytes || 0),
        fmtDate(g.creationTime),
      ]), prefix.value ? 'No log group has that prefix.' : 'No log groups yet. Functions write theirs when they first run.');
    } catch (err) {
      mount(status, errorBox(err, () => load(reset)));
    }
  }
  let timer;
  prefix.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(true), 250);
  });
  more.addEventListener('click', () => busy(more, () => load(false)));
  mount(ctx.el,
    pageHeader('Log groups', { sub: 'CloudWatch Logs: function output and container logs.', actions: [h('button', { class: 'btn', type: 'button', onClick: () => load(true) }, 'Refresh')] }),
    h('div', { class: 'toolbar' }, prefix),
    status, tableEl, h('div', { class: 'toolbar' }, more));
  await load(true);
}

const RANGES = [
  ['300000', 'Last 5 minutes'],
  ['1800000', 'Last 30 minutes'],
  ['3600000', 'Last hour'],
  ['21600000', 'Last 6 hours'],
  ['86400000', 'Last day'],
  ['604800000', 'Last week'],
  ['0', 'All time'],
];

export async function logGroupPage(ctx) {
  const group = ctx.params[0];
  const stream = ctx.query.get('stream') || '';
  const info = h('div');
  const streamCols = ['Log stream', 'Last event', 'First event'];
  const streamsTable = table('log-streams-table', streamCols, []);
  const streamsStatus = h('div', null, loading());

  const filter = h('input', { id: 'log-filter', type: 'search', placeholder: 'Filter pattern: ERROR, "exact phrase", -exclude, { $.level = "error" }', spellcheck: 'false', value: ctx.query.get('filter') || '' });
  const range = select({ id: 'log-range', 'aria-label': 'Time range' }, RANGES, ctx.query.get('range') || '3600000');
  const live = h('input', { id: 'live-tail', type: 'checkbox' });
  const liveLabel = h('label', { class: 'toggle', for: 'live-tail' }, live, h('span', null, 'Live tail'));
  const apply = h('button', { class: 'btn', type: 'button', id: 'log-apply' }, 'Search');
  const events = h('div', { id: 'log-events', class: 'log-events', role: 'log', 'aria-live': 'off' });
  const eventsStatus = h('div', { class: 'log-status muted small', id: 'log-status' });
  const more = h('button', { class: 'btn btn-small', type: 'button', hidden: true }, 'Load more');

  const deleteButton = h('button', { class: 'btn btn-danger-outline', type: 'button' }, 'Delete log group');
  deleteButton.addEventListener('click', () => busy(deleteButton, async () => {
    if (!(await confirmDialog(`Delete log group ${group} and all its events?`, { title: 'Delete log group' }))) return;
    await call('logs', 'DeleteLogGroup', { logGroupName: group });
    toast(`Deleted ${group}`, 'success');
    location.hash = '#/logs';
  }));

  mount(ctx.el,
    pageHeader(group, { crumbs: [['Log groups', '#/logs'], [group]], actions: [deleteButton] }),
    info,
    h('div', { class: 'logs-layout' },
      panel('Log streams', h('div', null, streamsStatus, streamsTable), { className: 'logs-streams' }),
      panel(stream ? h('span', null, 'Events of ', h('code', null, stream), ' ', h('a', { href: groupHref(group), class: 'small' }, '(all streams)')) : 'Events (all streams)', h('div', null,
        h('div', { class: 'toolbar log-toolbar' }, filter, range, apply, liveLabel),
        eventsStatus,
        events,
        h('div', { class: 'toolbar' }, more)), { className: 'logs-events' })));

  // Group facts and streams.
  call('logs', 'DescribeLogGroups', { logGroupNamePrefix: group, limit: 5 }).then((res) => {
    const g = (res.logGroups || []).find((x) => x.logGroupName === group);
    if (!g) return;
    mount(info, facts([
      ['Retention', g.retentionInDays ? `${g.retentionInDays} days` : 'Never expire'],
      ['Stored bytes', fmtBytes(g.storedBytes || 0)],
      ['Created', fmtDate(g.creationTime)],
      ['ARN', h('code', { class: 'small' }, g.arn || '')],
    ]));
  }).catch(() => {});

  async function loadStreams() {
    try {
      const res = await call('logs', 'DescribeLogStreams', { logGroupName: group, orderBy: 'LastEventTime', descending: true, limit: 50 });
      mount(streamsStatus);
      fillRows(streamsTable.querySelector('tbody'), streamCols.length, (res.logStreams || []).map((s) => h('tr', { class: s.logStreamName === stream ? 'selected' : null },
        h('td', { class: 'stream-name' }, h('a', { href: groupHref(group, s.logStreamName), title: s.logStreamName }, s.logStreamName)),
        h('td', { title: fmtDate(s.lastEventTimestamp) }, fmtAgo(s.lastEventTimestamp || s.lastIngestionTime)),
        h('td', null, fmtDate(s.firstEventTimestamp)))), 'No streams.');
    } catch (err) {
      mount(streamsStatus, errorBox(err, loadStreams));
    }
  }

  // Events: a search, then optionally a live tail that polls for new ones.
  const seen = new Set();
  let newest = 0;
  let token;
  let searchStart = 0;
  const MAX_ROWS = 5000;

  function request(extra) {
    const body = { logGroupName: group, limit: 1000, ...extra };
    if (filter.value.trim()) body.filterPattern = filter.value.trim();
    if (stream) body.logStreamNames = [stream];
    return call('logs', 'FilterLogEvents', body);
  }

  function row(e) {
    const streamShort = e.logStreamName.length > 28 ? `…${e.logStreamName.slice(-26)}` : e.logStreamName;
    return h('div', { class: 'log-line', dataset: { id: e.eventId } },
      h('span', { class: 'log-time', title: fmtDate(e.timestamp) }, `${fmtDate(e.timestamp).slice(5, 10)} ${fmtClock(e.timestamp)}`),
      stream ? null : h('a', { class: 'log-stream', href: groupHref(group, e.logStreamName), title: e.logStreamName }, streamShort),
      h('span', { class: 'log-msg' }, e.message.replace(/\n$/, '')));
  }

  function add(list, { prepend = false } = {}) {
    const fresh = list.filter((e) => {
      const id = e.eventId || `${e.logStreamName}/${e.timestamp}/${e.message}`;
      if (seen.has(id)) return false;
      seen.add(id);
      return true;
    });
    if (!fresh.length) return 0;
    fresh.sort((a, b) => a.timestamp - b.timestamp);
    const stick = events.scrollHeight - events.scrollTop - events.clientHeight < 40;
    events.querySelector('.log-empty')?.remove();
    const frag = document.createDocumentFragment();
    for (const e of fresh) {
      frag.appendChild(row(e));
      newest = Math.max(newest, e.timestamp);
    }
    if (prepend) events.prepend(frag);
    else events.appendChild(frag);
    while (events.childElementCount > MAX_ROWS) events.firstElementChild.remove();
    if (stick || live.checked) events.scrollTop = events.scrollHeight;
    return fresh.length;
  }

  async function search() {
    seen.clear();
    newest = 0;
    mount(events, loading('Searching…'));
    const span = Number(range.value);
    searchStart = span ? Date.now() - span : 0;
    try {
      let all = [];
      token = undefined;
      for (let page = 0; page < 10; page++) {
        const res = await request({ ...(searchStart ? { startTime: searchStart } : {}), ...(token ? { nextToken: token } : {}) });
        all = all.concat(res.events || []);
        token = res.nextToken;
        if (!token || all.length >= 2000) break;
      }
      mount(events);
      if (!all.length) mount(events, h('div', { class: 'log-empty muted' }, filter.value.trim() ? 'No events match the filter in this time range.' : 'No events in this time range.'));
      else add(all);
      more.hidden = !token;
      eventsStatus.textContent = `${seen.size} event${seen.size === 1 ? '' : 's'}${token ? ' (more available)' : ''}`;
      events.scrollTop = events.scrollHeight;
    } catch (err) {
      mount(events, errorBox(err, search));
    }
  }

  more.addEventListener('click', () => busy(more, async () => {
    const res = await request({ ...(searchStart ? { startTime: searchStart } : {}), nextToken: token });
    add(res.events || []);
    token = res.nextToken;
    more.hidden = !token;
    eventsStatus.textContent = `${seen.size} events${token ? ' (more available)' : ''}`;
  }));

  async function tail() {
    // Overlap by a few seconds (events can land late) and drop what was seen.
    const start = Math.max(newest - 5000, Date.now() - 60000, searchStart);
    let next;
    let count = 0;
    for (let page = 0; page < 5; page++) {
      const res = await request({ startTime: start, ...(next ? { nextToken: next } : {}) });
      count += add(res.events || []);
      next = res.nextToken;
      if (!next) break;
    }
    eventsStatus.textContent = `Live: ${seen.size} events · last poll ${fmtClock(Date.now(), false)}${count ? ` · ${count} new` : ''}`;
  }

  let stopTail = null;
  live.addEventListener('change', () => {
    stopTail?.();
    stopTail = null;
    if (live.checked) {
      if (!newest) newest = Date.now() - 10000;
      events.querySelector('.log-empty')?.remove();
      eventsStatus.textContent = 'Live tail on…';
      tail().catch(() => {});
      stopTail = ctx.every(1500, tail);
    } else {
      eventsStatus.textContent = `${seen.size} events · live tail stopped`;
    }
  });

  apply.addEventListener('click', () => search());
  filter.addEventListener('keydown', (e) => {
    if (e.key === 'Enter') search();
  });
  range.addEventListener('change', () => search());

  loadStreams();
  ctx.every(10000, loadStreams);
  await search();
}
