// Starting points for new functions. Each names its runtime family, handler, the file
// the handler lives in, its code, and a sample test event.

const S3_EVENT = {
  Records: [{
    eventVersion: '2.1',
    eventSource: 'aws:s3',
    awsRegion: 'us-east-1',
    eventTime: '2024-01-01T00:00:00.000Z',
    eventName: 'ObjectCreated:Put',
    s3: {
      s3SchemaVersion: '1.0',
      configurationId: 'console-test',
      bucket: { name: 'example-bucket', arn: 'arn:aws:s3:::example-bucket' },
      object: { key: 'uploads/hello.txt', size: 11, eTag: '5eb63bbbe01eeed093cb22bb8f5acdc3' },
    },
  }],
};

const HTTP_EVENT = {
  version: '2.0',
  rawPath: '/',
  rawQueryString: 'name=nimbus',
  queryStringParameters: { name: 'nimbus' },
  headers: { 'content-type': 'application/json' },
  requestContext: { http: { method: 'GET', path: '/' } },
  isBase64Encoded: false,
};

export const BLUEPRINTS = [
  {
    id: 'python-hello',
    label: 'Hello world (Python)',
    family: 'python',
    handler: 'lambda_function.lambda_handler',
    event: { key1: 'value1', key2: 'value2', key3: 'value3' },
    code: `import json


def lambda_handler(event, context):
    print("Received event: " + json.dumps(event))
    return {
        "statusCode": 200,
        "body": json.dumps({"message": "Hello from nimbus!", "input": event}),
    }
`,
  },
  {
    id: 'python-s3',
    label: 'S3 upload handler (Python)',
    family: 'python',
    handler: 'lambda_function.lambda_handler',
    event: S3_EVENT,
    code: `import json
import urllib.parse


def lambda_handler(event, context):
    """Runs for each object created in a bucket whose notifications point here."""
    handled = []
    for record in event.get("Records", []):
        bucket = record["s3"]["bucket"]["name"]
        key = urllib.parse.unquote_plus(record["s3"]["object"]["key"])
        size = record["s3"]["object"].get("size", 0)
        print(f"{record.get('eventName')}: s3://{bucket}/{key} ({size} bytes)")
        handled.append({"bucket": bucket, "key": key, "size": size})
    return {"handled": handled}
`,
  },
  {
    id: 'python-http',
    label: 'HTTP endpoint for a function URL (Python)',
    family: 'python',
    handler: 'lambda_function.lambda_handler',
    event: HTTP_EVENT,
    code: `import json


def lambda_handler(event, context):
    params = event.get("queryStringParameters") or {}
    name = params.get("name", "world")
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"hello": name, "path": event.get("rawPath", "/")}),
    }
`,
  },
  {
    id: 'node-hello',
    label: 'Hello world (Node.js)',
    family: 'node',
    handler: 'index.handler',
    file: 'index.mjs',
    event: { key1: 'value1', key2: 'value2', key3: 'value3' },
    code: `export const handler = async (event, context) => {
  console.log('Received event:', JSON.stringify(event));
  return {
    statusCode: 200,
    body: JSON.stringify({ message: 'Hello from nimbus!', input: event }),
  };
};
`,
  },
  {
    id: 'node-http',
    label: 'HTTP endpoint for a function URL (Node.js)',
    family: 'node',
    handler: 'index.handler',
    file: 'index.mjs',
    event: HTTP_EVENT,
    code: `export const handler = async (event) => {
  const name = event.queryStringParameters?.name ?? 'world';
  return {
    statusCode: 200,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ hello: name, path: event.rawPath ?? '/' }),
  };
};
`,
  },
];

export const SCRATCH = {
  python: {
    handler: 'lambda_function.lambda_handler',
    code: `def lambda_handler(event, context):
    return {"ok": True}
`,
  },
  node: {
    handler: 'index.handler',
    file: 'index.mjs',
    code: `export const handler = async (event) => {
  return { ok: true };
};
`,
  },
};

export const RUNTIMES = [
  ['python3.14', 'Python 3.14'],
  ['python3.13', 'Python 3.13'],
  ['python3.12', 'Python 3.12'],
  ['python3.11', 'Python 3.11'],
  ['python3.10', 'Python 3.10'],
  ['python3.9', 'Python 3.9'],
  ['nodejs24.x', 'Node.js 24.x'],
  ['nodejs22.x', 'Node.js 22.x'],
  ['nodejs20.x', 'Node.js 20.x'],
  ['nodejs18.x', 'Node.js 18.x'],
];

export const DEFAULT_RUNTIME = { python: 'python3.12', node: 'nodejs22.x' };

export const familyOf = (runtime = '') => (runtime.startsWith('node') ? 'node' : runtime.startsWith('python') ? 'python' : '');

/**
 * The file a handler lives in: `lambda_function.lambda_handler` → lambda_function.py;
 * `src/index.handler` → src/index.mjs (node: .mjs, unless told .js).
 */
export function handlerFile(handler, family, nodeExt = '.mjs') {
  const dot = handler.lastIndexOf('.');
  const module = dot > 0 ? handler.slice(0, dot) : handler;
  return module + (family === 'node' ? nodeExt : '.py');
}

const STORE = 'nimbus-console:test-events:';

/** Saved test events of a function (kept in this browser; they hold no secrets). */
export function loadTestEvents(name) {
  try {
    const saved = JSON.parse(localStorage.getItem(STORE + name) || 'null');
    if (saved && typeof saved.events === 'object') return saved;
  } catch { /* start over */ }
  return { selected: '', events: {} };
}

export function saveTestEvents(name, value) {
  try {
    localStorage.setItem(STORE + name, JSON.stringify(value));
  } catch { /* storage full or disabled: events last for this page only */ }
}
