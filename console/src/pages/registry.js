import { h, mount, toast, busy, confirmDialog, modal } from '../dom.js';
import { call, callAll, session } from '../api.js';
import { pageHeader, table, fillRows, errorBox, loading, field, panel, select, facts, copyButton, note, badge } from '../ui.js';
import { fmtBytes, fmtDate, fmtAgo } from '../util.js';

const REPO_RE = /^(?:[a-z0-9]+(?:[._-][a-z0-9]+)*\/)*[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

const EXAMPLE_POLICY = {
  rules: [{
    rulePriority: 1,
    description: 'Keep the last 10 images',
    selection: { tagStatus: 'any', countType: 'imageCountMoreThan', countNumber: 10 },
    action: { type: 'expire' },
  }],
};

export async function registryPage(ctx) {
  const cols = ['Repository', 'URI', 'Tag mutability', 'Created'];
  const tableEl = table('repositories-table', cols, []);
  const status = h('div', null, loading());
  const create = h('button', { id: 'repository-create', class: 'btn btn-primary', type: 'button' }, 'Create repository');

  async function load() {
    try {
      const repos = await callAll('ecr', 'DescribeRepositories', { maxResults: 1000 }, 'repositories');
      repos.sort((a, b) => a.repositoryName.localeCompare(b.repositoryName));
      mount(status);
      fillRows(tableEl.querySelector('tbody'), cols.length, repos.map((r) => [
        h('a', { href: `#/registry/${r.repositoryName}`, class: 'strong' }, r.repositoryName),
        h('span', { class: 'uri' }, h('code', null, r.repositoryUri), ' ', copyButton(r.repositoryUri)),
        badge(r.imageTagMutability, 'muted'),
        fmtDate(r.createdAt),
      ]), 'No repositories yet.');
    } catch (err) {
      mount(status, errorBox(err, load));
    }
  }

  create.addEventListener('click', () => {
    const name = h('input', { id: 'repository-name', placeholder: 'team/app', spellcheck: 'false', autocomplete: 'off', maxlength: 256 });
    const mutability = select({ id: 'repository-mutability' }, [['MUTABLE', 'Mutable: tags can move'], ['IMMUTABLE', 'Immutable: a tag names one image forever']], 'MUTABLE');
    const error = h('div', { class: 'form-error', role: 'alert' });
    const submit = h('button', { class: 'btn btn-primary', type: 'submit', id: 'repository-create-submit' }, 'Create');
    const close = modal('Create repository', () => h('form', {
      onSubmit: (e) => {
        e.preventDefault();
        busy(submit, async () => {
          const n = name.value.trim();
          if (!REPO_RE.test(n)) {
            error.textContent = 'Repository names are lowercase letters, digits and . _ - separators, with / between parts.';
            return;
          }
          try {
            await call('ecr', 'CreateRepository', { repositoryName: n, imageTagMutability: mutability.value });
          } catch (err) {
            error.textContent = err.message;
            return;
          }
          close();
          toast(`Created repository ${n}`, 'success');
          location.hash = `#/registry/${n}`;
        });
      },
    }, field('Repository name', name), field('Tag mutability', mutability), error, h('div', { class: 'actions' }, submit)));
    name.focus();
  });

  mount(ctx.el,
    pageHeader('Registry', { sub: 'ECR repositories: push and pull images with podman or docker.', actions: [h('button', { class: 'btn', type: 'button', onClick: load }, 'Refresh'), create] }),
    status, tableEl);
  await load();
}

/** The push/pull commands for a repository URI (host:port/name). */
export function pushCommands(uri) {
  const host = uri.split('/')[0];
  const endpoint = session.current?.endpoint || location.origin;
  return [
    '# sign in (the password is an ECR token for your credentials)',
    `aws ecr get-login-password --endpoint-url ${endpoint} | podman login --username AWS --password-stdin ${host} --tls-verify=false`,
    '',
    '# tag and push a local image',
    `podman tag IMAGE ${uri}:latest`,
    `podman push --tls-verify=false ${uri}:latest`,
    '',
    '# pull it back',
    `podman pull --tls-verify=false ${uri}:latest`,
  ].join('\n');
}

export async function repositoryPage(ctx) {
  const name = ctx.params[0];
  const head = h('div');
  const infoBox = h('div', null, loading());
  const cols = ['Tags', 'Digest', 'Size', 'Pushed', 'Last pulled', ''];
  const imagesTable = table('images-table', cols, []);
  const imagesStatus = h('div');
  const lifecycle = h('div', null, loading());

  const deleteRepo = h('button', { class: 'btn btn-danger-outline', type: 'button', id: 'repository-delete' }, 'Delete repository');
  deleteRepo.addEventListener('click', () => busy(deleteRepo, async () => {
    if (!(await confirmDialog(`Delete repository ${name} and all its images?`, { title: 'Delete repository' }))) return;
    await call('ecr', 'DeleteRepository', { repositoryName: name, force: true });
    toast(`Deleted ${name}`, 'success');
    location.hash = '#/registry';
  }));

  mount(ctx.el, head, infoBox,
    panel('Images', h('div', null, imagesStatus, imagesTable), { actions: [h('button', { class: 'btn btn-small', type: 'button', onClick: () => loadImages() }, 'Refresh')] }),
    panel('Lifecycle policy', lifecycle));
  mount(head, pageHeader(name, { crumbs: [['Registry', '#/registry'], [name]], actions: [deleteRepo] }));

  let repo;
  try {
    const res = await call('ecr', 'DescribeRepositories', { repositoryNames: [name] });
    repo = res.repositories?.[0];
    if (!repo) throw new Error(`Repository ${name} not found`);
  } catch (err) {
    mount(infoBox, errorBox(err, () => repositoryPage(ctx)));
    return;
  }
  if (!ctx.alive) return;
  const commands = pushCommands(repo.repositoryUri);
  mount(infoBox,
    facts([
      ['URI', h('span', null, h('code', null, repo.repositoryUri), ' ', copyButton(repo.repositoryUri))],
      ['ARN', h('code', { class: 'small' }, repo.repositoryArn)],
      ['Tag mutability', repo.imageTagMutability],
      ['Created', fmtDate(repo.createdAt)],
    ]),
    panel('Push and pull commands', h('div', null,
      h('pre', { id: 'push-commands', class: 'output commands' }, commands)), { actions: [copyButton(commands, 'Copy all')] }));

  async function loadImages() {
    try {
      const images = await callAll('ecr', 'DescribeImages', { repositoryName: name, maxResults: 1000 }, 'imageDetails');
      images.sort((a, b) => (b.imagePushedAt || 0) - (a.imagePushedAt || 0));
      mount(imagesStatus);
      fillRows(imagesTable.querySelector('tbody'), cols.length, images.map((img) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Delete image ${img.imageDigest}${img.imageTags?.length ? ` (tags ${img.imageTags.join(', ')})` : ''}?`, { title: 'Delete image' }))) return;
          const res = await call('ecr', 'BatchDeleteImage', { repositoryName: name, imageIds: [{ imageDigest: img.imageDigest }] });
          if (res.failures?.length) throw new Error(res.failures[0].failureReason || 'delete failed');
          toast('Image deleted', 'success');
          await loadImages();
        }));
        return [
          img.imageTags?.length ? h('div', { class: 'tags' }, img.imageTags.map((t) => h('span', { class: 'tag' }, t))) : h('span', { class: 'muted' }, 'untagged'),
          h('span', { class: 'digest' }, h('code', { class: 'small', title: img.imageDigest }, img.imageDigest), ' ', copyButton(`${repo.repositoryUri}@${img.imageDigest}`, 'Copy')),
          fmtBytes(img.imageSizeInBytes),
          h('span', { title: fmtDate(img.imagePushedAt) }, fmtAgo(img.imagePushedAt)),
          img.lastRecordedPullTime ? fmtAgo(img.lastRecordedPullTime) : '—',
          h('div', { class: 'cell-actions' }, del),
        ];
      }), 'No images yet. Push one with the commands above.');
    } catch (err) {
      mount(imagesStatus, errorBox(err, loadImages));
    }
  }

  async function loadLifecycle() {
    let text = '';
    let exists = false;
    try {
      const res = await call('ecr', 'GetLifecyclePolicy', { repositoryName: name });
      text = JSON.stringify(JSON.parse(res.lifecyclePolicyText), null, 2);
      exists = true;
    } catch (err) {
      if (err.code !== 'LifecyclePolicyNotFoundException') {
        mount(lifecycle, errorBox(err, loadLifecycle));
        return;
      }
    }
    const area = h('textarea', { id: 'lifecycle-policy', class: 'code-area', rows: 12, spellcheck: 'false', value: exists ? text : JSON.stringify(EXAMPLE_POLICY, null, 2) });
    const save = h('button', { id: 'lifecycle-save', class: 'btn btn-primary', type: 'button' }, exists ? 'Save policy' : 'Create policy');
    const remove = h('button', { id: 'lifecycle-delete', class: 'btn btn-ghost', type: 'button', hidden: !exists }, 'Delete policy');
    const error = h('div', { class: 'form-error', role: 'alert' });
    save.addEventListener('click', () => busy(save, async () => {
      error.textContent = '';
      let policy;
      try {
        policy = JSON.stringify(JSON.parse(area.value));
      } catch (err) {
        error.textContent = `Not valid JSON: ${err.message}`;
        return;
      }
      try {
        await call('ecr', 'PutLifecyclePolicy', { repositoryName: name, lifecyclePolicyText: policy });
      } catch (err) {
        error.textContent = err.message;
        return;
      }
      toast('Lifecycle policy saved', 'success');
      await loadLifecycle();
    }));
    remove.addEventListener('click', () => busy(remove, async () => {
      if (!(await confirmDialog('Delete the lifecycle policy? Images are then kept until deleted.', { title: 'Delete lifecycle policy' }))) return;
      await call('ecr', 'DeleteLifecyclePolicy', { repositoryName: name });
      toast('Lifecycle policy deleted', 'success');
      await loadLifecycle();
    }));
    mount(lifecycle,
      exists ? null : note('No lifecycle policy: images are kept until deleted. The example below expires all but the last 10 images.'),
      area, error,
      h('div', { class: 'form-actions' }, remove, save));
  }

  loadImages();
  loadLifecycle();
  ctx.every(15000, loadImages);
}
