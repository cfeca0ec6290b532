import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import { call, callAll } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, select, facts, badge, note } from '../ui.js';
import { fmtDate, fmtAgo, arnTail } from '../util.js';
import { groupHref } from './logs.js';

const clusterHref = (c) => `#/containers/${encodeURIComponent(c)}`;
const serviceHref = (c, s) => `#/containers/${encodeURIComponent(c)}/services/${encodeURIComponent(s)}`;
const taskdefHref = (arnOrName) => `#/taskdefs/${encodeURIComponent(arnTail(arnOrName))}`;
const taskId = (arn) => arn.split('/').pop();

/** Task definitions by ARN, fetched once per page. */
function taskdefCache() {
  const cache = new Map();
  return (arn) => {
    if (!cache.has(arn)) {
      cache.set(arn, call('ecs', 'DescribeTaskDefinition', { taskDefinition: arn }).then((r) => r.taskDefinition).catch(() => null));
    }
    return cache.get(arn);
  };
}

/** `hostPort->containerPort/protocol` of each binding of a task. */
export function portsOf(task) {
  const out = [];
  for (const c of task.containers || []) {
    for (const b of c.networkBindings || []) out.push(`${b.hostPort}->${b.containerPort}/${b.protocol || 'tcp'}`);
  }
  return out;
}

/** Links to each container's awslogs stream: prefix/container/task-id. */
function logLinks(task, def) {
  const links = [];
  for (const cd of def?.containerDefinitions || []) {
    const lc = cd.logConfiguration;
    if (lc?.logDriver !== 'awslogs' || !lc.options?.['awslogs-group']) continue;
    const group = lc.options['awslogs-group'];
    const prefix = lc.options['awslogs-stream-prefix'];
    const stream = prefix ? `${prefix}/${cd.name}/${taskId(task.taskArn)}` : '';
    links.push(h('a', { href: groupHref(group, stream), class: 'log-link', title: stream || group }, cd.name));
  }
  return links.length ? h('div', { class: 'links' }, links) : h('span', { class: 'muted' }, '—');
}

function stopCodeOf(task) {
  if (!task.stopCode && !task.stoppedReason) return h('span', { class: 'muted' }, '—');
  const exits = (task.containers || []).filter((c) => c.exitCode != null).map((c) => `${c.name} exit ${c.exitCode}`);
  return h('div', { class: 'stop-info' },
    task.stopCode ? h('code', { class: 'small' }, task.stopCode) : null,
    task.stoppedReason ? h('div', { class: 'small muted' }, task.stoppedReason) : null,
    exits.length ? h('div', { class: 'small muted' }, exits.join(', ')) : null);
}

