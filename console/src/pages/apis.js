import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import { apigateway, apiPath, apiItems, restApiPath, restItems, listFunctions, allowInvoke, session } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, facts, badge, select, copyButton, resourceHref } from '../ui.js';
import { arnTail, fmtDate, prettyJson } from '../util.js';

const apiHref = (id) => `#/apis/${encodeURIComponent(id)}`;
const restApiHref = (id) => `#/restapis/${encodeURIComponent(id)}`;
/** Where a REST API's stages answer: `<endpoint>/<stage>/...`, on this origin. */
const restEndpoint = (id) => `${location.origin}/_nimbus/execute-api/${encodeURIComponent(id)}`;
// What API Gateway invokes a function as: the function's policy must name this ARN.
const executeArn = (id) => `arn:aws:execute-api:${session.current.region}:${session.current.account}:${id}/*`;
const grantText = 'Allow the API to invoke the function (a statement in its resource policy)';
const optional = (label) => [`${label} `, h('span', { class: 'optional' }, '(optional)')];

/** A stage's invoke URL: the `$default` stage answers at the API's endpoint itself. */
const invokeUrl = (api, stage) => (stage === '$default' ? api.apiEndpoint : `${api.apiEndpoint}/${encodeURIComponent(stage)}`);

/** A select of the functions, as [ARN, name], with `first` on top when given. */
async function functionSelect(props, first) {
  const control = h('select', props, h('option', { value: '' }, 'Loading…'));
  try {
    const fns = await listFunctions();
    mount(control, first ? h('option', { value: '' }, first) : null,
      fns.length || first ? fns.map((f) => h('option', { value: f.FunctionArn }, f.FunctionName)) : h('option', { value: '' }, 'No functions: create one first'));
  } catch (err) {
    mount(control, h('option', { value: '' }, 'Unavailable'));
    toast(`Listing failed: ${err.message}`, 'error');
  }
  return control;
}

/** Asks, then deletes; resolves to whether it did. */
async function deleteApi(api) {
  if (!(await confirmDialog(`Delete API ${api.name} with its routes, integrations and stages?`, { title: 'Delete API' }))) return false;
  await apigateway('DELETE', apiPath(api.apiId));
  toast(`Deleted API ${api.name}`, 'success');
  return true;
}

