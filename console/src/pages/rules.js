import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import {
  call, callAll, session, listQueues, listFunctions, listTopicArns, allowQueueSend, allowTopicPublish, allowInvoke,
} from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, facts, badge, select, copyButton, resourceHref } from '../ui.js';
import { arnTail, plural, prettyJson } from '../util.js';
import { createEditor } from '../editor.js';

const DEFAULT_BUS = 'default';
// Rule, bus and target ids: letters, digits, dots, hyphens and underscores.
const NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;

const rulesHref = (bus) => (bus === DEFAULT_BUS ? '#/rules' : `#/rules?bus=${encodeURIComponent(bus)}`);
const ruleHref = (bus, name) => `#/rules/${encodeURIComponent(bus)}/${encodeURIComponent(name)}`;
const listBuses = () => callAll('events', 'ListEventBuses', {}, 'EventBuses', 'NextToken');
const listRules = (bus) => callAll('events', 'ListRules', { EventBusName: bus }, 'Rules', 'NextToken');
const listTargets = (bus, name) => callAll('events', 'ListTargetsByRule', { Rule: name, EventBusName: bus }, 'Targets', 'NextToken');

const SAMPLE_PATTERN = '{\n  "source": ["com.example.orders"],\n  "detail-type": ["Order Placed"]\n}';
const SAMPLE_DETAIL = { orderId: 'o-1001', amount: 42 };

/** An event as EventBridge delivers it, for testing patterns against. */
function sampleEvent(source = 'com.example.orders', detailType = 'Order Placed') {
  return JSON.stringify({
    version: '0',
    id: '6a7e8feb-b491-4cf7-a9f1-bf3703467718',
    'detail-type': detailType,
    source,
    account: session.current.account,
    time: new Date().toISOString().replace(/\.\d+Z$/, 'Z'),
    region: session.current.region,
    resources: [],
    detail: SAMPLE_DETAIL,
  }, null, 2);
}

/** JSON text parsed, or an error that says which text is not JSON. */
function parseJson(textValue, what) {
  try {
    return JSON.parse(textValue);
  } catch (err) {
    throw new Error(`The ${what} is not valid JSON: ${err.message}`);
  }
}

/** A pattern as stored: on one line, so that it reads well in lists. */
const compact = (pattern) => JSON.stringify(parseJson(pattern, 'pattern'));

/** `source = a | b · detail.{orderId}`: a pattern's fields at a glance. */
function patternSummary(pattern) {
  let parsed;
  try {
    parsed = JSON.parse(pattern);
  } catch {
    return pattern || '';
  }
  return Object.entries(parsed).map(([key, value]) => (Array.isArray(value)
    ? `${key} = ${value.map((v) => (typeof v === 'string' ? v : JSON.stringify(v))).join(' | ')}`
    : `${key}.{${Object.keys(value || {}).join(', ')}}`)).join(' · ');
}

/** The first string a pattern's field accepts (to prefill a test event that matches). */
function firstValue(pattern, key) {
  try {
    return JSON.parse(pattern)[key]?.find((v) => typeof v === 'string');
  } catch {
    return undefined;
  }
}

const stateBadge = (state) => badge(state === 'ENABLED' ? 'Enabled' : 'Disabled', state === 'ENABLED' ? 'ok' : 'muted');

/** Asks, then deletes the rule, removing its targets first (as EventBridge requires). */
async function deleteRule(bus, name) {
  const targets = await listTargets(bus, name);
  const message = targets.length
    ? `Rule ${name} still sends to ${plural(targets.length, 'target')}. Remove ${targets.length === 1 ? 'it' : 'them'} and delete the rule?`
    : `Delete rule ${name}?`;
  if (!(await confirmDialog(message, { title: 'Delete rule', action: targets.length ? 'Remove targets and delete' : 'Delete' }))) return false;
  if (targets.length) await call('events', 'RemoveTargets', { Rule: name, EventBusName: bus, Ids: targets.map((t) => t.Id) });
  await call('events', 'DeleteRule', { Name: name, EventBusName: bus });
  toast(`Deleted rule ${name}`, 'success');
  return true;
}

