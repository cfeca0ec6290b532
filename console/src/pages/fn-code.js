import { h, mount, toast, busy, modal } from '../dom.js';
import { lambda, waitForFunction, fnPath } from '../api.js';
import { note, loading, errorBox, field } from '../ui.js';
import { createEditor, languageOf } from '../editor.js';
import { readZip, makeZip } from '../zip.js';
import { familyOf, handlerFile } from '../blueprints.js';
import { bytesToBase64, fmtBytes, isText } from '../util.js';

const EDITABLE_LIMIT = 10 * 1024 * 1024; // zips larger than this are not opened inline

/** Code.Location is a presigned link on this server: fetch it same-origin. */
function sameOrigin(url) {
  try {
    const u = new URL(url, location.href);
    return u.origin === location.origin ? u.href : u.pathname + u.search;
  } catch {
    return url;
  }
}

async function fetchCode(location) {
  const res = await fetch(sameOrigin(location), { cache: 'no-store', credentials: 'omit' });
  if (!res.ok) throw new Error(`downloading the code failed: HTTP ${res.status}`);
  return new Uint8Array(await res.arrayBuffer());
}

/** The entry the handler lives in, among the zip's files. */
function handlerEntry(files, handler, runtime) {
  const family = familyOf(runtime);
  const candidates = family === 'node'
    ? ['.mjs', '.js', '.cjs'].map((ext) => handlerFile(handler, 'node', ext))
    : [handlerFile(handler, 'python')];
  return files.find((f) => candidates.includes(f.name));
}

