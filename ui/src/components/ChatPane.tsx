import { useEffect, useLayoutEffect, useRef } from 'preact/hooks';
import type { Activity, Message } from '../api';
import { absoluteTime, relativeTime, useNow } from '../time';
import { Logo } from './App';
import { Composer } from './Composer';
import { LineIcon } from './Icon';

export interface RunStatusView {
  state: 'queued' | 'running' | 'done' | 'error';
  text: string;
}

interface Props {
  messages: Message[] | null;
  error: string | null;
  onRetry: () => void;
  status: RunStatusView | null;
  busy: boolean;
  selectedFragmentId: string | null;
  onSelectFragment: (id: string) => void;
  onSend: (message: string, imageUrl?: string) => Promise<boolean>;
  /** The current (or last) run's activity, shown as a live log under the prompt. */
  activity: Activity[];
  /** Stops the running run; absent when none runs. */
  onStop?: () => void;
  stopping: boolean;
}

export function stripSummaryTags(content: string): string {
  return content.replace(/<\/?task_summary>/gi, '').trim();
}

export function ChatPane({
  messages,
  error,
  onRetry,
  status,
  busy,
  selectedFragmentId,
  onSelectFragment,
  onSend,
  activity,
  onStop,
  stopping,
}: Props) {
  const listRef = useRef<HTMLDivElement>(null);
  const stickToBottom = useRef(true);
  const now = useNow();

  // Follow the conversation unless the reader has scrolled up.
  useLayoutEffect(() => {
    const el = listRef.current;
    if (el && stickToBottom.current) el.scrollTop = el.scrollHeight;
  }, [messages, status?.text, activity.length]);

  useEffect(() => {
    const el = listRef.current;
    if (!el) return;
    const onScroll = () => {
      stickToBottom.current = el.scrollHeight - el.scrollTop - el.clientHeight < 80;
    };
    el.addEventListener('scroll', onScroll, { passive: true });
    return () => el.removeEventListener('scroll', onScroll);
  }, []);

  return (
    <div class="chat">
      <div class="messages" ref={listRef} role="log" aria-label="Messages" aria-live="polite" data-testid="messages">
        {messages === null && !error && (
          <p class="muted center-text" aria-busy="true">
            <span class="spinner" aria-hidden="true" /> Loading messages…
          </p>
        )}
        {error && (
          <div class="error-box" role="alert">
            <span>Could not load messages: {error}</span>
            <button type="button" class="btn small" onClick={onRetry}>
              Retry
            </button>
          </div>
        )}
        {messages?.map((message) => (
          <MessageItem
            key={message.id}
            message={message}
            now={now}
            selected={!!message.codeFragment && message.codeFragment.id === selectedFragmentId}
            onSelectFragment={onSelectFragment}
          />
        ))}
        {status && (
          <div class={`run-status run-status-${status.state}`} role="status" data-testid="run-status" data-state={status.state}>
            {status.state === 'queued' || status.state === 'running' ? (
              <span class="spinner" aria-hidden="true" />
            ) : status.state === 'done' ? (
              <LineIcon class="status-icon" d="M5 12.5l4.5 4.5L19 7.5" size={16} weight={2.4} />
            ) : (
              <AlertIcon />
            )}
            <span class={status.state === 'running' ? 'shimmer' : undefined}>{status.text}</span>
            {onStop && (
              <button type="button" class="btn small stop-button" data-testid="stop-run" disabled={stopping} onClick={onStop}>
                {stopping ? 'Stopping…' : 'Stop'}
              </button>
            )}
          </div>
        )}
        {activity.length > 0 && <ActivityLog activity={activity} />}
      </div>
      <div class="chat-composer">
        <Composer
          variant="chat"
          placeholder={busy ? 'Send a follow-up (it will be queued)…' : 'Ask for changes…'}
          submitLabel="Send"
          onSubmit={onSend}
        />
      </div>
    </div>
  );
}

