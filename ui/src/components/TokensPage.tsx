import { useCallback, useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Token } from '../api';
import { absoluteTime, relativeTime, useNow } from '../time';

const KIND_LABEL: Record<Token['kind'], string> = {
  api: 'API token',
  session: 'Browser session',
  'login-once': 'Login link (unused)',
};

/** The signed-in user's tokens: what can act as them, and a way to end each. */
export function TokensPage({ onSignedOut }: { onSignedOut: () => void }) {
  const [tokens, setTokens] = useState<Token[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const now = useNow();

  const load = useCallback(async () => {
    try {
      setTokens(await api.listTokens());
      setError(null);
    } catch (err) {
      setError(errorMessage(err));
    }
  }, []);

  useEffect(() => {
    document.title = 'Tokens · forgeai';
    void load();
    return () => {
      document.title = 'forgeai';
    };
  }, [load]);

  async function revoke(token: Token) {
    setBusy(token.id);
    try {
      await api.revokeToken(token.id);
      if (token.current) onSignedOut();
      else await load();
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(null);
    }
  }

  return (
    <div class="tokens-page">
      <h1 class="h2">Sessions and tokens</h1>
      <p class="muted">
        Everything that can act as you. Revoking one ends it at once; browser sessions also end by themselves, and
        signing out ends this one.
      </p>
      {error && (
        <p class="error-text" role="alert">
          {error}
        </p>
      )}
      {tokens === null ? (
        !error && <span class="spinner" aria-hidden="true" />
      ) : (
        <table class="tokens-table" data-testid="tokens-table">
          <thead>
            <tr>
              <th scope="col">Kind</th>
              <th scope="col">Created</th>
              <th scope="col">Expires</th>
              <th scope="col">Last used</th>
              <th scope="col">
                <span class="sr-only">Actions</span>
              </th>
            </tr>
          </thead>
          <tbody>
            {tokens.map((token) => (
              <tr key={token.id} data-testid="token-row" data-kind={token.kind} data-current={token.current}>
                <td>
                  {KIND_LABEL[token.kind] ?? token.kind}
                  {token.current && <span class="badge">this browser</span>}
                </td>
                <td title={absoluteTime(token.createdAt)}>{relativeTime(token.createdAt, now)}</td>
                <td title={absoluteTime(token.expiresAt)}>{token.expiresAt ? relativeTime(token.expiresAt, now) : 'never'}</td>
                <td title={absoluteTime(token.lastUsedAt)}>{token.lastUsedAt ? relativeTime(token.lastUsedAt, now) : '—'}</td>
                <td>
                  <button
                    type="button"
                    class="btn small danger"
                    disabled={busy !== null}
                    onClick={() => void revoke(token)}
                    data-testid="token-revoke"
                  >
                    {token.current ? 'Revoke (sign out)' : 'Revoke'}
                  </button>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}
