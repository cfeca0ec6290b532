import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import { call, listQueues } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, facts, badge, copyButton } from '../ui.js';
import { fmtBytes, fmtDate, fmtAgo, fmtDuration, prettyJson, arnTail } from '../util.js';

// Queue and topic names: letters, digits, hyphens and underscores, ending in .fifo
// when FIFO.
export const NAME_RE = /^[A-Za-z0-9_-]+(\.fifo)?$/;
/** `base` with the .fifo suffix exactly when `fifo`. */
export const fifoName = (base, fifo) => base.trim().replace(/\.fifo$/, '') + (fifo ? '.fifo' : '');

export const queueHref = (name) => `#/queues/${encodeURIComponent(name)}`;
const isFifo = (attributes) => attributes.FifoQueue === 'true';
const typeBadge = (attributes) => badge(isFifo(attributes) ? 'FIFO' : 'Standard', 'muted');
const count = (attributes, what) => attributes[`ApproximateNumberOf${what}`] ?? '0';

/** The queue's redrive policy, parsed (null without one). */
function redriveOf(attributes) {
  try {
    return attributes.RedrivePolicy ? JSON.parse(attributes.RedrivePolicy) : null;
  } catch {
    return null;
  }
}

/** Asks, then deletes; resolves to whether it did. */
async function deleteQueue(name, url) {
  if (!(await confirmDialog(`Delete queue ${name} and every message in it?`, { title: 'Delete queue' }))) return false;
  await call('sqs', 'DeleteQueue', { QueueUrl: url });
  toast(`Deleted queue ${name}`, 'success');
  return true;
}

