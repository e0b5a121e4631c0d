// Pre-compress the large build outputs; routes_viewer.py serves the .gz to gzip-capable browsers.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';

const built = new URL('../../src/radsight/api/static/viewer/', import.meta.url).pathname;
for (const dir of ['assets', 'swagger-ui'].map((d) => join(built, d))) {
  for (const name of readdirSync(dir)) {
    if (!/\.(js|css|wasm)$/.test(name)) continue;
    const path = join(dir, name);
    if (statSync(path).size < 4096) continue;
    writeFileSync(`${path}.gz`, gzipSync(readFileSync(path), { level: 9 }));
  }
}
