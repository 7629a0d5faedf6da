import { useEffect, useMemo, useState } from 'preact/hooks';
import { errorMessage, type Fragment } from '../api';
import { useFragmentFiles } from '../fragmentFiles';
import { CodeEditor } from './CodeEditor';
import { FileTree } from './FileTree';

interface Props {
  fragment: Fragment;
  drafts: Record<string, string>;
  /** `original` is the saved content, so an edit back to it is no draft. */
  setDraft: (path: string, content: string, original: string | undefined) => void;
  selectedPath: string | null;
  onSelectPath: (path: string) => void;
  onSave: (files: Record<string, string>) => Promise<void>;
}

const PREFERRED = ['app/page.tsx', 'src/app/page.tsx', 'app/page.jsx', 'pages/index.tsx', 'index.html'];

function defaultPath(paths: string[]): string | null {
  for (const p of PREFERRED) if (paths.includes(p)) return p;
  return [...paths].sort()[0] ?? null;
}

async function copyText(text: string) {
  if (navigator.clipboard && window.isSecureContext) {
    await navigator.clipboard.writeText(text);
    return;
  }
  const area = document.createElement('textarea');
  area.value = text;
  area.setAttribute('readonly', '');
  area.style.position = 'fixed';
  area.style.opacity = '0';
  document.body.appendChild(area);
  area.select();
  const ok = document.execCommand('copy');
  area.remove();
  if (!ok) throw new Error('the browser refused to copy');
}

export function CodePane({ fragment, drafts, setDraft, selectedPath, onSelectPath, onSave }: Props) {
  // The listing knows the paths; the contents come from the fragment's own route.
  const { files, error, retry } = useFragmentFiles(fragment);
  const paths = useMemo(() => Object.keys(fragment.fileSizes ?? {}), [fragment.fileSizes]);
  const path = selectedPath && paths.includes(selectedPath) ? selectedPath : defaultPath(paths);
  const [saving, setSaving] = useState(false);
  const [note, setNote] = useState<{ kind: 'ok' | 'error'; text: string } | null>(null);
  const dirtyCount = Object.keys(drafts).length;

  useEffect(() => {
    if (path && path !== selectedPath) onSelectPath(path);
  }, [path, selectedPath, onSelectPath]);

  useEffect(() => {
    if (!note || note.kind === 'error') return;
    const timer = setTimeout(() => setNote(null), 2500);
    return () => clearTimeout(timer);
  }, [note]);

  const content = path ? (drafts[path] ?? files?.[path] ?? '') : '';

  async function save() {
    if (!dirtyCount || saving) return;
    setSaving(true);
    setNote(null);
    try {
      await onSave({ ...drafts });
      setNote({ kind: 'ok', text: dirtyCount === 1 ? 'Saved 1 file' : `Saved ${dirtyCount} files` });
    } catch (error) {
      setNote({ kind: 'error', text: `Save failed: ${errorMessage(error)}` });
    } finally {
      setSaving(false);
    }
  }

  async function copy() {
    try {
      await copyText(content);
      setNote({ kind: 'ok', text: 'Copied to clipboard' });
    } catch (error) {
      setNote({ kind: 'error', text: `Copy failed: ${errorMessage(error)}` });
    }
  }

  if (!paths.length) {
    return (
      <div class="empty-preview">
        <p class="muted">This version has no files.</p>
      </div>
    );
  }

  return (
    <div class="code">
      <nav class="code-tree" aria-label="Files">
        <FileTree paths={paths} selected={path} dirty={drafts} onSelect={onSelectPath} />
      </nav>
      <div class="code-main">
        <div class="code-bar">
          <span class="code-path" title={path ?? ''} data-testid="code-path">
            {path}
            {path && drafts[path] !== undefined && <span class="dot" aria-label="unsaved changes" />}
          </span>
          {note && (
            <span class={note.kind === 'ok' ? 'note ok' : 'note bad'} role={note.kind === 'ok' ? 'status' : 'alert'} data-testid="code-note">
              {note.text}
            </span>
          )}
          <button
            type="button"
            class="btn small"
            onClick={copy}
            disabled={!files}
            data-testid="code-copy"
            aria-label="Copy file contents"
          >
            Copy
          </button>
          <button
            type="button"
            class="btn small primary"
            onClick={save}
            disabled={!dirtyCount || saving}
            data-testid="code-save"
            title="Save (Ctrl+S)"
          >
            {saving ? 'Saving…' : dirtyCount > 1 ? `Save ${dirtyCount} files` : 'Save'}
          </button>
        </div>
        {path && files && (
          <CodeEditor
            key={`${fragment.id}:${path}`}
            path={path}
            value={content}
            onChange={(value) => setDraft(path, value, files[path])}
            onSave={save}
          />
        )}
        {path && !files && (
          <div class="empty-preview" data-testid="code-loading">
            {error ? (
              <>
                <p class="muted" role="alert">
                  Could not load the files: {error}
                </p>
                <button type="button" class="btn small" onClick={retry}>
                  Try again
                </button>
              </>
            ) : (
              <span class="spinner" aria-label="Loading the files" />
            )}
          </div>
        )}
      </div>
    </div>
  );
}
