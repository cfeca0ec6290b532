// The console's calls: its own session API, and AWS APIs through the signing proxy
// at /console/aws/ (the server signs with the signed-in principal's credentials).

export const session = { current: null };

/** Called when the server says the console session is gone. */
let onSignedOut = () => {};
export function whenSignedOut(fn) {
  onSignedOut = fn;
}

export class ApiError extends Error {
  constructor(message, { status = 0, code = '' } = {}) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const TARGETS = {
  logs: 'Logs_20140328',
  ecr: 'AmazonEC2ContainerRegistry_V20150921',
  ecs: 'AmazonEC2ContainerServiceV20141113',
  sqs: 'AmazonSQS',
  events: 'AWSEvents',
};
// SQS speaks json-1.0, the other json services 1.1.
const JSON_10 = new Set(['sqs']);

const QUERY_VERSIONS = { iam: '2010-05-08', sts: '2011-06-15', sns: '2010-03-31' };

/** An ApiError from an AWS (or console) error response of any protocol. */
export async function errorOf(res) {
  const text = await res.text().catch(() => '');
  let code = (res.headers.get('x-amzn-errortype') || '').split(':')[0];
  let message = '';
  const trimmed = text.trim();
  if (trimmed.startsWith('{')) {
    try {
      const body = JSON.parse(trimmed);
      message = body.message || body.Message || body.errorMessage || '';
      code = code || String(body.__type || body.code || body.Code || '').split('#').pop();
    } catch { /* not JSON after all */ }
  } else if (trimmed.startsWith('<')) {
    const doc = new DOMParser().parseFromString(trimmed, 'application/xml');
    message = doc.getElementsByTagName('Message')[0]?.textContent || '';
    code = code || doc.getElementsByTagName('Code')[0]?.textContent || '';
  } else if (trimmed && trimmed.length < 300) {
    message = trimmed;
  }
  if (!message) message = code ? `${code} (HTTP ${res.status})` : `HTTP ${res.status} ${res.statusText}`;
  else if (code && !message.includes(code)) message = `${code}: ${message}`;
  return new ApiError(message, { status: res.status, code });
}

async function consoleCall(method, path, body) {
  const headers = {};
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (session.current?.csrf) headers['x-nimbus-csrf'] = session.current.csrf;
  const res = await fetch(`/console/api/${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: 'same-origin',
    cache: 'no-store',
  });
  return res;
}

/** The session, or null when not signed in. */
export async function loadSession() {
  const res = await consoleCall('GET', 'session');
  if (res.status === 401 || res.status === 403) {
    await res.text().catch(() => ''); // a body left unread keeps the request open
    session.current = null;
    return null;
  }
  if (!res.ok) throw await errorOf(res);
  session.current = await res.json();
  return session.current;
}

export async function signIn(accessKeyId, secretAccessKey, sessionToken) {
  const body = { accessKeyId, secretAccessKey };
  if (sessionToken) body.sessionToken = sessionToken;
  const res = await consoleCall('POST', 'signin', body);
  if (!res.ok) throw await errorOf(res);
  session.current = await res.json();
  return session.current;
}

export async function signOut() {
  try {
    const res = await consoleCall('POST', 'signout');
    await res.text().catch(() => '');
  } finally {
    session.current = null;
  }
}

export async function health() {
  const res = await fetch('/_nimbus/health', { cache: 'no-store' });
  if (!res.ok) throw await errorOf(res);
  return res.json();
}

/** The proxy URL of an AWS path (`/2015-03-31/functions/`) and query. */
export function proxyUrl(path, query) {
  let url = `/console/aws${path}`;
  if (query) {
    const qs = typeof query === 'string' ? query : new URLSearchParams(query).toString();
    if (qs) url += `?${qs}`;
  }
  return url;
}

/**
 * One AWS request through the proxy. Resolves to the Response when it is 2xx; throws
 * an ApiError carrying the AWS error message otherwise.
 */
export async function aws(service, method, path, { query, headers = {}, body, signal } = {}) {
  const res = await fetch(proxyUrl(path, query), {
    method,
    headers: {
      'x-nimbus-service': service,
      'x-nimbus-csrf': session.current?.csrf || '',
      ...headers,
    },
    body,
    signal,
    credentials: 'same-origin',
    cache: 'no-store',
  });
  if (res.ok) return res;
  const error = await errorOf(res);
  if (res.status === 401) {
    // The console session may have expired: check, and go back to the sign-in page.
    const still = await loadSession().catch(() => null);
    if (!still) onSignedOut();
  }
  throw error;
}

async function jsonOf(res) {
  const text = await res.text();
  return text ? JSON.parse(text) : {};
}

/** rest-json (Lambda, Scheduler, API Gateway). */
export async function restJson(service, method, path, body, { query, headers, signal } = {}) {
  const res = await aws(service, method, path, {
    query,
    signal,
    headers: body === undefined ? headers : { 'content-type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return jsonOf(res);
}

/** A Lambda function's API path. */
export const fnPath = (name, rest = '') => `/2015-03-31/functions/${encodeURIComponent(name)}${rest}`;

export const lambda = (method, path, body, opts) => restJson('lambda', method, path, body, opts);
export const scheduler = (method, path, body, opts) => restJson('scheduler', method, path, body, opts);
export const apigateway = (method, path, body, opts) => restJson('apigateway', method, path, body, opts);

/** A REST API's path (`/restapis/{id}/resources`); v1 lists its items as `item`. */
export const restApiPath = (id, rest = '') => `/restapis/${encodeURIComponent(id)}${rest}`;
export const restItems = async (path, query) => (await apigateway('GET', path, undefined, { query })).item || [];

/** An HTTP API's path (`/v2/apis/{id}/routes`). */
export const apiPath = (id, rest = '') => `/v2/apis/${encodeURIComponent(id)}${rest}`;

/** An API Gateway list's `items` (HTTP APIs and their parts come in one page). */
export const apiItems = async (path) => (await apigateway('GET', path)).items || [];

/** json-1.0/1.1 (SQS; Logs, ECR, ECS, EventBridge): `call('logs', 'DescribeLogGroups', {...})`. */
export async function call(service, operation, body = {}, { signal } = {}) {
  const res = await aws(service, 'POST', '/', {
    signal,
    headers: {
      'content-type': `application/x-amz-json-${JSON_10.has(service) ? '1.0' : '1.1'}`,
      'x-amz-target': `${TARGETS[service]}.${operation}`,
    },
    body: JSON.stringify(body),
  });
  return jsonOf(res);
}

/** query protocol (IAM, STS, SNS): resolves to the XML document. */
export async function query(service, action, params = {}) {
  const form = new URLSearchParams({ Action: action, Version: QUERY_VERSIONS[service] });
  for (const [key, value] of Object.entries(params)) if (value != null) form.append(key, String(value));
  const res = await aws(service, 'POST', '/', {
    headers: { 'content-type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: form.toString(),
  });
  return parseXml(await res.text());
}

/**
 * A query-protocol map: `entries('Attributes', [{ key: 'a', value: 'b' }])` is
 * `{ 'Attributes.entry.1.key': 'a', 'Attributes.entry.1.value': 'b' }`.
 */
export function entries(name, list) {
  return Object.fromEntries(list.flatMap((fields, i) => Object.entries(fields).map(([k, v]) => [`${name}.entry.${i + 1}.${k}`, v])));
}

/** rest-xml S3 with a path-style path; resolves to the Response. */
export function s3(method, path, opts) {
  return aws('s3', method, path, opts);
}

/** An S3 call whose answer's body does not matter (read anyway, to end the request). */
export async function s3Do(method, path, opts) {
  const res = await aws('s3', method, path, opts);
  await res.arrayBuffer().catch(() => null);
  return res;
}

export async function s3Xml(method, path, opts) {
  const res = await s3(method, path, opts);
  return parseXml(await res.text());
}

export function parseXml(text) {
  const doc = new DOMParser().parseFromString(text || '<empty/>', 'application/xml');
  if (doc.getElementsByTagName('parsererror').length) throw new ApiError('the server sent XML that does not parse');
  return doc;
}

/** Direct children of `node` named `name`. */
export function kids(node, name) {
  return node ? Array.from(node.children).filter((c) => c.localName === name) : [];
}

/** The first element at a `/`-separated path of child names under `node`. */
export function at(node, path) {
  let cur = node?.documentElement && node.nodeType === 9 ? node.documentElement : node;
  for (const part of path.split('/')) {
    if (!cur) return null;
    cur = kids(cur, part)[0] || null;
  }
  return cur;
}

/** Every element at a path (the last step may match many). */
export function all(node, path) {
  const parts = path.split('/');
  const last = parts.pop();
  const parent = parts.length ? at(node, parts.join('/')) : node?.nodeType === 9 ? node.documentElement : node;
  return kids(parent, last);
}

export const text = (node, path) => at(node, path)?.textContent ?? '';

/** Encodes each segment of an S3 key for a path. */
export function keyPath(key) {
  return key.split('/').map(encodeURIComponent).join('/');
}

/** All pages of a Lambda list (`Marker`/`NextMarker`). */
export async function lambdaAll(path, field, query = {}) {
  const items = [];
  let marker;
  for (let page = 0; page < 50; page++) {
    const q = { ...query, MaxItems: '50' };
    if (marker) q.Marker = marker;
    const res = await lambda('GET', path, undefined, { query: q });
    items.push(...(res[field] || []));
    marker = res.NextMarker;
    if (!marker) break;
  }
  return items;
}

/** Every Lambda function. */
export const listFunctions = () => lambdaAll('/2015-03-31/functions/', 'Functions');

/** All pages of a json-1.1 list (`nextToken`). */
export async function callAll(service, operation, body, field, tokenField = 'nextToken', limit = 40) {
  const items = [];
  let token;
  for (let page = 0; page < limit; page++) {
    const res = await call(service, operation, token ? { ...body, [tokenField]: token } : body);
    items.push(...(res[field] || []));
    token = res[tokenField];
    if (!token) break;
  }
  return items;
}

function safeDecode(value) {
  try {
    return decodeURIComponent(value || '');
  } catch {
    return value || '';
  }
}

/** IAM roles (ListRoles, every page). */
export async function listRoles() {
  const roles = [];
  let marker;
  for (let page = 0; page < 20; page++) {
    const doc = await query('iam', 'ListRoles', { MaxItems: 1000, Marker: marker });
    const result = at(doc, 'ListRolesResult');
    for (const member of all(result, 'Roles/member')) {
      roles.push({
        name: text(member, 'RoleName'),
        arn: text(member, 'Arn'),
        path: text(member, 'Path'),
        trust: safeDecode(text(member, 'AssumeRolePolicyDocument')),
      });
    }
    if (text(result, 'IsTruncated') !== 'true') break;
    marker = text(result, 'Marker');
  }
  return roles;
}

/** SQS queues, by name, with every attribute (`{ url, name, arn, attributes }`). */
export async function listQueues() {
  const urls = await callAll('sqs', 'ListQueues', { MaxResults: 1000 }, 'QueueUrls', 'NextToken');
  const queues = await Promise.all(urls.map(async (url) => {
    try {
      const { Attributes: attributes = {} } = await call('sqs', 'GetQueueAttributes', { QueueUrl: url, AttributeNames: ['All'] });
      return { url, name: url.split('/').pop(), arn: attributes.QueueArn, attributes };
    } catch (err) {
      if (err.code === 'QueueDoesNotExist') return null; // deleted since the listing
      throw err;
    }
  }));
  return queues.filter(Boolean).sort((a, b) => a.name.localeCompare(b.name));
}

/** Adds a statement to a function's resource policy (one already there is fine). */
export async function addPermission(name, body) {
  try {
    await lambda('POST', fnPath(name, '/policy'), body);
  } catch (err) {
    if (err.code !== 'ResourceConflictException') throw err;
  }
}

/** Every member of a paged SNS list (`NextToken`). */
export async function snsAll(action, params, list) {
  const members = [];
  let token;
  for (let page = 0; page < 50; page++) {
    const doc = await query('sns', action, { ...params, NextToken: token });
    members.push(...all(doc, `${action}Result/${list}/member`));
    token = text(doc, `${action}Result/NextToken`);
    if (!token) break;
  }
  return members;
}

/** An SNS Get*Attributes answer's attributes as an object. */
export async function snsAttributes(action, params) {
  const doc = await query('sns', action, params);
  return Object.fromEntries(all(doc, `${action}Result/Attributes/entry`).map((e) => [text(e, 'key'), text(e, 'value')]));
}

/** The ARNs of the SNS topics, in order of name. */
export async function listTopicArns() {
  return (await snsAll('ListTopics', {}, 'Topics')).map((m) => text(m, 'TopicArn')).sort((a, b) => a.localeCompare(b));
}

// Grants to a service principal (SNS for a topic, EventBridge for a rule, API Gateway
// for an API) that sends on behalf of `source`, the topic's, rule's or API's ARN. Each
// statement's id names the source (in the letters Lambda allows in one), so granting
// twice adds nothing.
const grantSid = (service, source) => `${service}-${source.split(':').pop().replace(/[^A-Za-z0-9_-]/g, '-')}`;

function grant(service, source, action, resource) {
  return {
    Sid: grantSid(service, source),
    Effect: 'Allow',
    Principal: { Service: `${service}.amazonaws.com` },
    Action: action,
    Resource: resource,
    Condition: { ArnEquals: { 'aws:SourceArn': source } },
  };
}

/** A policy (JSON text, or none yet) with `statement` added; null when it is there. */
function withStatement(policy, statement) {
  const doc = policy ? JSON.parse(policy) : { Version: '2012-10-17' };
  const statements = [].concat(doc.Statement || []);
  if (statements.some((s) => s.Sid === statement.Sid)) return null;
  return JSON.stringify({ ...doc, Statement: [...statements, statement] });
}

/** Lets `service` send to a queue (`{ url, arn }`): a statement in its access policy. */
export async function allowQueueSend(queue, service, source) {
  const { Attributes: a = {} } = await call('sqs', 'GetQueueAttributes', { QueueUrl: queue.url, AttributeNames: ['Policy'] });
  const policy = withStatement(a.Policy, grant(service, source, 'sqs:SendMessage', queue.arn));
  if (policy) await call('sqs', 'SetQueueAttributes', { QueueUrl: queue.url, Attributes: { Policy: policy } });
}

/** Lets `service` publish to a topic: a statement in its access policy. */
export async function allowTopicPublish(topic, service, source) {
  const { Policy: current } = await snsAttributes('GetTopicAttributes', { TopicArn: topic });
  const policy = withStatement(current, grant(service, source, 'sns:Publish', topic));
  if (policy) await query('sns', 'SetTopicAttributes', { TopicArn: topic, AttributeName: 'Policy', AttributeValue: policy });
}

/** Lets `service` invoke a function: a statement in its resource policy. */
export function allowInvoke(fn, service, source) {
  return addPermission(fn, { StatementId: grantSid(service, source), Action: 'lambda:InvokeFunction', Principal: `${service}.amazonaws.com`, SourceArn: source });
}

export const BASIC_ROLE = 'nimbus-console-lambda-role';
export const BASIC_POLICY = 'arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole';

/** Creates (or reuses) the console's basic Lambda execution role; resolves to its ARN. */
export async function ensureBasicRole(name = BASIC_ROLE) {
  const trust = {
    Version: '2012-10-17',
    Statement: [{ Effect: 'Allow', Principal: { Service: 'lambda.amazonaws.com' }, Action: 'sts:AssumeRole' }],
  };
  let arn;
  try {
    const doc = await query('iam', 'CreateRole', {
      RoleName: name,
      AssumeRolePolicyDocument: JSON.stringify(trust),
      Description: 'Lambda execution role created by the nimbus console (logs only)',
    });
    arn = text(at(doc, 'CreateRoleResult/Role'), 'Arn');
  } catch (err) {
    if (err.code !== 'EntityAlreadyExists') throw err;
    const doc = await query('iam', 'GetRole', { RoleName: name });
    arn = text(at(doc, 'GetRoleResult/Role'), 'Arn');
  }
  await query('iam', 'AttachRolePolicy', { RoleName: name, PolicyArn: BASIC_POLICY });
  return arn;
}

/** Polls GetFunctionConfiguration until the function settles. */
export async function waitForFunction(name, { update = false, timeoutMs = 120000, onState } = {}) {
  const started = Date.now();
  let delay = 300;
  for (;;) {
    const cfg = await lambda('GET', `/2015-03-31/functions/${encodeURIComponent(name)}/configuration`);
    onState?.(cfg);
    if (cfg.State === 'Failed') throw new ApiError(`Function failed: ${cfg.StateReason || cfg.StateReasonCode || 'unknown reason'}`);
    if (update && cfg.LastUpdateStatus === 'Failed') {
      throw new ApiError(`Update failed: ${cfg.LastUpdateStatusReason || cfg.LastUpdateStatusReasonCode || 'unknown reason'}`);
    }
    const settled = cfg.State === 'Active' || (cfg.State == null && !update);
    const updated = !update || cfg.LastUpdateStatus == null || cfg.LastUpdateStatus === 'Successful';
    if (settled && updated) return cfg;
    if (Date.now() - started > timeoutMs) throw new ApiError(`Timed out waiting for ${name} (state ${cfg.State}, update ${cfg.LastUpdateStatus})`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 1.5, 2000);
  }
}
