import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import {
  api,
  ApiError,
  errorMessage,
  type Activity,
  type Fragment,
  type Message,
  type Project,
  type Run,
} from '../api';
import { linkClick } from '../router';
import { Logo } from './App';
import { ChatPane, type RunStatusView } from './ChatPane';
import { RightPane, type Drafts, type Tab } from './RightPane';
import { Splitter } from './Splitter';

const ACTIVE = new Set(['queued', 'running']);
const isActive = (run: Run) => ACTIVE.has(run.status);
interface LiveStatus {
  text: string;
  /** Set by the run's `runFinished` event, never guessed from the status text. */
  final: boolean;
  failed: boolean;
}

function parseStatus(data: string): string {
  try {
    const value: unknown = JSON.parse(data);
    if (typeof value === 'string') return value;
    if (value && typeof value === 'object') {
      const record = value as Record<string, unknown>;
      for (const key of ['status', 'message', 'text', 'error']) {
        if (typeof record[key] === 'string') return record[key] as string;
      }
    }
    return JSON.stringify(value);
  } catch {
    return data;
  }
}

function endedAfter(run: Run, message: Message | null): boolean {
  if (!message || !run.endedAt) return true;
  return Date.parse(run.endedAt) >= Date.parse(message.createdAt);
}

const SPLIT_KEY = 'forgeai.split';

