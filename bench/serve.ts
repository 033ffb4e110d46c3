/**
 * Load test of `sortednet serve` on loopback (autocannon): fixed-full vs adaptive at the same
 * offered rates, from below the full model's capacity to above it.
 *   1. capacity: closed-loop throughput of the fixed full model (the saturation rate);
 *   2. per rate (fractions of it) and per mode: a fresh server, `--warmup` s at the rate (not
 *      measured), then `--duration` s at autocannon's overallRate: throughput, p50/p99, errors,
 *      and the sub-model mix and switches of the measured part, from /metrics.
 * autocannon paces per connection and per second, so each second starts with a burst of up to
 * `--connections` requests.
 * Target: at a rate where fixed-full's p99 is ≥ 3× the target, adaptive holds p99 ≤ target with
 * 0 failed requests. Run it alone on the machine: other work distorts the latencies.
 *   node dist/bench/serve.js --run DIR [--target-p99-ms 50] [--rates 0.5,1,1.5,2] [--duration 10] [--warmup 3]
 *                            [--connections 100] [--capacity REQ_PER_S (skip the probe)] [--out FILE.json]
 */
import autocannon from 'autocannon';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { fileURLToPath } from 'node:url';
import { Option } from 'commander';
import { listArg, numArg, positiveIntArg } from '../src/cli/args.js';
import { benchCommand, parseBench } from './cli.js';

const values = parseBench<{
  run: string;
  targetP99Ms: number;
  rates: number[];
  duration: number;
  warmup: number;
  connections: number;
  capacity?: number;
  out?: string;
}>(
  benchCommand('serve', 'load test of `sortednet serve`: fixed-full vs adaptive at the same offered rates')
    .requiredOption('--run <dir>', 'a trained, evaluated classifier run (required)')
    .option('--target-p99-ms <ms>', "the adaptive server's p99 target", numArg, 50)
    .addOption(
      new Option('--rates <list>', "offered rates, as fractions of the full model's capacity")
        .argParser(listArg(numArg))
        .default([0.5, 1, 1.5, 2], '0.5,1,1.5,2'),
    )
    .option('--duration <s>', 'measured seconds per rate and mode', numArg, 10)
    .option('--warmup <s>', 'unmeasured seconds at the rate first', numArg, 3)
    .option('--connections <n>', 'autocannon connections', positiveIntArg, 100)
    .option('--capacity <req/s>', "the full model's capacity (default: probed, closed loop)", numArg)
    .option('--out <file>', 'also write the results as JSON'),
);
const runDir = values.run;
const target = values.targetP99Ms;
const { rates, duration, connections, warmup } = values;
const cli = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));

interface Served {
  child: ChildProcess;
  url: string;
  /** The controller's switch messages (from the server's JSON log lines). */
  switchLog: string[];
}

/** Starts `sortednet serve` on a free port and resolves once it listens. */
function serve(args: string[]): Promise<Served> {
  const child = spawn(process.execPath, [cli, 'serve', '--run', runDir, '--port', '0', ...args], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return new Promise((resolve, reject) => {
    let text = '';
    const switchLog: string[] = [];
    let listening = false;
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        const m = /listening on (http:\/\/\S+)/.exec(line);
        if (m && !listening) {
          listening = true;
          resolve({ child, url: m[1], switchLog });
        }
        if (line.includes('"switch"')) switchLog.push((JSON.parse(line) as { msg: string }).msg);
      }
    });
    child.on('exit', (code) => reject(new Error(`serve exited with ${code} before listening:\n${text}`)));
  });
}

async function stop(s: Served): Promise<void> {
  const exited = new Promise((r) => s.child.on('exit', r));
  s.child.kill('SIGTERM');
  await exited;
}

/** The body of every request: one image as raw float32 (its content does not change the cost). */
async function body(url: string): Promise<{ buffer: Buffer; shape: string }> {
  const models = (await (await fetch(`${url}/models`)).json()) as { input: string };
  const m = /\[([0-9, ]+)\] per sample/.exec(models.input);
  if (!m) throw new Error(`bench/serve: cannot read the input shape from '${models.input}'`);
  const dims = m[1].split(',').map((d) => Number(d.trim()));
  const n = dims.reduce((a, b) => a * b, 1);
  const x = Float32Array.from({ length: n }, (_, i) => Math.sin(i) * 0.5);
  return { buffer: Buffer.from(x.buffer), shape: `1,${dims.join(',')}` };
}

