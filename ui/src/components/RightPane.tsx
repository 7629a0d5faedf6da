import type { Fragment } from '../api';
import { CodePane } from './CodePane';
import { PreviewPane } from './PreviewPane';
import { VersionsPane } from './VersionsPane';

/** Unsaved edits: fragment id → path → content. */
export type Drafts = Record<string, Record<string, string>>;

interface Props {
  projectId: string;
  fragment: Fragment | null;
  tab: Tab;
  onTab: (tab: Tab) => void;
  previewNonce: number;
  onReload: () => void;
  busy: boolean;
  loading: boolean;
  drafts: Drafts;
  setDrafts: (update: (drafts: Drafts) => Drafts) => void;
  selectedPath: string | null;
  onSelectPath: (path: string) => void;
  onSave: (fragment: Fragment, files: Record<string, string>) => Promise<void>;
  /** Changes when the project may have a new version. */
  versionsKey: number;
  onRestored: () => void;
}

export type Tab = 'preview' | 'code' | 'versions';

const TABS = [
  { id: 'preview', label: 'Preview' },
  { id: 'code', label: 'Code' },
  { id: 'versions', label: 'Versions' },
] as const;

export function RightPane(props: Props) {
  const { fragment, tab, onTab } = props;

  function onTabKey(event: KeyboardEvent) {
    if (event.key !== 'ArrowLeft' && event.key !== 'ArrowRight') return;
    event.preventDefault();
    const order = TABS.map((t) => t.id);
    const step = event.key === 'ArrowRight' ? 1 : order.length - 1;
    const next = order[(order.indexOf(tab) + step) % order.length];
    onTab(next);
    document.getElementById(`tab-${next}`)?.focus();
  }

  const draftCount = fragment ? Object.keys(props.drafts[fragment.id] ?? {}).length : 0;

  return (
    <div class="right">
      <div class="pane-header right-header">
        <div class="tabs" role="tablist" aria-label="View">
          {TABS.map((t) => (
            <button
              key={t.id}
              id={`tab-${t.id}`}
              type="button"
              role="tab"
              class="tab"
              aria-selected={tab === t.id}
              aria-controls={`panel-${t.id}`}
              tabIndex={tab === t.id ? 0 : -1}
              data-testid={`tab-${t.id}`}
              onClick={() => onTab(t.id)}
              onKeyDown={onTabKey}
            >
              {t.label}
              {t.id === 'code' && draftCount > 0 && <span class="dot" aria-label={`${draftCount} unsaved`} />}
            </button>
          ))}
        </div>
        {fragment && (
          <span class="fragment-label muted" title={fragment.title}>
            {fragment.title}
          </span>
        )}
      </div>
      <div class="right-body">
        {!fragment ? (
          <EmptyState busy={props.busy} loading={props.loading} />
        ) : (
          <>
            <div id="panel-preview" role="tabpanel" aria-labelledby="tab-preview" class="panel" hidden={tab !== 'preview'}>
              <PreviewPane
                projectId={props.projectId}
                fragment={fragment}
                nonce={props.previewNonce}
                onReload={props.onReload}
              />
            </div>
            <div id="panel-code" role="tabpanel" aria-labelledby="tab-code" class="panel" hidden={tab !== 'code'}>
              {tab === 'code' && (
                <CodePane
                  fragment={fragment}
                  drafts={props.drafts[fragment.id] ?? {}}
                  setDraft={(path, content, original) =>
                    props.setDrafts((all) => {
                      const mine = { ...(all[fragment.id] ?? {}) };
                      if (content === original) delete mine[path];
                      else mine[path] = content;
                      return { ...all, [fragment.id]: mine };
                    })
                  }
                  selectedPath={props.selectedPath}
                  onSelectPath={props.onSelectPath}
                  onSave={(files) => props.onSave(fragment, files)}
                />
              )}
            </div>
            <div id="panel-versions" role="tabpanel" aria-labelledby="tab-versions" class="panel" hidden={tab !== 'versions'}>
              {tab === 'versions' && (
                <VersionsPane projectId={props.projectId} refreshKey={props.versionsKey} onRestored={props.onRestored} />
              )}
            </div>
          </>
        )}
      </div>
    </div>
  );
}

function EmptyState({ busy, loading }: { busy: boolean; loading: boolean }) {
  return (
    <div class="empty-preview" data-testid="preview-empty">
      {loading ? (
        <span class="spinner" aria-hidden="true" />
      ) : busy ? (
        <>
          <span class="spinner big" aria-hidden="true" />
          <p class="h3">Building your app…</p>
          <p class="muted">The preview appears here as soon as the first version is ready.</p>
        </>
      ) : (
        <>
          <p class="h3">No preview yet</p>
          <p class="muted">Send a prompt and the app will appear here.</p>
        </>
      )}
    </div>
  );
}
