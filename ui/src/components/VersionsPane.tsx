import { useEffect, useState } from 'preact/hooks';
import { api, errorMessage, type Version, type VersionDiff } from '../api';
import { relativeTime, useNow } from '../time';

interface Props {
  projectId: string;
  /** Changes whenever the project may have a new version (a new message). */
  refreshKey: number;
  onRestored: () => void;
}

/** The project's versions, newest first: what each changed, a diff with the one before, restore. */
export function VersionsPane({ projectId, refreshKey, onRestored }: Props) {
  const [versions, setVersions] = useState<Version[] | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [diff, setDiff] = useState<{ of: Version; diff: VersionDiff } | null>(null);
  const [busy, setBusy] = useState<string | null>(null);
  const now = useNow();

  useEffect(() => {
    let live = true;
    api
      .listVersions(projectId)
      .then((list) => live && setVersions(list))
      .catch((e) => live && setError(errorMessage(e)));
    return () => {
      live = false;
    };
  }, [projectId, refreshKey]);

  async function showDiff(version: Version, previous: Version) {
    setBusy(version.id);
    try {
      setDiff({ of: version, diff: await api.diffVersions(projectId, previous.id, version.id) });
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(null);
    }
  }

  async function restore(version: Version) {
    setBusy(version.id);
    try {
      await api.restoreVersion(projectId, version.id);
      setDiff(null);
      onRestored();
    } catch (e) {
      setError(errorMessage(e));
    } finally {
      setBusy(null);
    }
  }

  if (error) return <p class="muted versions-error">{error}</p>;
  if (!versions) return <span class="spinner" aria-hidden="true" />;
  if (versions.length === 0) return <p class="muted">No version yet: each finished run makes one.</p>;
  const newestFirst = [...versions].reverse();
  const latest = versions[versions.length - 1];
  return (
    <div class="versions" data-testid="versions">
      <ol class="version-list">
        {newestFirst.map((version) => {
          const previous = versions[version.number - 2];
          return (
            <li key={version.id} class="version" data-testid="version" data-number={version.number}>
              <div class="version-head">
                <strong>v{version.number}</strong> <span>{version.title}</span>{' '}
                <span class="muted">{relativeTime(version.createdAt, now)}</span>
              </div>
              <div class="muted version-files">
                {version.changedFiles.map((f) => `${f.change === 'added' ? '+' : f.change === 'removed' ? '−' : '~'} ${f.path}`).join('  ')}
              </div>
              <div class="version-actions">
                {previous && (
                  <button type="button" class="btn small" data-testid="version-diff" disabled={busy !== null} onClick={() => showDiff(version, previous)}>
                    Diff with v{previous.number}
                  </button>
                )}
                {version.id !== latest.id && (
                  <button type="button" class="btn small" data-testid="version-restore" disabled={busy !== null} onClick={() => restore(version)}>
                    Restore
                  </button>
                )}
              </div>
            </li>
          );
        })}
      </ol>
      {diff && (
        <section class="version-diff" data-testid="version-diff-view" aria-label={`Changes of v${diff.of.number}`}>
          {diff.diff.files.map((file) => (
            <pre key={file.path} class="diff">
              {file.diff.split('\n').map((line, i) => (
                <span key={i} class={diffClass(line)}>
                  {line}
                  {'\n'}
                </span>
              ))}
            </pre>
          ))}
        </section>
      )}
    </div>
  );
}

function diffClass(line: string): string | undefined {
  if (line.startsWith('+++') || line.startsWith('---') || line.startsWith('@@')) return 'diff-head';
  if (line.startsWith('+')) return 'diff-add';
  if (line.startsWith('-')) return 'diff-del';
  return undefined;
}
