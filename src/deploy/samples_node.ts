/**
 * Test images for the browser app to offer: a few examples per class from a dataset's test
 * split, as raw 0..255 pixels (the app preprocesses them like any drawn or picked image).
 */
import { loadDataset } from '../data/registry.js';

export interface Sample {
  label: number;
  width: number;
  height: number;
  channels: number;
  /** Row-major 0..255 pixels, base64. */
  pixels: string;
}

export interface SampleSet {
  dataset: string;
  classes?: string[];
  samples: Sample[];
}

/** `perClass` test examples of every class of `dataset`, the first ones in test order. */
export function exportSamples(dataset: string, perClass = 2): SampleSet {
  const { test } = loadDataset(dataset, { normalise: false });
  const size = test.height * test.width * test.channels;
  const taken = new Map<number, number>();
  const samples: Sample[] = [];
  for (let i = 0; i < test.n && samples.length < perClass * test.numClasses; i++) {
    const label = test.labels[i];
    if ((taken.get(label) ?? 0) >= perClass) continue;
    taken.set(label, (taken.get(label) ?? 0) + 1);
    const bytes = Uint8Array.from(test.images.subarray(i * size, (i + 1) * size), (v) => Math.round(v * 255));
    samples.push({
      label,
      width: test.width,
      height: test.height,
      channels: test.channels,
      pixels: Buffer.from(bytes).toString('base64'),
    });
  }
  samples.sort((a, b) => a.label - b.label);
  return { dataset, classes: test.classNames, samples };
}
