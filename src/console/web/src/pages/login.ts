import { ApiError, auth, errorText, forgetInfo, get } from '../api';
import { h, showText } from '../dom';

/** The login form; `message` explains why it is shown again. */
export function loginPage(root: HTMLElement, message: string, done: () => void): void {
  const input = h('input', {
    id: 'token',
    name: 'token',
    type: 'password',
    autocomplete: 'current-password',
    spellcheck: 'false',
    'aria-describedby': 'token-help login-error',
  });
  const error = h('p', { id: 'login-error', class: 'error-text', role: 'alert' });
  showText(error, message);
  const button = h('button', { id: 'login', type: 'submit', class: 'primary' }, 'Log in');
  const form = h(
    'form',
    { class: 'login-form', novalidate: true },
    h('label', { for: 'token' }, 'API token'),
    input,
    h('p', { id: 'token-help', class: 'hint' }, 'The bearer token of this materializer server. It is kept for this browser tab only.'),
    button,
    error,
  );
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    const token = input.value.trim();
    button.disabled = true;
    button.textContent = 'Checking…';
    showText(error, '');
    try {
      await get('/topics', { token, own: [401, 403] });
      auth.set(token);
      forgetInfo();
      done();
    } catch (e) {
      if (e instanceof ApiError && e.status === 401) {
        showText(error, token ? `This token was not accepted (401): ${e.message}` : 'Enter the API token.');
      } else if (e instanceof ApiError && e.status === 403) {
        showText(error, `This token is not valid for this server (403): ${e.message}`);
      } else {
        showText(error, `Could not check the token: ${errorText(e)}`);
      }
      input.focus();
      input.select();
    } finally {
      button.disabled = false;
      button.textContent = 'Log in';
    }
  });
  root.replaceChildren(
    h('section', { class: 'login panel', 'aria-labelledby': 'login-title' }, h('h1', { id: 'login-title', tabindex: '-1' }, 'materializer console'), form),
  );
  input.focus();
}
