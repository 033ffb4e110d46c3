/** What the command line says: unknown commands, help, error labels, the presets table, eval's headline, study flags. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Command } from 'commander';
import { buildProgram, cli, main } from '../src/cli/main.js';
import { reportError, UsageError } from '../src/cli/errors.js';
import { evaluationHeadline } from '../src/run/run_folder.js';
import { getPreset } from '../src/run/presets.js';
import { buildModel } from '../src/models/index.js';
import { registerPadnet, studyOptions } from '../src/cli/commands/padnet.js';
import { FASHION_DEFAULTS, type FashionOptions } from '../src/experiments/padnet_fashion.js';
import { SPAM_DEFAULTS, type SpamOptions } from '../src/experiments/padnet_spam.js';
import type { ImageDataset } from '../src/data/dataset.js';

/**
 * Runs `fn` with console.log / console.error captured; returns its result and the lines. (stdout
 * itself stays: node --test reports results through it.)
 */
async function capture<T>(fn: () => Promise<T>): Promise<{ result: T; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const { log, error } = console;
  console.log = (...a: unknown[]) => void out.push(a.join(' ') + '\n');
  console.error = (...a: unknown[]) => void err.push(a.join(' ') + '\n');
  try {
    return { result: await fn(), out: out.join(''), err: err.join('') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test("an unknown command is one line with commander's suggestion and the commands; exit code 1", async () => {
  await assert.rejects(
    main(['trian']),
    (e: Error) =>
      e instanceof UsageError &&
      /^unknown command 'trian' \(Did you mean train\?\); commands: train, .*eval, .*presets/.test(e.message),
  );
  const { result, err } = await capture(() => cli(['trian']));
  assert.equal(result, 1);
  assert.equal(err.trim().split('\n').length, 1, err);
  assert.match(err, /^sortednet: unknown command 'trian' \(Did you mean train\?\); commands: /);
});

test("--debug is listed in every command's help", () => {
  const program = buildProgram(() => {});
  assert.ok(program.commands.length >= 10);
  // helpInformation() is the text `<command> --help` prints.
  for (const c of program.commands)
    assert.match(c.helpInformation(), /--debug\s+show stack traces/, `${c.name()} --help`);
});

test('an internal error keeps its label under --debug (the stack follows); a usage error has none', async () => {
  for (const debug of [false, true]) {
    const { err } = await capture(async () =>
      reportError('sortednet', new TypeError('x is undefined'), debug),
    );
    const [first] = err.split('\n');
    assert.match(first, /^sortednet: internal error \(a bug; .*\): x is undefined$/, `debug ${debug}`);
    assert.equal(/at /.test(err), debug, 'the stack only with --debug');
  }
  const { err } = await capture(async () => reportError('sortednet', new UsageError('bad flag'), true));
  assert.match(err, /^sortednet: bad flag\n/);
});

test('presets: the descriptions start in one column, however long a name is', async () => {
  const { result, out } = await capture(() => main(['presets']));
  assert.equal(result, 0);
  const lines = out.trim().split('\n');
  assert.ok(lines.some((l) => l.startsWith('moe-transformer ')));
  const columns = new Set(lines.map((l) => /^\S+ {2,}/.exec(l)?.[0].length));
  assert.deepEqual([...columns], [Math.max(...lines.map((l) => l.split(' ')[0].length)) + 2], out);
});

test('eval words its headline by the data and mentions BN only for a model with BatchNorm', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-msg-'));
  try {
    const run = join(dir, 'spam');
    const train = ['train', '--run', run, '--data', 'spamassassin', '--model', 'moe-transformer'];
    const small = ['--steps', '1', '--batch-size', '8', '--train-subset', '32', '--test-subset', '16'];
    assert.equal((await capture(() => main([...train, ...small, '--no-eval']))).result, 0);
    const { result, out } = await capture(() => main(['eval', '--run', run]));
    assert.equal(result, 0);
    assert.match(out, /^evaluating 1 sub-model on 16 test sequences…$/m);
    assert.doesNotMatch(out, /images|BN|BatchNorm/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const images = { n: 64, height: 28, width: 28 } as ImageDataset;
  const resnet = buildModel(getPreset('resnet-small').model({ channels: 1, size: 28, classes: 10 }));
  assert.equal(
    evaluationHeadline(resnet, 16, images),
    'evaluating 16 sub-models (BN recalibrated per sub-model) on 64 test images…',
  );
  const mlp = buildModel(getPreset('mlp').model({ channels: 1, size: 1, classes: 2 }));
  const rows = { n: 10, height: 1, width: 1 } as ImageDataset;
  assert.equal(evaluationHeadline(mlp, 16, rows), 'evaluating 16 sub-models on 10 test rows…');
});

test('the PAD-Net study commands take the flag names of train (the old ones are hidden aliases)', async () => {
  const parsed: Record<string, object> = {};
  const program = new Command('sortednet').exitOverride();
  registerPadnet(program, () => {});
  const defaults: Record<string, object> = { padnet: FASHION_DEFAULTS, 'padnet-spam': SPAM_DEFAULTS };
  // Capture the options instead of running the study.
  for (const c of program.commands)
    c.exitOverride().action((f: Record<string, string | number | undefined>) => {
      parsed[c.name()] = studyOptions(defaults[c.name()], f);
    });
  const args = ['--train-subset', '500', '--test-subset', '200', '--batch-size', '16', '--epochs', '1'];
  await program.parseAsync(['padnet', ...args], { from: 'user' });
  const fashion = parsed.padnet as FashionOptions;
  assert.deepEqual([fashion.train, fashion.test, fashion.batch, fashion.epochs], [500, 200, 16, 1]);
  await program.parseAsync(['padnet-spam', '--train-subset', '300', '--batch-size', '8'], { from: 'user' });
  const spam = parsed['padnet-spam'] as SpamOptions;
  assert.deepEqual([spam.train, spam.batch], [300, 8]);
  await program.parseAsync(['padnet', '--train', '100', '--test', '50', '--batch', '4'], { from: 'user' });
  const old = parsed.padnet as FashionOptions;
  assert.deepEqual([old.train, old.test, old.batch], [100, 50, 4]);
  for (const c of ['padnet', 'padnet-spam']) {
    const help = program.commands.find((x) => x.name() === c)!.helpInformation();
    assert.match(help, /--batch-size <n>/);
    assert.match(help, /--train-subset <n>/);
    assert.doesNotMatch(help, /--(batch|train|test) </, `${c} help lists only the train-style names`);
  }
});

test('compare names its columns by strategy (the default one too), by folder when two runs share one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-cmp-'));
  try {
    const small = [
      '--data',
      'spamassassin',
      '--model',
      'moe-transformer',
      '--steps',
      '1',
      '--batch-size',
      '8',
    ];
    const sizes = ['--train-subset', '32', '--test-subset', '16'];
    for (const [name, extra] of [
      ['a', []],
      ['b', ['--strategy', 'full-only']],
      ['c', []],
    ] as const)
      assert.equal(
        (await capture(() => main(['train', '--run', join(dir, name), ...small, ...sizes, ...extra]))).result,
        0,
      );
    const svg = join(dir, 'c.svg');
    const two = await capture(() =>
      main(['compare', '--runs', `${join(dir, 'a')},${join(dir, 'b')}`, '--out', svg]),
    );
    assert.match(two.out, /^\| sub-model \| MFLOPs \| sorted \| full-only \| sorted \/ full-only \|$/m);
    const runs = [join(dir, 'a'), join(dir, 'b'), join(dir, 'c')].join(',');
    const three = await capture(() => main(['compare', '--runs', runs, '--out', svg, '--force']));
    const header = three.out.split('\n')[0];
    assert.ok(header.includes(`| ${join(dir, 'a')} | full-only | ${join(dir, 'c')} |`), header);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("train --help shows each default; demo --help is the demo's own text", () => {
  const program = buildProgram(() => {});
  const help = (name: string) => program.commands.find((c) => c.name() === name)!.helpInformation();
  /** Each option's text, unwrapped, by its flag. */
  const options = (text: string) => {
    const byFlag = new Map<string, string>();
    // An option's line starts with its flag; a flag named inside a description does not start one.
    const list = text.slice(text.indexOf('Options:'));
    for (const entry of list.replace(/\s+/g, ' ').split(/ (?=--[a-z])/)) {
      const flag = entry.split(' ')[0];
      if (!byFlag.has(flag)) byFlag.set(flag, entry);
    }
    return byFlag;
  };
  const train = options(help('train'));
  for (const [flag, value] of [
    ['--model', 'resnet-small'],
    ['--data', 'mnist'],
    ['--strategy', 'sorted'],
    ['--steps', '300'],
    ['--batch-size', '64'],
    ['--gacc', '4'],
    ['--lr', '0.003'],
    ['--optimizer', 'adamw'],
    ['--seed', '1'],
    ['--checkpoint-every', '100'],
  ]) {
    assert.ok(train.get(flag)?.includes(`(default: ${value}`), `train ${flag}: ${train.get(flag)}`);
  }
  const demoText = help('demo');
  const demo = options(demoText);
  assert.notEqual(demoText, help('train'));
  assert.ok(demo.get('--run')?.includes('(default: runs/demo'), String(demo.get('--run')));
  assert.ok(demo.get('--test-subset')?.includes('(default: 2000)'), String(demo.get('--test-subset')));
  assert.match(demoText, /The demo is 'train' with these defaults/);
});

test("pick: no sub-model within the budget is an error like every command's: 'sortednet: …', exit code 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'sortednet-pick-'));
  try {
    const rows = [{ id: 'depth=1', sub: { depth: 1 }, params: 10, flops: 100, accuracy: 0.5 }];
    writeFileSync(join(dir, 'eval.json'), JSON.stringify(rows));
    const { result, err } = await capture(() => cli(['pick', '--run', dir, '--max-flops', '10']));
    assert.equal(result, 1);
    assert.match(
      err,
      /^sortednet: pick: no sub-model fits; the smallest is depth=1 \(100 FLOPs, 10 params\)\n$/,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
