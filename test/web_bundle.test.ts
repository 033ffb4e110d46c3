/** The library bundles for the browser: no Node built-in reaches the bundle. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

test('web/main.ts bundles for the browser with esbuild', () => {
  const r = spawnSync(process.execPath, ['web/build.mjs'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const js = readFileSync('web/dist/app.js', 'utf8');
  assert.ok(js.length > 100_000, 'bundle suspiciously small');
  // A static import of a Node built-in would break the page at load; emscripten's guarded
  // require('fs') inside tfjs's wasm glue never runs in a browser and is fine.
  const nodeImport = /^import[^\n]*from\s*["'](node:[a-z_]+|fs|path|module|child_process)["']/m.exec(js);
  assert.equal(nodeImport, null, `bundle imports a Node built-in: ${nodeImport?.[0]}`);
});