/** The tasks table of a cluster (optionally one service's), refreshed by `load()`. */
function tasksPanel(cluster, { serviceName, taskdef } = {}) {
  const cols = ['Task', 'Task definition', 'Last status', 'Desired', 'Started', 'Stop code', 'Ports', 'Logs', ''];
  const tableEl = table('tasks-table', cols, []);
  const status = h('div');
  const which = select({ id: 'tasks-status', 'aria-label': 'Task status' }, [['RUNNING', 'Running and pending'], ['STOPPED', 'Stopped']], 'RUNNING');

  async function load() {
    try {
      const arns = await callAll('ecs', 'ListTasks', { cluster, desiredStatus: which.value, ...(serviceName ? { serviceName } : {}) }, 'taskArns');
      let tasks = [];
      for (let i = 0; i < arns.length; i += 100) {
        const res = await call('ecs', 'DescribeTasks', { cluster, tasks: arns.slice(i, i + 100) });
        tasks = tasks.concat(res.tasks || []);
      }
      tasks.sort((a, b) => (b.createdAt || 0) - (a.createdAt || 0));
      const defs = await Promise.all(tasks.map((t) => taskdef(t.taskDefinitionArn)));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, tasks.map((t, i) => {
        const stop = h('button', { class: 'btn btn-ghost btn-small task-stop', type: 'button', hidden: t.desiredStatus === 'STOPPED' }, 'Stop');
        stop.addEventListener('click', () => busy(stop, async () => {
          if (!(await confirmDialog(`Stop task ${taskId(t.taskArn)}?`, { title: 'Stop task', action: 'Stop' }))) return;
          await call('ecs', 'StopTask', { cluster, task: t.taskArn, reason: 'Stopped from the nimbus console' });
          toast(`Stopping ${taskId(t.taskArn)}`, 'success');
          await load();
        }));
        const ports = portsOf(t);
        return h('tr', { dataset: { task: taskId(t.taskArn) } },
          h('td', null, h('code', { class: 'task-id', title: t.taskArn }, taskId(t.taskArn)), t.group ? h('div', { class: 'muted small' }, t.group) : null),
          h('td', null, h('a', { href: taskdefHref(t.taskDefinitionArn) }, arnTail(t.taskDefinitionArn))),
          h('td', { class: 'task-status' }, badge(t.lastStatus)),
          h('td', null, t.desiredStatus),
          h('td', { title: fmtDate(t.startedAt) }, t.startedAt ? fmtAgo(t.startedAt) : '—'),
          h('td', null, stopCodeOf(t)),
          h('td', { class: 'ports' }, ports.length ? ports.map((p) => h('div', null, h('code', null, p))) : h('span', { class: 'muted' }, '—')),
          h('td', null, logLinks(t, defs[i])),
          h('td', { class: 'cell-actions' }, stop));
      }), which.value === 'STOPPED' ? 'No stopped tasks (ECS forgets them after a while).' : 'No running tasks.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }
  which.addEventListener('change', load);
  const el = panel('Tasks', h('div', null, status, tableEl), { actions: [which], id: 'tasks-panel' });
  return { el, load };
}

export async function clustersPage(ctx) {
  const cols = ['Cluster', 'Status', 'Services', 'Running tasks', 'Pending tasks', 'Container instances'];
  const tableEl = table('clusters-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { class: 'btn btn-primary', type: 'button', id: 'cluster-create' }, 'Create cluster');

  async function load() {
    try {
      const arns = await callAll('ecs', 'ListClusters', {}, 'clusterArns');
      let clusters = [];
      for (let i = 0; i < arns.length; i += 100) {
        const res = await call('ecs', 'DescribeClusters', { clusters: arns.slice(i, i + 100) });
        clusters = clusters.concat(res.clusters || []);
      }
      clusters.sort((a, b) => a.clusterName.localeCompare(b.clusterName));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, clusters.map((c) => [
        h('a', { href: clusterHref(c.clusterName), class: 'strong' }, c.clusterName),
        badge(c.status),
        String(c.activeServicesCount ?? 0),
        String(c.runningTasksCount ?? 0),
        String(c.pendingTasksCount ?? 0),
        String(c.registeredContainerInstancesCount ?? 0),
      ]), 'No clusters yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', () => {
    const name = h('input', { id: 'cluster-name', placeholder: 'default', spellcheck: 'false' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Create');
    const close = modal('Create cluster', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim();
          if (!n) return;
          await call('ecs', 'CreateCluster', { clusterName: n });
          close();
          toast(`Created cluster ${n}`, 'success');
          await load();
        });
      },
    }, field('Cluster name', name), h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  const defs = taskDefinitionsPanel();
  mount(ctx.el,
    pageHeader('Containers', { sub: 'ECS clusters, services and tasks running on this node.', actions: [h('button', { class: 'btn', type: 'button', onClick: load }, 'Refresh'), create] }),
    status, tableEl, defs.el);
  ctx.every(10000, load);
  defs.load();
  await load();
}

function taskDefinitionsPanel() {
  const cols = ['Task definition', 'Family', 'Revision'];
  const tableEl = table('taskdefs-table', cols, []);
  const status = h('div');
  async function load() {
    try {
      const arns = await callAll('ecs', 'ListTaskDefinitions', { sort: 'DESC' }, 'taskDefinitionArns', 'nextToken', 10);
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, arns.map((arn) => {
        const [family, revision] = arnTail(arn).split(':');
        return [h('a', { href: taskdefHref(arn) }, arnTail(arn)), family, revision];
      }), 'No task definitions registered.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }
  return { el: panel('Task definitions', h('div', null, status, tableEl)), load };
}

export async function clusterPage(ctx) {
  const cluster = ctx.params[0];
  const info = h('div', null, loading());
  const serviceCols = ['Service', 'Status', 'Desired', 'Running', 'Pending', 'Task definition', 'Scale'];
  const servicesTable = table('services-table', serviceCols, []);
  const servicesStatus = h('div');
  const taskdef = taskdefCache();
  const tasks = tasksPanel(cluster, { taskdef });
  const defs = taskDefinitionsPanel();

  const deleteCluster = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'cluster-delete' }, 'Delete cluster');
  deleteCluster.addEventListener('click', () => busy(deleteCluster, async () => {
    if (!(await confirmDialog(`Delete cluster ${cluster}? It must have no services or tasks.`, { title: 'Delete cluster' }))) return;
    await call('ecs', 'DeleteCluster', { cluster });
    toast(`Deleted ${cluster}`, 'success');
    location.hash = '#/containers';
  }));

  mount(ctx.el,
    pageHeader(cluster, { crumbs: [['Containers', '#/containers'], [cluster]], actions: [h('button', { class: 'btn', type: 'button', onClick: () => refresh() }, 'Refresh'), deleteCluster] }),
    info,
    panel('Services', h('div', null, servicesStatus, servicesTable), { id: 'services-panel' }),
    tasks.el,
    defs.el);

  async function loadInfo() {
    try {
      const res = await call('ecs', 'DescribeClusters', { clusters: [cluster] });
      const c = res.clusters?.[0];
      if (!c) throw new Error(res.failures?.[0]?.reason === 'MISSING' ? `Cluster ${cluster} does not exist` : `Cluster ${cluster} not found`);
      mount(info, facts([
        ['Status', badge(c.status)],
        ['Services', String(c.activeServicesCount ?? 0)],
        ['Running tasks', String(c.runningTasksCount ?? 0)],
        ['Pending tasks', String(c.pendingTasksCount ?? 0)],
        ['ARN', h('code', { class: 'small' }, c.clusterArn)],
      ]));
    } catch (err) {
      mount(info, errorBox(err, loadInfo));
    }
  }

  async function loadServices() {
    try {
      const arns = await callAll('ecs', 'ListServices', { cluster }, 'serviceArns');
      let services = [];
      for (let i = 0; i < arns.length; i += 10) {
        const res = await call('ecs', 'DescribeServices', { cluster, services: arns.slice(i, i + 10) });
        services = services.concat(res.services || []);
      }
      services.sort((a, b) => a.serviceName.localeCompare(b.serviceName));
      mount(servicesStatus);
      const tbody = servicesTable.querySelector('tbody');
      // Keep a scale input the user is typing in.
      const focused = tbody.contains(document.activeElement) && document.activeElement.closest('tr')?.dataset.service;
      if (focused) return;
      fillRows(tbody, serviceCols.length, services.map((s) => {
        const input = h('input', { type: 'number', min: 0, max: 100, value: s.desiredCount, class: 'scale-input input-narrow', 'aria-label': `Desired count of ${s.serviceName}` });
        const go = h('button', { class: 'btn btn-small scale-button', type: 'button' }, 'Update');
        go.addEventListener('click', () => busy(go, async () => {
          await call('ecs', 'UpdateService', { cluster, service: s.serviceName, desiredCount: Number(input.value) });
          toast(`${s.serviceName}: desired count ${input.value}`, 'success');
          input.blur();
          await loadServices();
        }));
        return h('tr', { dataset: { service: s.serviceName } },
          h('td', null, h('a', { href: serviceHref(cluster, s.serviceName), class: 'strong' }, s.serviceName)),
          h('td', null, badge(s.status)),
          h('td', { class: 'num' }, String(s.desiredCount)),
          h('td', { class: 'num' }, String(s.runningCount)),
          h('td', { class: 'num' }, String(s.pendingCount)),
          h('td', null, h('a', { href: taskdefHref(s.taskDefinition) }, arnTail(s.taskDefinition))),
          h('td', null, h('div', { class: 'inline-group' }, input, go)));
      }), 'No services in this cluster.');
    } catch (err) {
      mount(servicesStatus, errorBox(err, loadServices));
    }
  }

  const refresh = () => Promise.all([loadInfo(), loadServices(), tasks.load()]);
  ctx.every(5000, refresh);
  defs.load();
  await refresh();
}

export async function servicePage(ctx) {
  const [cluster, name] = ctx.params;
  const info = h('div', null, loading());
  const deployCols = ['Deployment', 'Status', 'Task definition', 'Desired', 'Running', 'Pending', 'Rollout', 'Updated'];
  const deployTable = table('deployments-table', deployCols, []);
  const events = h('ul', { class: 'events', id: 'service-events' });
  const taskdef = taskdefCache();
  const tasks = tasksPanel(cluster, { serviceName: name, taskdef });
  const desired = h('input', { id: 'service-desired', type: 'number', min: 0, max: 100, class: 'input-narrow' });
  const scale = h('button', { id: 'service-scale', class: 'btn btn-primary', type: 'button' }, 'Update desired count');
  let desiredTouched = false;
  desired.addEventListener('input', () => { desiredTouched = true; });

  const deleteService = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'service-delete' }, 'Delete service');
  deleteService.addEventListener('click', () => busy(deleteService, async () => {
    if (!(await confirmDialog(`Delete service ${name}? Its tasks are stopped.`, { title: 'Delete service' }))) return;
    await call('ecs', 'DeleteService', { cluster, service: name, force: true });
    toast(`Deleted ${name}`, 'success');
    location.hash = clusterHref(cluster);
  }));

  scale.addEventListener('click', () => busy(scale, async () => {
    await call('ecs', 'UpdateService', { cluster, service: name, desiredCount: Number(desired.value) });
    desiredTouched = false;
    toast(`Desired count set to ${desired.value}`, 'success');
    await load();
  }));

  mount(ctx.el,
    pageHeader(name, { crumbs: [['Containers', '#/containers'], [cluster, clusterHref(cluster)], [name]], actions: [deleteService] }),
    info,
    panel('Scale', h('div', { class: 'inline-group' }, field('Desired tasks', desired), scale)),
    panel('Deployments', deployTable),
    tasks.el,
    panel('Events', events));

  async function load() {
    try {
      const res = await call('ecs', 'DescribeServices', { cluster, services: [name] });
      const s = res.services?.[0];
      if (!s) throw new Error(`Service ${name} not found in ${cluster}`);
      if (!desiredTouched && document.activeElement !== desired) desired.value = s.desiredCount;
      mount(info, facts([
        ['Status', badge(s.status)],
        ['Desired', String(s.desiredCount)],
        ['Running', String(s.runningCount)],
        ['Pending', String(s.pendingCount)],
        ['Task definition', h('a', { href: taskdefHref(s.taskDefinition) }, arnTail(s.taskDefinition))],
        ['Launch type', s.launchType || '—'],
        ['Created', fmtDate(s.createdAt)],
        ['ARN', h('code', { class: 'small' }, s.serviceArn)],
      ]));
      fillRows(deployTable.querySelector('tbody'), deployCols.length, (s.deployments || []).map((d) => [
        h('code', { class: 'small' }, d.id),
        badge(d.status, d.status === 'PRIMARY' ? 'ok' : 'muted'),
        h('a', { href: taskdefHref(d.taskDefinition) }, arnTail(d.taskDefinition)),
        String(d.desiredCount), String(d.runningCount), String(d.pendingCount),
        d.rolloutState ? badge(d.rolloutState) : '—',
        fmtAgo(d.updatedAt),
      ]), 'No deployments.');
      mount(events, (s.events || []).slice(0, 50).map((e) => h('li', null,
        h('span', { class: 'muted small event-time' }, fmtDate(e.createdAt)), ' ', e.message)));
      if (!(s.events || []).length) mount(events, h('li', { class: 'muted' }, 'No events yet.'));
    } catch (err) {
      mount(info, errorBox(err, load));
    }
  }
  const refresh = () => Promise.all([load(), tasks.load()]);
  ctx.every(5000, refresh);
  await refresh();
}

export async function taskDefinitionPage(ctx) {
  const name = ctx.params[0];
  const body = h('div', null, loading());
  mount(ctx.el, pageHeader(name, { crumbs: [['Containers', '#/containers'], ['Task definitions'], [name]] }), body);
  try {
    const res = await call('ecs', 'DescribeTaskDefinition', { taskDefinition: name });
    const d = res.taskDefinition;
    const containerCols = ['Container', 'Image', 'CPU', 'Memory', 'Ports', 'Essential', 'Logs'];
    mount(body,
      facts([
        ['Family', d.family], ['Revision', String(d.revision)], ['Status', badge(d.status)],
        ['Network mode', d.networkMode || '—'], ['CPU', d.cpu || '—'], ['Memory', d.memory || '—'],
        ['Compatibilities', (d.requiresCompatibilities || d.compatibilities || []).join(', ') || '—'],
        ['Task role', d.taskRoleArn ? h('code', { class: 'small' }, d.taskRoleArn) : '—'],
        ['Execution role', d.executionRoleArn ? h('code', { class: 'small' }, d.executionRoleArn) : '—'],
        ['Registered', fmtDate(d.registeredAt)],
      ]),
      panel('Containers', table('containers-table', containerCols, (d.containerDefinitions || []).map((c) => [
        h('strong', null, c.name),
        h('code', { class: 'small' }, c.image),
        c.cpu != null ? String(c.cpu) : '—',
        c.memory != null ? `${c.memory} MiB` : c.memoryReservation != null ? `${c.memoryReservation} MiB (soft)` : '—',
        (c.portMappings || []).map((p) => h('div', null, h('code', null, `${p.hostPort ?? ''}${p.hostPort != null ? '->' : ''}${p.containerPort}/${p.protocol || 'tcp'}`))),
        c.essential === false ? 'no' : 'yes',
        c.logConfiguration?.logDriver === 'awslogs'
          ? h('a', { href: groupHref(c.logConfiguration.options?.['awslogs-group'] || '') }, c.logConfiguration.options?.['awslogs-group'])
          : c.logConfiguration?.logDriver || '—',
      ]))),
      panel('JSON', h('pre', { class: 'output', id: 'taskdef-json' }, JSON.stringify(d, null, 2))),
      d.status === 'INACTIVE' ? note('This revision is deregistered: running tasks keep it, new ones cannot use it.', 'warn') : null);
  } catch (err) {
    mount(body, errorBox(err, () => taskDefinitionPage(ctx)));
  }
}