export function codeTab(pane, fn) {
  const body = h('div', null, loading('Loading code…'));
  mount(pane, body);
  let files = []; // [{ name, data, mode, text? }]
  let current = null;
  let editor = null;
  let dirty = false;

  const deploy = h('button', { id: 'code-deploy', class: 'btn btn-primary', type: 'button', disabled: true }, 'Deploy');
  const state = h('span', { id: 'code-state', class: 'muted small' });
  const fileList = h('ul', { class: 'file-list', id: 'code-files' });
  const fileName = h('span', { class: 'mono' });
  const editorBox = h('div', { id: 'code-editor', class: 'editor editor-tall' });
  const uploadInput = h('input', { type: 'file', accept: '.zip,application/zip', id: 'code-upload', class: 'visually-hidden' });
  const uploadButton = h('label', { class: 'btn', for: 'code-upload' }, 'Upload .zip');
  const downloadButton = h('button', { class: 'btn', type: 'button', onClick: () => download() }, 'Download .zip');
  const newFileButton = h('button', { class: 'btn', type: 'button', onClick: () => newFile() }, 'New file');

  const markDirty = (on) => {
    dirty = on;
    deploy.disabled = !on && !!files.length;
    state.textContent = on ? 'Changes not deployed' : '';
    state.classList.toggle('text-warn', on);
  };

  function keepCurrent() {
    if (current && editor) current.text = editor.getValue();
  }

  function renderFiles() {
    const texts = files.filter((f) => f.text != null).sort((a, b) => a.name.localeCompare(b.name));
    const others = files.filter((f) => f.text == null);
    mount(fileList,
      texts.map((f) => h('li', null, h('button', {
        type: 'button',
        class: ['file', f === current && 'active'],
        title: f.name,
        onClick: () => open(f),
      }, f.name))),
      others.length ? h('li', { class: 'muted small file-note' }, `${others.length} binary or large file${others.length === 1 ? '' : 's'} kept as they are`) : null);
  }

  function open(file) {
    keepCurrent();
    current = file;
    fileName.textContent = file.name;
    editor.setValue(file.text);
    editor.setLanguage(languageOf(file.name));
    renderFiles();
    // setValue counts as a change: restore the flag.
    markDirty(files.some((f) => f.text != null && f.text !== f.original));
  }

  async function show() {
    const c = fn.config;
    if (c.PackageType === 'Image') {
      mount(body, note(['This function runs a container image: ', h('code', null, fn.data.Code?.ImageUri || fn.data.Code?.ResolvedImageUri || '?'), '. Push a new image and update the function to change its code.']));
      return;
    }
    const location = fn.data.Code?.Location;
    let zip = null;
    let problem = null;
    if (!location) problem = 'GetFunction gave no Code.Location for this function.';
    else if (c.CodeSize > EDITABLE_LIMIT) problem = `The deployment package is ${fmtBytes(c.CodeSize)}: too large to edit here.`;
    else {
      try {
        zip = await fetchCode(location);
        files = (await readZip(zip)).map((f) => {
          const text = f.data.length <= 1024 * 1024 && isText(f.data) ? new TextDecoder().decode(f.data) : null;
          return { ...f, text, original: text };
        });
      } catch (err) {
        problem = `The code cannot be shown: ${err.message}`;
      }
    }
    deploy.title = 'Deploy (Ctrl+S in the editor)';
    const toolbar = h('div', { class: 'editor-bar' },
      h('span', null, 'File: ', fileName), h('div', { class: 'spacer' }), state, newFileButton, uploadButton, uploadInput, downloadButton, deploy);
    if (problem || !files.some((f) => f.text != null)) {
      deploy.disabled = true;
      mount(body,
        note([problem || 'The deployment package has no text files to edit.', ' Upload a new .zip to replace it.'], 'warn'),
        h('div', { class: 'editor-bar' }, h('div', { class: 'spacer' }), uploadButton, uploadInput, location ? downloadButton : null));
      return;
    }
    mount(body, h('div', { class: 'code-layout' },
      h('aside', { class: 'code-files' }, h('div', { class: 'code-files-head' }, 'Files'), fileList),
      h('div', { class: 'code-main' }, toolbar, editorBox)));
    const first = handlerEntry(files, c.Handler || '', c.Runtime || '') || files.find((f) => f.text != null);
    current = first;
    fileName.textContent = first.name;
    editor = await createEditor(editorBox, {
      doc: first.text,
      language: languageOf(first.name),
      onSave: () => { if (!deploy.disabled) deploy.click(); },
      onChange: (v) => {
        if (current) current.text = v;
        markDirty(files.some((f) => f.text != null && f.text !== f.original));
      },
    });
    fn.ctx.onCleanup(() => editor?.destroy());
    renderFiles();
    markDirty(false);
    deploy.disabled = false;
  }

  async function update(zipBytes) {
    await lambda('PUT', fnPath(fn.name, '/code'), { ZipFile: bytesToBase64(zipBytes) });
    state.textContent = 'Deploying…';
    await waitForFunction(fn.name, { update: true });
    await fn.reload();
  }

  deploy.addEventListener('click', () => busy(deploy, async () => {
    keepCurrent();
    const zip = await makeZip(files.map((f) => ({
      name: f.name,
      data: f.text != null ? f.text : f.data,
      mode: f.mode,
    })));
    try {
      await update(zip);
    } catch (err) {
      state.textContent = 'Deploy failed';
      throw err;
    }
    for (const f of files) if (f.text != null) f.original = f.text;
    markDirty(false);
    state.textContent = 'Deployed';
    toast(`Deployed ${fn.name}`, 'success');
  }));

  uploadInput.addEventListener('change', () => {
    const file = uploadInput.files[0];
    if (!file) return;
    busy(deploy, async () => {
      if (file.size > 50 * 1024 * 1024) throw new Error(`The zip is ${fmtBytes(file.size)}; 50 MB is the most a direct upload takes.`);
      await readZip(new Uint8Array(await file.arrayBuffer())).catch((err) => { throw new Error(`${file.name} is not a usable zip: ${err.message}`); });
      await update(new Uint8Array(await file.arrayBuffer()));
      toast(`Uploaded ${file.name} to ${fn.name}`, 'success');
      uploadInput.value = '';
      editor?.destroy();
      editor = null;
      mount(body, loading('Loading code…'));
      await show();
    });
  });

  async function download() {
    await busy(downloadButton, async () => {
      let bytes;
      if (files.length) {
        keepCurrent();
        bytes = await makeZip(files.map((f) => ({ name: f.name, data: f.text != null ? f.text : f.data, mode: f.mode })));
      } else {
        const data = await lambda('GET', fnPath(fn.name));
        bytes = await fetchCode(data.Code.Location);
      }
      const url = URL.createObjectURL(new Blob([bytes], { type: 'application/zip' }));
      const a = h('a', { href: url, download: `${fn.name}.zip` });
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    });
  }

  function newFile() {
    if (!editor) return;
    const input = h('input', { id: 'new-file-name', placeholder: 'utils.py', spellcheck: 'false' });
    modal('New file', (close) => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        const name = input.value.trim().replace(/^\/+/, '');
        if (!name || name.includes('..') || name.endsWith('/')) return;
        if (files.some((f) => f.name === name)) {
          toast(`${name} exists already`, 'error');
          return;
        }
        const file = { name, data: new Uint8Array(), mode: 0o644, text: '', original: null };
        files.push(file);
        close();
        open(file);
        markDirty(true);
      },
    }, field('File name (path in the package)', input), h('div', { class: 'actions' }, h('button', { class: 'btn btn-primary', type: 'submit' }, 'Add'))));
    input.focus();
  }

  show().catch((err) => mount(body, errorBox(err)));
}
