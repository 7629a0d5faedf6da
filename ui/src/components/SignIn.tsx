import { useState } from 'preact/hooks';
import { api, errorMessage } from '../api';
import { Logo } from './App';

export function SignIn({ onSignedIn }: { onSignedIn: () => void }) {
  const [token, setToken] = useState('');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(event: Event) {
    event.preventDefault();
    const value = token.trim();
    if (!value) {
      setError('Paste an API token first.');
      return;
    }
    setBusy(true);
    setError(null);
    try {
      await api.signIn(value);
      setToken('');
      onSignedIn();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <div class="center-page">
      <form class="card narrow signin" onSubmit={submit} aria-labelledby="signin-title" data-testid="signin-form">
        <div class="signin-logo">
          <Logo />
        </div>
        <h1 id="signin-title" class="h2">
          Sign in to forgeai
        </h1>
        <p class="muted">
          Open the one-time login link that <code>forgeai serve</code> printed in its terminal, or paste an API token
          below.
        </p>
        <label class="field-label" for="token-input">
          API token
        </label>
        <input
          id="token-input"
          class="input"
          type="password"
          name="token"
          autocomplete="off"
          spellcheck={false}
          placeholder="Paste your token"
          value={token}
          onInput={(e) => setToken(e.currentTarget.value)}
          data-testid="token-input"
          aria-invalid={error ? true : undefined}
          aria-describedby={error ? 'signin-error' : undefined}
          required
        />
        {error && (
          <p id="signin-error" class="error-text" role="alert">
            {error}
          </p>
        )}
        <button type="submit" class="btn primary block" disabled={busy} data-testid="token-submit">
          {busy ? 'Signing in…' : 'Sign in'}
        </button>
      </form>
    </div>
  );
}
