/** A tiny sorted ResNet with BatchNorm statistics for every grid entry, served in-process (tests only). */
import * as tf from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { saveCheckpoint } from '../src/io/checkpoint.js';
import { ResNet, resnetConfig } from '../src/models/resnet.js';
import { Grid } from '../src/sorted/grid.js';
import { servedSubModels } from '../src/serve/ladder.js';
import { createServer, type ServeOptions, type Server } from '../src/serve/server.js';
import { AdaptiveController, BatchTimes } from '../src/serve/controller.js';

export const IMAGE = 8;

export function tinyResNet(): { model: ResNet; grid: Grid } {
  const model = new ResNet(
    resnetConfig({ inChannels: 1, imageSize: IMAGE, classes: 3, stem: 4, widths: [4, 8], blocks: [1, 1] }),
    7,
  );
  const grid = new Grid({ depth: [2], width: [0.5, 1] }, model);
  for (const e of grid.entries) {
    tf.tidy(() => {
      model.forward(tf.randomNormal([16, IMAGE, IMAGE, 1], 0, 1, 'float32', 3), e.sub, {
        mode: 'calibrate',
        key: e.id,
      });
    });
  }
  return { model, grid };
}

export function tinyServer(opts: ServeOptions = {}): Server & { model: ResNet; grid: Grid } {
  const { model, grid } = tinyResNet();
  // Accuracies put both sub-models on the ladder (the wider one more accurate).
  const rows = grid.entries.map((e, i) => ({
    id: e.id,
    sub: e.sub,
    params: e.cost.params,
    flops: e.cost.flops,
    flopsFraction: e.cost.flops / grid.largest.cost.flops,
    accuracy: 0.5 + 0.1 * i,
    latencyMs: 1,
  }));
  const server = createServer(
    { model, subs: servedSubModels(grid.entries, rows), preprocess: { classes: ['a', 'b', 'c'] } },
    { maxBatch: 8, ...opts },
  );
  return Object.assign(server, { model, grid });
}

/** A deterministic image, flat NHWC. */
export function image(seed: number): number[] {
  return Array.from({ length: IMAGE * IMAGE }, (_, i) => Math.sin(seed * 7.1 + i * 0.37));
}

/** A controller over three rungs timed on a quiet machine (a batch of 8 takes 2, 8 and 32 ms), and its switches. */
export function threeRungs(holdMs: number) {
  const times = new BatchTimes(8);
  times.set('small', 1, 2);
  times.set('mid', 2, 8);
  times.set('full', 4, 32);
  const switches: string[] = [];
  const c = new AdaptiveController(
    ['small', 'mid', 'full'],
    times,
    { targetP99Ms: 50, windowMs: 2, maxBatch: 8, holdMs, minSamples: 5 },
    (s) => switches.push(`${s.direction}:${s.to}`),
  );
  return { c, times, switches };
}

/** The tiny ResNet saved as a run folder in a fresh temporary folder (remove it when done). */
export function saveTinyRun(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const { model, grid } = tinyResNet();
  saveCheckpoint(dir, { model, grid: grid.spec, step: 0, seed: 7 });
  return dir;
}
