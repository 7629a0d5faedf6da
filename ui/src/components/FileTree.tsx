import { useMemo, useState } from 'preact/hooks';

interface Node {
  name: string;
  path: string;
  children: Node[] | null; // null for files
}

export function buildTree(paths: string[]): Node[] {
  const root: Node = { name: '', path: '', children: [] };
  for (const full of paths) {
    const parts = full.split('/').filter(Boolean);
    let node = root;
    parts.forEach((part, index) => {
      const isFile = index === parts.length - 1;
      const path = parts.slice(0, index + 1).join('/');
      let child = node.children!.find((c) => c.name === part && (c.children === null) === isFile);
      if (!child) {
        child = { name: part, path: isFile ? full : path, children: isFile ? null : [] };
        node.children!.push(child);
      }
      node = child;
    });
  }
  const sort = (nodes: Node[]) => {
    nodes.sort((a, b) => {
      if ((a.children === null) !== (b.children === null)) return a.children === null ? 1 : -1;
      return a.name.localeCompare(b.name);
    });
    nodes.forEach((n) => n.children && sort(n.children));
  };
  sort(root.children!);
  return root.children!;
}

interface Props {
  paths: string[];
  selected: string | null;
  dirty: Record<string, string>;
  onSelect: (path: string) => void;
}

export function FileTree({ paths, selected, dirty, onSelect }: Props) {
  const tree = useMemo(() => buildTree(paths), [paths]);
  const [collapsed, setCollapsed] = useState<Set<string>>(() => new Set());

  const toggle = (path: string) =>
    setCollapsed((current) => {
      const next = new Set(current);
      if (next.has(path)) next.delete(path);
      else next.add(path);
      return next;
    });

  const render = (nodes: Node[], depth: number) => (
    <ul class="tree" role={depth === 0 ? 'list' : 'group'}>
      {nodes.map((node) => {
        const pad = { paddingLeft: `${8 + depth * 14}px` };
        if (node.children) {
          const open = !collapsed.has(node.path);
          return (
            <li key={`d:${node.path}`}>
              <button
                type="button"
                class="tree-row folder"
                style={pad}
                aria-expanded={open}
                onClick={() => toggle(node.path)}
                data-testid="folder-item"
                data-path={node.path}
              >
                <span class={`chevron${open ? ' open' : ''}`} aria-hidden="true">
                  ›
                </span>
                <FolderIcon />
                <span class="tree-name">{node.name}</span>
              </button>
              {open && render(node.children, depth + 1)}
            </li>
          );
        }
        const isSelected = node.path === selected;
        return (
          <li key={`f:${node.path}`}>
            <button
              type="button"
              class={`tree-row file${isSelected ? ' selected' : ''}`}
              style={pad}
              aria-current={isSelected ? 'true' : undefined}
              onClick={() => onSelect(node.path)}
              data-testid="file-item"
              data-path={node.path}
              title={node.path}
            >
              <span class="chevron spacer" aria-hidden="true" />
              <FileIcon name={node.name} />
              <span class="tree-name">{node.name}</span>
              {dirty[node.path] !== undefined && <span class="dot" aria-label="unsaved" />}
            </button>
          </li>
        );
      })}
    </ul>
  );

  return render(tree, 0);
}

function FolderIcon() {
  return (
    <svg class="tree-icon" viewBox="0 0 24 24" width="15" height="15" aria-hidden="true">
      <path d="M3 6.5A1.5 1.5 0 014.5 5H9l2 2h8.5A1.5 1.5 0 0121 8.5v9a1.5 1.5 0 01-1.5 1.5h-15A1.5 1.5 0 013 17.5z" fill="currentColor" opacity=".55" />
    </svg>
  );
}

const EXT_COLORS: Record<string, string> = {
  ts: '#3178c6',
  tsx: '#3178c6',
  js: '#c9a400',
  jsx: '#c9a400',
  mjs: '#c9a400',
  css: '#8b5cf6',
  html: '#e34c26',
  json: '#6b7280',
  md: '#0f766e',
};

function FileIcon({ name }: { name: string }) {
  const ext = name.includes('.') ? name.split('.').pop()!.toLowerCase() : '';
  return (
    <svg class="tree-icon" viewBox="0 0 24 24" width="15" height="15" aria-hidden="true">
      <path d="M6 3h8l4 4v14H6z" fill="none" stroke={EXT_COLORS[ext] ?? '#9ca3af'} stroke-width="1.8" stroke-linejoin="round" />
    </svg>
  );
}
