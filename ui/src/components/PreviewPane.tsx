import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Fragment, type PreviewLink } from '../api';
import { LineIcon } from './Icon';

/** The sandbox URL with `path` appended (a leading `/` optional; `?query` and `#hash` kept). */
export function joinPreviewUrl(base: string, path: string): string {
  const root = base.replace(/\/+$/, '');
  const p = path.trim();
  if (!p || p === '/') return `${root}/`;
  if (p.startsWith('?') || p.startsWith('#')) return `${root}/${p}`;
  return `${root}/${p.replace(/^\/+/, '')}`;
}

/** `url` with a preview grant: the preview host trades it for its cookie and drops it from the URL. */
export function withGrant(url: string, grant: string): string {
  const u = new URL(url);
  u.searchParams.set('forgeai_grant', grant);
  return u.toString();
}

export function PreviewPane({
  projectId,
  fragment,
  nonce,
  onReload,
}: {
  projectId: string;
  fragment: Fragment;
  nonce: number;
  onReload: () => void;
}) {
  const [path, setPath] = useState('/');
  const [appliedPath, setAppliedPath] = useState('/');
  const [loading, setLoading] = useState(true);
  // Previews are private: each load gets a fresh short-lived grant for this browser.
  const [link, setLink] = useState<PreviewLink | null>(null);
  const [linkError, setLinkError] = useState<string | null>(null);
  const [shared, setShared] = useState<boolean | null>(null);
  const [sharing, setSharing] = useState(false);

  useEffect(() => {
    let current = true;
    setLink(null);
    setLinkError(null);
    api
      .previewLink(projectId)
      .then((next) => {
        if (!current) return;
        setLink(next);
        setShared(next.public);
      })
      .catch((error) => {
        if (current) setLinkError(errorMessage(error));
      });
    return () => {
      current = false;
    };
  }, [projectId, fragment.id, nonce, appliedPath]);

  const cleanUrl = link ? joinPreviewUrl(link.url, appliedPath) : '';
  const url = link ? withGrant(cleanUrl, link.grant) : '';

  useEffect(() => setLoading(true), [cleanUrl, nonce]);

  async function share(next: boolean) {
    const before = shared;
    setShared(next);
    setSharing(true);
    try {
      const project = await api.setPublic(projectId, next);
      setShared(!!project.public);
    } catch (error) {
      setShared(before);
      setLinkError(errorMessage(error));
    } finally {
      setSharing(false);
    }
  }

  function go(event: Event) {
    event.preventDefault();
    const next = path.trim() || '/';
    const normalized = next.startsWith('/') || next.startsWith('?') || next.startsWith('#') ? next : `/${next}`;
    setPath(normalized);
    if (normalized === appliedPath) onReload();
    else setAppliedPath(normalized);
  }

  return (
    <div class="preview">
      <form class="preview-bar" onSubmit={go}>
        <button
          type="button"
          class="btn ghost icon-btn"
          onClick={onReload}
          aria-label="Refresh preview"
          title="Refresh preview"
          data-testid="preview-refresh"
        >
          <LineIcon d="M20 11a8 8 0 10-2.3 5.7M20 4v7h-7" size={17} weight={1.9} />
        </button>
        <div class="url-field">
          <span class="url-origin" title={link?.url ?? fragment.sandboxUrl}>
            {shortOrigin(link?.url ?? fragment.sandboxUrl)}
          </span>
          <label class="sr-only" for="preview-path">
            Preview path
          </label>
          <input
            id="preview-path"
            class="url-input"
            type="text"
            value={path}
            onInput={(e) => setPath(e.currentTarget.value)}
            spellcheck={false}
            autocomplete="off"
            data-testid="preview-path"
          />
        </div>
        <label
          class="share-toggle"
          title={shared ? 'Anyone with the link can open this preview' : 'Only you can open this preview'}
        >
          <input
            type="checkbox"
            checked={!!shared}
            disabled={shared === null || sharing}
            onChange={(e) => void share(e.currentTarget.checked)}
            data-testid="preview-public"
          />
          Public
        </label>
        <a
          class="btn ghost icon-btn"
          href={url || undefined}
          target="_blank"
          rel="noopener noreferrer"
          aria-label="Open preview in a new tab"
          title="Open in a new tab"
          data-testid="preview-open"
        >
          <LineIcon d="M14 4h6v6M20 4l-9 9M18 14v5a1 1 0 01-1 1H5a1 1 0 01-1-1V7a1 1 0 011-1h5" size={17} weight={1.9} />
        </a>
      </form>
      <div class="frame-wrap">
        {url ? (
          <>
            <iframe
              key={`${nonce}:${cleanUrl}`}
              src={url}
              title={`Preview of ${fragment.title || 'the app'}`}
              class="preview-frame"
              data-testid="preview-frame"
              sandbox="allow-forms allow-modals allow-popups allow-popups-to-escape-sandbox allow-same-origin allow-scripts allow-downloads allow-pointer-lock"
              allow="clipboard-read; clipboard-write; fullscreen"
              onLoad={() => setLoading(false)}
            />
            {loading && (
              <div class="frame-loading" aria-hidden="true">
                <span class="spinner" />
              </div>
            )}
          </>
        ) : linkError ? (
          <div class="empty-preview">
            <p class="muted" data-testid="preview-error">
              No preview: {linkError}
            </p>
          </div>
        ) : (
          <div class="frame-loading" aria-hidden="true">
            <span class="spinner" />
          </div>
        )}
      </div>
    </div>
  );
}

function shortOrigin(url: string): string {
  try {
    const u = new URL(url);
    return u.host;
  } catch {
    return url;
  }
}
