import { defineConfig } from 'vite';

// `npm run dev` proxies the API to a running `forgeai serve` (default 127.0.0.1:4000);
// set FORGEAI_URL to point elsewhere (e.g. the fake API in dev/fake-server.mjs).
const api = process.env.FORGEAI_URL ?? 'http://127.0.0.1:4000';

export default defineConfig({
  base: '/',
  esbuild: { jsx: 'automatic', jsxImportSource: 'preact' },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    target: 'es2020',
    sourcemap: false,
    // Everything is bundled; nothing is fetched from a CDN.
    assetsInlineLimit: 4096,
  },
  server: {
    proxy: {
      '/api': { target: api, ws: false },
      '/login': api,
      '/uploads': api,
    },
  },
});