export async function queuesPage(ctx) {
  const cols = ['Name', 'Type', 'Available', 'In flight', 'Delayed', 'Created', ''];
  const tableEl = table('queues-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { id: 'queue-create', class: 'btn btn-primary', type: 'button' }, 'Create queue');
  let queues = [];

  async function load() {
    try {
      queues = await listQueues();
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, queues.map((q) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${q.name}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (await deleteQueue(q.name, q.url)) await load();
        }));
        const created = Number(q.attributes.CreatedTimestamp);
        return h('tr', { dataset: { queue: q.name } },
          h('td', null, h('a', { href: queueHref(q.name), class: 'strong' }, q.name)),
          h('td', null, typeBadge(q.attributes)),
          h('td', { class: 'num' }, count(q.attributes, 'Messages')),
          h('td', { class: 'num' }, count(q.attributes, 'MessagesNotVisible')),
          h('td', { class: 'num' }, count(q.attributes, 'MessagesDelayed')),
          h('td', { title: fmtDate(created) }, fmtAgo(created)),
          h('td', { class: 'cell-actions' }, del));
      }), 'No queues yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', () => {
    const name = h('input', { id: 'queue-name', placeholder: 'orders', spellcheck: 'false', autocomplete: 'off', maxlength: 80 });
    const fifo = h('input', { type: 'checkbox', id: 'queue-fifo' });
    const dedup = h('input', { type: 'checkbox', id: 'queue-dedup' });
    const dedupLabel = h('label', { class: 'inline-label', hidden: true }, dedup, ' Content-based deduplication');
    const visibility = h('input', { id: 'queue-visibility', type: 'number', min: 0, max: 43200, value: 30 });
    const dlq = h('select', { id: 'queue-dlq' });
    const maxReceives = h('input', { id: 'queue-max-receives', type: 'number', min: 1, max: 1000, value: 5, disabled: true });
    // A FIFO queue's dead-letter queue is FIFO too, and a standard one's standard.
    const fillDlq = () => mount(dlq, h('option', { value: '' }, 'None'),
      queues.filter((q) => isFifo(q.attributes) === fifo.checked).map((q) => h('option', { value: q.arn }, q.name)));
    fifo.addEventListener('change', () => {
      dedupLabel.hidden = !fifo.checked;
      fillDlq();
      maxReceives.disabled = true;
    });
    dlq.addEventListener('change', () => { maxReceives.disabled = !dlq.value; });
    fillDlq();
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'queue-create-submit' }, 'Create');
    const close = modal('Create queue', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = fifoName(name.value, fifo.checked);
          if (!NAME_RE.test(n) || n.length > 80) {
            error.textContent = 'Queue names are up to 80 letters, digits, hyphens and underscores (a FIFO queue\u2019s ending in .fifo).';
            return;
          }
          const attributes = { VisibilityTimeout: String(visibility.value || 30) };
          if (fifo.checked) {
            attributes.FifoQueue = 'true';
            if (dedup.checked) attributes.ContentBasedDeduplication = 'true';
          }
          if (dlq.value) attributes.RedrivePolicy = JSON.stringify({ deadLetterTargetArn: dlq.value, maxReceiveCount: Number(maxReceives.value) || 5 });
          try {
            await call('sqs', 'CreateQueue', { QueueName: n, Attributes: attributes });
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created queue ${n}`, 'success');
          await load();
        });
      },
    },
    field('Queue name', name),
    h('div', { class: 'checks' }, h('label', { class: 'inline-label' }, fifo, ' FIFO: ordered within a message group, each message delivered once'), dedupLabel),
    field('Visibility timeout (seconds)', visibility, 'How long a received message stays hidden from other consumers before it comes back.'),
    h('div', { class: 'grid-2' },
      field('Dead-letter queue', dlq),
      field('Maximum receives', maxReceives, 'Receives before a message moves there.')),
    error, h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  mount(ctx.el,
    pageHeader('Queues', { sub: 'SQS queues on this server.', actions: [h('button', { class: 'btn', type: 'button', onClick: load }, 'Refresh'), create] }),
    status, tableEl);
  ctx.every(5000, load);
  await load();
}

export async function queuePage(ctx) {
  const name = ctx.params[0];
  const fifo = name.endsWith('.fifo');
  const head = h('div');
  const info = h('div', null, loading());
  mount(ctx.el, head, info);

  let url;
  try {
    url = (await call('sqs', 'GetQueueUrl', { QueueName: name })).QueueUrl;
  } catch (err) {
    mount(head, pageHeader(name, { crumbs: [['Queues', '#/queues'], [name]] }));
    mount(info, errorBox(err, () => queuePage(ctx)));
    return;
  }
  if (!ctx.alive) return;
  let arn = '';

  const purge = h('button', { class: 'btn', type: 'button', id: 'queue-purge' }, 'Purge');
  purge.addEventListener('click', () => busy(purge, async () => {
    if (!(await confirmDialog(`Delete every message in ${name}?`, { title: 'Purge queue', action: 'Purge' }))) return;
    await call('sqs', 'PurgeQueue', { QueueUrl: url });
    toast(`Purged ${name}`, 'success');
    await loadInfo();
  }));
  const remove = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'queue-delete' }, 'Delete queue');
  remove.addEventListener('click', () => busy(remove, async () => {
    if (await deleteQueue(name, url)) location.hash = '#/queues';
  }));
  mount(head, pageHeader(name, {
    crumbs: [['Queues', '#/queues'], [name]],
    sub: h('code', null, url),
    actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh'), purge, remove],
  }));

  const policy = h('div');
  let shownPolicy; // re-rendered only when it changes, so an opened one stays open
  async function loadInfo() {
    try {
      const { Attributes: a = {} } = await call('sqs', 'GetQueueAttributes', { QueueUrl: url, AttributeNames: ['All'] });
      arn = a.QueueArn;
      const deadLetters = redriveOf(a);
      mount(info, facts([
        ['Type', typeBadge(a)],
        ['Available', count(a, 'Messages')],
        ['In flight', count(a, 'MessagesNotVisible')],
        ['Delayed', count(a, 'MessagesDelayed')],
        ['Visibility timeout', `${a.VisibilityTimeout} s`],
        ['Retention', fmtDuration(Number(a.MessageRetentionPeriod))],
        ['Delivery delay', `${a.DelaySeconds} s`],
        ['Receive wait', `${a.ReceiveMessageWaitTimeSeconds} s`],
        ['Maximum size', fmtBytes(a.MaximumMessageSize)],
        fifo ? ['Content-based deduplication', a.ContentBasedDeduplication === 'true' ? 'on' : 'off'] : null,
        ['Dead-letter queue', deadLetters
          ? h('span', null, h('a', { href: queueHref(arnTail(deadLetters.deadLetterTargetArn)) }, arnTail(deadLetters.deadLetterTargetArn)), ` after ${deadLetters.maxReceiveCount} receives`)
          : 'none'],
        ['Created', fmtDate(Number(a.CreatedTimestamp))],
        ['ARN', h('span', { class: 'arn' }, h('code', { class: 'small' }, arn), copyButton(arn))],
      ]));
      if (a.Policy !== shownPolicy) {
        shownPolicy = a.Policy;
        mount(policy, a.Policy ? h('details', { class: 'panel panel-details' }, h('summary', null, 'Access policy'),
          h('div', null, h('pre', { class: 'output', id: 'queue-policy' }, prettyJson(a.Policy)))) : null);
      }
    } catch (err) {
      mount(info, errorBox(err, loadInfo));
    }
  }

  const send = sendPanel(name, url, fifo, loadInfo);
  const receive = receivePanel(url, loadInfo);
  const redrive = redrivePanel(url, () => arn);
  mount(ctx.el, head, info, send, receive, redrive.el, policy);

  async function refresh() {
    await loadInfo();
    await redrive.load();
  }
  ctx.every(5000, refresh);
  await refresh();
}

function sendPanel(name, url, fifo, changed) {
  const body = h('textarea', { id: 'message-body', rows: 4, class: 'code-area', spellcheck: 'false', placeholder: '{"order": 1}' });
  const group = h('input', { id: 'message-group', placeholder: 'orders', spellcheck: 'false', maxlength: 128 });
  const dedup = h('input', { id: 'message-dedup', placeholder: 'Optional with content-based deduplication', spellcheck: 'false', maxlength: 128 });
  const delay = h('input', { id: 'message-delay', type: 'number', min: 0, max: 900, value: 0 });
  const sent = h('span', { class: 'muted small', id: 'message-sent', role: 'status' });
  const submit = h('button', { id: 'message-send', class: 'btn btn-primary', type: 'button' }, 'Send message');
  submit.addEventListener('click', () => busy(submit, async () => {
    if (!body.value) throw new Error('Write a message body.');
    const request = { QueueUrl: url, MessageBody: body.value };
    if (fifo) {
      if (!group.value.trim()) throw new Error('A FIFO queue needs a message group id.');
      request.MessageGroupId = group.value.trim();
      if (dedup.value.trim()) request.MessageDeduplicationId = dedup.value.trim();
    } else if (Number(delay.value)) {
      request.DelaySeconds = Number(delay.value);
    }
    const res = await call('sqs', 'SendMessage', request);
    sent.textContent = `Sent message ${res.MessageId}`;
    toast(`Sent a message to ${name}`, 'success');
    await changed();
  }));
  return panel('Send message', h('div', null,
    field('Body', body),
    h('div', { class: 'inline-form' },
      fifo ? [field('Message group id', group), field('Deduplication id', dedup)] : field('Delay (seconds)', delay),
      submit, sent)), { id: 'send-panel' });
}

function receivePanel(url, changed) {
  const cols = ['Message', 'Body', 'Receives', 'Sent', 'Attributes', ''];
  const tableEl = table('messages-table', cols, []);
  const poll = h('button', { id: 'messages-poll', class: 'btn btn-primary', type: 'button' }, 'Poll for messages');
  const polled = h('span', { class: 'muted small', id: 'messages-status', role: 'status' });
  const messages = new Map(); // by id: what was received and not deleted here

  function render() {
    fillRows(tableEl.querySelector('tbody'), cols.length, [...messages.values()].map((m) => {
      const a = m.Attributes || {};
      const del = h('button', { class: 'btn btn-ghost btn-small message-delete', type: 'button' }, 'Delete');
      del.addEventListener('click', () => busy(del, async () => {
        await call('sqs', 'DeleteMessage', { QueueUrl: url, ReceiptHandle: m.ReceiptHandle });
        messages.delete(m.MessageId);
        toast('Deleted the message', 'success');
        render();
        await changed();
      }));
      const tags = [
        ...['MessageGroupId', 'MessageDeduplicationId', 'SequenceNumber'].filter((k) => a[k]).map((k) => [k, a[k]]),
        ...Object.entries(m.MessageAttributes || {}).map(([k, v]) => [k, v.StringValue ?? `(${v.DataType})`]),
      ];
      return h('tr', { dataset: { message: m.MessageId } },
        h('td', null, h('code', { class: 'small message-id', title: m.MessageId }, `${m.MessageId.slice(0, 8)}…`)),
        h('td', null, h('pre', { class: 'cell-pre' }, prettyJson(m.Body))),
        h('td', { class: 'num' }, a.ApproximateReceiveCount || '—'),
        h('td', { title: fmtDate(Number(a.SentTimestamp)) }, fmtAgo(Number(a.SentTimestamp))),
        h('td', null, tags.length ? h('div', { class: 'tags message-tags' }, tags.map(([k, v]) => h('span', { class: 'tag', title: v }, `${k}=${v}`))) : h('span', { class: 'muted' }, '—')),
        h('td', { class: 'cell-actions' }, del));
    }), 'Nothing received yet.');
  }

  poll.addEventListener('click', () => busy(poll, async () => {
    polled.textContent = 'Polling…';
    const res = await call('sqs', 'ReceiveMessage', {
      QueueUrl: url, MaxNumberOfMessages: 10, WaitTimeSeconds: 2, MessageSystemAttributeNames: ['All'], MessageAttributeNames: ['All'],
    }).catch((err) => {
      polled.textContent = '';
      throw err;
    });
    const got = res.Messages || [];
    for (const m of got) messages.set(m.MessageId, m);
    polled.textContent = got.length ? `Received ${got.length} message${got.length === 1 ? '' : 's'}` : 'No messages available';
    render();
    await changed();
  }));

  return panel('Receive messages', h('div', null,
    h('div', { class: 'inline-group' }, poll, polled),
    h('div', { class: 'help' }, 'A received message stays hidden from other consumers for the visibility timeout, then comes back unless deleted.'),
    tableEl), { id: 'receive-panel' });
}

/** Redrive of a dead-letter queue: shown when some queue sends its failures here. */
function redrivePanel(url, arnOf) {
  const el = h('div');
  const cols = ['Status', 'Started', 'Moved', 'To move', 'Destination', 'Failure', ''];
  const tasksTable = table('move-tasks-table', cols, []);
  const sources = h('p');
  const start = h('button', { id: 'dlq-redrive', class: 'btn btn-primary', type: 'button' }, 'Start DLQ redrive');
  const section = panel('Dead-letter queue redrive', h('div', null,
    sources, h('div', { class: 'inline-group' }, start), tasksTable), { id: 'redrive-panel' });

  async function load() {
    try {
      await show();
    } catch (err) {
      mount(el, errorBox(err, load));
    }
  }

  async function show() {
    const { queueUrls = [] } = await call('sqs', 'ListDeadLetterSourceQueues', { QueueUrl: url, MaxResults: 1000 });
    if (!queueUrls.length) {
      mount(el);
      return;
    }
    const names = queueUrls.map((u) => u.split('/').pop());
    mount(sources, 'The dead-letter queue of ', names.map((n, i) => [i ? ', ' : '', h('a', { href: queueHref(n) }, n)]),
      '. A redrive moves its messages back to the queue each came from.');
    const { Results: tasks = [] } = await call('sqs', 'ListMessageMoveTasks', { SourceArn: arnOf(), MaxResults: 10 });
    fillRows(tasksTable.querySelector('tbody'), cols.length, tasks.map((t) => {
      const cancel = h('button', { class: 'btn btn-ghost btn-small', type: 'button', hidden: t.Status !== 'RUNNING' }, 'Cancel');
      cancel.addEventListener('click', () => busy(cancel, async () => {
        await call('sqs', 'CancelMessageMoveTask', { TaskHandle: t.TaskHandle });
        toast('Cancelling the redrive', 'success');
        await load();
      }));
      return [
        badge(t.Status),
        h('span', { title: fmtDate(t.StartedTimestamp) }, fmtAgo(t.StartedTimestamp)),
        String(t.ApproximateNumberOfMessagesMoved ?? 0),
        String(t.ApproximateNumberOfMessagesToMove ?? '—'),
        t.DestinationArn ? h('a', { href: queueHref(arnTail(t.DestinationArn)) }, arnTail(t.DestinationArn)) : 'Source queues',
        t.FailureReason || '—',
        h('div', { class: 'cell-actions' }, cancel),
      ];
    }), 'No redrive yet.');
    if (!section.isConnected) mount(el, section);
  }

  start.addEventListener('click', () => busy(start, async () => {
    await call('sqs', 'StartMessageMoveTask', { SourceArn: arnOf() });
    toast('Redrive started', 'success');
    await load();
  }));
  return { el, load };
}
