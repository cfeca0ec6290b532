import { h, mount } from '../dom.js';
import { signIn, health } from '../api.js';

export function signInPage({ message, onSignedIn }) {
  const error = h('div', { id: 'sign-in-error', class: 'signin-error', role: 'alert' }, message || '');
  const keyId = h('input', { id: 'access-key-id', name: 'accessKeyId', autocomplete: 'username', spellcheck: 'false', required: true, placeholder: 'AKIA…' });
  const secret = h('input', { id: 'secret-access-key', name: 'secretAccessKey', type: 'password', autocomplete: 'current-password', required: true });
  const token = h('input', { id: 'session-token', name: 'sessionToken', type: 'password', autocomplete: 'off', placeholder: 'Only for temporary credentials' });
  const button = h('button', { id: 'sign-in', class: 'btn btn-primary btn-block', type: 'submit' }, 'Sign in');
  const status = h('div', { class: 'signin-status' });

  const form = h('form', {
    class: 'signin-form',
    onSubmit: async (e) => {
      e.preventDefault();
      error.textContent = '';
      if (!keyId.value.trim() || !secret.value) {
        error.textContent = 'Enter an access key ID and a secret access key.';
        return;
      }
      button.disabled = true;
      button.textContent = 'Signing in…';
      try {
        await signIn(keyId.value.trim(), secret.value, token.value.trim());
        secret.value = '';
        token.value = '';
        onSignedIn();
      } catch (err) {
        error.textContent = err.message || 'Sign-in failed';
        button.disabled = false;
        button.textContent = 'Sign in';
      }
    },
  },
  h('div', { class: 'field' }, h('label', { for: 'access-key-id' }, 'Access key ID'), keyId),
  h('div', { class: 'field' }, h('label', { for: 'secret-access-key' }, 'Secret access key'), secret),
  h('div', { class: 'field' }, h('label', { for: 'session-token' }, 'Session token ', h('span', { class: 'optional' }, '(optional)')), token),
  error,
  button);

  health().then((info) => {
    mount(status, h('span', { class: 'dot dot-ok' }), `nimbus ${info.version} · ${info.region} · account ${info.account_id}`);
  }).catch(() => {
    mount(status, h('span', { class: 'dot dot-bad' }), 'The server does not answer its health check.');
  });

  return h('div', { class: 'signin-wrap' },
    h('div', { class: 'signin-card' },
      h('div', { class: 'signin-brand' }, h('span', { class: 'brand-mark', 'aria-hidden': 'true' }), h('span', null, 'nimbus'), h('span', { class: 'brand-sub' }, 'console')),
      h('h1', null, 'Sign in'),
      h('p', { class: 'muted' }, 'Use an access key of this nimbus server: the root keys are in the server\u2019s ',
        h('code', null, 'credentials'), ' file (profile ', h('code', null, 'nimbus'), '), or run ', h('code', null, 'nimbus console'), ' for a one-time login link.'),
      form,
      status));
}
