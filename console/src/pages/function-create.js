import { h, mount, toast, busy } from '../dom.js';
import { lambda, listRoles, ensureBasicRole, waitForFunction, BASIC_ROLE } from '../api.js';
import { pageHeader, panel, field, select } from '../ui.js';
import { BLUEPRINTS, SCRATCH, RUNTIMES, DEFAULT_RUNTIME, familyOf, handlerFile, loadTestEvents, saveTestEvents } from '../blueprints.js';
import { createEditor, languageOf } from '../editor.js';
import { makeZip } from '../zip.js';
import { bytesToBase64, fmtBytes } from '../util.js';

const NAME_RE = /^[a-zA-Z0-9_-]{1,64}$/;

/** A role select filled from IAM (roles Lambda can assume first), with a create button. */
export function rolePicker({ id = 'fn-role', createId = 'fn-create-role', selected } = {}) {
  const roleSelect = h('select', { id, required: true }, h('option', { value: '' }, 'Loading roles…'));
  const refresh = async (want) => {
    try {
      const roles = await listRoles();
      const forLambda = roles.filter((r) => !r.trust || r.trust.includes('lambda.amazonaws.com'));
      const others = roles.filter((r) => !forLambda.includes(r));
      const current = want || roleSelect.value || selected;
      mount(roleSelect,
        forLambda.length || others.length ? null : h('option', { value: '' }, 'No roles yet: create one'),
        forLambda.length ? h('optgroup', { label: 'Roles Lambda can assume' }, forLambda.map((r) => h('option', { value: r.arn }, r.name))) : null,
        others.length ? h('optgroup', { label: 'Other roles' }, others.map((r) => h('option', { value: r.arn }, r.name))) : null);
      const pick = roles.find((r) => r.arn === current) || forLambda.find((r) => r.name === BASIC_ROLE) || forLambda[0];
      if (pick) roleSelect.value = pick.arn;
    } catch (err) {
      mount(roleSelect, h('option', { value: selected || '' }, selected || 'Roles unavailable'));
      toast(`Listing roles failed: ${err.message}`, 'error');
    }
  };
  const createButton = h('button', {
    id: createId,
    class: 'btn',
    type: 'button',
    title: `Creates ${BASIC_ROLE}, which Lambda can assume, with AWSLambdaBasicExecutionRole (logs)`,
    onClick: () => busy(createButton, async () => {
      const arn = await ensureBasicRole();
      await refresh(arn);
      roleSelect.value = arn;
      roleSelect.dispatchEvent(new Event('change'));
      toast(`Role ${BASIC_ROLE} is ready`, 'success');
    }),
  }, 'Create basic role');
  refresh();
  return { select: roleSelect, button: createButton, refresh, el: h('div', { class: 'inline-group' }, roleSelect, createButton) };
}

