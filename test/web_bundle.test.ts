/** The browser bundle (Vite, minified): tfjs-core and the backends it needs, no Node built-in, no union package. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';

test('web/ builds with Vite into a minified bundle without Node built-ins or @tensorflow/tfjs', () => {
  const r = spawnSync(
    process.execPath,
    ['node_modules/vite/bin/vite.js', 'build', '--config', 'web/vite.config.ts'],
    {
      encoding: 'utf8',
    },
  );
  assert.equal(r.status, 0, r.stderr + r.stdout);
  const dir = 'web/dist/assets';
  const js = readdirSync(dir).filter((f) => f.endsWith('.js'));
  const html = readFileSync('web/dist/index.html', 'utf8');
  // What the page loads before it runs: the entry and its preloaded chunks (WebGPU is a lazy chunk).
  const eager = js.filter((f) => html.includes(f));
  const eagerBytes = eager.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
  assert.ok(eagerBytes > 100_000, `bundle suspiciously small: ${eagerBytes} bytes`);
  assert.ok(eagerBytes < 700_000, `eager JavaScript is ${eagerBytes} bytes: did a large package slip in?`);
  for (const f of js) {
    const code = readFileSync(join(dir, f), 'utf8');
    // Minified: long lines (the lazy WebGPU chunk keeps its shaders' newlines in template strings).
    if (eager.includes(f) && code.length > 10_000)
      assert.ok(code.length / code.split('\n').length > 1000, `${f} is not minified`);
    // A static import of a Node built-in would break the page at load.
    const nodeImport = /(^|;)import[^;]*from\s*["'`](node:[a-z_]+|fs|path|module|child_process)["'`]/m.exec(
      code,
    );
    assert.equal(nodeImport, null, `${f} imports a Node built-in: ${nodeImport?.[0]}`);
    // The union package's layers, converter and WebGL backend must stay out.
    for (const marker of ['MathBackendWebGL', 'loadGraphModel', 'LayersModel']) {
      assert.ok(!code.includes(marker), `${f} contains ${marker}: @tensorflow/tfjs was bundled`);
    }
  }
});
