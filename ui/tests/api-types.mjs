// Fails when src/api.gen.ts is not what openapi-typescript generates from openapi.json (the
// server's OpenAPI document, itself checked by the server's tests): regenerate with
// `npm run gen:api`.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ui = join(dirname(fileURLToPath(import.meta.url)), '..');
const dir = mkdtempSync(join(tmpdir(), 'forgeai-api-types-'));
try {
  const out = join(dir, 'api.gen.ts');
  const run = spawnSync(join(ui, 'node_modules/.bin/openapi-typescript'), ['openapi.json', '-o', out], {
    cwd: ui,
    encoding: 'utf8',
  });
  if (run.status !== 0) {
    console.error(run.stdout, run.stderr);
    process.exit(2);
  }
  if (readFileSync(out, 'utf8') !== readFileSync(join(ui, 'src/api.gen.ts'), 'utf8')) {
    console.error('ui/src/api.gen.ts is out of date with ui/openapi.json: run `npm run gen:api` in ui/');
    process.exit(1);
  }
  console.log('ui/src/api.gen.ts matches ui/openapi.json');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
