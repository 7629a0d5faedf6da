// The files of a fragment: the chat listing carries only their paths and sizes, so the code view
// fetches the contents from the fragment's own route, once per version.
import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Fragment } from './api';

type Files = Record<string, string>;

/** Versions fetched or saved: `<id>@<updatedAt>` → files. Only the last few are kept. */
const cache = new Map<string, Files>();
const KEPT = 12;

const versionKey = (fragment: { id: string; updatedAt: string }) => `${fragment.id}@${fragment.updatedAt}`;

function remember(key: string, files: Files) {
  cache.delete(key);
  cache.set(key, files);
  while (cache.size > KEPT) cache.delete(cache.keys().next().value as string);
}

export interface FragmentFiles {
  /** `null` while loading or after an error. */
  files: Files | null;
  error: string | null;
  retry: () => void;
}

/** The files of this version of `fragment`. */
export function useFragmentFiles(fragment: Fragment): FragmentFiles {
  const key = versionKey(fragment);
  const [loaded, setLoaded] = useState<{ key: string; files: Files | null; error: string | null } | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    if (cache.has(key)) return;
    let cancelled = false;
    setLoaded({ key, files: null, error: null });
    api.getFragment(fragment.id).then(
      (full) => {
        remember(key, full.files);
        if (!cancelled) setLoaded({ key, files: full.files, error: null });
      },
      (error) => {
        if (!cancelled) setLoaded({ key, files: null, error: errorMessage(error) });
      },
    );
    return () => {
      cancelled = true;
    };
  }, [key, fragment.id, attempt]);

  const cached = cache.get(key);
  if (cached) return { files: cached, error: null, retry: () => {} };
  const current = loaded?.key === key ? loaded : null;
  return { files: current?.files ?? null, error: current?.error ?? null, retry: () => setAttempt((n) => n + 1) };
}
