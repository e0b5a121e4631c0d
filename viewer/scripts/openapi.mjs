// The REST API's contract, generated from the Python routes: `scripts/openapi.py` (repository root)
// writes the OpenAPI document, openapi-typescript turns it into TypeScript types.
//   node scripts/openapi.mjs          writes viewer/openapi.json and viewer/src/api/schema.d.ts
//   node scripts/openapi.mjs --check  regenerates into a temporary folder and fails if either
//                                     committed file differs (the first step of `npm run build`)
// Python: $RADSIGHT_PYTHON, else the repository's .venv, else python3; the sources in ../src.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import openapiTS from 'openapi-typescript';

const viewer = resolve(import.meta.dirname, '..');
const root = resolve(viewer, '..');
const files = { document: join(viewer, 'openapi.json'), types: join(viewer, 'src', 'api', 'schema.d.ts') };
const venvPython = join(root, '.venv', 'bin', 'python');
const python = process.env.RADSIGHT_PYTHON || (existsSync(venvPython) ? venvPython : 'python3');

const tmp = mkdtempSync(join(tmpdir(), 'radsight-openapi-'));
try {
  const document = join(tmp, 'openapi.json');
  const pythonPath = [join(root, 'src'), process.env.PYTHONPATH].filter(Boolean).join(delimiter);
  execFileSync(python, [join(root, 'scripts', 'openapi.py'), document], {
    stdio: 'inherit',
    env: { ...process.env, PYTHONPATH: pythonPath },
  });
  const fresh = { document: readFileSync(document, 'utf8'), types: await openapiTS(JSON.parse(readFileSync(document, 'utf8'))) };
  if (process.argv.includes('--check')) {
    const stale = Object.keys(files).filter((k) => !existsSync(files[k]) || readFileSync(files[k], 'utf8') !== fresh[k]);
    if (stale.length) {
      console.error(
        `The REST API's generated contract is out of date: ${stale.map((k) => files[k]).join(', ')} ` +
          'differ(s) from what the Python routes give.\nRun `npm run openapi` in viewer/ and commit both files ' +
          '(viewer/openapi.json and viewer/src/api/schema.d.ts).',
      );
      process.exit(1);
    }
    console.log('openapi: viewer/openapi.json and src/api/schema.d.ts match the Python routes');
  } else {
    for (const k of Object.keys(files)) writeFileSync(files[k], fresh[k]);
    console.log(`openapi: wrote ${files.document} and ${files.types}`);
  }
} finally {
  rmSync(tmp, { recursive: true, force: true });
}