export async function apisPage(ctx) {
  const cols = ['Name', 'Id', 'Endpoint', 'Routes', 'Created', ''];
  const tableEl = table('apis-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { id: 'api-create', class: 'btn btn-primary', type: 'button' }, 'Create API');

  async function load() {
    try {
      const apis = await apiItems('/v2/apis');
      const routes = await Promise.all(apis.map((a) => apiItems(apiPath(a.apiId, '/routes')).then((r) => r.length, () => '—')));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, apis.map((a, i) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${a.name}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (await deleteApi(a)) await load();
        }));
        return h('tr', { dataset: { api: a.apiId } },
          h('td', null, h('a', { href: apiHref(a.apiId), class: 'strong' }, a.name)),
          h('td', null, h('code', { class: 'small nowrap' }, a.apiId)),
          h('td', { class: 'endpoint' }, h('a', { href: a.apiEndpoint, target: '_blank', rel: 'noopener' }, a.apiEndpoint)),
          h('td', { class: 'num' }, routes[i]),
          h('td', null, fmtDate(a.createdDate)),
          h('td', { class: 'cell-actions' }, del));
      }), 'No APIs yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', async () => {
    const name = h('input', { id: 'api-name', placeholder: 'orders-api', spellcheck: 'false', autocomplete: 'off', maxlength: 128 });
    const grant = h('input', { type: 'checkbox', id: 'api-grant', checked: true });
    const grantLabel = h('label', { class: 'inline-label', hidden: true }, grant, ` ${grantText}`);
    const fnField = h('div', { class: 'field' }, h('label', { for: 'api-function' }, optional('Quick create: every request to')), loading());
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'api-create-submit' }, 'Create');
    const close = modal('Create HTTP API', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim();
          const target = fnField.querySelector('select')?.value;
          if (!n) {
            error.textContent = 'Name the API.';
            return;
          }
          let api;
          try {
            // With a target, API Gateway adds the integration, a `$default` route and stage.
            api = await apigateway('POST', '/v2/apis', { name: n, protocolType: 'HTTP', target: target || undefined });
            if (target && grant.checked) await allowInvoke(target, 'apigateway', executeArn(api.apiId));
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created API ${n}`, 'success');
          location.hash = apiHref(api.apiId);
        });
      },
    }, field('Name', name), fnField, grantLabel, error, h('div', { class: 'actions' }, submit)));
    name.focus();
    const fn = await functionSelect({ id: 'api-function' }, 'None: add routes later');
    fn.addEventListener('change', () => { grantLabel.hidden = !fn.value; });
    fnField.querySelector('.loading').replaceWith(fn, h('div', { class: 'help' }, 'The function answers every route and method, on a stage that deploys itself.'));
  });

  const rest = restApisPanel();
  const refresh = () => Promise.all([load(), rest.load()]);
  mount(ctx.el,
    pageHeader('APIs', {
      sub: 'API Gateway HTTP APIs: routes send requests to a function or an HTTP endpoint.',
      actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh'), create],
    }),
    status, tableEl, rest.el);
  await refresh();
}

/** The REST APIs (v1, as SAM and the Serverless Framework make them) and their stages. */
function restApisPanel() {
  const cols = ['Name', 'Id', 'Stages', 'Created', ''];
  const tableEl = table('restapis-table', cols, []);
  const status = h('div', null, loading());

  async function load() {
    try {
      const apis = await restItems('/restapis');
      const stages = await Promise.all(apis.map((a) => restItems(restApiPath(a.id, '/stages')).catch(() => [])));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, apis.map((a, i) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${a.name}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Delete REST API ${a.name} with its resources, deployments and stages?`, { title: 'Delete REST API' }))) return;
          await apigateway('DELETE', restApiPath(a.id));
          toast(`Deleted REST API ${a.name}`, 'success');
          await load();
        }));
        return h('tr', { dataset: { restapi: a.id } },
          h('td', null, h('a', { href: restApiHref(a.id), class: 'strong' }, a.name)),
          h('td', null, h('code', { class: 'small nowrap' }, a.id)),
          h('td', null, stages[i].length ? stages[i].map((s) => h('div', null,
            h('a', { href: `${restEndpoint(a.id)}/${encodeURIComponent(s.stageName)}/`, target: '_blank', rel: 'noopener' }, s.stageName))) : h('span', { class: 'muted' }, 'Not deployed')),
          h('td', null, fmtDate(a.createdDate)),
          h('td', { class: 'cell-actions' }, del));
      }), 'No REST APIs yet: SAM, the Serverless Framework or the apigateway API create them.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }
  return { el: panel('REST APIs', h('div', null, status, tableEl), { id: 'restapis-panel' }), load };
}

