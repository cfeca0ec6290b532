import { h, mount, toast, busy, confirmDialog } from '../dom.js';
import { lambda, lambdaAll, fnPath, s3Do, s3Xml, all, kids, text, query, scheduler, session, listRoles, listQueues, addPermission } from '../api.js';
import { panel, table, fillRows, field, select, errorBox, loading, copyButton, badge, note } from '../ui.js';
import { randomId, prettyJson, arnTail, fmtAgo, fmtDate } from '../util.js';
import { queueHref } from './queues.js';

const urlPath = (name) => `/2021-10-31/functions/${encodeURIComponent(name)}/url`;

/** The function's resource policy statements ([] when it has none). */
async function policyStatements(name) {
  try {
    const res = await lambda('GET', fnPath(name, '/policy'));
    return JSON.parse(res.Policy || '{}').Statement || [];
  } catch (err) {
    if (err.status === 404) return [];
    throw err;
  }
}

// ---------------------------------------------------------------- function URL

function urlSection(fn) {
  const body = h('div', null, loading());
  const el = panel('Function URL', body, { id: 'url-panel' });

  async function show() {
    let config = null;
    try {
      config = await lambda('GET', urlPath(fn.name));
    } catch (err) {
      if (err.status !== 404) {
        mount(body, errorBox(err, show));
        return;
      }
    }
    if (!config) {
      const create = h('button', { id: 'url-create', class: 'btn btn-primary', type: 'button' }, 'Create function URL');
      const cors = h('input', { type: 'checkbox', id: 'url-cors' });
      create.addEventListener('click', () => busy(create, async () => {
        const request = { AuthType: 'NONE' };
        if (cors.checked) request.Cors = { AllowOrigins: ['*'], AllowMethods: ['*'], AllowHeaders: ['*'] };
        await lambda('POST', urlPath(fn.name), request);
        await addPermission(fn.name, {
          StatementId: 'FunctionURLAllowPublicAccess',
          Action: 'lambda:InvokeFunctionUrl',
          Principal: '*',
          FunctionUrlAuthType: 'NONE',
        });
        toast('Function URL created', 'success');
        await show();
      }));
      mount(body,
        h('p', { class: 'muted' }, 'A function URL is an HTTP endpoint that invokes this function. Auth type NONE lets anyone call it (a resource-policy statement allows ', h('code', null, 'lambda:InvokeFunctionUrl'), ' for everyone).'),
        h('div', { class: 'inline-group' }, create, h('label', { class: 'inline-label' }, cors, ' Allow CORS from any origin')));
      return;
    }
    const url = config.FunctionUrl;
    let pathForm = '';
    try {
      const id = new URL(url).hostname.split('.')[0];
      pathForm = `${location.origin}/_nimbus/lambda-url/${id}`;
    } catch { /* keep empty */ }
    const output = h('pre', { class: 'output', id: 'url-output', hidden: true });
    const tryButton = h('button', { class: 'btn', type: 'button', id: 'url-try' }, 'Send GET');
    tryButton.addEventListener('click', () => busy(tryButton, async () => {
      const res = await fetch(pathForm || url, { credentials: 'omit', cache: 'no-store' });
      output.hidden = false;
      output.textContent = `HTTP ${res.status} ${res.statusText}\n${res.headers.get('content-type') || ''}\n\n${prettyJson(await res.text())}`;
    }));
    const remove = h('button', { class: 'btn btn-ghost', type: 'button', id: 'url-delete' }, 'Delete URL');
    remove.addEventListener('click', () => busy(remove, async () => {
      if (!(await confirmDialog('Delete the function URL? Its address stops working.', { title: 'Delete function URL' }))) return;
      await lambda('DELETE', urlPath(fn.name));
      try {
        await lambda('DELETE', fnPath(fn.name, '/policy/FunctionURLAllowPublicAccess'));
      } catch { /* no such statement */ }
      toast('Function URL deleted', 'success');
      await show();
    }));
    mount(body,
      h('div', { class: 'url-row' },
        h('a', { id: 'url-value', href: url, target: '_blank', rel: 'noopener' }, url),
        copyButton(url)),
      pathForm ? h('div', { class: 'help' }, 'Without DNS for *.localhost, the same endpoint is at ',
        h('a', { href: pathForm, target: '_blank', rel: 'noopener', id: 'url-path-form' }, pathForm), '.') : null,
      h('div', { class: 'inline-group' }, h('span', null, 'Auth type: ', badge(config.AuthType, 'muted')), h('div', { class: 'spacer' }), tryButton, remove),
      output);
  }
  show();
  return el;
}

