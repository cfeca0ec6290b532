import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import {
  query, entries, text, session, listQueues, listFunctions, snsAll, snsAttributes, listTopicArns, allowQueueSend, allowInvoke,
} from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, facts, badge, select, copyButton, resourceHref } from '../ui.js';
import { arnTail } from '../util.js';
import { NAME_RE, fifoName } from './queues.js';

const topicHref = (name) => `#/topics/${encodeURIComponent(name)}`;
const topicArn = (name) => `arn:aws:sns:${session.current.region}:${session.current.account}:${name}`;
const typeBadge = (name) => badge(name.endsWith('.fifo') ? 'FIFO' : 'Standard', 'muted');

/** Asks, then deletes; resolves to whether it did. */
async function deleteTopic(name) {
  if (!(await confirmDialog(`Delete topic ${name} and its subscriptions?`, { title: 'Delete topic' }))) return false;
  await query('sns', 'DeleteTopic', { TopicArn: topicArn(name) });
  toast(`Deleted topic ${name}`, 'success');
  return true;
}

export async function topicsPage(ctx) {
  const cols = ['Name', 'Type', 'Confirmed subscriptions', 'Pending', 'ARN', ''];
  const tableEl = table('topics-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { id: 'topic-create', class: 'btn btn-primary', type: 'button' }, 'Create topic');

  async function load() {
    try {
      const topics = await Promise.all((await listTopicArns()).map(async (arn) => ({
        arn,
        name: arnTail(arn),
        attributes: await snsAttributes('GetTopicAttributes', { TopicArn: arn }).catch(() => ({})),
      })));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, topics.map((t) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${t.name}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (await deleteTopic(t.name)) await load();
        }));
        return h('tr', { dataset: { topic: t.name } },
          h('td', null, h('a', { href: topicHref(t.name), class: 'strong' }, t.name)),
          h('td', null, typeBadge(t.name)),
          h('td', { class: 'num' }, t.attributes.SubscriptionsConfirmed ?? '—'),
          h('td', { class: 'num' }, t.attributes.SubscriptionsPending ?? '—'),
          h('td', null, h('code', { class: 'small' }, t.arn)),
          h('td', { class: 'cell-actions' }, del));
      }), 'No topics yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', () => {
    const name = h('input', { id: 'topic-name', placeholder: 'orders', spellcheck: 'false', autocomplete: 'off', maxlength: 256 });
    const fifo = h('input', { type: 'checkbox', id: 'topic-fifo' });
    const dedup = h('input', { type: 'checkbox', id: 'topic-dedup' });
    const dedupLabel = h('label', { class: 'inline-label', hidden: true }, dedup, ' Content-based deduplication');
    fifo.addEventListener('change', () => { dedupLabel.hidden = !fifo.checked; });
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'topic-create-submit' }, 'Create');
    const close = modal('Create topic', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = fifoName(name.value, fifo.checked);
          if (!NAME_RE.test(n) || n.length > 256) {
            error.textContent = 'Topic names are up to 256 letters, digits, hyphens and underscores (a FIFO topic\u2019s ending in .fifo).';
            return;
          }
          const attributes = fifo.checked ? [{ key: 'FifoTopic', value: 'true' }] : [];
          if (fifo.checked && dedup.checked) attributes.push({ key: 'ContentBasedDeduplication', value: 'true' });
          try {
            await query('sns', 'CreateTopic', { Name: n, ...entries('Attributes', attributes) });
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created topic ${n}`, 'success');
          await load();
        });
      },
    },
    field('Topic name', name),
    h('div', { class: 'checks' }, h('label', { class: 'inline-label' }, fifo, ' FIFO: ordered within a message group, for FIFO queues'), dedupLabel),
    error, h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  mount(ctx.el,
    pageHeader('Topics', { sub: 'SNS topics on this server.', actions: [h('button', { class: 'btn', type: 'button', onClick: load }, 'Refresh'), create] }),
    status, tableEl);
  await load();
}

export async function topicPage(ctx) {
  const name = ctx.params[0];
  const arn = topicArn(name);
  const fifo = name.endsWith('.fifo');
  const info = h('div', null, loading());
  const remove = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'topic-delete' }, 'Delete topic');
  remove.addEventListener('click', () => busy(remove, async () => {
    if (await deleteTopic(name)) location.hash = '#/topics';
  }));

  async function loadInfo() {
    try {
      const a = await snsAttributes('GetTopicAttributes', { TopicArn: arn });
      mount(info, facts([
        ['Type', typeBadge(name)],
        ['Confirmed subscriptions', a.SubscriptionsConfirmed],
        ['Pending subscriptions', a.SubscriptionsPending],
        ['Display name', a.DisplayName || '—'],
        fifo ? ['Content-based deduplication', a.ContentBasedDeduplication === 'true' ? 'on' : 'off'] : null,
        ['ARN', h('span', { class: 'arn' }, h('code', { class: 'small' }, arn), copyButton(arn))],
      ]));
    } catch (err) {
      mount(info, errorBox(err, loadInfo));
    }
  }

  const subscriptions = subscriptionsPanel(name, arn, loadInfo);
  mount(ctx.el,
    pageHeader(name, {
      crumbs: [['Topics', '#/topics'], [name]],
      actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh'), remove],
    }),
    info, publishPanel(arn, fifo), subscriptions.el);

  const refresh = () => Promise.all([loadInfo(), subscriptions.load()]);
  ctx.every(10000, refresh);
  await refresh();
}

function publishPanel(arn, fifo) {
  const message = h('textarea', { id: 'publish-message', rows: 4, class: 'code-area', spellcheck: 'false', placeholder: '{"order": 1}' });
  const subject = h('input', { id: 'publish-subject', placeholder: 'Optional', maxlength: 100 });
  const group = h('input', { id: 'publish-group', placeholder: 'orders', spellcheck: 'false', maxlength: 128 });
  const dedup = h('input', { id: 'publish-dedup', placeholder: 'Optional with content-based deduplication', spellcheck: 'false', maxlength: 128 });
  const attributes = h('div', { class: 'attribute-rows', id: 'publish-attributes' });
  const addAttribute = h('button', { class: 'btn btn-small', type: 'button', id: 'publish-attribute-add' }, 'Add attribute');
  addAttribute.addEventListener('click', () => {
    const row = h('div', { class: 'inline-group' },
      h('input', { class: 'attribute-name', placeholder: 'Name', 'aria-label': 'Attribute name', spellcheck: 'false' }),
      h('input', { class: 'attribute-value', placeholder: 'Value', 'aria-label': 'Attribute value', spellcheck: 'false' }),
      h('button', { class: 'btn btn-ghost btn-small', type: 'button', onClick: () => row.remove() }, 'Remove'));
    attributes.appendChild(row);
    row.querySelector('input').focus();
  });
  const published = h('span', { class: 'muted small', id: 'publish-status', role: 'status' });
  const submit = h('button', { id: 'publish-submit', class: 'btn btn-primary', type: 'button' }, 'Publish message');
  submit.addEventListener('click', () => busy(submit, async () => {
    if (!message.value) throw new Error('Write a message.');
    const params = { TopicArn: arn, Message: message.value, Subject: subject.value.trim() || undefined };
    if (fifo) {
      if (!group.value.trim()) throw new Error('A FIFO topic needs a message group id.');
      params.MessageGroupId = group.value.trim();
      params.MessageDeduplicationId = dedup.value.trim() || undefined;
    }
    // String attributes only: what subscriptions' filter policies usually match on.
    const pairs = [...attributes.children]
      .map((row) => [row.querySelector('.attribute-name').value.trim(), row.querySelector('.attribute-value').value])
      .filter(([key]) => key);
    Object.assign(params, entries('MessageAttributes', pairs.map(([key, value]) => ({ Name: key, 'Value.DataType': 'String', 'Value.StringValue': value }))));
    const doc = await query('sns', 'Publish', params);
    published.textContent = `Published message ${text(doc, 'PublishResult/MessageId')}`;
    toast('Message published', 'success');
  }));
  return panel('Publish message', h('div', null,
    field('Message', message),
    h('div', { class: 'inline-form' },
      field('Subject', subject),
      fifo ? [field('Message group id', group), field('Deduplication id', dedup)] : null),
    h('div', { class: 'field' }, h('label', null, 'Message attributes ', h('span', { class: 'optional' }, '(String)')), attributes, h('div', null, addAttribute)),
    h('div', { class: 'inline-group' }, submit, published)), { id: 'publish-panel' });
}

const PROTOCOLS = [['sqs', 'Amazon SQS'], ['lambda', 'AWS Lambda'], ['http', 'HTTP'], ['https', 'HTTPS']];

function subscriptionsPanel(name, arn, changed) {
  const cols = ['Protocol', 'Endpoint', 'Status', 'Filter policy', 'Raw delivery', ''];
  const tableEl = table('subscriptions-table', cols, []);
  const status = h('div');
  const protocol = select({ id: 'subscribe-protocol' }, PROTOCOLS, 'sqs');
  const endpoint = h('div', { class: 'field subscribe-endpoint' });
  let endpointControl; // the queue or function select, or the URL input
  const filter = h('input', { id: 'subscribe-filter', placeholder: '{"kind": ["order"]}', spellcheck: 'false' });
  const raw = h('input', { type: 'checkbox', id: 'subscribe-raw' });
  const rawLabel = h('label', { class: 'inline-label' }, raw, ' Raw message delivery');
  const grant = h('input', { type: 'checkbox', id: 'subscribe-grant', checked: true });
  const grantText = h('span');
  const grantLabel = h('label', { class: 'inline-label' }, grant, ' ', grantText);
  const submit = h('button', { id: 'subscribe-submit', class: 'btn btn-primary', type: 'button' }, 'Subscribe');

  // What a subscription can name, as [ARN, name]; the queues last listed are kept for
  // the chosen one's URL.
  let queues = [];
  const choices = {
    sqs: async () => (queues = await listQueues()).map((q) => [q.arn, q.name]),
    lambda: async () => (await listFunctions()).map((f) => [f.FunctionArn, f.FunctionName]),
  };

  async function showEndpoint() {
    const p = protocol.value;
    const pick = choices[p];
    grantLabel.hidden = !pick;
    rawLabel.hidden = p === 'lambda';
    grantText.textContent = p === 'sqs'
      ? 'Allow the topic to send to the queue (a statement in its access policy)'
      : 'Allow the topic to invoke the function (a statement in its resource policy)';
    if (!pick) {
      endpointControl = h('input', { id: 'subscribe-endpoint', type: 'url', placeholder: `${p}://example.com/hook`, spellcheck: 'false' });
      mount(endpoint, h('label', { for: 'subscribe-endpoint' }, 'URL'), endpointControl);
      return;
    }
    const control = h('select', { id: 'subscribe-endpoint' }, h('option', { value: '' }, 'Loading…'));
    endpointControl = control;
    mount(endpoint, h('label', { for: 'subscribe-endpoint' }, p === 'sqs' ? 'Queue' : 'Function'), control);
    try {
      const options = await pick();
      mount(control, options.length
        ? options.map(([value, label]) => h('option', { value }, label))
        : h('option', { value: '' }, p === 'sqs' ? 'No queues: create one first' : 'No functions: create one first'));
    } catch (err) {
      mount(control, h('option', { value: '' }, 'Unavailable'));
      toast(`Listing failed: ${err.message}`, 'error');
    }
  }
  protocol.addEventListener('change', showEndpoint);
  showEndpoint();

  async function load() {
    try {
      const members = await snsAll('ListSubscriptionsByTopic', { TopicArn: arn }, 'Subscriptions');
      const rows = await Promise.all(members.map(async (m) => {
        const sub = { arn: text(m, 'SubscriptionArn'), protocol: text(m, 'Protocol'), endpoint: text(m, 'Endpoint') };
        // A pending subscription has no ARN yet, so no attributes to read or way to remove it.
        const pending = !sub.arn.startsWith('arn:');
        const a = pending ? {} : await snsAttributes('GetSubscriptionAttributes', { SubscriptionArn: sub.arn }).catch(() => ({}));
        const unsubscribe = h('button', { class: 'btn btn-ghost btn-small', type: 'button', hidden: pending }, 'Unsubscribe');
        unsubscribe.addEventListener('click', () => busy(unsubscribe, async () => {
          if (!(await confirmDialog(`Stop sending ${name}'s messages to ${sub.endpoint}?`, { title: 'Unsubscribe', action: 'Unsubscribe' }))) return;
          await query('sns', 'Unsubscribe', { SubscriptionArn: sub.arn });
          toast('Unsubscribed', 'success');
          await Promise.all([load(), changed()]);
        }));
        const target = resourceHref(sub.endpoint);
        return h('tr', { dataset: { protocol: sub.protocol } },
          h('td', null, badge(sub.protocol, 'muted')),
          h('td', { class: 'endpoint' }, target ? h('a', { href: target, title: sub.endpoint }, arnTail(sub.endpoint)) : h('code', { class: 'small' }, sub.endpoint)),
          h('td', null, pending ? badge('Pending confirmation', 'busy') : badge('Confirmed', 'ok')),
          h('td', null, a.FilterPolicy ? h('code', { class: 'small' }, a.FilterPolicy) : h('span', { class: 'muted' }, '—')),
          h('td', null, a.RawMessageDelivery === 'true' ? 'yes' : 'no'),
          h('td', { class: 'cell-actions' }, unsubscribe));
      }));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, rows, 'No subscriptions: messages published here go nowhere.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  submit.addEventListener('click', () => busy(submit, async () => {
    const p = protocol.value;
    const target = endpointControl.value.trim();
    if (!target) throw new Error(p === 'sqs' ? 'Choose a queue.' : p === 'lambda' ? 'Choose a function.' : 'Enter the endpoint URL.');
    const attributes = [];
    if (filter.value.trim()) {
      try {
        attributes.push({ key: 'FilterPolicy', value: JSON.stringify(JSON.parse(filter.value)) });
      } catch (err) {
        throw new Error(`The filter policy is not valid JSON: ${err.message}`);
      }
    }
    if (raw.checked && p !== 'lambda') attributes.push({ key: 'RawMessageDelivery', value: 'true' });
    if (grant.checked && p === 'sqs') await allowQueueSend(queues.find((q) => q.arn === target), 'sns', arn);
    if (grant.checked && p === 'lambda') await allowInvoke(target, 'sns', arn);
    await query('sns', 'Subscribe', { TopicArn: arn, Protocol: p, Endpoint: target, ReturnSubscriptionArn: true, ...entries('Attributes', attributes) });
    filter.value = '';
    toast(p.startsWith('http') ? 'Subscribed: the endpoint must confirm the subscription' : `Subscribed ${arnTail(target)}`, 'success');
    await Promise.all([load(), changed()]);
  }));

  const el = panel('Subscriptions', h('div', null,
    h('div', { class: 'inline-form' }, field('Protocol', protocol), endpoint, field(['Filter policy ', h('span', { class: 'optional' }, '(optional)')], filter), submit),
    h('div', { class: 'inline-group subscribe-options' }, rawLabel, grantLabel),
    status, tableEl), { id: 'subscriptions-panel' });
  return { el, load };
}
