import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import { s3, s3Do, s3Xml, all, text, keyPath, proxyUrl, session, errorOf } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel } from '../ui.js';
import { fmtBytes, fmtDate, fmtAgo } from '../util.js';

const BUCKET_RE = /^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/;
const bucketHref = (bucket, prefix) => `#/buckets/${encodeURIComponent(bucket)}${prefix ? `?prefix=${encodeURIComponent(prefix)}` : ''}`;

/**
 * A plain link that downloads an object through the proxy: the csrf token (and the
 * service, which a link cannot send as a header) ride in the query.
 */
export function downloadUrl(bucket, key) {
  return proxyUrl(`/${encodeURIComponent(bucket)}/${keyPath(key)}`, { 'nimbus-service': 's3', 'nimbus-csrf': session.current?.csrf || '' });
}

// Whether the server takes plain download links (checked once, with a HEAD of one).
let plainLinks = null;
function linksWork(bucket, key) {
  if (!plainLinks) {
    plainLinks = fetch(downloadUrl(bucket, key), { method: 'HEAD', credentials: 'same-origin', cache: 'no-store' })
      .then((res) => res.ok)
      .catch(() => false);
  }
  return plainLinks;
}

/** The object's bytes through the proxy (headers, not a link). */
async function fetchObject(bucket, key) {
  const res = await s3('GET', `/${encodeURIComponent(bucket)}/${keyPath(key)}`);
  return res.blob();
}

/** Downloads an object: a plain link when the server takes them, else via a blob. */
async function download(bucket, key) {
  const name = key.split('/').pop() || 'download';
  let href;
  let revoke = null;
  if (await linksWork(bucket, key)) href = downloadUrl(bucket, key);
  else {
    href = URL.createObjectURL(await fetchObject(bucket, key));
    revoke = href;
  }
  const a = h('a', { href, download: name, hidden: true });
  document.body.appendChild(a);
  a.click();
  a.remove();
  if (revoke) setTimeout(() => URL.revokeObjectURL(revoke), 30000);
}

function downloadButton(bucket, key, label = 'Download', primary = false) {
  const a = h('a', { class: ['btn', primary ? 'btn-primary' : 'btn-small'], href: downloadUrl(bucket, key), download: key.split('/').pop() }, label);
  a.addEventListener('click', (e) => {
    e.preventDefault();
    a.classList.add('is-busy');
    download(bucket, key)
      .catch((err) => toast(`Download failed: ${err.message}`, 'error'))
      .finally(() => a.classList.remove('is-busy'));
  });
  return a;
}