// ---------------------------------------------------------------- S3 buckets

function xmlEscape(s) {
  return String(s).replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]);
}

/** A bucket's function notification rules. */
async function bucketRules(bucket) {
  const doc = await s3Xml('GET', `/${encodeURIComponent(bucket)}`, { query: 'notification' });
  const root = doc.documentElement;
  return [...kids(root, 'CloudFunctionConfiguration'), ...kids(root, 'LambdaFunctionConfiguration')].map((c) => {
    const rule = { id: text(c, 'Id'), arn: text(c, 'CloudFunction') || text(c, 'Function'), events: kids(c, 'Event').map((e) => e.textContent) };
    for (const fr of all(c, 'Filter/S3Key/FilterRule')) {
      const n = text(fr, 'Name').toLowerCase();
      if (n === 'prefix' || n === 'suffix') rule[n] = text(fr, 'Value');
    }
    return rule;
  });
}

async function putBucketRules(bucket, rules) {
  const xml = `<NotificationConfiguration xmlns="http://s3.amazonaws.com/doc/2006-03-01/">${rules.map((r) => `<CloudFunctionConfiguration><Id>${xmlEscape(r.id)}</Id><CloudFunction>${xmlEscape(r.arn)}</CloudFunction>${r.events.map((e) => `<Event>${xmlEscape(e)}</Event>`).join('')}${r.prefix || r.suffix ? `<Filter><S3Key>${r.prefix ? `<FilterRule><Name>prefix</Name><Value>${xmlEscape(r.prefix)}</Value></FilterRule>` : ''}${r.suffix ? `<FilterRule><Name>suffix</Name><Value>${xmlEscape(r.suffix)}</Value></FilterRule>` : ''}</S3Key></Filter>` : ''}</CloudFunctionConfiguration>`).join('')}</NotificationConfiguration>`;
  await s3Do('PUT', `/${encodeURIComponent(bucket)}`, { query: 'notification', headers: { 'content-type': 'application/xml' }, body: xml });
}

const sameFunction = (arn, fnArn) => arn === fnArn || arn.startsWith(`${fnArn}:`);

