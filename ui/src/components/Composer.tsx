import { useEffect, useRef, useState } from 'preact/hooks';
import { api, errorMessage } from '../api';
import { LineIcon } from './Icon';

export const MAX_MESSAGE_CHARS = 10_000;
export const MAX_IMAGE_BYTES = 4 * 1024 * 1024;
export const IMAGE_TYPES = ['image/png', 'image/jpeg', 'image/webp', 'image/gif'];

interface Attachment {
  /** Local object URL for the thumbnail. */
  preview: string;
  name: string;
  /** Server URL once uploaded. */
  url: string | null;
  uploading: boolean;
}

export interface ComposerProps {
  variant: 'hero' | 'chat';
  placeholder: string;
  submitLabel: string;
  /** Resolves true when the prompt was accepted (the box is then cleared). */
  onSubmit: (message: string, imageUrl?: string) => Promise<boolean>;
  /** Text to put into the box (e.g. from an example chip); `nonce` makes repeats count. */
  fill?: { text: string; nonce: number } | null;
  autofocus?: boolean;
}

export function validateImage(file: File): string | null {
  if (!IMAGE_TYPES.includes(file.type)) return 'Only PNG, JPEG, WebP or GIF images can be attached.';
  if (file.size > MAX_IMAGE_BYTES) return `The image is ${(file.size / 1024 / 1024).toFixed(1)} MB; the limit is 4 MB.`;
  return null;
}

