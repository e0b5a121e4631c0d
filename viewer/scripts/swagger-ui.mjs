// Swagger UI's files (npm swagger-ui-dist) beside the build, so that /docs works with no internet
// access: radsight.api.openapi serves them at /docs/assets/ to logged-in users.
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const dist = dirname(createRequire(import.meta.url).resolve('swagger-ui-dist/package.json'));
const out = new URL('../../src/radsight/api/static/viewer/swagger-ui/', import.meta.url).pathname;
mkdirSync(out, { recursive: true });
for (const name of ['swagger-ui-bundle.js', 'swagger-ui.css', 'favicon-32x32.png', 'LICENSE']) {
  copyFileSync(join(dist, name), join(out, name));
}
