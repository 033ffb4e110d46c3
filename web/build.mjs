// Bundles web/main.ts for the browser (no Node built-ins may leak in) and copies tfjs's wasm binaries.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, readdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const out = 'web/dist';
mkdirSync(out, { recursive: true });
await build({
  entryPoints: ['web/main.ts'],
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  outfile: join(out, 'app.js'),
  logLevel: 'warning',
  // The Node-only native addon loader and the Node WebGPU shim are never reached in a browser.
  external: ['webgpu', './native/index.js'],
});
const wasmDir = dirname(require.resolve('@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm.wasm'));
for (const f of readdirSync(wasmDir).filter((f) => f.endsWith('.wasm')))
  copyFileSync(join(wasmDir, f), join(out, f));
console.log(`web: bundled ${out}/app.js`);
