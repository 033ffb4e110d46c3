import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { PNG } from 'pngjs';
import jpeg from 'jpeg-js';
import { convertChannels, resizeArea } from '../src/data/resize.js';
import {
  BYTE_VOCAB_SIZE,
  FASHION_MNIST_FOLDER,
  batchCount,
  batches,
  channelStats,
  createRng,
  decodeBytes,
  digitsCandidates,
  encodeBytes,
  encodeIdx,
  horizontalFlip,
  loadCsv,
  loadDataset,
  loadImageFolder,
  loadMobyDick,
  loadSpamAssassin,
  normalise,
  parseNetpbm,
  randomCrop,
  readIdx,
  splitTrainTest,
  subset,
  type ImageDataset,
} from '../src/data/index.js';

const scratch = mkdtempSync(join(tmpdir(), 'sortednet-data-'));
after(() => rmSync(scratch, { recursive: true, force: true }));

/** Throws-check whose message must contain every fragment. */
function assertThrowsMentioning(fn: () => unknown, ...fragments: string[]): void {
  assert.throws(fn, (error: Error) => {
    for (const fragment of fragments)
      assert.ok(error.message.includes(fragment), `'${error.message}' lacks '${fragment}'`);
    return true;
  });
}

/** A dataset whose pixel values say which sample and position they are: sample i holds i*1000 + k. */
function indexedDataset(n: number, height = 3, width = 4, channels = 2): ImageDataset {
  const size = height * width * channels;
  return {
    name: 'indexed',
    images: Float32Array.from({ length: n * size }, (_, j) => Math.floor(j / size) * 1000 + (j % size)),
    labels: Int32Array.from({ length: n }, (_, i) => i % 3),
    n,
    height,
    width,
    channels,
    numClasses: 3,
  };
}

test('IDX: uint8 round trip, plain and gzipped (by name and by magic)', () => {
  const dims = [3, 4, 5];
  const data = Uint8Array.from({ length: 60 }, (_, i) => (i * 37) % 256);
  const bytes = encodeIdx(dims, data);
  const files = {
    plain: join(scratch, 'cube-idx3-ubyte'),
    gzNamed: join(scratch, 'cube-idx3-ubyte.gz'),
    gzUnnamed: join(scratch, 'cube-gzipped-idx3-ubyte'),
  };
  writeFileSync(files.plain, bytes);
  writeFileSync(files.gzNamed, gzipSync(bytes));
  writeFileSync(files.gzUnnamed, gzipSync(bytes));
  for (const file of Object.values(files)) {
    const read = readIdx(file);
    assert.deepEqual(read.dims, dims);
    assert.deepEqual(Array.from(read.data), Array.from(data));
  }
});

test('IDX: malformed files fail with the file name and the reason', () => {
  const good = encodeIdx([2, 2], Uint8Array.of(1, 2, 3, 4));
  const write = (name: string, bytes: Uint8Array): string => {
    const path = join(scratch, name);
    writeFileSync(path, bytes);
    return path;
  };
  const badMagic = write('bad-magic.idx', Uint8Array.of(1, ...good.subarray(1)));
  assertThrowsMentioning(() => readIdx(badMagic), badMagic, 'magic');
  const badType = write('bad-type.idx', Uint8Array.of(0, 0, 0x42, ...good.subarray(3)));
  assertThrowsMentioning(() => readIdx(badType), badType, 'element type 0x42');
  const truncated = write('truncated.idx', good.subarray(0, good.length - 1));
  assertThrowsMentioning(() => readIdx(truncated), truncated, '2×2 uint8 = 4 bytes', 'file has 3');
  const badGzip = write('broken.idx.gz', good);
  assertThrowsMentioning(() => readIdx(badGzip), badGzip, 'gzip');
  assertThrowsMentioning(() => readIdx(join(scratch, 'missing.idx')), 'missing.idx');
});

