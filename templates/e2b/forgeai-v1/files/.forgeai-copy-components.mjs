// Copies shadcn-packaged's components, hooks and utils (unpacked in $SHADCN_DIR) into the
// project, as the shadcn CLI would, so the agent can read and edit them and Tailwind sees their
// classes. Two rewrites on the way:
// - relative imports become the project's "@/" alias;
// - Tailwind v3 variable shorthands (`w-[--sidebar-width]`) become the form Tailwind v4
//   compiles (`w-[var(--sidebar-width)]`); v4 reads the v3 form as a literal and emits invalid CSS.
// Then every package the copied files import must be a dependency in package.json.
import fs from 'node:fs';
import path from 'node:path';
const pkg = process.env.SHADCN_DIR;
const fix = (src) => src
  .replaceAll(/(["'])\.\.\/lib\/utils(\.js)?\1/g, '"@/lib/utils"')
  .replaceAll(/(["'])\.\.\/hooks\/([\w-]+?)(\.jsx?)?\1/g, '"@/hooks/$2"')
  .replaceAll(/\[(--[\w-]+)\]/g, '[var($1)]');
const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8'));
const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.devDependencies ?? {})]);
const missing = new Set();
let count = 0;
for (const [from, to] of [['ui', 'components/ui'], ['hooks', 'hooks'], ['lib', 'lib']]) {
  fs.mkdirSync(to, { recursive: true });
  for (const f of fs.readdirSync(path.join(pkg, from))) {
    const src = fix(fs.readFileSync(path.join(pkg, from, f), 'utf8'));
    if (/\[--[\w-]+\]/.test(src)) { console.error(`${to}/${f} still has a Tailwind v3 variable shorthand`); process.exit(1); }
    for (const [, spec] of src.matchAll(/from\s+["']([^"'.@][^"']*|@[^/"']+\/[^"']+)["']/g)) {
      const name = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : spec.split('/')[0];
      if (!declared.has(name) && !name.startsWith('@/')) missing.add(`${name} (imported by ${to}/${f})`);
    }
    fs.writeFileSync(path.join(to, f), src);
    if (from === 'ui' && f.endsWith('.jsx')) count++;
  }
}
if (count < 40) { console.error(`only ${count} components found in ${pkg}/ui`); process.exit(1); }
if (missing.size) { console.error(`not in package.json: ${[...missing].join(', ')}`); process.exit(1); }
console.log(`copied ${count} shadcn/ui components`);