export async function rulesPage(ctx) {
  const bus = ctx.query.get('bus') || DEFAULT_BUS;
  const cols = ['Name', 'State', 'Pattern', 'Targets', 'Description', ''];
  const tableEl = table('rules-table', cols, []);
  const status = h('div', null, loading());
  const busSelect = h('select', { id: 'rules-bus', 'aria-label': 'Event bus' }, h('option', { value: bus }, bus));
  busSelect.addEventListener('change', () => { location.hash = rulesHref(busSelect.value); });
  const createBus = h('button', { id: 'bus-create', class: 'btn', type: 'button' }, 'Create bus');
  const deleteBus = h('button', { id: 'bus-delete', class: 'btn btn-danger-outline', type: 'button', hidden: bus === DEFAULT_BUS }, 'Delete bus');
  const create = h('a', { id: 'rule-create', class: 'btn btn-primary', href: `#/rules/new?bus=${encodeURIComponent(bus)}` }, 'Create rule');

  async function load() {
    try {
      const [buses, rules] = await Promise.all([listBuses(), listRules(bus)]);
      mount(busSelect, buses.map((b) => h('option', { value: b.Name, selected: b.Name === bus }, b.Name)));
      const counts = await Promise.all(rules.map((r) => listTargets(bus, r.Name).then((t) => t.length, () => '—')));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, rules.map((r, i) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${r.Name}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (await deleteRule(bus, r.Name)) await load();
        }));
        return h('tr', { dataset: { rule: r.Name } },
          h('td', null, h('a', { href: ruleHref(bus, r.Name), class: 'strong' }, r.Name)),
          h('td', null, stateBadge(r.State)),
          h('td', { class: 'rule-pattern' }, h('code', { class: 'small', title: r.EventPattern }, patternSummary(r.EventPattern))),
          h('td', { class: 'num' }, counts[i]),
          h('td', null, r.Description || h('span', { class: 'muted' }, '—')),
          h('td', { class: 'cell-actions' }, del));
      }), `No rules on ${bus} yet: events put on it go nowhere.`);
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  createBus.addEventListener('click', () => {
    const name = h('input', { id: 'bus-name', placeholder: 'orders', spellcheck: 'false', autocomplete: 'off', maxlength: 64 });
    const description = h('input', { id: 'bus-description', placeholder: 'Optional', maxlength: 512 });
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'bus-create-submit' }, 'Create');
    const close = modal('Create event bus', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim();
          if (!NAME_RE.test(n)) {
            error.textContent = 'Bus names are up to 64 letters, digits, dots, hyphens and underscores.';
            return;
          }
          try {
            await call('events', 'CreateEventBus', { Name: n, Description: description.value.trim() || undefined });
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created event bus ${n}`, 'success');
          location.hash = rulesHref(n);
        });
      },
    }, field('Bus name', name), field(['Description ', h('span', { class: 'optional' }, '(optional)')], description),
    error, h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  deleteBus.addEventListener('click', () => busy(deleteBus, async () => {
    if (!(await confirmDialog(`Delete event bus ${bus}?`, { title: 'Delete event bus' }))) return;
    await call('events', 'DeleteEventBus', { Name: bus });
    toast(`Deleted event bus ${bus}`, 'success');
    location.hash = rulesHref(DEFAULT_BUS);
  }));

  mount(ctx.el,
    pageHeader('Rules', {
      sub: 'EventBridge rules: events put on a bus go to the targets of each enabled rule whose pattern they match.',
      actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, load) }, 'Refresh'), create],
    }),
    h('div', { class: 'inline-group bus-bar' }, field('Event bus', busSelect), createBus, deleteBus),
    status, tableEl);
  await load();
}

/**
 * The pattern editor and, beside it, a sample event checked against it with
 * TestEventPattern. `value()` is the pattern being edited.
 */
function patternEditor(ctx, pattern) {
  const box = h('div', { id: 'rule-pattern', class: 'editor editor-pattern' });
  const sample = h('textarea', {
    id: 'pattern-event', class: 'code-area', rows: 16, spellcheck: 'false',
    value: sampleEvent(firstValue(pattern, 'source'), firstValue(pattern, 'detail-type')),
  });
  const result = h('span', { id: 'pattern-result', role: 'status' });
  const test = h('button', { id: 'pattern-test', class: 'btn', type: 'button' }, 'Test pattern');
  const value = () => box.editor?.getValue() ?? pattern;
  test.addEventListener('click', () => busy(test, async () => {
    mount(result);
    try {
      parseJson(value(), 'pattern');
      parseJson(sample.value, 'sample event');
      const { Result: matched } = await call('events', 'TestEventPattern', { EventPattern: value(), Event: sample.value });
      mount(result, matched ? badge('Matches', 'ok') : badge('No match', 'bad'));
    } catch (err) {
      mount(result, h('span', { class: 'text-bad pattern-error' }, err.message));
    }
  }));
  createEditor(box, { doc: pattern, language: 'json' }).then((editor) => {
    if (ctx.alive) ctx.onCleanup(() => editor.destroy());
    else editor.destroy();
  }, (err) => mount(box, errorBox(err)));
  const el = h('div', { class: 'grid-2' },
    field('Event pattern', box, 'Fields of the event, each with the values it may have.'),
    h('div', null,
      field('Sample event', sample),
      h('div', { class: 'inline-group pattern-check' }, test, result)));
  return { el, value };
}

export async function createRulePage(ctx) {
  const bus = ctx.query.get('bus') || DEFAULT_BUS;
  const name = h('input', { id: 'rule-name', placeholder: 'order-placed', spellcheck: 'false', autocomplete: 'off', maxlength: 64 });
  const description = h('input', { id: 'rule-description', placeholder: 'Optional', maxlength: 512 });
  const enabled = h('input', { type: 'checkbox', id: 'rule-enabled', checked: true });
  const pattern = patternEditor(ctx, SAMPLE_PATTERN);
  const error = h('div', { class: 'form-error', role: 'alert' });
  const submit = h('button', { id: 'rule-create-submit', class: 'btn btn-primary', type: 'submit' }, 'Create rule');

  mount(ctx.el,
    pageHeader('Create rule', { crumbs: [['Rules', rulesHref(bus)], [bus, rulesHref(bus)], ['Create']] }),
    h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          error.textContent = '';
          const n = name.value.trim();
          try {
            if (!NAME_RE.test(n)) throw new Error('Rule names are up to 64 letters, digits, dots, hyphens and underscores.');
            await call('events', 'PutRule', {
              Name: n,
              EventBusName: bus,
              EventPattern: compact(pattern.value()),
              State: enabled.checked ? 'ENABLED' : 'DISABLED',
              Description: description.value.trim() || undefined,
            });
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          toast(`Created rule ${n}: add its targets next`, 'success');
          location.hash = ruleHref(bus, n);
        });
      },
    },
    panel('Rule', h('div', null,
      h('div', { class: 'grid-2' }, field('Name', name), field(['Description ', h('span', { class: 'optional' }, '(optional)')], description)),
      h('label', { class: 'inline-label' }, enabled, ` Enabled: matches events put on ${bus} from now on`))),
    panel('Event pattern', pattern.el),
    error,
    h('div', { class: 'form-actions' }, h('a', { class: 'btn', href: rulesHref(bus) }, 'Cancel'), submit)));
  name.focus();
}

export async function rulePage(ctx) {
  const [bus, name] = ctx.params;
  const head = h('div');
  const info = h('div', null, loading());
  mount(ctx.el, head, info);

  let rule;
  try {
    rule = await call('events', 'DescribeRule', { Name: name, EventBusName: bus });
  } catch (err) {
    mount(head, pageHeader(name, { crumbs: [['Rules', rulesHref(DEFAULT_BUS)], [bus, rulesHref(bus)], [name]] }));
    mount(info, errorBox(err, () => rulePage(ctx)));
    return;
  }
  if (!ctx.alive) return;

  const toggle = h('button', { id: 'rule-toggle', class: 'btn', type: 'button' });
  toggle.addEventListener('click', () => busy(toggle, async () => {
    const enable = rule.State !== 'ENABLED';
    await call('events', enable ? 'EnableRule' : 'DisableRule', { Name: name, EventBusName: bus });
    toast(`${enable ? 'Enabled' : 'Disabled'} ${name}`, 'success');
    await loadInfo();
  }));
  const remove = h('button', { id: 'rule-delete', class: 'btn btn-danger-outline', type: 'button' }, 'Delete rule');
  remove.addEventListener('click', () => busy(remove, async () => {
    if (await deleteRule(bus, name)) location.hash = rulesHref(bus);
  }));
  mount(head, pageHeader(name, {
    crumbs: [['Rules', rulesHref(DEFAULT_BUS)], [bus, rulesHref(bus)], [name]],
    sub: rule.Description,
    actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh'), toggle, remove],
  }));

  function showInfo() {
    toggle.textContent = rule.State === 'ENABLED' ? 'Disable' : 'Enable';
    mount(info, facts([
      ['State', stateBadge(rule.State)],
      ['Event bus', h('a', { href: rulesHref(bus) }, bus)],
      ['ARN', h('span', { class: 'arn' }, h('code', { class: 'small' }, rule.Arn), copyButton(rule.Arn))],
    ]));
  }
  async function loadInfo() {
    try {
      rule = await call('events', 'DescribeRule', { Name: name, EventBusName: bus });
      showInfo();
    } catch (err) {
      mount(info, errorBox(err, loadInfo));
    }
  }

  const pattern = patternEditor(ctx, prettyJson(rule.EventPattern || '{}'));
  const save = h('button', { id: 'rule-save', class: 'btn btn-primary', type: 'button' }, 'Save pattern');
  save.addEventListener('click', () => busy(save, async () => {
    // PutRule replaces the rule's settings (not its targets): send the others as they are.
    await call('events', 'PutRule', { Name: name, EventBusName: bus, EventPattern: compact(pattern.value()), State: rule.State, Description: rule.Description });
    toast(`Saved the pattern of ${name}`, 'success');
    await loadInfo();
  }));

  const targets = targetsPanel(bus, name, () => rule.Arn);
  mount(ctx.el, head, info,
    panel('Event pattern', pattern.el, { actions: [save], id: 'pattern-panel' }),
    targets.el,
    sendPanel(bus, rule.EventPattern));
  showInfo();

  const refresh = () => Promise.all([loadInfo(), targets.load()]);
  ctx.every(10000, refresh);
  await targets.load();
}

// What a target can be: the listing to choose one from, as [ARN, name] (and the queue,
// whose URL its grant needs), and the grant that lets the rule reach it.
const TARGET_KINDS = {
  sqs: {
    label: 'SQS queue',
    noun: 'queue',
    list: async () => (await listQueues()).map((q) => [q.arn, q.name, q]),
    grantText: 'Allow the rule to send to the queue (a statement in its access policy)',
    grant: (choice, rule) => allowQueueSend(choice[2], 'events', rule),
  },
  lambda: {
    label: 'Lambda function',
    noun: 'function',
    list: async () => (await listFunctions()).map((f) => [f.FunctionArn, f.FunctionName]),
    grantText: 'Allow the rule to invoke the function (a statement in its resource policy)',
    grant: (choice, rule) => allowInvoke(choice[0], 'events', rule),
  },
  sns: {
    label: 'SNS topic',
    noun: 'topic',
    list: async () => (await listTopicArns()).map((arn) => [arn, arnTail(arn)]),
    grantText: 'Allow the rule to publish to the topic (a statement in its access policy)',
    grant: (choice, rule) => allowTopicPublish(choice[0], 'events', rule),
  },
};

const INPUTS = [['', 'The matched event'], ['path', 'Part of it (InputPath)'], ['transformer', 'Input transformer'], ['constant', 'Constant JSON (Input)']];

/** What a target is sent, as [kind, detail]. */
function inputOf(target) {
  if (target.InputTransformer) return ['Input transformer', target.InputTransformer.InputTemplate];
  if (target.InputPath) return ['InputPath', target.InputPath];
  if (target.Input != null) return ['Constant', target.Input];
  return ['Matched event', null];
}

function targetsPanel(bus, rule, ruleArn) {
  const cols = ['Id', 'Type', 'Target', 'Input', ''];
  const tableEl = table('targets-table', cols, []);
  const status = h('div');
  const kind = select({ id: 'target-type' }, Object.entries(TARGET_KINDS).map(([k, v]) => [k, v.label]), 'sqs');
  const resource = h('select', { id: 'target-arn', 'aria-label': 'Target' });
  const resourceLabel = h('label', { for: 'target-arn' });
  const id = h('input', { id: 'target-id', placeholder: 'Its name', spellcheck: 'false', maxlength: 64 });
  const input = select({ id: 'target-input' }, INPUTS, '');
  const inputPath = h('input', { id: 'target-input-path', placeholder: '$.detail', spellcheck: 'false' });
  const pathsMap = h('textarea', { id: 'target-paths-map', class: 'code-area', rows: 3, spellcheck: 'false', placeholder: '{"order": "$.detail.orderId"}' });
  const template = h('textarea', { id: 'target-template', class: 'code-area', rows: 3, spellcheck: 'false', placeholder: '"Order <order> was placed"' });
  const constant = h('textarea', { id: 'target-input-json', class: 'code-area', rows: 3, spellcheck: 'false', placeholder: '{"hello": "target"}' });
  const inputFields = {
    path: field('InputPath', inputPath, 'A JSON path into the event: only that part is sent.'),
    transformer: h('div', { class: 'grid-2' },
      field('Input paths', pathsMap, 'Names for JSON paths into the event.'),
      field('Input template', template, 'What is sent, with <name> replaced by what its path found.')),
    constant: field('Input', constant, 'Sent instead of the event.'),
  };
  const grant = h('input', { type: 'checkbox', id: 'target-grant', checked: true });
  const grantText = h('span');
  const add = h('button', { id: 'target-add', class: 'btn btn-primary', type: 'button' }, 'Add target');
  let choices = [];

  async function showChoices() {
    const k = TARGET_KINDS[kind.value];
    grantText.textContent = k.grantText;
    resourceLabel.textContent = k.noun[0].toUpperCase() + k.noun.slice(1);
    mount(resource, h('option', { value: '' }, 'Loading…'));
    try {
      choices = await k.list();
      mount(resource, choices.length
        ? choices.map(([arn, label]) => h('option', { value: arn }, label))
        : h('option', { value: '' }, `No ${k.noun}s: create one first`));
    } catch (err) {
      mount(resource, h('option', { value: '' }, 'Unavailable'));
      toast(`Listing failed: ${err.message}`, 'error');
    }
  }
  kind.addEventListener('change', showChoices);
  showChoices();
  const showInput = () => Object.entries(inputFields).forEach(([k, el]) => { el.hidden = k !== input.value; });
  input.addEventListener('change', showInput);
  showInput();

  /** The target the form describes. */
  function target() {
    const choice = choices.find(([arn]) => arn === resource.value);
    if (!choice) throw new Error(`Choose a ${TARGET_KINDS[kind.value].noun}.`);
    const t = { Id: id.value.trim() || choice[1].slice(0, 64), Arn: choice[0] };
    if (!NAME_RE.test(t.Id)) throw new Error('Target ids are up to 64 letters, digits, dots, hyphens and underscores.');
    if (input.value === 'path') t.InputPath = inputPath.value.trim() || '$';
    if (input.value === 'constant') t.Input = JSON.stringify(parseJson(constant.value, 'input'));
    if (input.value === 'transformer') {
      if (!template.value.trim()) throw new Error('Write the input template.');
      t.InputTransformer = { InputPathsMap: pathsMap.value.trim() ? parseJson(pathsMap.value, 'input paths map') : {}, InputTemplate: template.value };
    }
    return [t, choice];
  }

  async function load() {
    try {
      const list = await listTargets(bus, rule);
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, list.map((t) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Remove');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Stop sending ${rule}'s events to ${arnTail(t.Arn)}?`, { title: 'Remove target', action: 'Remove' }))) return;
          await call('events', 'RemoveTargets', { Rule: rule, EventBusName: bus, Ids: [t.Id] });
          toast(`Removed target ${t.Id}`, 'success');
          await load();
        }));
        const href = resourceHref(t.Arn);
        const [inputKind, detail] = inputOf(t);
        return h('tr', { dataset: { target: t.Id } },
          h('td', null, h('code', { class: 'small' }, t.Id)),
          h('td', null, badge(TARGET_KINDS[t.Arn.split(':')[2]]?.label || t.Arn.split(':')[2], 'muted')),
          h('td', null, href ? h('a', { href, title: t.Arn }, arnTail(t.Arn)) : h('code', { class: 'small' }, t.Arn)),
          h('td', null, inputKind, detail ? [' ', h('code', { class: 'small' }, detail)] : null),
          h('td', { class: 'cell-actions' }, del));
      }), 'No targets: events this rule matches go nowhere.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  add.addEventListener('click', () => busy(add, async () => {
    const [t, choice] = target();
    if (grant.checked) await TARGET_KINDS[kind.value].grant(choice, ruleArn());
    const { FailedEntries: failed = [] } = await call('events', 'PutTargets', { Rule: rule, EventBusName: bus, Targets: [t] });
    if (failed.length) throw new Error(`${failed[0].ErrorCode}: ${failed[0].ErrorMessage}`);
    id.value = '';
    toast(`Added target ${t.Id}`, 'success');
    await load();
  }));

  const el = panel('Targets', h('div', null,
    h('div', { class: 'inline-form' }, field('Type', kind), h('div', { class: 'field target-resource' }, resourceLabel, resource), field(['Id ', h('span', { class: 'optional' }, '(optional)')], id), field('Input', input)),
    Object.values(inputFields),
    h('div', { class: 'inline-group target-options' }, h('label', { class: 'inline-label' }, grant, ' ', grantText), h('span', { class: 'spacer' }), add),
    status, tableEl), { id: 'targets-panel' });
  return { el, load };
}