function s3Section(fn) {
  const bucketSelect = h('select', { id: 's3-trigger-bucket' }, h('option', { value: '' }, 'Loading buckets…'));
  const eventSelect = select({ id: 's3-trigger-event' }, [
    ['s3:ObjectCreated:*', 'All object create events'],
    ['s3:ObjectCreated:Put', 'PUT'],
    ['s3:ObjectCreated:Copy', 'Copy'],
    ['s3:ObjectCreated:CompleteMultipartUpload', 'Multipart upload completed'],
    ['s3:ObjectRemoved:*', 'All object delete events'],
  ], 's3:ObjectCreated:*');
  const prefix = h('input', { id: 's3-trigger-prefix', placeholder: 'uploads/ (optional)', spellcheck: 'false' });
  const suffix = h('input', { id: 's3-trigger-suffix', placeholder: '.jpg (optional)', spellcheck: 'false' });
  const add = h('button', { id: 's3-trigger-add', class: 'btn btn-primary', type: 'button' }, 'Add S3 trigger');
  const cols = ['Bucket', 'Events', 'Prefix', 'Suffix', 'Id', ''];
  const current = table('s3-triggers-table', cols, [], { empty: 'No bucket sends its events here.' });
  const status = h('div');
  let buckets = [];

  async function load() {
    try {
      const doc = await s3Xml('GET', '/');
      buckets = all(doc, 'Buckets/Bucket').map((b) => text(b, 'Name'));
      mount(bucketSelect, buckets.length
        ? buckets.map((b) => h('option', { value: b }, b))
        : h('option', { value: '' }, 'No buckets: create one first'));
      const rows = [];
      const fnArn = fn.config.FunctionArn;
      await Promise.all(buckets.map(async (bucket) => {
        let rules = [];
        try {
          rules = await bucketRules(bucket);
        } catch { return; }
        for (const rule of rules.filter((r) => sameFunction(r.arn, fnArn))) {
          const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Remove');
          del.addEventListener('click', () => busy(del, async () => {
            if (!(await confirmDialog(`Stop sending ${bucket}'s events to ${fn.name}?`, { title: 'Remove S3 trigger', action: 'Remove' }))) return;
            const now = await bucketRules(bucket);
            await putBucketRules(bucket, now.filter((r) => r.id !== rule.id));
            toast(`Removed the trigger from ${bucket}`, 'success');
            await load();
          }));
          rows.push([h('a', { href: `#/buckets/${encodeURIComponent(bucket)}` }, bucket), rule.events.join(', '), rule.prefix || '—', rule.suffix || '—', h('code', { class: 'small' }, rule.id), h('div', { class: 'cell-actions' }, del)]);
        }
      }));
      fillRows(current.querySelector('tbody'), cols.length, rows, 'No bucket sends its events here.');
      mount(status);
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  add.addEventListener('click', () => busy(add, async () => {
    const bucket = bucketSelect.value;
    if (!bucket) throw new Error('Choose a bucket.');
    const fnArn = fn.config.FunctionArn;
    const sourceArn = `arn:aws:s3:::${bucket}`;
    // 1. S3 may invoke the function for this bucket (unless a statement says so already).
    const statements = await policyStatements(fn.name);
    const allowed = statements.some((s) => s.Principal?.Service === 's3.amazonaws.com'
      && (!s.Condition?.ArnLike?.['AWS:SourceArn'] || s.Condition.ArnLike['AWS:SourceArn'] === sourceArn));
    if (!allowed) {
      await addPermission(fn.name, {
        StatementId: `s3-${bucket.replace(/[^a-zA-Z0-9_-]/g, '_')}-${randomId(6)}`.slice(0, 100),
        Action: 'lambda:InvokeFunction',
        Principal: 's3.amazonaws.com',
        SourceArn: sourceArn,
        SourceAccount: session.current?.account || undefined,
      });
    }
    // 2. The bucket's notification configuration, with one rule more.
    const rules = await bucketRules(bucket);
    rules.push({
      id: `${fn.name}-${randomId(6)}`.slice(0, 255),
      arn: fnArn,
      events: [eventSelect.value],
      prefix: prefix.value.trim() || undefined,
      suffix: suffix.value.trim() || undefined,
    });
    await putBucketRules(bucket, rules);
    prefix.value = '';
    suffix.value = '';
    toast(`${bucket} now sends ${eventSelect.value} events to ${fn.name}`, 'success');
    await load();
  }));

  load();
  return panel('S3 bucket notifications', h('div', null,
    h('div', { class: 'inline-form' },
      field('Bucket', bucketSelect), field('Event', eventSelect), field('Prefix', prefix), field('Suffix', suffix), add),
    status,
    current), { id: 's3-trigger-panel' });
}

// ---------------------------------------------------------------- SQS queues

const MAPPINGS = '/2015-03-31/event-source-mappings';
/** What the execution role needs on a queue for Lambda to poll it. */
const QUEUE_ACTIONS = ['sqs:ReceiveMessage', 'sqs:DeleteMessage', 'sqs:GetQueueAttributes'];
const settling = (state) => /ing$/.test(state || '');

function sqsSection(fn) {
  const queueSelect = h('select', { id: 'sqs-trigger-queue' }, h('option', { value: '' }, 'Loading queues…'));
  const batch = h('input', { id: 'sqs-trigger-batch', type: 'number', min: 1, max: 10, value: 10, class: 'input-narrow' });
  const enabled = h('input', { type: 'checkbox', id: 'sqs-trigger-enabled', checked: true });
  const add = h('button', { id: 'sqs-trigger-add', class: 'btn btn-primary', type: 'button' }, 'Add SQS trigger');
  const cols = ['Queue', 'Batch size', 'State', 'Last result', 'Last modified', ''];
  const current = table('sqs-triggers-table', cols, []);
  const status = h('div');
  const problem = h('div', { id: 'sqs-trigger-problem' });
  let timer;

  async function load() {
    clearTimeout(timer);
    try {
      const [mappings, queues] = await Promise.all([
        lambdaAll(MAPPINGS, 'EventSourceMappings', { FunctionName: fn.name }),
        listQueues(),
      ]);
      const chosen = queueSelect.value;
      mount(queueSelect, queues.length
        ? queues.map((q) => h('option', { value: q.arn, selected: q.arn === chosen }, q.name))
        : h('option', { value: '' }, 'No queues: create one first'));
      fillRows(current.querySelector('tbody'), cols.length, mappings.map((m) => {
        const off = m.State === 'Disabled' || m.State === 'Disabling';
        const toggle = h('button', { class: 'btn btn-ghost btn-small', type: 'button', hidden: m.State === 'Deleting' }, off ? 'Enable' : 'Disable');
        toggle.addEventListener('click', () => busy(toggle, async () => {
          await lambda('PUT', `${MAPPINGS}/${m.UUID}`, { Enabled: off });
          await load();
        }));
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', hidden: m.State === 'Deleting' }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Stop feeding ${fn.name} from ${arnTail(m.EventSourceArn)}? The messages stay in the queue.`, { title: 'Delete SQS trigger' }))) return;
          await lambda('DELETE', `${MAPPINGS}/${m.UUID}`);
          toast(`Deleted the trigger from ${arnTail(m.EventSourceArn)}`, 'success');
          await load();
        }));
        return h('tr', { dataset: { uuid: m.UUID } },
          h('td', null, h('a', { href: queueHref(arnTail(m.EventSourceArn)), title: m.EventSourceArn }, arnTail(m.EventSourceArn))),
          h('td', { class: 'num' }, String(m.BatchSize)),
          h('td', { class: 'mapping-state' }, badge(m.State)),
          h('td', null, m.LastProcessingResult || '—'),
          h('td', { title: fmtDate(m.LastModified) }, fmtAgo(m.LastModified)),
          h('td', { class: 'cell-actions' }, toggle, del));
      }), 'No queue feeds this function.');
      mount(status);
      // Creating, Enabling, Disabling, Updating, Deleting: look again shortly.
      if (mappings.some((m) => settling(m.State))) timer = setTimeout(() => fn.ctx.alive && load(), 1500);
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  /** The fix for a role that may not read the queue: allow it, and add the trigger again. */
  function roleFix(queueArn) {
    const role = arnTail(fn.config.Role);
    const grant = h('button', { id: 'sqs-trigger-grant', class: 'btn btn-primary btn-small', type: 'button' }, 'Allow the role and add the trigger');
    grant.addEventListener('click', () => busy(grant, async () => {
      await query('iam', 'PutRolePolicy', {
        RoleName: role,
        PolicyName: `sqs-${arnTail(queueArn)}`.slice(0, 128),
        PolicyDocument: JSON.stringify({ Version: '2012-10-17', Statement: [{ Effect: 'Allow', Action: QUEUE_ACTIONS, Resource: queueArn }] }),
      });
      await create();
    }));
    return note(['Lambda polls the queue as the function\u2019s execution role, ', h('code', null, role),
      ', which needs ', QUEUE_ACTIONS.map((a, i) => [i ? ', ' : '', h('code', null, a)]), ' on it. ',
      'Add an inline policy to the role that allows them: ', grant], 'warn');
  }

  async function create() {
    const queueArn = queueSelect.value;
    if (!queueArn) throw new Error('Choose a queue.');
    mount(problem);
    try {
      await lambda('POST', MAPPINGS, { FunctionName: fn.name, EventSourceArn: queueArn, BatchSize: Number(batch.value) || 10, Enabled: enabled.checked });
    } catch (err) {
      mount(problem, errorBox(err), /role does not have permissions/.test(err.message) ? roleFix(queueArn) : null);
      return;
    }
    toast(`${arnTail(queueArn)} now feeds ${fn.name}`, 'success');
    await load();
  }
  add.addEventListener('click', () => busy(add, create));

  load();
  return panel('SQS queues', h('div', null,
    h('div', { class: 'inline-form' },
      field('Queue', queueSelect), field('Batch size', batch),
      h('label', { class: 'inline-label' }, enabled, ' Enabled'), add),
    h('div', { class: 'help' }, 'Lambda polls the queue and invokes the function with batches of messages, deleting them when it succeeds; a failed batch comes back after the queue\u2019s visibility timeout.'),
    problem,
    status,
    current), { id: 'sqs-trigger-panel' });
}

// ---------------------------------------------------------------- schedules

function scheduleSection(fn) {
  const expression = h('input', { id: 'schedule-expression', value: 'rate(5 minutes)', spellcheck: 'false' });
  const name = h('input', { id: 'schedule-name', placeholder: `${fn.name}-schedule`, spellcheck: 'false', maxlength: 64 });
  const input = h('input', { id: 'schedule-input', placeholder: '{"source": "schedule"} (optional)', spellcheck: 'false' });
  const role = h('select', { id: 'schedule-role' }, h('option', { value: fn.config.Role }, fn.config.Role?.split('/').pop() || ''));
  const add = h('button', { id: 'schedule-add', class: 'btn btn-primary', type: 'button' }, 'Add schedule');
  const cols = ['Schedule', 'Expression', 'State', 'Group', ''];
  const current = table('schedules-table', cols, [], { empty: 'No schedule invokes this function.' });
  const status = h('div');

  listRoles().then((roles) => {
    mount(role, roles.map((r) => h('option', { value: r.arn, selected: r.arn === fn.config.Role }, r.name)));
    if (!roles.some((r) => r.arn === fn.config.Role)) role.prepend(h('option', { value: fn.config.Role, selected: true }, fn.config.Role));
  }).catch(() => {});

  async function load() {
    try {
      const mine = [];
      let token;
      for (let i = 0; i < 20; i++) {
        const res = await scheduler('GET', '/schedules', undefined, { query: token ? { NextToken: token } : {} });
        mine.push(...(res.Schedules || []).filter((s) => sameFunction(s.Target?.Arn || '', fn.config.FunctionArn)));
        token = res.NextToken;
        if (!token) break;
      }
      const rows = await Promise.all(mine.map(async (s) => {
        let detail = {};
        try {
          detail = await scheduler('GET', `/schedules/${encodeURIComponent(s.Name)}`, undefined, { query: { groupName: s.GroupName || 'default' } });
        } catch { /* listed but gone */ }
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Delete schedule ${s.Name}?`, { title: 'Delete schedule' }))) return;
          await scheduler('DELETE', `/schedules/${encodeURIComponent(s.Name)}`, undefined, { query: { groupName: s.GroupName || 'default' } });
          toast(`Deleted schedule ${s.Name}`, 'success');
          await load();
        }));
        return [h('strong', null, s.Name), h('code', null, detail.ScheduleExpression || '—'), badge(s.State), s.GroupName || 'default', h('div', { class: 'cell-actions' }, del)];
      }));
      fillRows(current.querySelector('tbody'), cols.length, rows, 'No schedule invokes this function.');
      mount(status);
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  add.addEventListener('click', () => busy(add, async () => {
    const expr = expression.value.trim();
    if (!/^(rate|cron|at)\(.+\)$/.test(expr)) throw new Error('Use rate(5 minutes), cron(0 12 * * ? *) or at(2030-01-01T00:00:00).');
    let payload;
    if (input.value.trim()) {
      try {
        payload = JSON.stringify(JSON.parse(input.value));
      } catch (err) {
        throw new Error(`The input is not valid JSON: ${err.message}`);
      }
    }
    const scheduleName = (name.value.trim() || `${fn.name}-${randomId(5)}`).slice(0, 64);
    await scheduler('POST', `/schedules/${encodeURIComponent(scheduleName)}`, {
      ScheduleExpression: expr,
      FlexibleTimeWindow: { Mode: 'OFF' },
      State: 'ENABLED',
      Target: { Arn: fn.config.FunctionArn, RoleArn: role.value || fn.config.Role, ...(payload ? { Input: payload } : {}) },
    });
    name.value = '';
    toast(`Schedule ${scheduleName} created`, 'success');
    await load();
  }));

  load();
  return panel('EventBridge Scheduler', h('div', null,
    h('div', { class: 'inline-form' },
      field('Expression', expression), field('Name', name), field('Input (JSON)', input), field('Role', role), add),
    h('div', { class: 'help' }, 'The schedule invokes the function asynchronously (Event), as the role chosen here: it must trust scheduler.amazonaws.com and be allowed lambda:InvokeFunction on the function.'),
    status,
    current), { id: 'schedule-panel' });
}

// ---------------------------------------------------------------- policy

function policySection(fn) {
  const body = h('div');
  const el = h('details', { class: 'panel panel-details' }, h('summary', null, 'Resource-based policy'), body);
  el.addEventListener('toggle', async () => {
    if (!el.open) return;
    mount(body, loading());
    try {
      const statements = await policyStatements(fn.name);
      mount(body, statements.length
        ? h('pre', { class: 'output', id: 'policy-json' }, JSON.stringify({ Version: '2012-10-17', Statement: statements }, null, 2))
        : note('No resource-based policy: only principals whose own policies allow it may invoke the function.'));
    } catch (err) {
      mount(body, errorBox(err));
    }
  });
  return el;
}

export function triggersTab(pane, fn) {
  mount(pane, urlSection(fn), s3Section(fn), sqsSection(fn), scheduleSection(fn), policySection(fn));
}
