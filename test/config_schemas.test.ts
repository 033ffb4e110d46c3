/**
 * One schema per config: the train config, each model family and its run-config form agree, and a
 * checkpoint's model and training fields get the checks a run config gets, with the file and the
 * field path in the error.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CHECKPOINT_FORMAT, parseCheckpointMeta } from '../src/io/checkpoint_codec.js';
import { ModelSpecSchema } from '../src/models/index.js';
import { resolveTrainConfig } from '../src/train/config.js';
import { parseRunConfig } from '../src/run/run_config.js';
import { getPreset } from '../src/run/presets.js';

const hash = (c: string) => c.repeat(64);

/** checkpoint.json's text with `model` and `train` as given. */
function checkpointJson(model: object, train?: object | null): string {
  return JSON.stringify({
    format: CHECKPOINT_FORMAT,
    model,
    grid: {},
    train,
    step: 3,
    seed: 1,
    files: { 'model.safetensors': hash('a'), 'bn_stats.safetensors': hash('b') },
    createdAt: '2026-01-01T00:00:00.000Z',
  });
}

const mlp = { family: 'mlp', config: { inputs: 4, hidden: [8, 8], classes: 2 } };

test('a checkpoint with a good model and training config loads; one written by PyTorch (train: null) too', () => {
  const meta = parseCheckpointMeta(checkpointJson(mlp, resolveTrainConfig({ steps: 3 })), 'ok.json');
  assert.deepEqual(meta.model, mlp);
  assert.equal(parseCheckpointMeta(checkpointJson(mlp, null), 'torch.json').train, null);
  // Every preset's model is a valid spec by the family schema checkpoints are read with.
  const shape = { channels: 1, size: 28, classes: 10, vocab: 257 };
  for (const name of ['resnet-small', 'mlp', 'mobilenetv2', 'pad-resnet', 'moe-transformer', 'lm-tiny'])
    assert.ok(ModelSpecSchema.safeParse(getPreset(name).model(shape)).success, name);
});

test('checkpoint loading checks the model config by its family schema: file and field path named', () => {
  const bad = (model: object) => () => parseCheckpointMeta(checkpointJson(model), 'run/checkpoint.json');
  assert.throws(
    bad({ family: 'mlp', config: { inputs: 4, hidden: [8, 0], classes: 2 } }),
    /^Error: checkpoint run\/checkpoint\.json: model\.config\.hidden\.1: must be a positive integer, got 0$/,
  );
  assert.throws(
    bad({
      family: 'resnet',
      config: { ...getPreset('resnet-small').model({ channels: 1, size: 8, classes: 3 }).config, stem: '16' },
    }),
    /checkpoint run\/checkpoint\.json: model\.config\.stem: expected number, got string/,
  );
  assert.throws(
    bad({ family: 'mlp', config: { ...mlp.config, activaton: 'relu' } }),
    /checkpoint run\/checkpoint\.json: model\.config: unknown field 'activaton'; known: inputs, hidden, classes, activation/,
  );
  assert.throws(
    bad({ family: 'mlpp', config: {} }),
    /run\/checkpoint\.json: model\.family: expected one of 'mlp'/,
  );
});

test("checkpoint loading checks the training fields as a run config's: the same seed rule", () => {
  const bad = (train: object) => () => parseCheckpointMeta(checkpointJson(mlp, train), 'c.json');
  assert.throws(
    bad({ seed: 1e20 }),
    /checkpoint c\.json: train\.seed: 100000000000000000000 cannot be represented exactly/,
  );
  assert.throws(
    bad({ strategy: 'magic' }),
    /checkpoint c\.json: train\.strategy: 'magic' is not one of 'sorted'/,
  );
  assert.throws(bad({ stpes: 3 }), /checkpoint c\.json: train: unknown field 'stpes'/);
});

test('run configs, resolveTrainConfig and checkpoints share one seed rule: any safe integer', () => {
  assert.equal(parseRunConfig('{"train": {"seed": 9007199254740991}}', 'ok.json').train?.seed, 2 ** 53 - 1);
  assert.equal(resolveTrainConfig({ seed: -(2 ** 53 - 1) }).seed, -(2 ** 53 - 1));
  assert.throws(
    () => parseRunConfig('{"train": {"seed": 1e20}}', 'big.json'),
    /config big\.json: train\.seed: 100000000000000000000 cannot be represented exactly/,
  );
  assert.throws(
    () => parseRunConfig('{"train": {"seed": 1.5}}', 'half.json'),
    /train\.seed: must be an integer, got 1\.5/,
  );
  assert.throws(() => resolveTrainConfig({ seed: 1.5 }), /train config: seed must be an integer, got 1\.5/);
});