export function ProjectPage({ projectId }: { projectId: string }) {
  const [project, setProject] = useState<Project | null>(null);
  const [notFound, setNotFound] = useState(false);
  const [messages, setMessages] = useState<Message[] | null>(null);
  const [messagesError, setMessagesError] = useState<string | null>(null);
  const [runs, setRuns] = useState<Run[]>([]);
  const [live, setLive] = useState<LiveStatus | null>(null);
  /** The current (or last) run's activity, from its `runStarted` on. */
  const [activity, setActivity] = useState<Activity[]>([]);
  const [liveRunId, setLiveRunId] = useState<string | null>(null);
  const [stopping, setStopping] = useState(false);
  const [selectedId, setSelectedId] = useState<string | null>(null);
  const [tab, setTab] = useState<Tab>('preview');
  const [previewNonce, setPreviewNonce] = useState(0);
  const [drafts, setDrafts] = useState<Drafts>({});
  const [selectedPath, setSelectedPath] = useState<string | null>(null);
  const [split, setSplit] = useState(() => {
    const stored = Number(localStorage.getItem(SPLIT_KEY));
    return stored >= 20 && stored <= 75 ? stored : 36;
  });

  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  // ---- data loading -------------------------------------------------------------------------

  const loadProject = useCallback(async () => {
    try {
      const p = await api.getProject(projectId);
      if (mounted.current) setProject(p);
    } catch (error) {
      if (!mounted.current) return;
      if (error instanceof ApiError && (error.status === 404 || error.status === 400)) setNotFound(true);
    }
  }, [projectId]);

  const selectNewestNext = useRef(true);
  const loadMessages = useCallback(
    async (selectNewest = false) => {
      if (selectNewest) selectNewestNext.current = true;
      try {
        const list = await api.listMessages(projectId);
        if (!mounted.current) return;
        setMessages(list);
        setMessagesError(null);
      } catch (error) {
        if (!mounted.current) return;
        if (error instanceof ApiError && error.status === 404) setNotFound(true);
        else setMessagesError(errorMessage(error));
      }
    },
    [projectId],
  );

  const fragments = useMemo(
    () => (messages ?? []).map((m) => m.codeFragment).filter((f): f is Fragment => !!f),
    [messages],
  );
  const newest = fragments.length ? fragments[fragments.length - 1] : null;

  // The newest fragment is selected on open, whenever a new one appears, and after a run ends.
  const lastNewest = useRef<string | null | undefined>(undefined);
  useEffect(() => {
    if (messages === null) return;
    const id = newest?.id ?? null;
    if (id !== lastNewest.current || selectNewestNext.current) {
      const changed = id !== lastNewest.current;
      lastNewest.current = id;
      selectNewestNext.current = false;
      if (id) {
        setSelectedId(id);
        if (changed) setPreviewNonce((n) => n + 1);
      }
    }
  }, [messages, newest?.id]);

  const selected = fragments.find((f) => f.id === selectedId) ?? newest;

  // ---- runs: polled every 2 s while any is queued or running -----------------------------

  const prevActive = useRef<boolean | null>(null);
  const prevFinished = useRef<number | null>(null);
  const prevRunning = useRef<Set<string>>(new Set());
  const boostUntil = useRef(0);
  const awaitingReplyRef = useRef(false);
  const polling = useRef(false);
  const pollTimer = useRef<number | undefined>(undefined);

  const handleRuns = useCallback(
    (list: Run[]) => {
      setRuns(list);
      const active = list.some(isActive);
      const finished = list.filter((r) => !isActive(r)).length;
      const wasActive = prevActive.current;
      const wasFinished = prevFinished.current;
      prevActive.current = active;
      prevFinished.current = finished;
      const runningIds = new Set(list.filter((r) => r.status === 'running').map((r) => r.id));
      const started = [...runningIds].some((id) => !prevRunning.current.has(id));
      prevRunning.current = runningIds;
      if (wasActive === null) return; // first look
      // A new run started: the last run's final status is history now.
      if (started) setLive((current) => (current?.final ? null : current));
      if ((wasActive && !active) || (wasFinished !== null && finished > wasFinished)) {
        void loadMessages(true);
        void loadProject();
      }
    },
    [loadMessages, loadProject],
  );

  const poll = useCallback(() => {
    if (polling.current) return;
    polling.current = true;
    const tick = async () => {
      let list: Run[] | null = null;
      try {
        list = await api.listRuns(projectId);
      } catch {
        list = null;
      }
      if (!mounted.current) return;
      if (list) handleRuns(list);
      const active = list === null || list.some(isActive) || Date.now() < boostUntil.current;
      // A prompt without a reply yet: keep checking, more slowly, until its run shows up.
      if (!active && awaitingReplyRef.current) void loadMessages(true);
      if (active || awaitingReplyRef.current) pollTimer.current = window.setTimeout(tick, active ? 2000 : 5000);
      else polling.current = false;
    };
    void tick();
  }, [projectId, handleRuns, loadMessages]);

  // One immediate look at the runs, outside the polling rhythm (e.g. right after "Demo is ready").
  const refreshRuns = useCallback(async () => {
    try {
      const list = await api.listRuns(projectId);
      if (mounted.current) handleRuns(list);
    } catch {
      /* the poller will try again */
    }
  }, [projectId, handleRuns]);

  const pollSoon = useCallback(
    (ms = 8000) => {
      boostUntil.current = Math.max(boostUntil.current, Date.now() + ms);
      poll();
    },
    [poll],
  );

  useEffect(() => {
    void loadProject();
    void loadMessages(true);
    pollSoon(4000);
    return () => {
      window.clearTimeout(pollTimer.current);
      polling.current = false;
    };
  }, [loadProject, loadMessages, pollSoon]);

  // ---- realtime statuses -----------------------------------------------------------------

  useEffect(() => {
    if (typeof EventSource === 'undefined') return;
    const source = new EventSource(api.realtimeUrl(projectId));
    const onStatus = (event: MessageEvent) => {
      const text = parseStatus(String(event.data));
      setLive({ text, final: false, failed: false });
      pollSoon(8000);
      void refreshRuns();
    };
    const onActivity = (event: MessageEvent) => {
      let item: Activity;
      try {
        item = JSON.parse(String(event.data)) as Activity;
      } catch {
        return;
      }
      if (item.type === 'runStarted') {
        setActivity([item]);
        setLiveRunId(item.runId);
        setStopping(false);
        return;
      }
      setActivity((list) => [...list, item]);
      if (item.type === 'runFinished') {
        const failed = item.outcome !== 'completed';
        setLive((current) => ({ text: current?.text ?? '', final: true, failed }));
        setStopping(false);
        pollSoon(3000);
        void refreshRuns();
        void loadMessages(true);
        void loadProject();
      }
    };
    source.addEventListener('projectInfo', onStatus as EventListener);
    source.addEventListener('agentActivity', onActivity as EventListener);
    return () => {
      source.removeEventListener('projectInfo', onStatus as EventListener);
      source.removeEventListener('agentActivity', onActivity as EventListener);
      source.close();
    };
  }, [projectId, pollSoon, loadMessages, loadProject, refreshRuns]);

  // ---- the status line -------------------------------------------------------------------

  const running = runs.filter((r) => r.status === 'running').length;
  const queued = runs.filter((r) => r.status === 'queued').length;
  const lastMessage = messages?.length ? messages[messages.length - 1] : null;
  const awaitingReply = !!lastMessage && lastMessage.role === 'USER';
  awaitingReplyRef.current = awaitingReply;
  const liveBusy = !!live && !live.final;
  const latestRun = useMemo(() => {
    const ended = runs.filter((r) => !isActive(r) && r.endedAt);
    ended.sort((a, b) => Date.parse(b.endedAt!) - Date.parse(a.endedAt!));
    return ended[0] ?? null;
  }, [runs]);

  let status: RunStatusView | null = null;
  if (queued > 0 && running > 0) {
    status = {
      state: 'queued',
      text: `Message queued · waiting for the current run${live && !live.final ? ` (${live.text})` : ''}`,
    };
  } else if (queued > 0) {
    status = { state: 'queued', text: 'Message queued · starting soon…' };
  } else if (live?.final) {
    // With one run per project at a time, a run still listed as running after the final status
    // is the one that just published it and is wrapping up. A failure already shown as an ERROR
    // message needs no second notice.
    status = live.failed && lastMessage?.type === 'ERROR' ? null : { state: live.failed ? 'error' : 'done', text: live.text };
  } else if (running > 0 || liveBusy) {
    status = { state: 'running', text: live && !live.final ? live.text : 'Thinking…' };
  } else if (latestRun?.status === 'failed' && awaitingReply && endedAfter(latestRun, lastMessage)) {
    status = { state: 'error', text: `Run failed${latestRun.error ? `: ${latestRun.error}` : ''}` };
  } else if (awaitingReply && !lastMessage?.pending) {
    status = { state: 'running', text: 'Waiting for the agent…' };
  }
  const busy = running + queued > 0 || liveBusy;

  // ---- actions -----------------------------------------------------------------------------

  const runningRun = runs.find((r) => r.status === 'running');
  const stoppableRunId = busy ? (runningRun?.id ?? (live && !live.final ? liveRunId : null)) : null;

  async function stop() {
    if (!stoppableRunId) return;
    setStopping(true);
    try {
      await api.cancelRun(stoppableRunId);
    } catch (error) {
      setStopping(false);
      setMessagesError(`Could not stop the run: ${errorMessage(error)}`);
    }
    pollSoon(3000);
    void refreshRuns();
  }

  async function send(message: string, imageUrl?: string) {
    const now = new Date().toISOString();
    const tempId = `pending-${Date.now()}`;
    const optimistic: Message = {
      id: tempId,
      projectId,
      userId: project?.userId ?? '',
      role: 'USER',
      type: 'RESULT',
      content: message,
      imageUrl: imageUrl ?? null,
      createdAt: now,
      updatedAt: now,
      codeFragment: null,
      pending: true,
    };
    setMessages((list) => [...(list ?? []), optimistic]);
    try {
      await api.createMessage(projectId, message, imageUrl);
    } catch (error) {
      setMessages((list) => (list ?? []).filter((m) => m.id !== tempId));
      throw error;
    }
    setLive((current) => (current?.final ? null : current));
    pollSoon(10000);
    void loadMessages();
    return true;
  }

  function selectFragment(id: string) {
    setSelectedId(id);
  }

  /** Saves edited files as a new version (written into the sandbox, so the preview shows them). */
  async function saveFiles(fragment: Fragment, files: Record<string, string>) {
    await api.saveVersion(projectId, files);
    if (!mounted.current) return;
    setDrafts((all) => {
      const next = { ...all };
      delete next[fragment.id];
      return next;
    });
    setPreviewNonce((n) => n + 1);
    await loadMessages(true);
  }

  async function restored() {
    setPreviewNonce((n) => n + 1);
    await loadMessages(true);
  }

  // Warn before leaving with unsaved edits.
  const hasDrafts = Object.values(drafts).some((d) => Object.keys(d).length > 0);
  useEffect(() => {
    if (!hasDrafts) return;
    const handler = (event: BeforeUnloadEvent) => {
      event.preventDefault();
      event.returnValue = '';
    };
    window.addEventListener('beforeunload', handler);
    return () => window.removeEventListener('beforeunload', handler);
  }, [hasDrafts]);

  useEffect(() => {
    document.title = project ? `${project.name} · forgeai` : 'forgeai';
    return () => {
      document.title = 'forgeai';
    };
  }, [project?.name]);

  if (notFound) {
    return (
      <div class="center-page">
        <div class="card narrow">
          <h1 class="h2">Project not found</h1>
          <p class="muted">It may have been deleted, or it belongs to someone else.</p>
          <a class="btn primary" href="/" onClick={(e) => linkClick(e, '/')}>
            Back to projects
          </a>
        </div>
      </div>
    );
  }

  return (
    <div class="workspace" style={{ '--split': `${split}%` }} data-testid="project-page">
      <section class="pane chat-pane" aria-label="Chat">
        <header class="pane-header">
          <a class="brand small" href="/" onClick={(e) => linkClick(e, '/')} aria-label="All projects" title="All projects">
            <Logo />
          </a>
          <h1 class="project-title" data-testid="project-name" title={project?.name}>
            {project?.name ?? '\u00a0'}
          </h1>
          <a class="btn small" href={api.exportUrl(projectId)} download data-testid="download-zip" title="Download the latest version as a project that builds on its own">
            Download
          </a>
        </header>
        <ChatPane
          messages={messages}
          error={messagesError}
          onRetry={() => loadMessages()}
          status={status}
          busy={busy}
          activity={activity}
          onStop={stoppableRunId ? stop : undefined}
          stopping={stopping}
          selectedFragmentId={selected?.id ?? null}
          onSelectFragment={selectFragment}
          onSend={send}
        />
      </section>
      <Splitter
        value={split}
        onChange={(v) => {
          setSplit(v);
          localStorage.setItem(SPLIT_KEY, String(Math.round(v)));
        }}
      />
      <section class="pane right-pane" aria-label="Preview and code">
        <RightPane
          projectId={projectId}
          fragment={selected}
          tab={tab}
          onTab={setTab}
          previewNonce={previewNonce}
          onReload={() => setPreviewNonce((n) => n + 1)}
          busy={busy}
          loading={messages === null}
          drafts={drafts}
          setDrafts={setDrafts}
          selectedPath={selectedPath}
          onSelectPath={setSelectedPath}
          onSave={saveFiles}
          versionsKey={messages?.length ?? 0}
          onRestored={restored}
        />
      </section>
    </div>
  );
}