/** What the agent did in the current (or last) run, one line per event. */
function ActivityLog({ activity }: { activity: Activity[] }) {
  return (
    <ol class="activity-log" data-testid="activity-log" aria-label="Agent activity">
      {activity.map((item, index) => {
        switch (item.type) {
          case 'runStarted':
            return null;
          case 'toolCall':
            return (
              <li key={index} class={`activity activity-${item.outcome}`} data-testid="activity-tool">
                <span class="activity-mark" aria-hidden="true">{item.outcome === 'ok' ? '✓' : '✗'}</span>
                {item.summary}
              </li>
            );
          case 'modelText': {
            const text = stripSummaryTags(item.text);
            return text ? (
              <li key={index} class="activity activity-text">
                {text.length > 280 ? `${text.slice(0, 280)}…` : text}
              </li>
            ) : null;
          }
          case 'appChecked':
            return (
              <li key={index} class={`activity ${item.problems ? 'activity-error' : 'activity-ok'}`}>
                <span class="activity-mark" aria-hidden="true">{item.problems ? '✗' : '✓'}</span>
                {item.problems ? 'Checked the app: it has errors' : 'Checked the app: every page renders'}
              </li>
            );
          case 'runFinished':
            return (
              <li key={index} class="activity activity-end" data-testid="activity-end" data-outcome={item.outcome}>
                {item.outcome === 'completed' ? 'Run finished' : item.outcome === 'cancelled' ? 'Run stopped' : 'Run failed'}
              </li>
            );
        }
      })}
    </ol>
  );
}

function MessageItem({
  message,
  now,
  selected,
  onSelectFragment,
}: {
  message: Message;
  now: number;
  selected: boolean;
  onSelectFragment: (id: string) => void;
}) {
  const time = (
    <time class="message-time" dateTime={message.createdAt} title={absoluteTime(message.createdAt)}>
      {message.pending ? 'Sending…' : relativeTime(message.createdAt, now)}
    </time>
  );

  if (message.role === 'USER') {
    return (
      <article class="message message-user" data-testid="message" data-role="USER" data-type={message.type} aria-label="Your message">
        <div class="bubble">
          {message.imageUrl && (
            <a href={message.imageUrl} target="_blank" rel="noopener noreferrer" class="message-image" title="Open image">
              <img src={message.imageUrl} alt="Attached image" loading="lazy" data-testid="message-image" />
            </a>
          )}
          <p class="message-text">{message.content}</p>
        </div>
        {time}
      </article>
    );
  }

  const isError = message.type === 'ERROR';
  const fragment = message.codeFragment;
  return (
    <article
      class={`message message-assistant${isError ? ' message-error' : ''}`}
      data-testid="message"
      data-role="ASSISTANT"
      data-type={message.type}
      aria-label={isError ? 'Error from forgeai' : 'Reply from forgeai'}
    >
      <div class="assistant-head">
        <span class="assistant-avatar" aria-hidden="true">
          {isError ? <AlertIcon /> : <Logo />}
        </span>
        <span class="assistant-name">forgeai</span>
        {time}
      </div>
      <p class="message-text" role={isError ? 'alert' : undefined}>
        {stripSummaryTags(withoutAppErrors(message.content, fragment?.appErrors))}
      </p>
      {fragment?.appErrors && (
        <div class="app-errors" role="alert" data-testid="app-errors">
          <strong>The app has errors</strong>
          <span>The agent could not fix them; the preview shows what it got to. Ask it to fix them, or edit the code.</span>
          <pre>{fragment.appErrors}</pre>
        </div>
      )}
      {fragment && (
        <button
          type="button"
          class={`fragment-card${selected ? ' selected' : ''}`}
          onClick={() => onSelectFragment(fragment.id)}
          aria-pressed={selected}
          data-testid="fragment-button"
          data-fragment-id={fragment.id}
        >
          <span class="fragment-icon" aria-hidden="true">
            <LineIcon d="M8 7l-5 5 5 5M16 7l5 5-5 5" size={16} weight={2} />
          </span>
          <span class="fragment-text">
            <span class="fragment-title">{fragment.title || 'Untitled version'}</span>
            <span class="fragment-sub">{selected ? 'Showing' : 'Show'} · {Object.keys(fragment.fileSizes ?? {}).length} files</span>
          </span>
          <span class="fragment-arrow" aria-hidden="true">
            ›
          </span>
        </button>
      )}
    </article>
  );
}

/** The reply without the errors it ends with when the app still has some (shown apart). */
function withoutAppErrors(content: string, appErrors?: string | null): string {
  if (!appErrors) return content;
  const at = content.indexOf('\n\nThe app still has errors');
  return at >= 0 ? content.slice(0, at) : content;
}

function AlertIcon() {
  return (
    <svg class="status-icon" viewBox="0 0 24 24" width="16" height="16" aria-hidden="true">
      <circle cx="12" cy="12" r="9" fill="none" stroke="currentColor" stroke-width="2" />
      <path d="M12 7.5v5.5M12 16.5v.01" stroke="currentColor" stroke-width="2.4" stroke-linecap="round" />
    </svg>
  );
}