export async function createFunctionPage(ctx) {
  const name = h('input', { id: 'fn-name', required: true, maxlength: 64, spellcheck: 'false', autocomplete: 'off', placeholder: 'my-function' });
  const runtime = select({ id: 'fn-runtime' }, RUNTIMES, DEFAULT_RUNTIME.python);
  const blueprint = select({ id: 'fn-blueprint' }, [['scratch', 'Author from scratch'], ...BLUEPRINTS.map((b) => [b.id, b.label])], 'python-hello');
  const handler = h('input', { id: 'fn-handler', required: true, spellcheck: 'false', value: 'lambda_function.lambda_handler' });
  const memory = h('input', { id: 'fn-memory', type: 'number', min: 128, max: 10240, step: 1, value: 128 });
  const timeout = h('input', { id: 'fn-timeout', type: 'number', min: 1, max: 900, value: 3 });
  const description = h('input', { id: 'fn-description', maxlength: 256, placeholder: 'Optional' });
  const roles = rolePicker();
  const fileLabel = h('span', { class: 'mono small muted', id: 'fn-file' });
  const editorBox = h('div', { id: 'fn-editor', class: 'editor editor-tall' });
  const zipInput = h('input', { id: 'fn-zip', type: 'file', accept: '.zip,application/zip' });
  const zipInfo = h('div', { class: 'help' }, 'The zip holds the handler file at its root (or as the handler names it). 50 MB at most.');
  const status = h('div', { id: 'fn-create-status', class: 'status-line', role: 'status' });
  const error = h('div', { id: 'fn-create-error', class: 'form-error', role: 'alert' });
  const create = h('button', { id: 'fn-create', class: 'btn btn-primary', type: 'submit' }, 'Create function');

  let source = 'inline';
  const sourceInline = h('input', { type: 'radio', name: 'fn-source', id: 'fn-source-inline', value: 'inline', checked: true });
  const sourceZip = h('input', { type: 'radio', name: 'fn-source', id: 'fn-source-zip', value: 'zip' });
  const inlinePane = h('div', null, h('div', { class: 'editor-bar' }, 'File: ', fileLabel), editorBox);
  const zipPane = h('div', { hidden: true }, field('Zip file', zipInput), zipInfo);
  const switchSource = () => {
    source = sourceZip.checked ? 'zip' : 'inline';
    inlinePane.hidden = source !== 'inline';
    zipPane.hidden = source !== 'zip';
  };
  sourceInline.addEventListener('change', switchSource);
  sourceZip.addEventListener('change', switchSource);

  let editor = null;
  let code = BLUEPRINTS[0].code;
  let currentFamily = 'python';
  let handlerTouched = false;
  handler.addEventListener('input', () => { handlerTouched = true; updateFile(); });

  const fileName = () => handlerFile(handler.value.trim() || 'index.handler', familyOf(runtime.value));
  function updateFile() {
    fileLabel.textContent = fileName();
    editor?.setLanguage(languageOf(fileName()));
  }

  function applyBlueprint() {
    const bp = BLUEPRINTS.find((b) => b.id === blueprint.value);
    const family = bp ? bp.family : familyOf(runtime.value);
    if (bp && familyOf(runtime.value) !== bp.family) runtime.value = DEFAULT_RUNTIME[bp.family];
    const base = bp || SCRATCH[family];
    handler.value = base.handler;
    handlerTouched = false;
    code = base.code;
    currentFamily = family;
    editor?.setValue(code);
    updateFile();
  }

  runtime.addEventListener('change', () => {
    const family = familyOf(runtime.value);
    if (family !== currentFamily) {
      const bp = BLUEPRINTS.find((b) => b.id === blueprint.value);
      if (bp && bp.family !== family) blueprint.value = 'scratch';
      currentFamily = family;
      if (!handlerTouched) handler.value = SCRATCH[family].handler;
      if (blueprint.value === 'scratch') {
        code = SCRATCH[family].code;
        editor?.setValue(code);
      }
    }
    updateFile();
  });
  blueprint.addEventListener('change', applyBlueprint);

  const form = h('form', {
    class: 'form',
    onSubmit: (e) => {
      e.preventDefault();
      busy(create, async () => {
        try {
          await submit();
        } catch (err) {
          error.textContent = err.message;
          throw err;
        }
      });
    },
  },
  panel('Basic information', h('div', { class: 'grid-2' },
    field('Function name', name, 'Letters, digits, hyphens and underscores; 64 at most.'),
    field('Blueprint', blueprint, 'Code to start from; it sets the runtime family and handler.'),
    field('Runtime', runtime),
    field('Handler', handler, 'module.function (Python) or file.export (Node.js).'),
    field('Memory (MB)', memory),
    field('Timeout (seconds)', timeout),
    field('Description', description),
  )),
  panel('Execution role', h('div', null,
    field('Role', roles.el, 'The role the function runs as. The basic role can write the function\u2019s logs.'))),
  panel('Code', h('div', null,
    h('div', { class: 'radio-row' },
      h('label', null, sourceInline, ' Edit code inline'),
      h('label', null, sourceZip, ' Upload a .zip file')),
    inlinePane,
    zipPane)),
  error,
  h('div', { class: 'form-actions' }, status, h('a', { class: 'btn', href: '#/functions' }, 'Cancel'), create));

  mount(ctx.el,
    pageHeader('Create function', { crumbs: [['Functions', '#/functions'], ['Create']] }),
    form);

  applyBlueprint();
  editor = await createEditor(editorBox, { doc: code, language: languageOf(fileName()), onChange: (v) => { code = v; } });
  ctx.onCleanup(() => editor?.destroy());
  if (!ctx.alive) return;
  updateFile();

  async function submit() {
    error.textContent = '';
    const fn = name.value.trim();
    if (!NAME_RE.test(fn)) throw new Error('The function name must be 1 to 64 letters, digits, hyphens or underscores.');
    if (!roles.select.value) throw new Error('Choose an execution role (or create the basic one).');
    if (!handler.value.trim()) throw new Error('Enter a handler.');
    let zip;
    if (source === 'zip') {
      const file = zipInput.files[0];
      if (!file) throw new Error('Choose a .zip file to upload.');
      if (file.size > 50 * 1024 * 1024) throw new Error(`The zip is ${fmtBytes(file.size)}; 50 MB is the most a direct upload takes.`);
      zip = new Uint8Array(await file.arrayBuffer());
    } else {
      zip = await makeZip([{ name: fileName(), data: editor ? editor.getValue() : code }]);
    }
    status.textContent = 'Creating…';
    const bp = BLUEPRINTS.find((b) => b.id === blueprint.value);
    try {
      await lambda('POST', '/2015-03-31/functions', {
        FunctionName: fn,
        Runtime: runtime.value,
        Role: roles.select.value,
        Handler: handler.value.trim(),
        Description: description.value.trim() || undefined,
        MemorySize: Number(memory.value) || 128,
        Timeout: Number(timeout.value) || 3,
        PackageType: 'Zip',
        Code: { ZipFile: bytesToBase64(zip) },
      });
    } catch (err) {
      status.textContent = '';
      throw err;
    }
    if (bp?.event) {
      const saved = loadTestEvents(fn);
      if (!Object.keys(saved.events).length) {
        saved.events.example = JSON.stringify(bp.event, null, 2);
        saved.selected = 'example';
        saveTestEvents(fn, saved);
      }
    }
    status.textContent = 'Created; waiting for it to become Active…';
    try {
      await waitForFunction(fn, { onState: (cfg) => { status.textContent = `State: ${cfg.State || '…'}`; } });
    } catch (err) {
      error.textContent = err.message;
      status.textContent = '';
      return;
    }
    toast(`Function ${fn} created`, 'success');
    if (ctx.alive) location.hash = `#/functions/${encodeURIComponent(fn)}`;
  }

  zipInput.addEventListener('change', () => {
    const file = zipInput.files[0];
    zipInfo.textContent = file ? `${file.name}: ${fmtBytes(file.size)}` : '';
  });
}
