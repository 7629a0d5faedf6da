import { useEffect, useState } from 'preact/hooks';
import type { Fragment } from '../api';
import { LineIcon } from './Icon';

/** The sandbox URL with `path` appended (a leading `/` optional; `?query` and `#hash` kept). */
export function joinPreviewUrl(base: string, path: string): string {
  const root = base.replace(/\/+$/, '');
  const p = path.trim();
  if (!p || p === '/') return `${root}/`;
  if (p.startsWith('?') || p.startsWith('#')) return `${root}/${p}`;
  return `${root}/${p.replace(/^\/+/, '')}`;
}

export function PreviewPane({ fragment, nonce, onReload }: { fragment: Fragment; nonce: number; onReload: () => void }) {
  const [path, setPath] = useState('/');
  const [appliedPath, setAppliedPath] = useState('/');
  const [loading, setLoading] = useState(true);

  const url = fragment.sandboxUrl ? joinPreviewUrl(fragment.sandboxUrl, appliedPath) : '';

  useEffect(() => setLoading(true), [url, nonce]);

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
          <span class="url-origin" title={fragment.sandboxUrl}>
            {shortOrigin(fragment.sandboxUrl)}
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
              key={`${nonce}:${url}`}
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
        ) : (
          <div class="empty-preview">
            <p class="muted">This version has no preview URL.</p>
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
