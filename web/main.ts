/**
 * Browser demo: one sorted network, four sub-models, switched per call with no weight copy.
 * Built by `npm run web:build` (esbuild) into web/dist; serve web/ and open index.html.
 */
import * as tf from '@tensorflow/tfjs-core';
import { setWasmPaths } from '@tensorflow/tfjs-backend-wasm';
import { initEngine } from '../src/engine/backend.js';
import { getPreset } from '../src/cli/presets.js';
import { buildModel } from '../src/models/index.js';

const out = document.getElementById('out') as HTMLPreElement;
const log = (s: string) => (out.textContent += s + '\n');

setWasmPaths('./dist/');
const backend = await initEngine('gpu' in navigator ? 'webgpu' : 'wasm').catch(() => initEngine('wasm'));
log(`backend: ${backend}`);
// The demo's network (preset resnet-small, MNIST-shaped input), as the CLI builds it.
const spec = getPreset('resnet-small').model({ channels: 1, size: 28, classes: 10 });
const net = buildModel(spec);
const x = tf.randomNormal([1, 28, 28, 1]);
for (const width of [0.25, 0.5, 0.75, 1]) {
  const sub = { width };
  const key = `width=${width}`;
  tf.tidy(() => net.forward(x, sub, { mode: 'calibrate', key }));
  const t0 = performance.now();
  for (let i = 0; i < 10; i++) await tf.tidy(() => net.forward(x, sub, { mode: 'eval', key })).data();
  const ms = (performance.now() - t0) / 10;
  log(
    `width ${width * 100}%: ${(net.cost(sub).flops / 1e6).toFixed(1)} MFLOPs, ${ms.toFixed(2)} ms per image`,
  );
}
