// A tiny DOM helper: h('div', { class: 'x', onClick }, child, [children], 'text').

const PROPS = new Set(['value', 'checked', 'disabled', 'selected', 'multiple', 'textContent', 'readOnly', 'indeterminate']);
const SVG_NS = 'http://www.w3.org/2000/svg';

function apply(el, props) {
  if (!props) return;
  for (const [key, value] of Object.entries(props)) {
    if (value == null || value === false) continue;
    if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else if (key === 'style' && typeof value === 'object') {
      Object.assign(el.style, value);
    } else if (key === 'dataset') {
      Object.assign(el.dataset, value);
    } else if (key === 'ref') {
      value(el);
    } else if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2).toLowerCase(), value);
    } else if (PROPS.has(key)) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
}

function append(el, children) {
  for (const child of children) {
    if (child == null || child === false || child === true) continue;
    if (Array.isArray(child)) append(el, child);
    else if (child instanceof Node) el.appendChild(child);
    else el.appendChild(document.createTextNode(String(child)));
  }
}

/** An HTML element. Props that are null/false are skipped. */
export function h(tag, props, ...children) {
  const el = document.createElement(tag);
  if (props && (props instanceof Node || Array.isArray(props) || typeof props !== 'object')) {
    children.unshift(props);
    props = null;
  }
  apply(el, props);
  append(el, children);
  return el;
}

/** An SVG element. */
export function s(tag, props, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  apply(el, props);
  append(el, children);
  return el;
}

/** Replaces the children of `el`. */
export function mount(el, ...children) {
  el.replaceChildren();
  append(el, children);
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

/** A small toast in the corner. */
export function toast(message, kind = 'info') {
  let box = document.getElementById('toasts');
  if (!box) {
    box = h('div', { id: 'toasts', 'aria-live': 'polite' });
    document.body.appendChild(box);
  }
  const item = h('div', { class: ['toast', `toast-${kind}`], role: kind === 'error' ? 'alert' : 'status' }, message);
  box.appendChild(item);
  while (box.childElementCount > 3) box.firstElementChild.remove();
  setTimeout(() => item.classList.add('toast-leave'), kind === 'error' ? 7000 : 3500);
  setTimeout(() => item.remove(), kind === 'error' ? 7500 : 4000);
}

/** A modal confirmation (native confirm() is auto-dismissed by test drivers). */
export function confirmDialog(message, { title = 'Are you sure?', action = 'Delete', danger = true } = {}) {
  return new Promise((resolve) => {
    const done = (answer) => {
      dialog.close();
      dialog.remove();
      resolve(answer);
    };
    const dialog = h('dialog', { class: 'dialog', id: 'confirm-dialog' },
      h('h3', null, title),
      h('p', null, message),
      h('div', { class: 'actions' },
        h('button', { class: 'btn', type: 'button', id: 'confirm-cancel', onClick: () => done(false) }, 'Cancel'),
        h('button', { class: ['btn', danger ? 'btn-danger' : 'btn-primary'], type: 'button', id: 'confirm-ok', onClick: () => done(true) }, action),
      ),
    );
    dialog.addEventListener('cancel', (e) => { e.preventDefault(); done(false); });
    document.body.appendChild(dialog);
    dialog.showModal();
  });
}

/** A modal with arbitrary content; `close()` is passed to the builder. */
export function modal(title, build, { wide = false } = {}) {
  const dialog = h('dialog', { class: ['dialog', wide && 'dialog-wide'] });
  const close = () => { dialog.close(); dialog.remove(); };
  dialog.addEventListener('cancel', (e) => { e.preventDefault(); close(); });
  mount(dialog,
    h('div', { class: 'dialog-head' }, h('h3', null, title),
      h('button', { class: 'btn btn-icon', type: 'button', 'aria-label': 'Close', onClick: close }, '×')),
    build(close),
  );
  document.body.appendChild(dialog);
  dialog.showModal();
  return close;
}

/** Runs `fn` with `button` disabled and showing a spinner; errors become toasts. */
export async function busy(button, fn) {
  if (button.disabled) return undefined;
  button.disabled = true;
  button.classList.add('is-busy');
  try {
    return await fn();
  } catch (err) {
    toast(err.message || String(err), 'error');
    return undefined;
  } finally {
    button.disabled = false;
    button.classList.remove('is-busy');
  }
}
