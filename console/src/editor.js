// The code editor, behind a dynamic import so that pages without one stay light.
import { h, mount } from './dom.js';

/** The editor language for a file name. */
export function languageOf(name = '') {
  if (/\.py$/i.test(name)) return 'python';
  if (/\.(m|c)?js$|\.ts$/i.test(name)) return 'javascript';
  if (/\.json$/i.test(name)) return 'json';
  return 'text';
}

/**
 * Mounts an editor in `parent`; resolves to { getValue, setValue, setLanguage, ... }.
 * The same object is kept on `parent.editor` (handy from a test or the devtools).
 */
export async function createEditor(parent, options) {
  mount(parent, h('div', { class: 'editor-loading' }, 'Loading editor…'));
  const { create } = await import('./cm.js');
  mount(parent);
  const editor = await create(parent, options);
  parent.editor = editor;
  return editor;
}