async function load(
  url: string,
  payload: { buffer: Buffer; shape: string },
  rate?: number,
  seconds = duration,
) {
  return autocannon({
    url: `${url}/predict`,
    method: 'POST',
    headers: { 'content-type': 'application/octet-stream', 'x-shape': payload.shape },
    body: payload.buffer,
    connections,
    duration: seconds,
    timeout: 30,
    // autocannon's correction for coordinated omission assumes an interval of ⌈1/rate⌉ ms = 1 ms,
    // which adds a synthetic sample per millisecond of every response: raw latencies instead.
    ...(rate ? { overallRate: rate, ignoreCoordinatedOmission: true } : {}),
  });
}

/** Samples per sub-model and switches, from the server's Prometheus text. */
async function scrape(url: string): Promise<{ mix: Record<string, number>; switches: number }> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const mix: Record<string, number> = {};
  for (const m of text.matchAll(/^sortednet_samples_total\{sub="([^"]+)"\} (\d+)/gm))
    mix[m[1]] = Number(m[2]);
  let switches = 0;
  for (const m of text.matchAll(/^sortednet_submodel_switches_total\{direction="\w+"\} (\d+)/gm))
    switches += Number(m[1]);
  return { mix, switches };
}

const MODES = { 'fixed-full': ['--sub', 'full'], adaptive: ['--target-p99-ms', String(target)] };

// 1. Capacity of the full model: closed loop, as many requests as it answers.
const probe = await serve(MODES['fixed-full']);
const payload = await body(probe.url);
let capacity = values.capacity ?? NaN;
if (!(capacity > 0)) {
  await load(probe.url, payload, undefined, 2); // warm-up
  capacity = (await load(probe.url, payload, undefined, 5)).requests.average;
}
await stop(probe);
console.log(`full model capacity (closed loop, ${connections} connections): ${capacity.toFixed(0)} req/s`);

interface Row {
  mode: string;
  offered: number;
  throughput: number;
  p50: number;
  p99: number;
  errors: number;
  switches: number;
  mix: Record<string, number>;
}
const rows: Row[] = [];
for (const fraction of rates) {
  const rate = Math.round(fraction * capacity);
  for (const [mode, args] of Object.entries(MODES)) {
    const s = await serve(args);
    // Steady state: both modes run `warmup` s at the rate first (the adaptive one settles), unmeasured.
    if (warmup > 0) await load(s.url, payload, rate, warmup);
    const before = await scrape(s.url);
    const r = await load(s.url, payload, rate);
    const after = await scrape(s.url);
    await stop(s);
    const mix = Object.fromEntries(
      Object.entries(after.mix).map(([id, n]) => [id, n - (before.mix[id] ?? 0)]),
    );
    const switches = after.switches - before.switches;
    for (const line of s.switchLog.slice(0, 3)) console.log(`  ${mode} at ${rate} req/s: ${line}`);
    const row: Row = {
      mode,
      offered: rate,
      throughput: r['2xx'] / r.duration,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors: r.non2xx + r.errors + r.timeouts,
      switches,
      mix,
    };
    rows.push(row);
    console.log(JSON.stringify(row));
  }
}

const total = (mix: Record<string, number>) => Object.values(mix).reduce((a, b) => a + b, 0);
const mixText = (mix: Record<string, number>) =>
  Object.entries(mix)
    .filter(([, n]) => n > 0)
    .sort((a, b) => b[1] - a[1])
    .map(([id, n]) => `${id} ${((100 * n) / total(mix)).toFixed(0)}%`)
    .join(', ');
console.log(
  `\n${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}; target p99 ${target} ms; ${duration} s per row; ${connections} connections\n`,
);
console.log('| offered req/s | mode | served req/s | p50 ms | p99 ms | errors | switches | sub-model mix |');
console.log('|---:|---|---:|---:|---:|---:|---:|---|');
for (const r of rows)
  console.log(
    `| ${r.offered} | ${r.mode} | ${r.throughput.toFixed(0)} | ${r.p50} | ${r.p99} | ${r.errors} | ${r.switches} | ${mixText(r.mix)} |`,
  );
const hit = rates
  .map((_, i) => [rows[2 * i], rows[2 * i + 1]])
  .filter(([f, a]) => f.p99 >= 3 * target && a.p99 <= target && a.errors === 0);
console.log(
  hit.length
    ? `target met at ${hit.map(([f]) => `${f.offered} req/s`).join(', ')}: adaptive p99 ≤ ${target} ms, 0 errors, fixed-full p99 ≥ ${3 * target} ms`
    : `target NOT met at any rate (adaptive p99 ≤ ${target} ms with 0 errors where fixed-full p99 ≥ ${3 * target} ms)`,
);
if (values.out)
  writeFileSync(
    values.out,
    JSON.stringify({ capacity, target, duration, connections, rows }, null, 2) + '\n',
  );