test('MNIST: 60000/10000, labels 0..9, normalised pixels', () => {
  const { train, test: testSplit } = loadDataset('mnist');
  assert.equal(train.n, 60000);
  assert.equal(testSplit.n, 10000);
  for (const ds of [train, testSplit]) {
    assert.deepEqual([ds.height, ds.width, ds.channels, ds.numClasses], [28, 28, 1, 10]);
    const counts = new Array(10).fill(0);
    for (const label of ds.labels) counts[label]++;
    assert.ok(
      counts.every((count) => count > ds.n / 20),
      `every digit present: ${counts}`,
    );
  }
  // (x - 0.1307) / 0.3081 maps [0, 1] to about [-0.42, 2.82].
  const stats = channelStats(train);
  assert.ok(Math.abs(stats.mean[0]) < 1e-3 && Math.abs(stats.std[0] - 1) < 1e-3, JSON.stringify(stats));
  let min = Infinity;
  let max = -Infinity;
  for (const value of testSplit.images) {
    min = Math.min(min, value);
    max = Math.max(max, value);
  }
  assert.ok(Math.abs(min + 0.4242) < 1e-3 && Math.abs(max - 2.8215) < 1e-3, `range ${min}..${max}`);
  assert.ok(Math.abs(train.normalisation!.mean[0] - 0.1307) < 1e-3);
});

test('Fashion-MNIST: 60000/10000, 10 balanced named classes', (t) => {
  if (!existsSync(FASHION_MNIST_FOLDER)) {
    t.skip(`${FASHION_MNIST_FOLDER} absent: sudo apt-get install dataset-fashion-mnist`);
    return;
  }
  const { train, test: testSplit } = loadDataset('fashion-mnist', { normalise: false });
  assert.equal(train.n, 60000);
  assert.equal(testSplit.n, 10000);
  assert.equal(train.classNames?.[9], 'Ankle boot');
  const counts = new Array(10).fill(0);
  for (const label of train.labels) counts[label]++;
  assert.deepEqual(counts, new Array(10).fill(6000));
  let max = 0;
  for (const value of train.images) max = Math.max(max, value);
  assert.equal(max, 1);
});

test('sklearn digits: 1797 8×8 images, seeded 80/20 split', (t) => {
  if (!digitsCandidates().some((path) => existsSync(path))) {
    t.skip(`digits.csv.gz absent from ${digitsCandidates().join(', ')}`);
    return;
  }
  const a = loadDataset('digits', { seed: 3 });
  assert.equal(a.train.n + a.test.n, 1797);
  assert.equal(a.test.n, Math.round(1797 * 0.2));
  assert.deepEqual([a.train.height, a.train.width, a.train.channels, a.train.numClasses], [8, 8, 1, 10]);
  const b = loadDataset('digits', { seed: 3 });
  assert.deepEqual(a.test.labels, b.test.labels);
});

test('loadDataset: an unknown name lists the known ones', () => {
  assertThrowsMentioning(() => loadDataset('cifar10'), "'cifar10'", 'mnist, fashion-mnist, digits');
});