export async function bucketsPage(ctx) {
  const cols = ['Name', 'Created', ''];
  const tableEl = table('buckets-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { id: 'bucket-create', class: 'btn btn-primary', type: 'button' }, 'Create bucket');

  async function load() {
    try {
      const doc = await s3Xml('GET', '/');
      const buckets = all(doc, 'Buckets/Bucket').map((b) => ({ name: text(b, 'Name'), created: text(b, 'CreationDate') }));
      buckets.sort((a, b) => a.name.localeCompare(b.name));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, buckets.map((b) => [
        h('a', { href: bucketHref(b.name), class: 'strong' }, b.name),
        h('span', { title: fmtDate(b.created) }, fmtDate(b.created)),
        h('span', { class: 'muted small' }, `arn:aws:s3:::${b.name}`),
      ]), 'No buckets yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', () => {
    const name = h('input', { id: 'bucket-name', placeholder: 'my-bucket', spellcheck: 'false', autocomplete: 'off', maxlength: 63 });
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'bucket-create-submit' }, 'Create');
    const close = modal('Create bucket', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim();
          if (!BUCKET_RE.test(n)) {
            error.textContent = 'Bucket names are 3 to 63 lowercase letters, digits, dots and hyphens, starting and ending with a letter or digit.';
            return;
          }
          try {
            await s3Do('PUT', `/${encodeURIComponent(n)}`);
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created bucket ${n}`, 'success');
          await load();
        });
      },
    }, field('Bucket name', name), error, h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  mount(ctx.el,
    pageHeader('Buckets', { sub: 'S3 buckets on this server.', actions: [h('button', { class: 'btn', type: 'button', onClick: load }, 'Refresh'), create] }),
    status, tableEl);
  await load();
}

export async function bucketPage(ctx) {
  const bucket = ctx.params[0];
  const prefix = ctx.query.get('prefix') || '';
  const cols = [{ label: h('input', { type: 'checkbox', 'aria-label': 'Select all', id: 'objects-select-all' }), class: 'cell-check' }, 'Name', 'Size', 'Last modified', ''];
  const tableEl = table('objects-table', cols, []);
  const status = h('div', null, loading());
  const more = h('button', { class: 'btn', type: 'button', hidden: true }, 'Load more');
  const uploadInput = h('input', { id: 'upload-input', type: 'file', multiple: true, class: 'visually-hidden' });
  const progress = h('progress', { id: 'upload-progress', max: 100, value: 0, hidden: true });
  const progressText = h('span', { class: 'muted small', id: 'upload-status' });
  const deleteSelected = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'objects-delete', disabled: true }, 'Delete selected');
  const newFolder = h('button', { class: 'btn', type: 'button', id: 'folder-create' }, 'Create folder');
  const filter = h('input', { type: 'search', class: 'input-search', placeholder: 'Find by prefix', 'aria-label': 'Find by prefix' });

  // Breadcrumbs: bucket / a / b /
  const parts = prefix.split('/').filter(Boolean);
  const crumbs = [['Buckets', '#/buckets'], [bucket, prefix ? bucketHref(bucket) : null]];
  parts.forEach((p, i) => crumbs.push([p, i < parts.length - 1 ? bucketHref(bucket, `${parts.slice(0, i + 1).join('/')}/`) : null]));

  let token;
  let rows = [];
  const selected = new Set();
  const selectAll = cols[0].label;

  const updateSelection = () => {
    deleteSelected.disabled = !selected.size;
    deleteSelected.textContent = selected.size ? `Delete selected (${selected.size})` : 'Delete selected';
  };

  async function load(reset = true) {
    if (reset) {
      token = undefined;
      rows = [];
      selected.clear();
      updateSelection();
    }
    const q = { 'list-type': '2', delimiter: '/', prefix: prefix + filter.value.trim(), 'max-keys': '500' };
    if (token) q['continuation-token'] = token;
    try {
      const doc = await s3Xml('GET', `/${encodeURIComponent(bucket)}`, { query: q });
      const root = doc.documentElement;
      for (const p of all(root, 'CommonPrefixes')) {
        const full = text(p, 'Prefix');
        rows.push(h('tr', { class: 'folder-row' },
          h('td', { class: 'cell-check' }),
          h('td', null, h('a', { href: bucketHref(bucket, full), class: 'folder' }, h('span', { class: 'icon-folder', 'aria-hidden': 'true' }), full.slice(prefix.length))),
          h('td', null, '—'), h('td', null, '—'), h('td')));
      }
      for (const c of all(root, 'Contents')) {
        const key = text(c, 'Key');
        if (key === prefix) continue; // the folder's own marker
        const size = Number(text(c, 'Size'));
        const check = h('input', { type: 'checkbox', 'aria-label': `Select ${key}`, onChange: (e) => { e.target.checked ? selected.add(key) : selected.delete(key); updateSelection(); } });
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button', title: `Delete ${key}` }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Delete ${key}?`, { title: 'Delete object' }))) return;
          await s3Do('DELETE', `/${encodeURIComponent(bucket)}/${keyPath(key)}`);
          toast(`Deleted ${key}`, 'success');
          await load();
        }));
        rows.push(h('tr', { dataset: { key } },
          h('td', { class: 'cell-check' }, check),
          h('td', null, h('a', { href: '#', class: 'object-name', onClick: (e) => { e.preventDefault(); details(key); } }, key.slice(prefix.length))),
          h('td', null, fmtBytes(size)),
          h('td', { title: fmtDate(text(c, 'LastModified')) }, fmtAgo(text(c, 'LastModified'))),
          h('td', { class: 'cell-actions' },
            downloadButton(bucket, key),
            del)));
      }
      token = text(root, 'IsTruncated') === 'true' ? text(root, 'NextContinuationToken') : undefined;
      more.hidden = !token;
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, rows, prefix || filter.value ? 'Nothing under this prefix.' : 'This bucket is empty. Upload files to add objects.');
      selectAll.checked = false;
    } catch (err) {
      mount(status, errorBox(err, () => load(reset)));
    }
  }

  selectAll.addEventListener('change', () => {
    for (const box of tableEl.querySelectorAll('tbody input[type=checkbox]')) {
      box.checked = selectAll.checked;
      box.dispatchEvent(new Event('change'));
    }
  });

  deleteSelected.addEventListener('click', () => busy(deleteSelected, async () => {
    const keys = [...selected];
    if (!(await confirmDialog(`Delete ${keys.length} object${keys.length === 1 ? '' : 's'}?`, { title: 'Delete objects' }))) return;
    for (const key of keys) await s3Do('DELETE', `/${encodeURIComponent(bucket)}/${keyPath(key)}`);
    toast(`Deleted ${keys.length} object${keys.length === 1 ? '' : 's'}`, 'success');
    await load();
  }));

  function upload(file, key, onProgress) {
    return new Promise((resolve, reject) => {
      const xhr = new XMLHttpRequest();
      xhr.open('PUT', proxyUrl(`/${encodeURIComponent(bucket)}/${keyPath(key)}`));
      xhr.setRequestHeader('x-nimbus-service', 's3');
      xhr.setRequestHeader('x-nimbus-csrf', session.current?.csrf || '');
      xhr.setRequestHeader('content-type', file.type || 'application/octet-stream');
      xhr.upload.onprogress = (e) => e.lengthComputable && onProgress(e.loaded);
      xhr.onload = async () => {
        if (xhr.status >= 200 && xhr.status < 300) resolve();
        else reject(await errorOf(new Response(xhr.responseText, { status: xhr.status, statusText: xhr.statusText })));
      };
      xhr.onerror = () => reject(new Error(`uploading ${file.name} failed (network error)`));
      xhr.send(file);
    });
  }

  uploadInput.addEventListener('change', async () => {
    const files = [...uploadInput.files];
    if (!files.length) return;
    const total = files.reduce((n, f) => n + f.size, 0) || 1;
    let done = 0;
    progress.hidden = false;
    progress.value = 0;
    uploadInput.disabled = true;
    try {
      for (const [i, file] of files.entries()) {
        progressText.textContent = `Uploading ${file.name} (${i + 1}/${files.length})…`;
        await upload(file, prefix + file.name, (loaded) => {
          progress.value = Math.round(((done + loaded) / total) * 100);
        });
        done += file.size;
        progress.value = Math.round((done / total) * 100);
      }
      progress.value = 100;
      progressText.textContent = `Uploaded ${files.length} file${files.length === 1 ? '' : 's'} (${fmtBytes(total)})`;
      toast(progressText.textContent, 'success');
    } catch (err) {
      progressText.textContent = `Upload failed: ${err.message}`;
      toast(progressText.textContent, 'error');
    } finally {
      uploadInput.disabled = false;
      uploadInput.value = '';
      await load();
    }
  });

  newFolder.addEventListener('click', () => {
    const name = h('input', { id: 'folder-name', placeholder: 'photos', spellcheck: 'false' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit' }, 'Create');
    const close = modal('Create folder', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim().replace(/^\/+|\/+$/g, '');
          if (!n) return;
          await s3Do('PUT', `/${encodeURIComponent(bucket)}/${keyPath(`${prefix}${n}/`)}`, { body: '' });
          close();
          location.hash = bucketHref(bucket, `${prefix}${n}/`);
        });
      },
    }, field('Folder name', name, 'A folder is a key prefix ending in "/".'), h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  async function details(key) {
    const path = `/${encodeURIComponent(bucket)}/${keyPath(key)}`;
    modal(key.split('/').pop(), () => {
      const body = h('div', null, loading());
      s3('HEAD', path).then((res) => {
        const type = res.headers.get('content-type') || '';
        const size = Number(res.headers.get('content-length') || 0);
        const meta = [];
        res.headers.forEach((v, k) => { if (k.startsWith('x-amz-meta-')) meta.push([k.slice(11), v]); });
        const preview = h('div');
        if (size < 512 * 1024 && /^(text\/|application\/(json|xml|javascript))/.test(type)) {
          s3('GET', path).then((r) => r.text()).then((t) => mount(preview, h('pre', { class: 'output' }, t))).catch(() => {});
        } else if (size < 5 * 1024 * 1024 && type.startsWith('image/')) {
          // The page's CSP allows data: images (not blob:).
          fetchObject(bucket, key).then((blob) => new Promise((resolve) => {
            const reader = new FileReader();
            reader.onload = () => resolve(reader.result);
            reader.readAsDataURL(blob);
          })).then((src) => mount(preview, h('img', { src, alt: key, class: 'preview-img' }))).catch(() => {});
        }
        mount(body,
          h('dl', { class: 'facts' }, [
            ['Key', h('code', null, key)], ['Size', fmtBytes(size)], ['Type', type || '—'],
            ['ETag', h('code', null, res.headers.get('etag') || '—')], ['Last modified', fmtDate(res.headers.get('last-modified'))],
            ['S3 URI', h('code', null, `s3://${bucket}/${key}`)],
            ...meta.map(([k, v]) => [`meta: ${k}`, v]),
          ].map(([k, v]) => h('div', { class: 'fact' }, h('dt', null, k), h('dd', null, v)))),
          h('div', { class: 'actions' }, downloadButton(bucket, key, 'Download', true)),
          preview);
      }).catch((err) => mount(body, errorBox(err)));
      return body;
    }, { wide: true });
  }

  const deleteBucket = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'bucket-delete' }, 'Delete bucket');
  deleteBucket.addEventListener('click', () => busy(deleteBucket, async () => {
    if (!(await confirmDialog(`Delete bucket ${bucket}? It must be empty.`, { title: 'Delete bucket' }))) return;
    await s3Do('DELETE', `/${encodeURIComponent(bucket)}`);
    toast(`Deleted bucket ${bucket}`, 'success');
    location.hash = '#/buckets';
  }));

  let timer;
  filter.addEventListener('input', () => {
    clearTimeout(timer);
    timer = setTimeout(() => load(), 250);
  });
  more.addEventListener('click', () => busy(more, () => load(false)));

  mount(ctx.el,
    pageHeader(prefix ? parts[parts.length - 1] + '/' : bucket, {
      crumbs,
      sub: h('code', null, `s3://${bucket}/${prefix}`),
      actions: [h('button', { class: 'btn', type: 'button', onClick: () => load() }, 'Refresh'), newFolder, prefix ? null : deleteBucket],
    }),
    panel('Upload', h('div', { class: 'upload-row' },
      h('label', { class: 'btn btn-primary', for: 'upload-input' }, 'Choose files…'), uploadInput,
      h('span', { class: 'muted small' }, prefix ? `to ${prefix}` : 'to the bucket\u2019s root'),
      h('div', { class: 'upload-progress' }, progress, progressText)), { className: 'panel-compact' }),
    h('div', { class: 'toolbar' }, filter, h('div', { class: 'spacer' }), deleteSelected),
    status, tableEl, h('div', { class: 'toolbar' }, more));
  await load();
}