export function Composer({ variant, placeholder, submitLabel, onSubmit, fill, autofocus }: ComposerProps) {
  const [text, setText] = useState('');
  const [attachment, setAttachment] = useState<Attachment | null>(null);
  const [error, setError] = useState<string | null>(null);
  const [sending, setSending] = useState(false);
  const [dragging, setDragging] = useState(false);
  const textRef = useRef<HTMLTextAreaElement>(null);
  const fileRef = useRef<HTMLInputElement>(null);
  const uploadSeq = useRef(0);

  useEffect(() => {
    if (fill) {
      setText(fill.text);
      const el = textRef.current;
      if (el) {
        el.focus();
        requestAnimationFrame(() => el.setSelectionRange(el.value.length, el.value.length));
      }
    }
  }, [fill]);

  useEffect(() => {
    if (autofocus) textRef.current?.focus();
  }, [autofocus]);

  // Grow the chat box with its content (up to a limit set in CSS).
  useEffect(() => {
    const el = textRef.current;
    if (!el || variant !== 'chat') return;
    el.style.height = 'auto';
    el.style.height = `${Math.min(el.scrollHeight, 220)}px`;
  }, [text, variant]);

  const previewUrl = attachment?.preview;
  useEffect(() => () => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
  }, [previewUrl]);

  async function attach(file: File) {
    const problem = validateImage(file);
    if (problem) {
      setError(problem);
      return;
    }
    setError(null);
    const seq = ++uploadSeq.current;
    const preview = URL.createObjectURL(file);
    setAttachment({ preview, name: file.name, url: null, uploading: true });
    try {
      const { url } = await api.upload(file);
      if (seq !== uploadSeq.current) return;
      setAttachment((current) => (current && current.preview === preview ? { ...current, url, uploading: false } : current));
    } catch (err) {
      if (seq !== uploadSeq.current) return;
      setAttachment(null);
      setError(`Upload failed: ${errorMessage(err)}`);
    }
  }

  function removeAttachment() {
    uploadSeq.current++;
    setAttachment(null);
    if (fileRef.current) fileRef.current.value = '';
    textRef.current?.focus();
  }

  const trimmed = text.trim();
  const tooLong = text.length > MAX_MESSAGE_CHARS;
  const canSend = !!trimmed && !tooLong && !sending && !attachment?.uploading;

  async function submit(event?: Event) {
    event?.preventDefault();
    if (!trimmed) {
      setError('Describe what you want to build.');
      return;
    }
    if (tooLong) {
      setError(`The prompt has ${text.length} characters; at most ${MAX_MESSAGE_CHARS} are allowed.`);
      return;
    }
    if (attachment?.uploading || sending) return;
    setSending(true);
    setError(null);
    try {
      const ok = await onSubmit(trimmed, attachment?.url ?? undefined);
      if (ok) {
        setText('');
        setAttachment(null);
        if (fileRef.current) fileRef.current.value = '';
      }
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setSending(false);
    }
  }

  function onKeyDown(event: KeyboardEvent) {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      void submit();
    }
  }

  function onPaste(event: ClipboardEvent) {
    const file = Array.from(event.clipboardData?.files ?? []).find((f) => f.type.startsWith('image/'));
    if (file) {
      event.preventDefault();
      void attach(file);
    }
  }

  function onDrop(event: DragEvent) {
    setDragging(false);
    const file = event.dataTransfer?.files?.[0];
    if (file) {
      event.preventDefault();
      void attach(file);
    }
  }

  const errorId = `composer-error-${variant}`;
  return (
    <form
      class={`composer composer-${variant}${dragging ? ' dragging' : ''}`}
      onSubmit={submit}
      onDragOver={(e) => {
        if (e.dataTransfer?.types.includes('Files')) {
          e.preventDefault();
          setDragging(true);
        }
      }}
      onDragLeave={() => setDragging(false)}
      onDrop={onDrop}
      aria-label="Prompt"
    >
      {attachment && (
        <div class="attachment" data-testid="image-preview">
          <img src={attachment.preview} alt={`Attached image ${attachment.name}`} />
          {attachment.uploading && (
            <span class="attachment-overlay" aria-live="polite">
              <span class="spinner light" aria-hidden="true" />
              <span class="sr-only">Uploading image…</span>
            </span>
          )}
          <button
            type="button"
            class="attachment-remove"
            onClick={removeAttachment}
            aria-label="Remove image"
            title="Remove image"
            data-testid="image-remove"
          >
            ×
          </button>
        </div>
      )}
      <label class="sr-only" for={`prompt-${variant}`}>
        Prompt
      </label>
      <textarea
        id={`prompt-${variant}`}
        ref={textRef}
        class="composer-input"
        rows={variant === 'hero' ? 4 : 1}
        placeholder={placeholder}
        value={text}
        onInput={(e) => setText(e.currentTarget.value)}
        onKeyDown={onKeyDown}
        onPaste={onPaste}
        data-testid="prompt-input"
        aria-invalid={error ? true : undefined}
        aria-describedby={error ? errorId : undefined}
      />
      <div class="composer-bar">
        <input
          ref={fileRef}
          type="file"
          accept={IMAGE_TYPES.join(',')}
          class="sr-only"
          tabIndex={-1}
          aria-label="Image file"
          data-testid="image-input"
          onChange={(e) => {
            const file = e.currentTarget.files?.[0];
            if (file) void attach(file);
            e.currentTarget.value = '';
          }}
        />
        <button
          type="button"
          class="btn ghost icon-btn"
          onClick={() => fileRef.current?.click()}
          aria-label="Attach image"
          title="Attach an image (PNG, JPEG, WebP or GIF, up to 4 MB)"
          data-testid="attach-image"
        >
          <LineIcon d="M21 12.5l-8.5 8.5a5.5 5.5 0 01-7.8-7.8l9-9a3.7 3.7 0 015.2 5.2l-9 9a1.8 1.8 0 01-2.6-2.6l8.3-8.3" size={18} weight={1.8} />
          {variant === 'hero' && <span>Image</span>}
        </button>
        <span class={`char-count${tooLong ? ' over' : ''}`} aria-live="polite">
          {text.length > MAX_MESSAGE_CHARS * 0.8 ? `${text.length} / ${MAX_MESSAGE_CHARS}` : ''}
        </span>
        <button
          type="submit"
          class="btn primary send-btn"
          disabled={!canSend}
          data-testid="prompt-submit"
          aria-label={submitLabel}
          title={`${submitLabel} (Enter; Shift+Enter for a new line)`}
        >
          {sending || attachment?.uploading ? (
            <span class="spinner light" aria-hidden="true" />
          ) : (
            <LineIcon d="M12 19V5M5 12l7-7 7 7" size={18} weight={2.2} />
          )}
          {variant === 'hero' && <span>{submitLabel}</span>}
        </button>
      </div>
      {error && (
        <p id={errorId} class="error-text composer-error" role="alert">
          {error}
        </p>
      )}
    </form>
  );
}
