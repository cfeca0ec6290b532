import { h, mount, toast, busy } from '../dom.js';
import { lambda, fnPath, waitForFunction } from '../api.js';
import { panel, field, select, note } from '../ui.js';
import { RUNTIMES } from '../blueprints.js';
import { rolePicker } from './function-create.js';

const ENV_KEY = /^[a-zA-Z]([a-zA-Z0-9_])*$/;

export function configTab(pane, fn) {
  const c = fn.config;
  const image = c.PackageType === 'Image';
  const description = h('input', { id: 'cfg-description', maxlength: 256, value: c.Description || '' });
  const runtime = select({ id: 'cfg-runtime' }, RUNTIMES.some(([r]) => r === c.Runtime) || image ? RUNTIMES : [[c.Runtime, c.Runtime], ...RUNTIMES], c.Runtime);
  const handler = h('input', { id: 'cfg-handler', spellcheck: 'false', value: c.Handler || '' });
  const memory = h('input', { id: 'cfg-memory', type: 'number', min: 128, max: 10240, value: c.MemorySize });
  const timeout = h('input', { id: 'cfg-timeout', type: 'number', min: 1, max: 900, value: c.Timeout });
  const storage = h('input', { id: 'cfg-storage', type: 'number', min: 512, max: 10240, value: c.EphemeralStorage?.Size || 512 });
  const roles = rolePicker({ id: 'cfg-role', createId: 'cfg-create-role', selected: c.Role });
  const envRows = h('tbody', { id: 'env-rows' });
  const saveButton = h('button', { id: 'config-save', class: 'btn btn-primary', type: 'submit' }, 'Save');
  const formError = h('div', { class: 'form-error', role: 'alert' });

  function envRow(key = '', value = '') {
    const row = h('tr', null,
      h('td', null, h('input', { class: 'env-key', value: key, placeholder: 'KEY', spellcheck: 'false', 'aria-label': 'Key' })),
      h('td', null, h('input', { class: 'env-value', value, placeholder: 'value', spellcheck: 'false', 'aria-label': 'Value' })),
      h('td', { class: 'cell-actions' }, h('button', { class: 'btn btn-ghost btn-small', type: 'button', onClick: () => row.remove() }, 'Remove')));
    envRows.appendChild(row);
    return row;
  }
  for (const [k, v] of Object.entries(c.Environment?.Variables || {})) envRow(k, v);
  const addEnv = h('button', { id: 'env-add', class: 'btn btn-small', type: 'button', onClick: () => envRow().querySelector('input').focus() }, 'Add variable');

  const form = h('form', {
    class: 'form',
    onSubmit: (e) => {
      e.preventDefault();
      formError.textContent = '';
      busy(saveButton, async () => {
        const variables = {};
        for (const row of envRows.querySelectorAll('tr')) {
          const key = row.querySelector('.env-key').value.trim();
          const value = row.querySelector('.env-value').value;
          if (!key && !value) continue;
          if (!ENV_KEY.test(key)) {
            formError.textContent = `"${key}" is not a valid variable name (a letter, then letters, digits and underscores).`;
            return;
          }
          variables[key] = value;
        }
        const body = {
          Description: description.value,
          MemorySize: Number(memory.value),
          Timeout: Number(timeout.value),
          EphemeralStorage: { Size: Number(storage.value) },
          Environment: { Variables: variables },
        };
        if (roles.select.value) body.Role = roles.select.value;
        if (!image) {
          body.Runtime = runtime.value;
          body.Handler = handler.value.trim();
        }
        try {
          await lambda('PUT', fnPath(fn.name, '/configuration'), body);
          await waitForFunction(fn.name, { update: true });
        } catch (err) {
          formError.textContent = err.message;
          throw err;
        }
        await fn.reload();
        toast('Configuration saved', 'success');
      });
    },
  },
  panel('General configuration', h('div', { class: 'grid-2' },
    field('Description', description),
    image ? null : field('Runtime', runtime),
    image ? null : field('Handler', handler),
    field('Memory (MB)', memory, '128 to 10,240 MB; CPU is shared in proportion.'),
    field('Timeout (seconds)', timeout, '1 to 900 seconds.'),
    field('Ephemeral storage, /tmp (MB)', storage),
    field('Execution role', roles.el))),
  panel('Environment variables', h('div', null,
    h('div', { class: 'table-wrap' }, h('table', { class: 'table table-form', id: 'env-table' },
      h('thead', null, h('tr', null, h('th', null, 'Key'), h('th', null, 'Value'), h('th'))), envRows)),
    h('div', { class: 'toolbar' }, addEnv))),
  formError,
  h('div', { class: 'form-actions' }, saveButton));

  // Reserved concurrency is its own API.
  const reserved = fn.data.Concurrency?.ReservedConcurrentExecutions;
  const concValue = h('input', { id: 'concurrency-value', type: 'number', min: 0, max: 1000, value: reserved ?? '', placeholder: 'unreserved' });
  const concSave = h('button', { id: 'concurrency-save', class: 'btn', type: 'button' }, 'Save concurrency');
  const concRemove = h('button', { id: 'concurrency-remove', class: 'btn btn-ghost', type: 'button' }, 'Use unreserved');
  const concState = h('div', { class: 'help', id: 'concurrency-state' });
  const showConc = (value) => {
    concState.textContent = value == null
      ? 'Unreserved: the function shares the account\u2019s unreserved concurrency.'
      : value === 0
        ? 'Reserved 0: every invocation is throttled.'
        : `Reserved ${value}: at most ${value} concurrent invocations, always available to this function.`;
  };
  showConc(reserved);
  concSave.addEventListener('click', () => busy(concSave, async () => {
    if (concValue.value === '') throw new Error('Enter a number, or choose "Use unreserved".');
    const res = await lambda('PUT', `/2017-10-31/functions/${encodeURIComponent(fn.name)}/concurrency`, { ReservedConcurrentExecutions: Number(concValue.value) });
    showConc(res.ReservedConcurrentExecutions);
    await fn.reload();
    toast('Reserved concurrency saved', 'success');
  }));
  concRemove.addEventListener('click', () => busy(concRemove, async () => {
    await lambda('DELETE', `/2017-10-31/functions/${encodeURIComponent(fn.name)}/concurrency`);
    concValue.value = '';
    showConc(null);
    await fn.reload();
    toast('The function uses unreserved concurrency', 'success');
  }));

  mount(pane, form,
    panel('Concurrency', h('div', null,
      h('div', { class: 'inline-group' }, field('Reserved concurrency', concValue), concSave, concRemove),
      concState)),
    image ? note('Container image functions take their runtime and handler from the image.') : null);
}
