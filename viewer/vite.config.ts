// Builds the worklist (index.html), the viewer (viewer.html) and the turnaround dashboard
// (dashboard.html) into the Python package, so that `radsight serve` (and a pip-installed
// wheel) serves them without Node.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type HtmlTagDescriptor, type Plugin, defineConfig } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../src/radsight/api/static/viewer');
// Development only: `RADSIGHT_URL=http://127.0.0.1:8042 npm run dev` proxies the API.
const backend = process.env.RADSIGHT_URL ?? 'http://127.0.0.1:8042';
const proxy = Object.fromEntries(
  ['/dicomweb', '/api', '/login', '/logout', '/wado'].map((p) => [p, { target: backend, changeOrigin: true }]),
);

/**
 * The viewer page's first script (src/viewer/entry.ts) draws the first image and imports the
 * Cornerstone part (src/viewer/main.ts) only then, so that evaluating its 3 MB does not hold
 * that drawing up. Its chunks are asked for at once, though, by `<link rel=modulepreload>` in the
 * page (fetched and compiled while the first image is on its way), not when the import runs.
 */
function preloadViewerChunks(): Plugin {
  return {
    name: 'radsight-preload-viewer-chunks',
    transformIndexHtml: {
      order: 'post',
      handler(html, ctx) {
        if (!ctx.bundle || !ctx.filename.endsWith('viewer.html')) return undefined;
        const chunks = Object.values(ctx.bundle).filter((c) => c.type === 'chunk');
        const main = chunks.find((c) => c.facadeModuleId?.endsWith('/src/viewer/main.ts'));
        if (!main) return undefined;
        const files = [main.fileName, ...main.imports].filter((f) => !html.includes(`/${f}"`));
        return files.map(
          (f): HtmlTagDescriptor => ({ tag: 'link', attrs: { rel: 'modulepreload', crossorigin: true, href: `/${f}` }, injectTo: 'head' }),
        );
      },
    },
  };
}

export default defineConfig({
  base: '/',
  plugins: [preloadViewerChunks()],
  build: {
    outDir,
    emptyOutDir: true,
    target: 'es2022',
    chunkSizeWarningLimit: 8000,
    rollupOptions: {
      input: {
        worklist: resolve(here, 'index.html'),
        viewer: resolve(here, 'viewer.html'),
        dashboard: resolve(here, 'dashboard.html'),
      },
    },
  },
  worker: { format: 'es' },
  optimizeDeps: {
    exclude: ['@cornerstonejs/dicom-image-loader'],
    include: ['dicom-parser'],
  },
  server: { proxy },
  preview: { proxy },
});
