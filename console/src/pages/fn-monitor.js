import { h, mount } from '../dom.js';
import { call } from '../api.js';
import { panel, note, errorBox, loading, select, facts } from '../ui.js';
import { timeChart, legend } from '../chart.js';

const ERROR_MARKERS = [/"errorType"/, /\[ERROR\]/, /\tERROR\t/, /Status: error/, /Task timed out/, /Runtime\.(ExitError|OutOfMemory)/];

/** Each invocation in `events` (REPORT lines), with whether its lines show an error. */
export function invocationsOf(events) {
  const byStream = new Map();
  for (const e of events) {
    if (!byStream.has(e.logStreamName)) byStream.set(e.logStreamName, []);
    byStream.get(e.logStreamName).push(e);
  }
  const out = [];
  for (const list of byStream.values()) {
    list.sort((a, b) => a.timestamp - b.timestamp);
    let errored = false;
    for (const e of list) {
      const m = e.message;
      if (m.startsWith('START RequestId:')) errored = false;
      else if (m.startsWith('REPORT RequestId:')) {
        const duration = Number((m.match(/\tDuration: ([\d.]+) ms/) || m.match(/Duration: ([\d.]+) ms/) || [])[1]);
        out.push({ time: e.timestamp, duration: Number.isFinite(duration) ? duration : null, error: errored });
        errored = false;
      } else if (ERROR_MARKERS.some((re) => re.test(m))) errored = true;
    }
  }
  return out;
}

export function monitorTab(pane, fn) {
  const range = select({ id: 'monitor-range', 'aria-label': 'Time range' }, [['60', 'Last hour'], ['180', 'Last 3 hours'], ['15', 'Last 15 minutes']], '60');
  const refresh = h('button', { class: 'btn', type: 'button', id: 'monitor-refresh' }, 'Refresh');
  const body = h('div', null, loading());
  let last = 0;
  let running = false;

  async function load(force = false) {
    if (running || (!force && Date.now() - last < 5000)) return;
    running = true;
    last = Date.now();
    const minutes = Number(range.value);
    const stepMs = minutes > 60 ? 3 * 60000 : 60000;
    const now = Date.now();
    const end = Math.floor(now / stepMs) * stepMs + stepMs;
    const start = end - Math.ceil((minutes * 60000) / stepMs) * stepMs;
    const group = fn.config.LoggingConfig?.LogGroup || `/aws/lambda/${fn.name}`;
    const events = [];
    let truncated = false;
    try {
      let token;
      for (let page = 0; page < 30; page++) {
        const res = await call('logs', 'FilterLogEvents', { logGroupName: group, startTime: start, endTime: now + 1000, limit: 10000, ...(token ? { nextToken: token } : {}) });
        events.push(...(res.events || []));
        token = res.nextToken;
        if (!token) break;
        if (page === 29) truncated = true;
      }
    } catch (err) {
      running = false;
      if (err.code === 'ResourceNotFoundException') {
        render(start, stepMs, [], group, 'The function has no log group yet: it has not run, or its role may not write logs.');
        return;
      }
      mount(body, errorBox(err, () => load(true)));
      return;
    }
    running = false;
    render(start, stepMs, invocationsOf(events), group, truncated ? 'Only the first events of a busy period are counted.' : '');
  }

  function render(start, stepMs, invocations, group, message) {
    const n = Math.round((Math.floor(Date.now() / stepMs) * stepMs + stepMs - start) / stepMs);
    const times = Array.from({ length: n }, (_, i) => start + i * stepMs);
    const count = new Array(n).fill(0);
    const errors = new Array(n).fill(0);
    const sum = new Array(n).fill(0);
    const durations = new Array(n).fill(0);
    const max = new Array(n).fill(null);
    for (const inv of invocations) {
      const i = Math.floor((inv.time - start) / stepMs);
      if (i < 0 || i >= n) continue;
      count[i]++;
      if (inv.error) errors[i]++;
      if (inv.duration != null) {
        sum[i] += inv.duration;
        durations[i]++;
        max[i] = Math.max(max[i] ?? 0, inv.duration);
      }
    }
    const avg = sum.map((v, i) => (durations[i] ? v / durations[i] : null));
    const total = count.reduce((a, b) => a + b, 0);
    const totalErrors = errors.reduce((a, b) => a + b, 0);
    const allDur = invocations.filter((i) => i.duration != null).map((i) => i.duration);
    const invSeries = [
      { label: 'Invocations', values: count, color: '#0972d3', kind: 'bar' },
      { label: 'Errors', values: errors, color: '#d91515', kind: 'bar' },
    ];
    const durSeries = [
      { label: 'Average', values: avg, color: '#0972d3', kind: 'line' },
      { label: 'Maximum', values: max, color: '#e07f00', kind: 'line' },
    ];
    mount(body,
      message ? note(message) : null,
      facts([
        ['Invocations', String(total)],
        ['Errors', String(totalErrors)],
        ['Success rate', total ? `${(((total - totalErrors) / total) * 100).toFixed(1)} %` : '—'],
        ['Average duration', allDur.length ? `${(allDur.reduce((a, b) => a + b, 0) / allDur.length).toFixed(1)} ms` : '—'],
        ['Log group', h('a', { href: `#/logs/${encodeURIComponent(group)}` }, group)],
      ]),
      h('div', { class: 'charts' },
        panel(`Invocations and errors (per ${stepMs / 60000} min)`, h('div', null, timeChart({ id: 'chart-invocations', times, step: stepMs, series: invSeries, title: 'Invocations and errors', whole: true }), legend(invSeries))),
        panel('Duration (ms)', h('div', null, timeChart({ id: 'chart-duration', times, step: stepMs, series: durSeries, unit: 'ms', title: 'Duration' }), legend(durSeries)))),
      h('p', { class: 'muted small' }, 'Counted from the REPORT lines in the function\u2019s log group; an invocation is an error when its log shows one (errorType, [ERROR], a timeout or a crash).'));
  }

  refresh.addEventListener('click', () => load(true));
  range.addEventListener('change', () => load(true));
  mount(pane, h('div', { class: 'toolbar' }, range, refresh, h('div', { class: 'spacer' })), body);
  pane.refresh = () => load(false);
  load(true);
  fn.ctx.every(30000, () => (pane.hidden ? null : load(true)));
}
