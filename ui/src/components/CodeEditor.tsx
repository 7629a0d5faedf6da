import { css } from '@codemirror/lang-css';
import { html } from '@codemirror/lang-html';
import { javascript } from '@codemirror/lang-javascript';
import { json } from '@codemirror/lang-json';
import { markdown } from '@codemirror/lang-markdown';
import { EditorState, type Extension } from '@codemirror/state';
import { keymap } from '@codemirror/view';
import { EditorView, basicSetup } from 'codemirror';
import { useEffect, useRef } from 'preact/hooks';

/** The language support of a file, by its extension; `null` for plain text. */
function languageOf(path: string): Extension | null {
  const name = path.split('/').pop() ?? '';
  const ext = name.includes('.') ? name.split('.').pop()!.toLowerCase() : '';
  switch (ext) {
    case 'ts':
    case 'mts':
    case 'cts':
      return javascript({ typescript: true });
    case 'tsx':
      return javascript({ typescript: true, jsx: true });
    case 'js':
    case 'mjs':
    case 'cjs':
    case 'jsx':
      return javascript({ jsx: true });
    case 'css':
      return css();
    case 'json':
      return json();
    case 'html':
    case 'htm':
    case 'svg':
      return html();
    case 'md':
    case 'mdx':
      return markdown();
    default:
      return null;
  }
}

export function languageFor(path: string): string {
  return languageOf(path) ? (path.split('.').pop() ?? 'text') : 'text';
}

/** Each file's editor state (its undo history and selection) while the page lives. */
const states = new Map<string, EditorState>();

interface Props {
  path: string;
  value: string;
  onChange: (value: string) => void;
  onSave: () => void;
}

/**
 * CodeMirror 6: syntax highlighting for TS/TSX, CSS, JSON, HTML and Markdown, line numbers,
 * search (Ctrl+F), undo history per file, bracket matching. Ctrl+S saves.
 */
export function CodeEditor({ path, value, onChange, onSave }: Props) {
  const host = useRef<HTMLDivElement>(null);
  const callbacks = useRef({ onChange, onSave });
  callbacks.current = { onChange, onSave };

  useEffect(() => {
    if (!host.current) return;
    let state = states.get(path);
    if (!state || state.doc.toString() !== value) {
      const language = languageOf(path);
      state = EditorState.create({
        doc: value,
        extensions: [
          basicSetup,
          ...(language ? [language] : []),
          keymap.of([
            {
              key: 'Mod-s',
              preventDefault: true,
              run: () => {
                callbacks.current.onSave();
                return true;
              },
            },
          ]),
          EditorView.updateListener.of((update) => {
            if (update.docChanged) callbacks.current.onChange(update.state.doc.toString());
          }),
          EditorView.contentAttributes.of({
            'data-testid': 'code-editor',
            'data-path': path,
            'aria-label': `Code editor: ${path}`,
          }),
        ],
      });
    }
    const editor = new EditorView({ state, parent: host.current });
    return () => {
      states.set(path, editor.state);
      editor.destroy();
    };
    // While it is mounted the editor owns the text (syncing `value` back into it would race
    // with the edits it reports); the parent remounts it (by key) for another file or version.
  }, [path]);

  return <div class="editor" data-language={languageFor(path)} ref={host} />;
}
