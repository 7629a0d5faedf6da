// A stand-in for `forgeai serve` for UI development and smoke tests: serves ui/dist (with the
// index.html fallback) and an in-memory fake of the API. No dependencies.
//
//   node dev/fake-server.mjs            # http://127.0.0.1:4173, token "dev-token"
//   PORT=5000 RUN_MS=3000 node dev/fake-server.mjs
//
// Runs are simulated: each prompt queues a run (one at a time per project) that publishes a
// few statuses over SSE and ends with an assistant message + fragment whose preview is served
// on PORT+1 (a different origin, like the real sandbox proxy). A prompt containing "fail"
// produces an ERROR message.
import { createServer } from 'node:http';
import { randomUUID } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { extname, join, normalize } from 'node:path';
import { fileURLToPath } from 'node:url';

const PORT = Number(process.env.PORT ?? 4173);
const PREVIEW_PORT = PORT + 1;
const TOKEN = process.env.TOKEN ?? 'dev-token';
const RUN_MS = Number(process.env.RUN_MS ?? 2500);
const DIST = fileURLToPath(new URL('../dist/', import.meta.url));
const SESSION = 'forgeai_session';
const sessionValue = 'fake-session';

const projects = new Map(); // id → project
const messages = []; // all messages
const runs = new Map(); // projectId → run[]
const uploads = new Map(); // name → {type, bytes}
const channels = new Map(); // projectId → Set<res>
const events = []; // {id, projectId, data}
let eventSeq = 0;

const now = () => new Date().toISOString();

function summary({ files, ...rest }) {
  const fileSizes = Object.fromEntries(Object.entries(files).map(([p, c]) => [p, Buffer.byteLength(c)]));
  const size = Object.entries(fileSizes).reduce((sum, [p, n]) => sum + Buffer.byteLength(p) + n, 0);
  return { ...rest, fileSizes, size };
}

function json(res, status, body) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(text);
}
const fail = (res, status, error) => json(res, status, { error });

function authed(req) {
  const cookie = req.headers.cookie ?? '';
  return cookie.split(/;\s*/).includes(`${SESSION}=${sessionValue}`) || req.headers.authorization === `Bearer ${TOKEN}`;
}

async function body(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return Buffer.concat(chunks);
}

function publish(projectId, status) {
  const event = { id: ++eventSeq, projectId, data: JSON.stringify(status) };
  events.push(event);
  for (const res of channels.get(projectId) ?? []) {
    res.write(`id: ${event.id}\nevent: projectInfo\ndata: ${event.data}\n\n`);
  }
}

function sampleFiles(prompt, n) {
  return {
    'app/page.tsx': `"use client";\n\nimport { useState } from "react";\n\n// ${prompt.replace(/\n/g, ' ').slice(0, 80)}\nexport default function Page() {\n  const [count, setCount] = useState(${n});\n  return (\n    <main className="p-8">\n      <h1 className="text-3xl font-bold">Version ${n}</h1>\n      <button onClick={() => setCount(count + 1)}>Clicked {count} times</button>\n    </main>\n  );\n}\n`,
    'app/layout.tsx': `export default function RootLayout({ children }: { children: React.ReactNode }) {\n  return (\n    <html lang="en">\n      <body>{children}</body>\n    </html>\n  );\n}\n`,
    'app/globals.css': `@tailwind base;\n@tailwind components;\n@tailwind utilities;\n\nbody {\n  font-family: system-ui, sans-serif;\n}\n`,
    'components/ui/card.tsx': `export function Card({ children }: { children: React.ReactNode }) {\n  return <div className="rounded-xl border p-4">{children}</div>;\n}\n`,
    'package.json': `{\n  "name": "app",\n  "private": true,\n  "dependencies": { "next": "15.0.0" }\n}\n`,
  };
}