test('CSV: header with a label column, headerless, class names, errors with file and line', () => {
  const withHeader = join(scratch, 'header.csv');
  writeFileSync(withHeader, 'a,b,label,c,d\r\n0.1,0.2,1,0.3,0.4\r\n1,2,0,3,4\r\n\r\n');
  const ds = loadCsv(withHeader);
  // A row of 4 named features: 1×1 with a channel per feature, so each is normalised on its own.
  assert.deepEqual([ds.n, ds.height, ds.width, ds.channels, ds.numClasses], [2, 1, 1, 4, 2]);
  assert.deepEqual(ds.features, ['a', 'b', 'c', 'd']);
  assert.deepEqual(Array.from(ds.labels), [1, 0]);
  assert.deepEqual(Array.from(ds.images), Array.from(Float32Array.of(0.1, 0.2, 0.3, 0.4, 1, 2, 3, 4)));

  const headerless = join(scratch, 'plain.csv');
  writeFileSync(headerless, '2,1,2,3\n0,4,5,6\n');
  const plain = loadCsv(headerless);
  assert.deepEqual([plain.n, plain.height, plain.width, plain.channels, plain.numClasses], [2, 1, 1, 3, 3]);

  const named = join(scratch, 'named.csv');
  writeFileSync(named, 'x,y\ncat,1\ndog,2\ncat,3\n');
  // A header without a 'label' column: say which one, rather than training on the wrong column.
  assertThrowsMentioning(() => loadCsv(named), named, "no column named 'label'", '--label-column', "0 'x'");
  const pets = loadCsv(named, { labelColumn: 'x' });
  assert.deepEqual(pets.classNames, ['cat', 'dog']);
  assert.deepEqual(Array.from(pets.labels), [0, 1, 0]);

  // No header: a first row of text over text (string labels) is data, not column names.
  const textLabels = join(scratch, 'text-labels.csv');
  writeFileSync(textLabels, 'cat,1,2\ndog,3,4\ncat,5,6\n');
  const animals = loadCsv(textLabels);
  assert.deepEqual([animals.n, animals.classNames], [3, ['cat', 'dog']]);

  const badValue = join(scratch, 'bad-value.csv');
  writeFileSync(badValue, 'label,p\n1,0.5\n0,oops\n');
  assertThrowsMentioning(() => loadCsv(badValue), `${badValue}:3`, "'oops'", "'p'");
  const ragged = join(scratch, 'ragged.csv');
  writeFileSync(ragged, '1,2,3\n0,1\n');
  assertThrowsMentioning(() => loadCsv(ragged), `${ragged}:2`, 'expected 3 columns');
  assertThrowsMentioning(() => loadCsv(headerless, { height: 2, width: 2 }), headerless, '2×2×1');
});

test("CSV: R's quoted header, any label column name or index, ';' and tab delimiters, 8×8 pixels as an image", () => {
  const r = join(scratch, 'r.csv');
  writeFileSync(
    r,
    '"","Sepal.Length","Species, as named"\n"1",5.1,"setosa"\n"2",7,"versicolor"\n"3",6.3,"virginica"\n',
  );
  const iris = loadCsv(r, { labelColumn: 'Species, as named' });
  assert.deepEqual(iris.features, ['', 'Sepal.Length']);
  assert.deepEqual(iris.classNames, ['setosa', 'versicolor', 'virginica']);
  assert.deepEqual(Array.from(iris.images), Array.from(Float32Array.of(1, 5.1, 2, 7, 3, 6.3)));
  assert.deepEqual(Array.from(loadCsv(r, { labelColumn: -1 }).labels), [0, 1, 2]);
  assert.deepEqual(Array.from(loadCsv(r, { labelColumn: 2 }).labels), [0, 1, 2]);
  assertThrowsMentioning(() => loadCsv(r, { labelColumn: 3 }), r, 'outside 0..2');

  const semi = join(scratch, 'semi.csv');
  writeFileSync(semi, 'label;f1;f2\nyes;1.5;2\nno;3;4\n');
  assert.deepEqual(loadCsv(semi).features, ['f1', 'f2']);
  const tab = join(scratch, 'tab.csv');
  writeFileSync(tab, 'f1\tlabel\n1\t0\n2\t1\n');
  assert.deepEqual(Array.from(loadCsv(tab).images), [1, 2]);

  const pixels = join(scratch, 'pixels.csv');
  writeFileSync(pixels, [0, 1].map((label) => [label, ...Array(64).fill(label * 16)].join(',')).join('\n'));
  const digits = loadCsv(pixels);
  assert.deepEqual([digits.height, digits.width, digits.channels, digits.features], [8, 8, 1, undefined]);
});