/** A method's integration in a few words. */
function restIntegration(integration) {
  if (!integration) return h('span', { class: 'muted' }, 'No integration');
  if (integration.type === 'AWS_PROXY') {
    const arn = (integration.uri || '').replace(/^.*:lambda:path\/2015-03-31\/functions\//, '').replace(/\/invocations$/, '');
    const href = resourceHref(arn);
    return href ? h('a', { href, title: arn }, arnTail(arn)) : h('code', { class: 'small' }, integration.uri);
  }
  if (integration.type === 'MOCK') return badge('MOCK', 'muted');
  return h('code', { class: 'small' }, `${integration.httpMethod || 'ANY'} ${integration.uri}`);
}

/** A detail page's header and facts, its API loaded from `path`; null (the error
 * shown, with `again` to retry) when it cannot be. */
async function loadApi(ctx, path, again) {
  const id = ctx.params[0];
  const head = h('div');
  const info = h('div', null, loading());
  mount(ctx.el, head, info);
  try {
    const api = await apigateway('GET', path);
    return ctx.alive ? { id, head, info, api } : null;
  } catch (err) {
    mount(head, pageHeader(id, { crumbs: [['APIs', '#/apis'], [id]] }));
    mount(info, errorBox(err, again));
    return null;
  }
}

export async function restApiPage(ctx) {
  const loaded = await loadApi(ctx, restApiPath(ctx.params[0]), () => restApiPage(ctx));
  if (!loaded) return;
  const { id, head, info, api } = loaded;
  const endpoint = restEndpoint(id);
  mount(head, pageHeader(api.name, {
    crumbs: [['APIs', '#/apis'], [api.name]],
    sub: api.description || 'A REST API: each stage serves the resources as they were when it was deployed.',
    actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh')],
  }));
  mount(info, facts([
    ['Id', h('code', null, api.id)],
    ['Created', fmtDate(api.createdDate)],
    ['Endpoint', h('span', { class: 'arn' }, h('code', { class: 'small' }, `${endpoint}/<stage>`), copyButton(endpoint)), true],
  ]));

  const stageCols = ['Stage', 'Invoke URL', 'Deployment', 'Last updated'];
  const stagesTable = table('rest-stages-table', stageCols, []);
  const methodCols = ['Path', 'Method', 'Integration', 'Authorization'];
  const methodsTable = table('rest-methods-table', methodCols, []);
  const status = h('div');
  // The tester sends to `<endpoint>/<stage>`, as it does for an HTTP API's stage.
  const parts = { stages: [] };
  const tester = testerPanel({ apiEndpoint: endpoint }, parts);

  async function refresh() {
    try {
      const [stages, resources] = await Promise.all([
        restItems(restApiPath(id, '/stages')),
        restItems(restApiPath(id, '/resources'), { embed: 'methods', limit: '500' }),
      ]);
      parts.stages = stages;
      tester.show();
      fillRows(stagesTable.querySelector('tbody'), stageCols.length, stages.map((s) => {
        const url = `${endpoint}/${encodeURIComponent(s.stageName)}`;
        return h('tr', { dataset: { stage: s.stageName } },
          h('td', { class: 'strong' }, s.stageName),
          h('td', { class: 'endpoint' }, h('code', { class: 'small' }, url), copyButton(url)),
          h('td', null, h('code', { class: 'small' }, s.deploymentId)),
          h('td', null, fmtDate(s.lastUpdatedDate)));
      }), 'Not deployed: create a deployment to a stage.');
      const rows = [];
      for (const r of resources.sort((a, b) => a.path.localeCompare(b.path))) {
        for (const [method, m] of Object.entries(r.resourceMethods || {})) {
          rows.push(h('tr', { dataset: { method: `${method} ${r.path}` } },
            h('td', null, h('code', null, r.path)),
            h('td', null, badge(method, 'muted')),
            h('td', null, restIntegration(m.methodIntegration)),
            h('td', null, m.authorizationType, m.apiKeyRequired ? [' ', badge('API key', 'muted')] : null)));
        }
      }
      fillRows(methodsTable.querySelector('tbody'), methodCols.length, rows, 'No methods yet.');
      mount(status);
    } catch (err) {
      mount(status, errorBox(err, refresh));
    }
  }

  mount(ctx.el, head, info, status,
    panel('Stages', stagesTable, { id: 'rest-stages-panel' }),
    panel('Resources and methods', methodsTable, { id: 'rest-methods-panel' }),
    tester.el);
  ctx.every(10000, refresh);
  await refresh();
}

/** An integration in a few words: the function (linked) or the method and URL. */
function integrationSummary(integration) {
  if (!integration) return h('span', { class: 'muted' }, '—');
  if (integration.integrationType === 'AWS_PROXY') {
    const href = resourceHref(integration.integrationUri);
    return [href ? h('a', { href, title: integration.integrationUri }, arnTail(integration.integrationUri)) : h('code', { class: 'small' }, integration.integrationUri),
      ' ', h('span', { class: 'muted small' }, `payload ${integration.payloadFormatVersion}`)];
  }
  return h('code', { class: 'small' }, `${integration.integrationMethod || 'ANY'} ${integration.integrationUri}`);
}

export async function apiPage(ctx) {
  const loaded = await loadApi(ctx, apiPath(ctx.params[0]), () => apiPage(ctx));
  if (!loaded) return;
  const { id, head, info, api } = loaded;

  const remove = h('button', { id: 'api-delete', class: 'btn btn-danger-outline', type: 'button' }, 'Delete API');
  remove.addEventListener('click', () => busy(remove, async () => {
    if (await deleteApi(api)) location.hash = '#/apis';
  }));
  mount(head, pageHeader(api.name, {
    crumbs: [['APIs', '#/apis'], [api.name]],
    sub: api.description,
    actions: [h('button', { class: 'btn', type: 'button', onClick: (e) => busy(e.currentTarget, refresh) }, 'Refresh'), remove],
  }));
  mount(info, facts([
    ['Id', h('code', null, api.apiId)],
    ['Protocol', badge(api.protocolType, 'muted')],
    ['Created', fmtDate(api.createdDate)],
    ['Endpoint', h('span', { class: 'arn' }, h('code', { class: 'small' }, api.apiEndpoint), copyButton(api.apiEndpoint)), true],
  ]));

  // The parts of the API, loaded together: routes name integrations, the tester stages.
  const parts = { routes: [], integrations: [], stages: [] };
  const stages = stagesPanel(api, parts, refresh);
  const routes = routesPanel(api, parts, refresh);
  const tester = testerPanel(api, parts);

  async function refresh() {
    try {
      const [r, i, s] = await Promise.all(['/routes', '/integrations', '/stages'].map((p) => apiItems(apiPath(id, p))));
      Object.assign(parts, { routes: r, integrations: i, stages: s });
      for (const p of [stages, routes, tester]) p.show();
    } catch (err) {
      mount(routes.status, errorBox(err, refresh));
    }
  }

  mount(ctx.el, head, info, stages.el, routes.el, tester.el);
  ctx.every(10000, refresh);
  await refresh();
}

function stagesPanel(api, parts, changed) {
  const cols = ['Stage', 'Invoke URL', 'Auto-deploy', 'Last updated', ''];
  const tableEl = table('stages-table', cols, []);
  const name = h('input', { id: 'stage-name', placeholder: 'prod', spellcheck: 'false', autocomplete: 'off', maxlength: 128 });
  const autoDeploy = h('input', { type: 'checkbox', id: 'stage-auto-deploy', checked: true });
  const add = h('button', { id: 'stage-create', class: 'btn btn-primary', type: 'button' }, 'Create stage');
  add.addEventListener('click', () => busy(add, async () => {
    const n = name.value.trim();
    if (!n) throw new Error('Name the stage.');
    await apigateway('POST', apiPath(api.apiId, '/stages'), { stageName: n, autoDeploy: autoDeploy.checked });
    name.value = '';
    toast(`Created stage ${n}`, 'success');
    await changed();
  }));

  function show() {
    fillRows(tableEl.querySelector('tbody'), cols.length, parts.stages.map((s) => {
      const url = invokeUrl(api, s.stageName);
      const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Delete');
      del.addEventListener('click', () => busy(del, async () => {
        if (!(await confirmDialog(`Delete stage ${s.stageName}? Its invoke URL stops answering.`, { title: 'Delete stage' }))) return;
        await apigateway('DELETE', apiPath(api.apiId, `/stages/${encodeURIComponent(s.stageName)}`));
        toast(`Deleted stage ${s.stageName}`, 'success');
        await changed();
      }));
      return h('tr', { dataset: { stage: s.stageName } },
        h('td', null, h('code', { class: 'nowrap' }, s.stageName)),
        h('td', { class: 'endpoint' }, h('a', { href: `${url}/`, target: '_blank', rel: 'noopener' }, `${url}/`)),
        h('td', null, s.autoDeploy ? badge('Enabled', 'ok') : badge('Off', 'muted')),
        h('td', null, fmtDate(s.lastUpdatedDate || s.createdDate)),
        h('td', { class: 'cell-actions' }, del));
    }), 'No stages: the API answers nowhere until it has one.');
  }

  const el = panel('Stages', h('div', null,
    h('div', { class: 'inline-form' }, field('Stage name', name),
      h('label', { class: 'inline-label' }, autoDeploy, ' Deploy changes automatically'), add),
    tableEl), { id: 'stages-panel' });
  return { el, show };
}

const NEW_FUNCTION = 'new-function';
const NEW_HTTP = 'new-http';
const HTTP_METHODS = ['ANY', 'GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS'];

function routesPanel(api, parts, changed) {
  const cols = ['Route', 'Integration', 'Authorization', ''];
  const tableEl = table('routes-table', cols, []);
  const integrationCols = ['Id', 'Type', 'Target', 'Routes', ''];
  const integrationsTable = table('integrations-table', integrationCols, []);
  const status = h('div');
  const routeKey = h('input', { id: 'route-key', placeholder: 'GET /items/{id}', spellcheck: 'false', autocomplete: 'off' });
  const integration = h('select', { id: 'route-integration' });
  const fnField = h('div', { class: 'field' }, h('label', { for: 'route-function' }, 'Function'), loading());
  const grant = h('input', { type: 'checkbox', id: 'route-grant', checked: true });
  const fnFields = h('div', { class: 'inline-group' }, fnField, h('label', { class: 'inline-label' }, grant, ` ${grantText}`));
  const url = h('input', { id: 'route-url', type: 'url', placeholder: 'https://example.com/{proxy}', spellcheck: 'false' });
  const method = select({ id: 'route-method' }, HTTP_METHODS, 'ANY');
  const httpFields = h('div', { class: 'inline-form' }, field('URL', url), field('Method', method));
  const add = h('button', { id: 'route-add', class: 'btn btn-primary', type: 'button' }, 'Add route');

  functionSelect({ id: 'route-function' }).then((control) => fnField.querySelector('.loading').replaceWith(control));
  const showNew = () => {
    fnFields.hidden = integration.value !== NEW_FUNCTION;
    httpFields.hidden = integration.value !== NEW_HTTP;
  };
  integration.addEventListener('change', showNew);

  /** The integration the form names: an existing one, or one it creates. */
  async function integrationId() {
    if (integration.value === NEW_FUNCTION) {
      const fn = fnField.querySelector('select')?.value;
      if (!fn) throw new Error('Choose a function.');
      if (grant.checked) await allowInvoke(fn, 'apigateway', executeArn(api.apiId));
      return (await apigateway('POST', apiPath(api.apiId, '/integrations'), { integrationType: 'AWS_PROXY', integrationUri: fn, payloadFormatVersion: '2.0' })).integrationId;
    }
    if (integration.value === NEW_HTTP) {
      if (!/^https?:\/\//.test(url.value.trim())) throw new Error('Enter an http(s) URL.');
      return (await apigateway('POST', apiPath(api.apiId, '/integrations'), {
        integrationType: 'HTTP_PROXY', integrationUri: url.value.trim(), integrationMethod: method.value, payloadFormatVersion: '1.0',
      })).integrationId;
    }
    return integration.value;
  }

  add.addEventListener('click', () => busy(add, async () => {
    const key = routeKey.value.trim();
    if (!key) throw new Error('Write the route key: a method and path, or $default.');
    const target = `integrations/${await integrationId()}`;
    await apigateway('POST', apiPath(api.apiId, '/routes'), { routeKey: key, target });
    routeKey.value = '';
    toast(`Added route ${key}`, 'success');
    await changed();
  }));

  /** A row's delete button: asks, deletes `rest`, reloads. */
  function deleteButton(what, rest) {
    const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Delete');
    del.addEventListener('click', () => busy(del, async () => {
      if (!(await confirmDialog(`Delete ${what}?`, { title: 'Delete' }))) return;
      await apigateway('DELETE', apiPath(api.apiId, rest));
      toast(`Deleted ${what}`, 'success');
      await changed();
    }));
    return del;
  }

  function show() {
    const byId = new Map(parts.integrations.map((i) => [i.integrationId, i]));
    const chosen = integration.value;
    mount(integration,
      parts.integrations.map((i) => h('option', { value: i.integrationId }, `${i.integrationId}: ${i.integrationType === 'AWS_PROXY' ? arnTail(i.integrationUri) : i.integrationUri}`)),
      h('option', { value: NEW_FUNCTION }, 'New: a function'),
      h('option', { value: NEW_HTTP }, 'New: an HTTP URL'));
    if (chosen) integration.value = chosen;
    showNew();
    mount(status);
    fillRows(tableEl.querySelector('tbody'), cols.length, parts.routes.map((r) => {
      const auth = r.authorizationType === 'JWT'
        ? [badge('JWT', 'ok'), ' ', h('span', { class: 'muted small' }, (r.authorizationScopes || []).join(' '))]
        : badge(r.authorizationType || 'NONE', 'muted');
      return h('tr', { dataset: { route: r.routeKey } },
        h('td', null, h('code', { class: 'nowrap' }, r.routeKey)),
        h('td', null, integrationSummary(byId.get((r.target || '').replace(/^integrations\//, '')))),
        h('td', null, auth),
        h('td', { class: 'cell-actions' }, deleteButton(`route ${r.routeKey}`, `/routes/${encodeURIComponent(r.routeId)}`)));
    }), 'No routes: requests to this API answer 404.');
    fillRows(integrationsTable.querySelector('tbody'), integrationCols.length, parts.integrations.map((i) => h('tr', { dataset: { integration: i.integrationId } },
      h('td', null, h('code', { class: 'small nowrap' }, i.integrationId)),
      h('td', null, badge(i.integrationType, 'muted')),
      h('td', null, integrationSummary(i)),
      h('td', { class: 'num' }, parts.routes.filter((r) => r.target === `integrations/${i.integrationId}`).length),
      h('td', { class: 'cell-actions' }, deleteButton(`integration ${i.integrationId}`, `/integrations/${encodeURIComponent(i.integrationId)}`)))),
    'No integrations: a route needs one to send requests to.');
  }

  const el = h('div', null,
    panel('Routes', h('div', null,
      h('div', { class: 'inline-form' }, field('Route key', routeKey), field('Integration', integration), add),
      fnFields, httpFields, status, tableEl), { id: 'routes-panel' }),
    panel('Integrations', integrationsTable, { id: 'integrations-panel' }));
  return { el, show, status };
}

/** `Name: value` lines as headers. */
function parseHeaders(textValue) {
  const headers = new Headers();
  for (const line of textValue.split('\n').map((l) => l.trim()).filter(Boolean)) {
    const colon = line.indexOf(':');
    if (colon < 1) throw new Error(`Not a header: ${line} (write Name: value)`);
    headers.append(line.slice(0, colon).trim(), line.slice(colon + 1).trim());
  }
  return headers;
}

/** Sends requests to a stage's invoke URL (on this origin) and shows the answer. */
function testerPanel(api, parts) {
  const stage = h('select', { id: 'tester-stage' });
  const method = select({ id: 'tester-method' }, HTTP_METHODS.slice(1), 'GET');
  const path = h('input', { id: 'tester-path', value: '/', spellcheck: 'false', autocomplete: 'off' });
  const headers = h('textarea', { id: 'tester-headers', class: 'code-area', rows: 3, spellcheck: 'false', placeholder: 'Content-Type: application/json' });
  const body = h('textarea', { id: 'tester-body', class: 'code-area', rows: 3, spellcheck: 'false', placeholder: '{"hello": "api"}' });
  const result = h('div', { id: 'tester-result', hidden: true });
  const statusEl = h('span', { id: 'tester-status', role: 'status' });
  const send = h('button', { id: 'tester-send', class: 'btn btn-primary', type: 'button' }, 'Send request');
  const showBody = () => { body.closest('.field').hidden = ['GET', 'HEAD'].includes(method.value); };
  method.addEventListener('change', showBody);

  send.addEventListener('click', () => busy(send, async () => {
    if (!stage.value) throw new Error('The API has no stage to send to: create one.');
    const p = path.value.trim();
    // The endpoint is this server's: fetch its path, so the request stays same-origin.
    const target = new URL(invokeUrl(api, stage.value) + (p.startsWith('/') ? p : `/${p}`));
    mount(statusEl, loading('Sending…'));
    const started = performance.now();
    const res = await fetch(target.pathname + target.search, {
      method: method.value,
      headers: parseHeaders(headers.value),
      body: ['GET', 'HEAD'].includes(method.value) ? undefined : body.value,
      credentials: 'omit',
      cache: 'no-store',
    });
    const answer = await res.text();
    mount(statusEl, badge(`${res.status} ${res.statusText}`.trim(), res.ok ? 'ok' : 'bad'), ' ',
      h('span', { class: 'muted small' }, `${Math.round(performance.now() - started)} ms`));
    mount(result,
      h('div', { class: 'field' }, h('label', null, 'Headers'), h('pre', { id: 'tester-response-headers', class: 'output' },
        [...res.headers].map(([k, v]) => `${k}: ${v}`).join('\n'))),
      h('div', { class: 'field' }, h('label', null, 'Body'), h('pre', { id: 'tester-response-body', class: 'output' }, prettyJson(answer))));
    result.hidden = false;
  }));

  function show() {
    const chosen = stage.value;
    mount(stage, parts.stages.length
      ? parts.stages.map((s) => h('option', { value: s.stageName }, s.stageName))
      : h('option', { value: '' }, 'No stages'));
    if (parts.stages.some((s) => s.stageName === chosen)) stage.value = chosen;
  }

  const el = panel('Test', h('div', null,
    h('div', { class: 'inline-form' }, field('Stage', stage), field('Method', method), field('Path', path), send),
    h('div', { class: 'grid-2' }, field(optional('Headers'), headers), field(optional('Body'), body)),
    h('div', { class: 'inline-group' }, statusEl),
    result), { id: 'tester-panel' });
  showBody();
  return { el, show };
}