function pump(projectId) {
  const list = runs.get(projectId) ?? [];
  if (list.some((r) => r.status === 'running')) return;
  const next = list.find((r) => r.status === 'queued');
  if (!next) return;
  next.status = 'running';
  next.startedAt = now();
  const steps = ['Generating project files...', 'Installing packages...', 'Generating sandbox url...', 'Generating project name...', 'Saving to db...'];
  steps.forEach((s, i) => setTimeout(() => publish(projectId, s), ((i + 1) * RUN_MS) / (steps.length + 1)));
  setTimeout(() => {
    const project = projects.get(projectId);
    if (!project) return;
    const t = now();
    const failed = /fail/i.test(next.prompt);
    const id = randomUUID();
    const version = messages.filter((m) => m.projectId === projectId && m.codeFragment).length + 1;
    const prev = [...messages].reverse().find((m) => m.projectId === projectId && m.codeFragment)?.codeFragment;
    const message = {
      id,
      projectId,
      role: 'ASSISTANT',
      type: failed ? 'ERROR' : 'RESULT',
      content: failed ? 'Something went wrong. Please try again.' : `<task_summary>Built version ${version}: ${next.prompt.slice(0, 60)}</task_summary>`,
      imageUrl: null,
      createdAt: t,
      updatedAt: t,
      codeFragment: failed
        ? null
        : {
            id: randomUUID(),
            messageId: id,
            sandboxId: `sbx${projectId.slice(0, 6)}`,
            sandboxUrl: `http://127.0.0.1:${PREVIEW_PORT}/${projectId}/v${version}`,
            title: version === 1 ? 'Fake App' : `Fake App v${version}`,
            files: { ...(prev?.files ?? {}), ...sampleFiles(next.prompt, version) },
            imageUrl: next.imageUrl ?? null,
            designSpec: null,
            createdAt: t,
            updatedAt: t,
          },
    };
    messages.push(message);
    if (project.nameIsDefault && !failed) {
      project.name = 'Fake App';
      project.nameIsDefault = false;
    }
    project.updatedAt = t;
    next.status = failed ? 'failed' : 'completed';
    next.endedAt = t;
    if (failed) next.error = 'the fake agent was asked to fail';
    publish(projectId, failed ? 'Something went wrong. Please try again.' : 'Demo is ready');
    pump(projectId);
  }, RUN_MS);
}

function startRun(projectId, prompt, imageUrl) {
  const list = runs.get(projectId) ?? [];
  list.push({ id: randomUUID(), status: 'queued', startedAt: null, endedAt: null, error: null, prompt, imageUrl });
  runs.set(projectId, list);
  setTimeout(() => pump(projectId), 300);
}

function addUserMessage(projectId, content, imageUrl) {
  const t = now();
  const message = { id: randomUUID(), projectId, role: 'USER', type: 'RESULT', content, imageUrl: imageUrl ?? null, createdAt: t, updatedAt: t, codeFragment: null };
  messages.push(message);
  return message;
}

function validate(message, imageUrl) {
  if (typeof message !== 'string' || !message.trim()) return 'message must not be empty';
  if (message.length > 10000) return 'message is too long';
  if (imageUrl != null && !/^https?:\/\//.test(imageUrl)) return 'imageUrl must be an http(s) URL';
  return null;
}

const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript', '.css': 'text/css', '.svg': 'image/svg+xml', '.png': 'image/png', '.json': 'application/json' };

async function serveStatic(req, res, path) {
  const file = normalize(join(DIST, decodeURIComponent(path)));
  if (file.startsWith(DIST) && path !== '/') {
    try {
      if ((await stat(file)).isFile()) {
        res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream', 'cache-control': 'public, max-age=31536000, immutable' });
        res.end(await readFile(file));
        return;
      }
    } catch {}
  }
  if (path.startsWith('/assets/')) return fail(res, 404, 'not found');
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'cache-control': 'no-cache' });
  res.end(await readFile(join(DIST, 'index.html')));
}