test('data guards: non-finite or float32-overflowing cells, one class, a constant column: file, row and column named', () => {
  const write = (name: string, text: string) => {
    const path = join(scratch, name);
    writeFileSync(path, text);
    return path;
  };
  const rows = (extra: string) => `label,a,b\n0,1,2\n1,2,3\n0,3,4\n1,4,5\n0,5,6\n${extra}`;
  const nan = write('nan.csv', rows('1,NaN,7\n'));
  assertThrowsMentioning(() => loadCsv(nan), `${nan}:7`, "column 1 'a'", 'NaN');
  const inf = write('inf.csv', rows('1,8,-Infinity\n'));
  assertThrowsMentioning(() => loadCsv(inf), `${inf}:7`, "'b'", 'not a finite number');
  const huge = write('huge.csv', rows('1,1e300,7\n'));
  assertThrowsMentioning(() => loadCsv(huge), `${huge}:7`, "'a'", 'float32');
  const empty = write('empty-label.csv', rows(',1,2\n'));
  assertThrowsMentioning(() => loadCsv(empty), `${empty}:7`, 'label', 'empty');

  const oneClass = write(
    'one-class.csv',
    'label,a,b\n' + Array.from({ length: 10 }, (_, i) => `7,${i},${i * i}`).join('\n'),
  );
  assertThrowsMentioning(() => loadDataset(oneClass), oneClass, "label '7'", 'at least two classes');
  const constant = write(
    'constant.csv',
    'label,a,flat,b\n' + Array.from({ length: 10 }, (_, i) => `${i % 2},${i},3.5,${i * i}`).join('\n'),
  );
  assertThrowsMentioning(() => loadDataset(constant), constant, "column 'flat'", '3.5 in every training row');
  // The same data without the constant column trains: normalised per feature, every value finite.
  const fine = write(
    'fine.csv',
    'label,a,b\n' + Array.from({ length: 10 }, (_, i) => `${i % 2},${i},${1e30 * i}`).join('\n'),
  );
  const { train } = loadDataset(fine);
  assert.ok(train.images.every(Number.isFinite));
  assert.equal(train.normalisation?.mean.length, 2);
});

test('images: JPEG decoded, sizes resized to the first image (area average), grey widened', () => {
  const root = join(scratch, 'shapes');
  mkdirSync(join(root, 'dark'), { recursive: true });
  mkdirSync(join(root, 'light'), { recursive: true });
  const grey = (w: number, h: number, v: number) => {
    const data = Buffer.alloc(w * h * 4, v);
    return jpeg.encode({ data, width: w, height: h }, 95).data;
  };
  writeFileSync(join(root, 'dark', 'a.jpg'), grey(4, 4, 30));
  writeFileSync(join(root, 'light', 'b.jpeg'), grey(8, 8, 220));
  const ds = loadImageFolder(root);
  assert.deepEqual([ds.n, ds.height, ds.width, ds.channels], [2, 4, 4, 1]);
  assert.ok(Math.abs(ds.images[0] - 30 / 255) < 0.02 && Math.abs(ds.images[16] - 220 / 255) < 0.02);

  // Area resampling: 4×4 → 2×2 averages 2×2 blocks; 1×1 → 2×2 replicates.
  const x = Float32Array.from({ length: 16 }, (_, i) => i);
  assert.deepEqual(Array.from(resizeArea(x, 4, 4, 1, 2, 2)), [2.5, 4.5, 10.5, 12.5]);
  assert.deepEqual(Array.from(resizeArea(Float32Array.of(7), 1, 1, 1, 2, 2)), [7, 7, 7, 7]);
  assert.deepEqual(
    Array.from(convertChannels(Float32Array.of(1, 0, 0, 0, 0, 1), 2, 3, 1)).map((v) => +v.toFixed(3)),
    [0.299, 0.114],
  );
});

test('Netpbm: P2 with a comment and P5 with 16-bit samples', () => {
  const p2 = parseNetpbm(new TextEncoder().encode('P2\n# a comment\n2 1\n4\n0 4\n'));
  assert.deepEqual([p2.width, p2.height, p2.channels, ...p2.pixels], [2, 1, 1, 0, 1]);
  const p5 = parseNetpbm(Uint8Array.of(...new TextEncoder().encode('P5 1 1 65535\n'), 0x80, 0x00));
  assert.ok(Math.abs(p5.pixels[0] - 0x8000 / 65535) < 1e-6);
  assertThrowsMentioning(
    () => parseNetpbm(new TextEncoder().encode('P6 2 2 255\n\x01'), 'tiny.ppm'),
    'tiny.ppm',
    'needs 12 bytes',
  );
});