/** PutEvents of one event on the rule's bus, prefilled to match the rule's pattern. */
function sendPanel(bus, pattern) {
  const source = h('input', { id: 'event-source', spellcheck: 'false', value: firstValue(pattern, 'source') || 'com.example.orders' });
  const detailType = h('input', { id: 'event-detail-type', spellcheck: 'false', value: firstValue(pattern, 'detail-type') || 'Order Placed' });
  const detail = h('textarea', { id: 'event-detail', class: 'code-area', rows: 5, spellcheck: 'false', value: JSON.stringify(SAMPLE_DETAIL, null, 2) });
  const sent = h('span', { id: 'event-status', class: 'small', role: 'status' });
  const submit = h('button', { id: 'event-send', class: 'btn btn-primary', type: 'button' }, 'Send test event');
  submit.addEventListener('click', () => busy(submit, async () => {
    mount(sent);
    try {
      parseJson(detail.value, 'detail');
      const { Entries: [entry] } = await call('events', 'PutEvents', {
        Entries: [{ Source: source.value.trim(), DetailType: detailType.value.trim(), Detail: detail.value, EventBusName: bus }],
      });
      mount(sent, entry.EventId
        ? h('span', { class: 'muted' }, 'Sent event ', h('code', null, entry.EventId))
        : h('span', { class: 'text-bad' }, `${entry.ErrorCode}: ${entry.ErrorMessage}`));
    } catch (err) {
      mount(sent, h('span', { class: 'text-bad' }, err.message));
    }
  }));
  return panel('Send test event', h('div', null,
    h('div', { class: 'grid-2' }, field('Source', source), field('Detail type', detailType)),
    field('Detail', detail),
    h('div', { class: 'inline-group' }, submit, sent),
    h('div', { class: 'help' }, `Put on ${bus}: every enabled rule there whose pattern it matches sends it to its targets.`)), { id: 'send-event-panel' });
}