async function handle(req, res) {
  const url = new URL(req.url, `http://${req.headers.host}`);
  const path = url.pathname;
  const method = req.method;

  if (path === '/login') {
    if (url.searchParams.get('token') !== TOKEN) return fail(res, 401, 'this login link is not valid');
    res.writeHead(303, { location: '/', 'set-cookie': `${SESSION}=${sessionValue}; Path=/; HttpOnly; SameSite=Lax` });
    return res.end();
  }
  if (path.startsWith('/uploads/')) {
    const file = uploads.get(path.slice('/uploads/'.length));
    if (!file) return fail(res, 404, 'upload not found');
    res.writeHead(200, { 'content-type': file.type });
    return res.end(file.bytes);
  }
  if (!path.startsWith('/api/')) return serveStatic(req, res, path);

  if (path === '/api/session' && method === 'POST') {
    const { token } = JSON.parse((await body(req)).toString() || '{}');
    if (token !== TOKEN) return fail(res, 401, 'invalid API token');
    res.writeHead(204, { 'set-cookie': `${SESSION}=${sessionValue}; Path=/; HttpOnly; SameSite=Lax` });
    return res.end();
  }
  if (path === '/api/session' && method === 'DELETE') {
    res.writeHead(204, { 'set-cookie': `${SESSION}=; Path=/; Max-Age=0` });
    return res.end();
  }
  if (!authed(req)) return fail(res, 401, 'sign in first');
  if (path === '/api/tokens' && method === 'GET') {
    const t = now();
    return json(res, 200, [
      { id: 'a1b2c3d4-0000-7000-8000-000000000001', kind: 'api', createdAt: t, expiresAt: null, lastUsedAt: null, current: false },
      { id: 'a1b2c3d4-0000-7000-8000-000000000002', kind: 'session', createdAt: t, expiresAt: new Date(Date.now() + 30 * 86400e3).toISOString(), lastUsedAt: t, current: true },
    ]);
  }
  if (/^\/api\/tokens\/[^/]+$/.test(path) && method === 'DELETE') {
    res.writeHead(204);
    return res.end();
  }
  let m0;
  if ((m0 = /^\/api\/projects\/([^/]+)\/preview$/.exec(path)) && method === 'GET') {
    // As the real server: the project's preview with a grant (this fake preview ignores it).
    const project = projects.get(m0[1]);
    const latest = messages.filter((x) => x.projectId === m0[1] && x.codeFragment).pop();
    if (!project || !latest) return fail(res, 404, 'preview not found');
    const url = latest.codeFragment.sandboxUrl.replace(/\/?$/, '/');
    const expiresAt = new Date(Date.now() + 300e3).toISOString();
    return json(res, 200, { url, previewUrl: `${url}?forgeai_grant=dev`, grant: 'dev', expiresAt, public: !!project.public });
  }

  let m;
  if (path === '/api/projects' && method === 'GET') {
    return json(res, 200, [...projects.values()].sort((a, b) => b.updatedAt.localeCompare(a.updatedAt)));
  }
  if (path === '/api/projects' && method === 'POST') {
    const { message, imageUrl } = JSON.parse((await body(req)).toString() || '{}');
    const problem = validate(message, imageUrl);
    if (problem) return fail(res, 400, problem);
    const t = now();
    const project = { id: randomUUID(), name: 'Untitled project', nameIsDefault: true, sandboxId: null, imageUrl: imageUrl ?? null, userId: 'u1', createdAt: t, updatedAt: t };
    projects.set(project.id, project);
    addUserMessage(project.id, message, imageUrl);
    startRun(project.id, message, imageUrl);
    return json(res, 201, project);
  }
  if ((m = /^\/api\/projects\/([^/]+)$/.exec(path))) {
    const project = projects.get(m[1]);
    if (!project) return fail(res, 404, 'project not found');
    if (method === 'GET') return json(res, 200, project);
    if (method === 'PATCH') {
      const { public: isPublic } = JSON.parse((await body(req)).toString() || '{}');
      if (typeof isPublic !== 'boolean') return fail(res, 400, 'send {"public": true} or {"public": false}');
      project.public = isPublic;
      return json(res, 200, project);
    }
    if (method === 'DELETE') {
      projects.delete(m[1]);
      for (let i = messages.length - 1; i >= 0; i--) if (messages[i].projectId === m[1]) messages.splice(i, 1);
      res.writeHead(204);
      return res.end();
    }
  }
  if ((m = /^\/api\/projects\/([^/]+)\/runs$/.exec(path))) {
    if (!projects.has(m[1])) return fail(res, 404, 'project not found');
    return json(res, 200, (runs.get(m[1]) ?? []).map(({ prompt, imageUrl, ...run }) => run));
  }
  if ((m = /^\/api\/projects\/([^/]+)\/realtime$/.exec(path))) {
    const projectId = m[1];
    if (!projects.has(projectId)) return fail(res, 404, 'project not found');
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
    res.write(': connected\n\n');
    const after = Number(req.headers['last-event-id'] ?? NaN);
    if (!Number.isNaN(after)) {
      for (const e of events) if (e.projectId === projectId && e.id > after) res.write(`id: ${e.id}\nevent: projectInfo\ndata: ${e.data}\n\n`);
    }
    const set = channels.get(projectId) ?? new Set();
    set.add(res);
    channels.set(projectId, set);
    const keepAlive = setInterval(() => res.write(': ping\n\n'), 15000);
    req.on('close', () => {
      clearInterval(keepAlive);
      set.delete(res);
    });
    return;
  }
  if (path === '/api/messages' && method === 'GET') {
    const projectId = url.searchParams.get('projectId');
    if (!projects.has(projectId)) return fail(res, 404, 'project not found');
    // As the real server: each fragment's file sizes, not its files.
    return json(
      res,
      200,
      messages.filter((x) => x.projectId === projectId).map((x) => ({ ...x, codeFragment: x.codeFragment && summary(x.codeFragment) })),
    );
  }
  if ((m = /^\/api\/fragments\/([^/]+)$/.exec(path)) && method === 'GET') {
    const message = messages.find((x) => x.codeFragment?.id === m[1]);
    if (!message) return fail(res, 404, 'fragment not found');
    return json(res, 200, message.codeFragment);
  }
  if (path === '/api/messages' && method === 'POST') {
    const { message, projectId, imageUrl } = JSON.parse((await body(req)).toString() || '{}');
    if (!projects.has(projectId)) return fail(res, 404, 'project not found');
    const problem = validate(message, imageUrl);
    if (problem) return fail(res, 400, problem);
    const created = addUserMessage(projectId, message, imageUrl);
    projects.get(projectId).updatedAt = created.createdAt;
    startRun(projectId, message, imageUrl);
    return json(res, 201, created);
  }
  if ((m = /^\/api\/fragments\/([^/]+)$/.exec(path)) && method === 'PATCH') {
    const message = messages.find((x) => x.codeFragment?.id === m[1]);
    if (!message) return fail(res, 404, 'fragment not found');
    const { files } = JSON.parse((await body(req)).toString() || '{}');
    if (!files || typeof files !== 'object') return fail(res, 400, 'files must be an object');
    Object.assign(message.codeFragment.files, files);
    message.codeFragment.updatedAt = now();
    return json(res, 200, message.codeFragment);
  }
  if (path === '/api/uploads' && method === 'POST') {
    const raw = await body(req);
    if (raw.length > 4 * 1024 * 1024 + 10000) return fail(res, 413, 'the image is larger than 4 MB');
    const boundary = /boundary=(.+)$/.exec(req.headers['content-type'] ?? '')?.[1];
    if (!boundary) return fail(res, 400, 'send the image as multipart/form-data');
    const text = raw.toString('latin1');
    const start = text.indexOf('\r\n\r\n') + 4;
    const end = text.indexOf(`\r\n--${boundary}`, start);
    const bytes = raw.subarray(start, end);
    const type = bytes[0] === 0x89 ? 'image/png' : bytes[0] === 0xff ? 'image/jpeg' : bytes[0] === 0x47 ? 'image/gif' : bytes[0] === 0x52 ? 'image/webp' : null;
    if (!type) return fail(res, 415, 'only PNG, JPEG, WebP or GIF images can be uploaded');
    const name = `${randomUUID()}.${type.split('/')[1]}`;
    uploads.set(name, { type, bytes });
    return json(res, 201, { url: `http://${req.headers.host}/uploads/${name}` });
  }
  return fail(res, 404, `no route for ${method} ${path}`);
}

createServer((req, res) =>
  handle(req, res).catch((error) => {
    console.error(error);
    if (!res.headersSent) fail(res, 500, String(error));
  }),
).listen(PORT, '127.0.0.1', () => {
  console.log(`fake forgeai on http://127.0.0.1:${PORT} — sign in at http://127.0.0.1:${PORT}/login?token=${TOKEN}`);
});

// The "sandbox" previews: a different origin, like 3000-<id>.localhost behind the real proxy.
createServer((req, res) => {
  const [, projectId = '', version = 'v1', ...rest] = (req.url ?? '/').split('?')[0].split('/');
  const project = projects.get(projectId);
  res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
  res.end(`<!doctype html><html><body style="font-family:system-ui;margin:0;display:grid;place-items:center;height:100vh;background:linear-gradient(135deg,#eef2ff,#fdf2f8)">
<div style="text-align:center"><h1 style="font-size:40px;margin:0">${project ? project.name : 'Unknown project'}</h1>
<p style="color:#555">Preview ${version} · path /${rest.join('/')}</p><p style="color:#999">${new Date().toLocaleTimeString()}</p></div></body></html>`);
}).listen(PREVIEW_PORT, '127.0.0.1');