test('image folder: PNG and PGM classes, grey widened to colour, train/test folders via loadDataset', () => {
  const root = join(scratch, 'pets');
  const writeSplit = (split: string, colour: number): void => {
    mkdirSync(join(root, split, 'cat'), { recursive: true });
    mkdirSync(join(root, split, 'dog'), { recursive: true });
    const png = new PNG({ width: 2, height: 2 });
    png.data.fill(0);
    for (let p = 0; p < 4; p++) png.data.set([colour, 0, 255, 255], p * 4);
    writeFileSync(join(root, split, 'cat', 'a.png'), PNG.sync.write(png));
    writeFileSync(
      join(root, split, 'dog', 'b.pgm'),
      Uint8Array.of(...new TextEncoder().encode('P5\n2 2\n255\n'), 0, 51, 102, 255),
    );
  };
  writeSplit('train', 255);
  writeSplit('test', 0);

  const train = loadImageFolder(join(root, 'train'));
  assert.deepEqual([train.n, train.height, train.width, train.channels], [2, 2, 2, 3]);
  assert.deepEqual(train.classNames, ['cat', 'dog']);
  assert.deepEqual(Array.from(train.labels), [0, 1]);
  assert.deepEqual(Array.from(train.images.subarray(0, 3)), [1, 0, 1]); // the PNG's first pixel, RGB
  assert.deepEqual(Array.from(train.images.subarray(15, 18)), [0.2, 0.2, 0.2].map(Math.fround)); // PGM pixel 1

  const split = loadDataset(root, { normalise: false });
  assert.equal(split.train.n, 2);
  assert.equal(split.test.images[0], 0);

  // An image of another size is resized to the first one's.
  writeFileSync(join(root, 'train', 'dog', 'big.pgm'), 'P2 4 4 255 ' + '51 '.repeat(16));
  const resized = loadImageFolder(join(root, 'train'));
  assert.deepEqual([resized.n, resized.height, resized.width], [3, 2, 2]);
  assert.deepEqual(Array.from(resized.images.subarray(24, 27)), [0.2, 0.2, 0.2].map(Math.fround));
});

