/** `sortednet serve` as a process: listens on loopback, answers, and drains on a real SIGTERM. */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { initEngine } from '../src/engine/backend.js';
import { image, saveTinyRun } from './serve_fixture.js';
import { cli } from './deploy_fixture.js';

const CLI = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));
let dir: string;

before(async () => {
  await initEngine('cpu');
  dir = saveTinyRun('sortednet-serve-');
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('serve: SIGTERM drains the requests already queued, then the process exits 0', async () => {
  const child = spawn(
    process.execPath,
    [
      CLI,
      'serve',
      '--run',
      dir,
      '--port',
      '0',
      '--window-ms',
      '400',
      '--max-batch',
      '16',
      '--backend',
      'cpu',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(out);
      if (m) resolve(m[1]);
    });
    child.on('exit', (code) => reject(new Error(`serve exited (${code}) before listening: ${out}`)));
  });
  const requests = Array.from({ length: 8 }, (_, i) =>
    fetch(`${url}/predict`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: [image(i)] }),
    }),
  );
  // The 400 ms window holds them in the queue; terminate while they wait.
  for (let queued = 0; queued < 8;) {
    queued = ((await (await fetch(`${url}/health`)).json()) as { queue: number }).queue;
  }
  child.kill('SIGTERM');
  const answers = await Promise.all(requests);
  assert.deepEqual(
    answers.map((r) => r.status),
    Array(8).fill(200),
  );
  assert.equal(await exited, 0, out);
  assert.match(out, /SIGTERM: draining/);
});

test('serve: a negative --max-wait-ms is refused by name before anything loads', async () => {
  await assert.rejects(
    cli(['serve', '--run', dir, '--max-wait-ms=-5']),
    /serve: --max-wait-ms -5 must be ≥ 0 ms \(0: no deadline\)/,
  );
});
