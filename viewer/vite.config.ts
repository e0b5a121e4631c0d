// Builds the worklist (index.html), the viewer (viewer.html) and the turnaround dashboard
// (dashboard.html) into the Python package, so that `radsight serve` (and a pip-installed
// wheel) serves them without Node.
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vite';

const here = dirname(fileURLToPath(import.meta.url));
const outDir = resolve(here, '../src/radsight/api/static/viewer');
// Development only: `RADSIGHT_URL=http://127.0.0.1:8042 npm run dev` proxies the API.
const backend = process.env.RADSIGHT_URL ?? 'http://127.0.0.1:8042';
const proxy = Object.fromEntries(
  ['/dicomweb', '/api', '/login', '/logout', '/wado'].map((p) => [p, { target: backend, changeOrigin: true }]),
);

export default defineConfig({
  base: '/',
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
