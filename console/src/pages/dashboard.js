import { h, mount } from '../dom.js';
import { health, listFunctions, s3Xml, all, call, callAll, query, scheduler, apiItems, session } from '../api.js';
import { pageHeader, badge, errorBox, loading, facts, panel } from '../ui.js';
import { fmtDuration, plural } from '../util.js';

/** What each service's card says and counts. */
const SERVICES = {
  lambda: {
    label: 'Lambda',
    what: 'Functions',
    href: '#/functions',
    count: async () => [plural((await listFunctions()).length, 'function')],
  },
  s3: {
    label: 'S3',
    what: 'Buckets and objects',
    href: '#/buckets',
    count: async () => [plural(all(await s3Xml('GET', '/'), 'Buckets/Bucket').length, 'bucket')],
  },
  sqs: {
    label: 'SQS',
    what: 'Queues',
    href: '#/queues',
    count: async () => [plural((await callAll('sqs', 'ListQueues', { MaxResults: 1000 }, 'QueueUrls', 'NextToken')).length, 'queue')],
  },
  sns: {
    label: 'SNS',
    what: 'Topics and subscriptions',
    href: '#/topics',
    count: async () => [plural(all(await query('sns', 'ListTopics'), 'ListTopicsResult/Topics/member').length, 'topic')],
  },
  events: {
    label: 'EventBridge',
    what: 'Event buses and rules',
    href: '#/rules',
    count: async () => {
      const buses = await callAll('events', 'ListEventBuses', {}, 'EventBuses', 'NextToken');
      const rules = await Promise.all(buses.map((b) => callAll('events', 'ListRules', { EventBusName: b.Name }, 'Rules', 'NextToken')));
      return [plural(buses.length, 'bus', 'buses'), plural(rules.flat().length, 'rule')];
    },
  },
  ecr: {
    label: 'ECR',
    what: 'Container registry',
    href: '#/registry',
    count: async () => [plural((await callAll('ecr', 'DescribeRepositories', {}, 'repositories')).length, 'repository', 'repositories')],
  },
  ecs: {
    label: 'ECS',
    what: 'Containers',
    href: '#/containers',
    count: async () => {
      const arns = await callAll('ecs', 'ListClusters', {}, 'clusterArns');
      let running = 0;
      let services = 0;
      if (arns.length) {
        const { clusters = [] } = await call('ecs', 'DescribeClusters', { clusters: arns.slice(0, 100) });
        for (const c of clusters) {
          running += c.runningTasksCount || 0;
          services += c.activeServicesCount || 0;
        }
      }
      return [plural(arns.length, 'cluster'), plural(services, 'service'), plural(running, 'running task')];
    },
  },
  apigateway: {
    label: 'API Gateway',
    what: 'HTTP APIs',
    href: '#/apis',
    count: async () => [plural((await apiItems('/v2/apis')).length, 'API')],
  },
  logs: {
    label: 'CloudWatch Logs',
    what: 'Log groups and events',
    href: '#/logs',
    count: async () => [plural((await callAll('logs', 'DescribeLogGroups', {}, 'logGroups', 'nextToken', 20)).length, 'log group')],
  },
  scheduler: {
    label: 'EventBridge Scheduler',
    what: 'Schedules',
    count: async () => {
      let n = 0;
      let token;
      for (let i = 0; i < 20; i++) {
        const res = await scheduler('GET', '/schedules', undefined, { query: token ? { NextToken: token } : {} });
        n += (res.Schedules || []).length;
        token = res.NextToken;
        if (!token) break;
      }
      return [plural(n, 'schedule')];
    },
  },
  iam: {
    label: 'IAM',
    what: 'Users, roles, policies',
    count: async () => {
      const doc = await query('iam', 'ListRoles', { MaxItems: 1000 });
      return [plural(all(doc, 'ListRolesResult/Roles/member').length, 'role')];
    },
  },
  sts: {
    label: 'STS',
    what: 'Credentials and identity',
    count: async () => ['signed in as ' + (session.current?.principal?.split(':').pop() || '?')],
  },
};

function card(name, state) {
  const info = SERVICES[name] || { label: name, what: '' };
  const counts = h('div', { class: 'card-counts' }, state === 'running' && info.count ? h('span', { class: 'muted' }, '…') : null);
  if (state === 'running' && info.count) {
    info.count().then((lines) => mount(counts, lines.map((l) => h('div', { class: 'card-count' }, l))))
      .catch((err) => mount(counts, h('span', { class: 'muted small', title: err.message }, 'counts unavailable')));
  }
  const body = [
    h('div', { class: 'card-top' },
      h('div', null, h('div', { class: 'card-title service-name' }, info.label), h('div', { class: 'muted small' }, info.what)),
      h('span', { class: 'service-state' }, badge(state))),
    counts,
  ];
  return info.href
    ? h('a', { class: 'card service-card service-card-link', href: info.href, dataset: { service: name } }, body)
    : h('div', { class: 'card service-card', dataset: { service: name } }, body);
}

export async function dashboardPage(ctx) {
  const grid = h('div', { class: 'cards', id: 'dashboard' }, loading());
  const server = h('div');
  mount(ctx.el, pageHeader('Dashboard', { sub: 'This nimbus server\u2019s services and what they hold.' }), grid, server);
  let info;
  try {
    info = await health();
  } catch (err) {
    mount(grid, errorBox(err, () => dashboardPage(ctx)));
    return;
  }
  if (!ctx.alive) return;
  const names = Object.keys(info.services || {});
  const order = Object.keys(SERVICES);
  names.sort((a, b) => (order.indexOf(a) + 1 || 99) - (order.indexOf(b) + 1 || 99));
  mount(grid, names.map((n) => card(n, info.services[n])));
  mount(server, panel('Server', facts([
    ['Status', badge(info.status)],
    ['Version', info.version],
    ['Region', info.region],
    ['Account', info.account_id],
    ['Authentication', info.auth],
    ['Uptime', fmtDuration(info.uptime_seconds || 0)],
    ['Endpoint', h('code', null, session.current?.endpoint || location.origin)],
    ['Signed in as', h('code', null, session.current?.principal || '')],
  ])));
}
