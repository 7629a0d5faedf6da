import { useEffect, useMemo, useRef, useState } from 'preact/hooks';

type Highlighter = typeof import('../highlight');

let highlighter: Highlighter | null = null;
let loading: Promise<Highlighter> | null = null;
function loadHighlighter(): Promise<Highlighter> {
  loading ??= import('../highlight').then((mod) => (highlighter = mod));
  return loading;
}

const LANGUAGES: Record<string, string> = {
  ts: 'typescript',
  tsx: 'typescript',
  mts: 'typescript',
  cts: 'typescript',
  js: 'javascript',
  jsx: 'javascript',
  mjs: 'javascript',
  cjs: 'javascript',
  css: 'css',
  scss: 'css',
  html: 'xml',
  htm: 'xml',
  svg: 'xml',
  xml: 'xml',
  json: 'json',
  md: 'markdown',
  mdx: 'markdown',
  sh: 'bash',
  yml: 'yaml',
  yaml: 'yaml',
};

export function languageFor(path: string): string | null {
  const name = path.split('/').pop() ?? '';
  const ext = name.includes('.') ? name.split('.').pop()!.toLowerCase() : '';
  return LANGUAGES[ext] ?? null;
}

const MAX_HIGHLIGHT = 200_000;
const INDENT = '  ';

function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Insert text at the caret keeping the browser's undo history when possible. */
function insertText(area: HTMLTextAreaElement, text: string) {
  area.focus();
  // execCommand keeps undo/redo working; setRangeText is the fallback.
  if (!document.execCommand || !document.execCommand('insertText', false, text)) {
    area.setRangeText(text, area.selectionStart, area.selectionEnd, 'end');
    area.dispatchEvent(new Event('input', { bubbles: true }));
  }
}

interface Props {
  path: string;
  value: string;
  onChange: (value: string) => void;
  onSave: () => void;
}

/**
 * A textarea over a syntax-highlighted <pre>: the textarea does all the editing (so it
 * behaves like any form field for keyboards, screen readers and tests), the <pre> paints.
 */
export function CodeEditor({ path, value, onChange, onSave }: Props) {
  const [hl, setHl] = useState<Highlighter | null>(highlighter);
  const areaRef = useRef<HTMLTextAreaElement>(null);
  const preRef = useRef<HTMLPreElement>(null);
  const gutterRef = useRef<HTMLDivElement>(null);
  const escaped = useRef(false);
  const language = languageFor(path);

  useEffect(() => {
    if (!hl) void loadHighlighter().then(setHl);
  }, [hl]);

  const html = useMemo(() => {
    const body = hl && value.length <= MAX_HIGHLIGHT ? hl.highlight(value, language) : escapeHtml(value);
    // A trailing newline needs a character after it to take up room, as it does in the textarea.
    return `${body}\n `;
  }, [hl, value, language]);

  const lineCount = useMemo(() => {
    let n = 1;
    for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) === 10) n++;
    return n;
  }, [value]);
  const gutter = useMemo(() => Array.from({ length: lineCount }, (_, i) => i + 1).join('\n'), [lineCount]);

  function syncScroll() {
    const area = areaRef.current;
    if (!area) return;
    if (preRef.current) {
      preRef.current.scrollTop = area.scrollTop;
      preRef.current.scrollLeft = area.scrollLeft;
    }
    if (gutterRef.current) gutterRef.current.scrollTop = area.scrollTop;
  }

  useEffect(syncScroll, [html]);

  function onKeyDown(event: KeyboardEvent) {
    const area = event.currentTarget as HTMLTextAreaElement;
    if ((event.ctrlKey || event.metaKey) && event.key.toLowerCase() === 's') {
      event.preventDefault();
      onSave();
      return;
    }
    if (event.key === 'Escape') {
      // Escape, then Tab, moves focus out of the editor instead of indenting.
      escaped.current = true;
      return;
    }
    if (event.key === 'Tab' && !escaped.current && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      const { selectionStart: start, selectionEnd: end, value: text } = area;
      if (start === end && !event.shiftKey) {
        insertText(area, INDENT);
        return;
      }
      // Indent or outdent every selected line.
      const lineStart = text.lastIndexOf('\n', start - 1) + 1;
      const block = text.slice(lineStart, end);
      const lines = block.split('\n');
      const changed = event.shiftKey
        ? lines.map((l) => (l.startsWith(INDENT) ? l.slice(INDENT.length) : l.replace(/^[ \t]/, '')))
        : lines.map((l) => INDENT + l);
      const replacement = changed.join('\n');
      area.setSelectionRange(lineStart, end);
      insertText(area, replacement);
      area.setSelectionRange(lineStart, lineStart + replacement.length);
      return;
    }
    escaped.current = false;
    if (event.key === 'Enter' && !event.shiftKey && !event.ctrlKey && !event.metaKey && !event.altKey && !event.isComposing) {
      // Keep the current line's indentation.
      const { selectionStart: start, value: text } = area;
      const lineStart = text.lastIndexOf('\n', start - 1) + 1;
      const indent = /^[ \t]*/.exec(text.slice(lineStart, start))?.[0] ?? '';
      const before = text[start - 1];
      const extra = before === '{' || before === '(' || before === '[' ? INDENT : '';
      if (indent || extra) {
        event.preventDefault();
        insertText(area, `\n${indent}${extra}`);
      }
    }
  }

  return (
    <div class="editor" data-language={language ?? 'text'}>
      <div class="editor-gutter" ref={gutterRef} aria-hidden="true">
        <pre>{gutter}</pre>
      </div>
      <div class="editor-body">
        <pre class="editor-highlight hljs" ref={preRef} aria-hidden="true">
          <code dangerouslySetInnerHTML={{ __html: html }} />
        </pre>
        <textarea
          ref={areaRef}
          class="editor-input"
          value={value}
          onInput={(e) => {
            onChange(e.currentTarget.value);
          }}
          onScroll={syncScroll}
          onKeyDown={onKeyDown}
          spellcheck={false}
          autocomplete="off"
          autocapitalize="off"
          wrap="off"
          aria-label={`Code editor: ${path}`}
          aria-describedby="editor-help"
          data-testid="code-editor"
          data-path={path}
        />
        <span id="editor-help" class="sr-only">
          Tab indents; press Escape then Tab to leave the editor. Ctrl+S saves.
        </span>
      </div>
    </div>
  );
}
