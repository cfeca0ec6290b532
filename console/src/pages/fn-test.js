import { h, mount, toast, busy } from '../dom.js';
import { aws, lambdaAll, fnPath } from '../api.js';
import { panel, field } from '../ui.js';
import { loadTestEvents, saveTestEvents } from '../blueprints.js';
import { base64ToText, prettyJson } from '../util.js';

const DEFAULT_EVENT = '{\n  "key1": "value1",\n  "key2": "value2",\n  "key3": "value3"\n}';

/** The numbers of a REPORT line: Duration, Billed Duration, Max Memory Used, ... */
export function parseReport(log) {
  const line = log.split('\n').reverse().find((l) => l.startsWith('REPORT '));
  if (!line) return null;
  const out = {};
  for (const [, key, value] of line.matchAll(/([A-Za-z ]+?):\s*([^\t]+?)(?=\t|$)/g)) {
    out[key.trim()] = value.trim();
  }
  return out;
}

export function testTab(pane, fn) {
  const saved = loadTestEvents(fn.name);
  const names = () => Object.keys(saved.events).sort();

  const eventSelect = h('select', { id: 'test-event-select', 'aria-label': 'Saved events' });
  const eventName = h('input', { id: 'test-event-name', placeholder: 'event name', maxlength: 64, spellcheck: 'false' });
  const eventText = h('textarea', { id: 'test-event', class: 'code-area', rows: 12, spellcheck: 'false', 'aria-label': 'Event JSON' });
  const eventError = h('div', { class: 'form-error', role: 'alert' });
  const qualifier = h('select', { id: 'test-qualifier', 'aria-label': 'Version or alias' }, h('option', { value: '' }, '$LATEST'));
  const run = h('button', { id: 'test-run', class: 'btn btn-primary', type: 'button' }, 'Test');
  const save = h('button', { id: 'test-save', class: 'btn', type: 'button' }, 'Save');
  const remove = h('button', { id: 'test-delete', class: 'btn btn-ghost', type: 'button' }, 'Delete');
  const format = h('button', { class: 'btn btn-ghost', type: 'button' }, 'Format');
  const results = h('div', { id: 'test-results' });

  function fillSelect(selected) {
    mount(eventSelect,
      h('option', { value: '' }, names().length ? '— new event —' : 'No saved events'),
      names().map((n) => h('option', { value: n, selected: n === selected }, n)));
    eventSelect.value = selected && saved.events[selected] != null ? selected : '';
  }

  function choose(n) {
    saved.selected = n;
    saveTestEvents(fn.name, saved);
    eventName.value = n;
    if (n && saved.events[n] != null) eventText.value = saved.events[n];
    eventError.textContent = '';
  }

  eventSelect.addEventListener('change', () => {
    const n = eventSelect.value;
    if (!n) {
      eventName.value = '';
      eventText.value = DEFAULT_EVENT;
      return;
    }
    choose(n);
  });

  save.addEventListener('click', () => {
    const n = eventName.value.trim() || 'event';
    try {
      JSON.parse(eventText.value);
    } catch (err) {
      eventError.textContent = `Not valid JSON: ${err.message}`;
      return;
    }
    saved.events[n] = eventText.value;
    saved.selected = n;
    saveTestEvents(fn.name, saved);
    fillSelect(n);
    eventName.value = n;
    toast(`Saved test event ${n}`, 'success');
  });

  remove.addEventListener('click', () => {
    const n = eventSelect.value;
    if (!n) return;
    delete saved.events[n];
    saved.selected = names()[0] || '';
    saveTestEvents(fn.name, saved);
    fillSelect(saved.selected);
    if (saved.selected) choose(saved.selected);
    else {
      eventName.value = '';
      eventText.value = DEFAULT_EVENT;
    }
  });

  format.addEventListener('click', () => {
    try {
      eventText.value = JSON.stringify(JSON.parse(eventText.value), null, 2);
      eventError.textContent = '';
    } catch (err) {
      eventError.textContent = `Not valid JSON: ${err.message}`;
    }
  });

  run.addEventListener('click', () => busy(run, async () => {
    eventError.textContent = '';
    const body = eventText.value.trim() || '{}';
    try {
      JSON.parse(body);
    } catch (err) {
      eventError.textContent = `The event is not valid JSON: ${err.message}`;
      return;
    }
    // Keep edits to a saved event, as the AWS console asks you to; here, silently.
    if (eventSelect.value && saved.events[eventSelect.value] !== eventText.value) {
      saved.events[eventSelect.value] = eventText.value;
      saveTestEvents(fn.name, saved);
    }
    mount(results, h('div', { class: 'loading' }, h('span', { class: 'spinner' }), 'Invoking…'));
    const started = performance.now();
    let res;
    try {
      res = await aws('lambda', 'POST', fnPath(fn.name, '/invocations'), {
        query: qualifier.value ? { Qualifier: qualifier.value } : undefined,
        headers: {
          'content-type': 'application/json',
          'x-amz-invocation-type': 'RequestResponse',
          'x-amz-log-type': 'Tail',
        },
        body,
      });
    } catch (err) {
      showResult({ failed: true, payload: err.message, log: '', report: null, requestId: '', roundTrip: performance.now() - started, apiError: err.code || 'Error' });
      return;
    }
    const payload = await res.text();
    const logB64 = res.headers.get('x-amz-log-result');
    let log = '';
    try {
      log = logB64 ? base64ToText(logB64) : '';
    } catch {
      log = '(the log tail could not be decoded)';
    }
    showResult({
      failed: !!res.headers.get('x-amz-function-error'),
      functionError: res.headers.get('x-amz-function-error'),
      payload,
      log,
      report: parseReport(log),
      requestId: res.headers.get('x-amzn-requestid') || '',
      version: res.headers.get('x-amz-executed-version') || '',
      roundTrip: performance.now() - started,
    });
  }));

  function showResult(r) {
    const report = r.report || {};
    const reqId = r.requestId || (r.log.match(/RequestId: ([0-9a-f-]{36})/) || [])[1] || '';
    const item = (label, value) => h('div', { class: 'fact' }, h('dt', null, label), h('dd', null, value ?? '—'));
    mount(results, h('div', { class: ['test-result', r.failed ? 'is-failed' : 'is-ok'] },
      h('div', { class: 'test-result-head' },
        h('span', { class: ['result-icon', r.failed ? 'bad' : 'ok'], 'aria-hidden': 'true' }, r.failed ? '✕' : '✓'),
        h('span', null, 'Execution result: '),
        h('strong', { id: 'test-status', class: r.failed ? 'text-bad' : 'text-ok' }, r.failed ? 'Failed' : 'Succeeded'),
        r.functionError ? h('span', { class: 'muted' }, ` (${r.functionError} error)`) : null,
        r.apiError ? h('span', { class: 'muted' }, ` (${r.apiError})`) : null),
      h('dl', { id: 'test-summary', class: 'facts facts-compact' },
        item('Duration', report.Duration),
        item('Billed Duration', report['Billed Duration']),
        item('Max Memory Used', report['Max Memory Used']),
        item('Memory Size', report['Memory Size']),
        report['Init Duration'] ? item('Init Duration', report['Init Duration']) : null,
        item('Request ID', reqId ? h('code', null, reqId) : '—'),
        r.version ? item('Executed version', r.version) : null,
        item('Round trip', `${r.roundTrip.toFixed(0)} ms`)),
      h('h3', null, r.apiError ? 'Error' : 'Response'),
      h('pre', { id: 'test-result', class: 'output' }, prettyJson(r.payload) || '(empty)'),
      h('h3', null, 'Log output ', h('span', { class: 'muted small' }, '(the last 4 KB, as Lambda\u2019s LogType Tail returns it)')),
      h('pre', { id: 'test-log', class: 'output output-log' }, r.log || '(no log output)'),
      h('div', { class: 'small' }, h('a', { href: `#/logs/${encodeURIComponent(fn.config.LoggingConfig?.LogGroup || `/aws/lambda/${fn.name}`)}` }, 'All logs of this function →'))));
  }

  // Versions and aliases to invoke, filled in the background.
  Promise.all([
    lambdaAll(fnPath(fn.name, '/versions'), 'Versions').catch(() => []),
    lambdaAll(fnPath(fn.name, '/aliases'), 'Aliases').catch(() => []),
  ]).then(([versions, aliases]) => {
    for (const v of versions) if (v.Version !== '$LATEST') qualifier.appendChild(h('option', { value: v.Version }, `version ${v.Version}`));
    for (const a of aliases) qualifier.appendChild(h('option', { value: a.Name }, `alias ${a.Name}`));
  });

  fillSelect(saved.selected);
  if (saved.selected && saved.events[saved.selected] != null) choose(saved.selected);
  else eventText.value = DEFAULT_EVENT;

  mount(pane,
    panel('Test event', h('div', null,
      h('div', { class: 'toolbar' },
        field('Saved event', eventSelect),
        field('Name', eventName),
        h('div', { class: 'toolbar-buttons' }, save, remove, format)),
      eventText,
      eventError,
      h('div', { class: 'form-actions' }, h('label', { class: 'inline-label' }, 'Invoke ', qualifier), run)),
    { actions: [h('span', { class: 'muted small' }, 'Saved events are kept in this browser.')] }),
    results);
}