test('batches: every sample once per epoch; the seed fixes the order', () => {
  const ds = indexedDataset(10);
  const order = (seed: number, options = {}): number[] => {
    const seen: number[] = [];
    for (const batch of batches(ds, { batchSize: 4, shuffle: true, seed, ...options })) {
      const size = ds.height * ds.width * ds.channels;
      for (let i = 0; i < batch.size; i++) {
        const index = batch.x[i * size] / 1000;
        assert.equal(batch.y[i], ds.labels[index], 'label travels with its image');
        seen.push(index);
      }
    }
    return seen;
  };
  const first = order(1);
  assert.deepEqual(
    [...first].sort((a, b) => a - b),
    [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
  );
  assert.deepEqual(order(1), first);
  assert.notDeepEqual(order(2), first);
  assert.equal(order(1, { dropLast: true }).length, 8);
  assert.equal(batchCount(10, 4), 3);
  const sizes = [...batches(ds, { batchSize: 4 })].map((b) => b.size);
  assert.deepEqual(sizes, [4, 4, 2]);
  assert.equal([...batches(ds, { batchSize: 4 })][0].x[0], 0, 'no shuffle keeps the order');
});

test('augmentation: crop with padding 0 and a double flip are identities; crops are seeded shifts', () => {
  const ds = indexedDataset(1, 5, 6, 3);
  const image = ds.images;
  assert.deepEqual(randomCrop(image, ds, 0, createRng(1)), image);
  assert.deepEqual(horizontalFlip(horizontalFlip(image, ds), ds), image);
  assert.notDeepEqual(horizontalFlip(image, ds), image);
  assert.deepEqual(randomCrop(image, ds, 2, createRng(7)), randomCrop(image, ds, 2, createRng(7)));
  // A crop is the image shifted by (dy, dx) in -pad..pad with zeros let in at the border.
  let sawShift = false;
  for (let seed = 0; seed < 20; seed++) {
    const crop = randomCrop(image, ds, 2, createRng(seed));
    assert.ok(crop.every((value) => value === 0 || image.includes(value)));
    sawShift ||= crop.some((value, i) => value !== image[i]);
  }
  assert.ok(sawShift);
  const augmented = [
    ...batches(ds, { batchSize: 1, seed: 5, augment: { cropPadding: 1, horizontalFlip: true } }),
  ];
  const again = [
    ...batches(ds, { batchSize: 1, seed: 5, augment: { cropPadding: 1, horizontalFlip: true } }),
  ];
  assert.deepEqual(augmented, again);
});

test('random: seeded, int in range, normal has mean 0 and variance 1', () => {
  const a = createRng(42);
  const b = createRng(42);
  const draws = Array.from({ length: 5 }, () => a.next());
  assert.deepEqual(
    draws,
    Array.from({ length: 5 }, () => b.next()),
  );
  assert.ok(draws.every((x) => x >= 0 && x < 1));
  const rng = createRng(1);
  for (let i = 0; i < 1000; i++) {
    const k = rng.int(7);
    assert.ok(Number.isInteger(k) && k >= 0 && k < 7);
  }
  let sum = 0;
  let sumSquares = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const z = rng.normal();
    sum += z;
    sumSquares += z * z;
  }
  assert.ok(Math.abs(sum / n) < 0.05 && Math.abs(sumSquares / n - 1) < 0.05);
});

test('split, subset and normalise use the train split only', () => {
  const ds = indexedDataset(10);
  const split = splitTrainTest(ds, 0.2, 9);
  assert.deepEqual([split.train.n, split.test.n], [8, 2]);
  const all = [...split.train.images, ...split.test.images]
    .filter((_, j) => j % 24 === 0)
    .sort((x, y) => x - y);
  assert.deepEqual(
    all,
    Array.from({ length: 10 }, (_, i) => i * 1000),
  );
  assert.equal(subset(ds, 3).n, 3);
  assert.equal(subset(ds, 3).images[24], 1000);
  assert.equal(subset(ds, 3, 1).n, 3);
  assert.equal(subset(ds, 50), ds);

  const normalised = normalise(split);
  const trainStats = channelStats(split.train);
  assert.deepEqual(normalised.test.normalisation, trainStats);
  const expected = (split.test.images[0] - trainStats.mean[0]) / trainStats.std[0];
  assert.ok(Math.abs(normalised.test.images[0] - expected) < 1e-5);
  assert.ok(Math.abs(channelStats(normalised.train).mean[1]) < 1e-4);
  assert.throws(() => normalise(normalised), /already normalised/);
});

test('SpamAssassin: 6046 emails, 1896 spam; byte tokenizer round trip', () => {
  const corpus = loadSpamAssassin();
  assert.equal(corpus.texts.length, 6046);
  assert.equal(
    corpus.labels.reduce((sum, label) => sum + label, 0),
    1896,
  );
  assert.equal(new Set(corpus.groups).size, 5);
  assert.ok(corpus.texts.every((text) => text.length > 0));

  assert.deepEqual(Array.from(encodeBytes('hi', 4)), [105, 106, 0, 0]);
  assert.deepEqual(Array.from(encodeBytes('hello', 2)), [105, 102]);
  const text = 'naïve \u0000 π';
  const tokens = encodeBytes(text, 32);
  assert.ok(tokens.every((token) => token >= 0 && token < BYTE_VOCAB_SIZE));
  assert.equal(decodeBytes(tokens), text);
});

test('Moby Dick: the whole novel', () => {
  const text = loadMobyDick();
  assert.ok(text.startsWith('CHAPTER 1. Loomings.'));
  assert.ok(text.length > 1_000_000);
});
