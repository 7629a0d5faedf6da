// Adds to create-next-app's own next.config.ts: preview hosts look like 3000-<sandbox>.<domain>,
// and the dev server must accept them as origins for its dev resources and HMR socket. next/image
// takes images from any https host (models link Unsplash, placeholder and avatar services; an
// unlisted host is a render error). No experimental flags: the conventional configuration.
import fs from 'node:fs';
let src = fs.readFileSync('next.config.ts', 'utf8');
const anchor = 'const nextConfig: NextConfig = {';
if (!src.includes(anchor)) { console.error(`next.config.ts has no "${anchor}"; create-next-app changed its output`); process.exit(1); }
src = src.replace(anchor, `// Preview hosts look like 3000-<sandbox>.<domain> (FORGEAI_PREVIEW_DOMAIN, set by forgeai).
const previewDomain = process.env.FORGEAI_PREVIEW_DOMAIN;

${anchor}
  allowedDevOrigins: ["*.localhost", ...(previewDomain && previewDomain !== "localhost" ? [\`*.\${previewDomain}\`] : [])],
  images: { remotePatterns: [{ protocol: "https", hostname: "**" }] },`).replace(/\n\s*\/\* config options here \*\/\n/, '\n');
fs.writeFileSync('next.config.ts', src);
// `next build` with webpack, the stable builder of this Next.js line (Turbopack builds are beta
// in 15.5); `next dev --turbopack` stays.
const manifest = JSON.parse(fs.readFileSync('package.json', 'utf8'));
manifest.name = 'forgeai-app';
manifest.scripts = { dev: 'next dev --turbopack', build: 'next build', start: 'next start' };
fs.writeFileSync('package.json', JSON.stringify(manifest, null, 2) + '\n');
