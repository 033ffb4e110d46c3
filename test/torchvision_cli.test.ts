/**
 * `python -m sortednet_torch.convert` (a .pt state dict → safetensors) and `sortednet import
 * --torchvision` (→ a run folder): a grey-image torchvision resnet18 (first conv replaced by a
 * 1-channel one, random weights and BatchNorm statistics, eval mode) saved with torch.save comes
 * out as a run whose checkpoint computes torchvision's logits. Skips, saying why, without torchvision.
 */
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { quiet } from './cli_helpers.js';
import { initEngine } from '../src/engine/backend.js';
import { loadCheckpoint } from '../src/io/checkpoint.js';
import { decodeSafetensors } from '../src/io/safetensors.js';
import { subModelContext } from '../src/nn/module.js';
import { FULL } from '../src/sorted/submodel.js';
import { runPython, scratch, torchvisionSkip } from './torch_helpers.js';

const skip = torchvisionSkip();

/** A grey-image resnet18 as torchvision users make one, saved with torch.save, and its logits. */
const MAKE = `
import sys, torch, torchvision
from torch import nn
from sortednet_torch.safetensors_io import encode
d = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet18(num_classes=10)
m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
for mod in m.modules():
    if isinstance(mod, nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.5, 0.5); mod.running_var.uniform_(0.5, 1.5)
        mod.weight.data.uniform_(0.5, 1.5); mod.bias.data.uniform_(-0.2, 0.2)
m.eval()
torch.save(m.state_dict(), d + "/resnet18.pt")
x = torch.randn(2, 1, 28, 28)
with torch.no_grad():
    y = m(x)
open(d + "/io.safetensors", "wb").write(encode({"x": x.permute(0, 2, 3, 1).contiguous().numpy(), "y": y.numpy()}))
`;

let dir = '';
before(async () => {
  await initEngine('wasm');
  if (skip) return;
  dir = scratch('sortednet-tv-cli-');
  runPython(['-c', MAKE, dir]);
});

test(
  'convert .pt → safetensors, import as a run: its checkpoint computes torchvision logits',
  { skip },
  async () => {
    const st = join(dir, 'resnet18.safetensors');
    const said = runPython(['-m', 'sortednet_torch.convert', join(dir, 'resnet18.pt'), st]);
    assert.match(said, /wrote 122 tensors/);
    const out = join(dir, 'run');
    const args = ['import', '--torchvision', 'resnet18', '--weights', st, '--data', 'fashion-mnist'];
    assert.equal(await quiet([...args, '--out', out, '--grid', 'depth=4,8;width=0.5,1']), 0);
    for (const f of ['run.json', 'import.json']) assert.ok(existsSync(join(out, f)), f);
    const run = JSON.parse(readFileSync(join(out, 'run.json'), 'utf8')) as { model: { family: string } };
    assert.equal(run.model.family, 'resnet');
    const { model, meta } = await loadCheckpoint(out);
    assert.deepEqual(meta.grid, { depth: [4, 8], width: [0.5, 1] });
    assert.equal(meta.preprocess?.classes?.length, 10);
    const io = decodeSafetensors(readFileSync(join(dir, 'io.safetensors'))).tensors;
    const x = tf.tensor(io.get('x')!.data, io.get('x')!.shape);
    const got = tf.tidy(() => model.forward(x, FULL, subModelContext(FULL, 'eval')).dataSync());
    const want = io.get('y')!.data;
    let diff = 0;
    for (let i = 0; i < want.length; i++) diff = Math.max(diff, Math.abs(got[i] - want[i]));
    assert.ok(diff < 1e-4, `logits differ from torchvision's by ${diff}`);
    x.dispose();
    model.dispose();
  },
);

test('import refuses classes that do not fit, naming the tensor and both shapes', { skip }, async () => {
  const st = join(dir, 'resnet18.safetensors');
  const args = ['import', '--torchvision', 'resnet18', '--weights', st, '--data', 'fashion-mnist'];
  await assert.rejects(
    quiet([...args, '--out', join(dir, 'bad'), '--classes', '7']),
    /tensor 'fc.weight': expected shape \[7, 512\], found \[10, 512\]/,
  );
  assert.ok(!existsSync(join(dir, 'bad')), 'a failed import leaves no folder');
  await assert.rejects(
    quiet([
      'import',
      '--torchvision',
      'resnet19',
      '--weights',
      st,
      '--data',
      'mnist',
      '--out',
      join(dir, 'b2'),
    ]),
    /unknown torchvision architecture 'resnet19'; supported: resnet18, resnet34, resnet50, mobilenet_v2/,
  );
});

test('convert refuses what is not a state dict', { skip }, () => {
  const bad = join(dir, 'not_a_state_dict.pt');
  runPython(['-c', `import torch; torch.save([1, 2, 3], ${JSON.stringify(bad)})`]);
  assert.throws(
    () => runPython(['-m', 'sortednet_torch.convert', bad, join(dir, 'x.safetensors')]),
    /not a state dict/,
  );
});
