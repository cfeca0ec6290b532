import { h, mount, toast, busy, confirmDialog } from '../dom.js';
import { lambda, lambdaAll, fnPath } from '../api.js';
import { panel, table, fillRows, field, errorBox } from '../ui.js';
import { fmtDate } from '../util.js';

export function versionsTab(pane, fn) {
  const versionCols = ['Version', 'Description', 'Code SHA-256', 'Runtime', 'Last modified'];
  const aliasCols = ['Alias', 'Version', 'Description', 'ARN', ''];
  const versionsTable = table('versions-table', versionCols, []);
  const aliasesTable = table('aliases-table', aliasCols, []);
  const errors = h('div');

  const publishDesc = h('input', { id: 'version-description', placeholder: 'Description (optional)', maxlength: 256 });
  const publish = h('button', { id: 'version-publish', class: 'btn btn-primary', type: 'button' }, 'Publish new version');
  const aliasName = h('input', { id: 'alias-name', placeholder: 'live', maxlength: 128, spellcheck: 'false' });
  const aliasVersion = h('select', { id: 'alias-version' });
  const aliasDesc = h('input', { id: 'alias-description', placeholder: 'Optional', maxlength: 256 });
  const aliasCreate = h('button', { id: 'alias-create', class: 'btn btn-primary', type: 'submit' }, 'Create alias');

  async function load() {
    try {
      const [vs, as] = await Promise.all([
        lambdaAll(fnPath(fn.name, '/versions'), 'Versions'),
        lambdaAll(fnPath(fn.name, '/aliases'), 'Aliases'),
      ]);
      mount(errors);
      const ordered = vs.slice().sort((a, b) => (a.Version === '$LATEST' ? -1 : b.Version === '$LATEST' ? 1 : Number(b.Version) - Number(a.Version)));
      fillRows(versionsTable.querySelector('tbody'), versionCols.length, ordered.map((v) => [
        h('strong', null, v.Version),
        v.Description || '—',
        h('code', { class: 'small', title: v.CodeSha256 }, (v.CodeSha256 || '').slice(0, 16) + '…'),
        v.Runtime || '—',
        fmtDate(v.LastModified),
      ]));
      fillRows(aliasesTable.querySelector('tbody'), aliasCols.length, as.map((a) => {
        const del = h('button', { class: 'btn btn-ghost btn-small', type: 'button' }, 'Delete');
        del.addEventListener('click', () => busy(del, async () => {
          if (!(await confirmDialog(`Delete alias ${a.Name}?`, { title: 'Delete alias' }))) return;
          await lambda('DELETE', fnPath(fn.name, `/aliases/${encodeURIComponent(a.Name)}`));
          toast(`Deleted alias ${a.Name}`, 'success');
          await load();
        }));
        return [h('strong', null, a.Name), a.FunctionVersion, a.Description || '—', h('code', { class: 'small' }, a.AliasArn), h('div', { class: 'cell-actions' }, del)];
      }), 'No aliases. An alias is a name for a version, such as "live".');
      mount(aliasVersion, ordered.map((v) => h('option', { value: v.Version }, v.Version === '$LATEST' ? '$LATEST' : `${v.Version}${v.Description ? ` — ${v.Description}` : ''}`)));
    } catch (err) {
      mount(errors, errorBox(err, load));
    }
  }

  publish.addEventListener('click', () => busy(publish, async () => {
    const v = await lambda('POST', fnPath(fn.name, '/versions'), publishDesc.value.trim() ? { Description: publishDesc.value.trim() } : {});
    publishDesc.value = '';
    toast(`Published version ${v.Version}`, 'success');
    await load();
  }));

  const aliasForm = h('form', {
    class: 'inline-form',
    onSubmit: (e) => {
      e.preventDefault();
      busy(aliasCreate, async () => {
        const name = aliasName.value.trim();
        if (!name) throw new Error('Enter an alias name.');
        await lambda('POST', fnPath(fn.name, '/aliases'), {
          Name: name,
          FunctionVersion: aliasVersion.value || '$LATEST',
          Description: aliasDesc.value.trim() || undefined,
        });
        aliasName.value = '';
        aliasDesc.value = '';
        toast(`Created alias ${name}`, 'success');
        await load();
      });
    },
  }, field('Name', aliasName), field('Version', aliasVersion), field('Description', aliasDesc), aliasCreate);

  mount(pane, errors,
    panel('Versions', h('div', null,
      h('p', { class: 'muted small' }, 'A version is an immutable snapshot of the code and configuration of $LATEST.'),
      h('div', { class: 'inline-form' }, publishDesc, publish),
      versionsTable)),
    panel('Aliases', h('div', null, aliasForm, aliasesTable)));
  load();
}
