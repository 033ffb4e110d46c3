/**
 * The server part of the reliability bench (docs/reliability.md, docs/deploy.md): `sortednet serve`
 * as a child process on loopback, under what breaks servers in production.
 *   1. fuzz: bad requests of every kind (values beyond float32 and ones that overflow the model,
 *      NaN, truncated and mutated JSON, wrong shapes, broken binaries and headers, bad budgets) → 5xx count;
 *   2. flood: `--flood` concurrent 4 MB JSON bodies, again and again for `--seconds`, while /health
 *      is polled on its own connection → /health p99 and max, the server's peak RSS;
 *   3. SIGTERM under `--overload`× the full model's capacity (open loop, keep-alive connections) →
 *      requests answered, refused (503) and dropped (reset after being sent), the exit code;
 *   4. adaptive p99 at `--rates` × the full model's capacity, quiet and beside a 2-thread CPU hog
 *      (`--floor`: the cheapest sub-model, fixed, at the same load: what the machine itself allows).
 * It prints one table. Other work on the machine changes every latency: say what `uptime` showed.
 *   node dist/bench/serve_reliability.js --run DIR [--fuzz 30000] [--flood 96] [--seconds 5]
 *                                        [--overload 2] [--target-p99-ms 50] [--only fuzz|flood|sigterm|adaptive]
 *                                        [--rates 0.5,1,2] [--hog off|on|both] [--repeat 1] [--floor]
 *                                        [--capacity <req/s>]
 *                                        [--max-wait-ms MS] [--no-inference-thread]
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { InvalidArgumentError, Option } from 'commander';
import { nonNegativeIntArg, numArg, positiveIntArg } from '../src/cli/args.js';
import { quantile } from '../src/serve/controller.js';
import { benchCommand, parseBench } from './cli.js';

const values = parseBench<{
  run: string;
  fuzz: number;
  flood: number;
  seconds: number;
  overload: number;
  targetP99Ms: number;
  only?: string;
  rates: number[];
  hog: string;
  repeat: number;
  floor?: boolean;
  maxWaitMs?: number;
  capacity?: number;
  inferenceThread: boolean;
}>(
  benchCommand(
    'serve_reliability',
    'the server under pressure: fuzz, body flood, SIGTERM, adaptive p99 beside a CPU hog',
  )
    .requiredOption('--run <dir>', 'a trained classifier run (required)')
    .option('--fuzz <n>', 'bad requests', nonNegativeIntArg, 30_000)
    .option('--flood <n>', 'concurrent 4 MB bodies', positiveIntArg, 96)
    .option('--seconds <s>', 'seconds of each load', numArg, 5)
    .option('--overload <x>', "SIGTERM under this multiple of the full model's capacity", numArg, 2)
    .option('--target-p99-ms <ms>', "the adaptive server's p99 target", numArg, 50)
    .addOption(
      new Option('--only <section>', 'one section only').choices(['fuzz', 'flood', 'sigterm', 'adaptive']),
    )
    .option(
      '--rates <list>',
      "adaptive: offered loads, multiples of the full model's capacity on the quiet machine",
      (v: string) =>
        v.split(',').map((x) => {
          const n = Number(x);
          if (!(n > 0)) throw new Error(`--rates: '${x}' is not a positive number`);
          return n;
        }),
      [0.5, 1, 2],
    )
    .addOption(
      new Option('--hog <mode>', 'adaptive: beside a 2-thread CPU hog')
        .choices(['off', 'on', 'both'])
        .default('both'),
    )
    .option('--repeat <n>', 'adaptive: runs of every row', positiveIntArg, 1)
    .option(
      '--max-wait-ms <ms>',
      "adaptive: the adaptive server's queue deadline (sortednet serve --max-wait-ms; default none)",
      numArg,
    )
    .option(
      '--no-inference-thread',
      'every server runs its batches on the event loop (sortednet serve --no-inference-thread)',
    )
    .option(
      '--floor',
      'adaptive: also the cheapest sub-model, fixed, at the same load (what the machine allows)',
    )
    .option(
      '--capacity <req/s>',
      "the full model's capacity to take the rates as multiples of, instead of measuring it (to compare runs at the same offered loads)",
      (v: string) => {
        const n = numArg(v);
        if (!(n > 0))
          throw new InvalidArgumentError(`'${v}' must be a positive number of requests per second`);
        return n;
      },
    ),
);
const cli = fileURLToPath(new URL('../../bin/sortednet.js', import.meta.url));
const section = (name: string) => values.only === undefined || values.only === name;

interface Served {
  child: ChildProcess;
  port: number;
  exited: Promise<number | null>;
  log: string[];
}

/** Servers and hogs still running: killed if this process is stopped part-way. */
const children = new Set<ChildProcess>();
for (const signal of ['SIGINT', 'SIGTERM'] as const)
  process.on(signal, () => {
    for (const c of children) c.kill('SIGKILL');
    process.exit(130);
  });
process.on('exit', () => children.forEach((c) => c.kill('SIGKILL')));
const track = (c: ChildProcess) => {
  children.add(c);
  c.on('exit', () => children.delete(c));
  return c;
};

function serve(args: string[]): Promise<Served> {
  const child = track(
    spawn(
      process.execPath,
      [
        cli,
        'serve',
        '--run',
        values.run,
        '--port',
        '0',
        ...(values.inferenceThread ? [] : ['--no-inference-thread']),
        ...args,
      ],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    ),
  );
  const exited = new Promise<number | null>((r) => child.on('exit', r));
  const log: string[] = [];
  return new Promise((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      for (let nl = text.indexOf('\n'); nl >= 0; nl = text.indexOf('\n')) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        log.push(line);
        const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(line);
        if (m) resolve({ child, port: Number(m[1]), exited, log });
      }
    });
    void exited.then((code) => reject(new Error(`serve exited (${code}) before listening:\n${text}`)));
  });
}

async function stop(s: Served): Promise<number | null> {
  s.child.kill('SIGTERM');
  return s.exited;
}

interface Answer {
  status: number;
  ms: number;
  error?: string;
  body: string;
}

/** A binary /predict (float32 body, its shape in x-shape), the fast path a loaded server should get. */
const predictBinary = (port: number, body: Buffer, shape: string, agent: Agent) =>
  send(
    port,
    'POST',
    '/predict',
    body,
    { 'content-type': 'application/octet-stream', 'x-shape': shape },
    agent,
  );

/** One request; never rejects: a network error is an answer with status 0 and its code. */
function send(
  port: number,
  method: string,
  path: string,
  body?: Buffer | string,
  headers: Record<string, string> = {},
  agent?: Agent,
): Promise<Answer> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const req = request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers:
          body === undefined ? headers : { 'content-length': String(Buffer.byteLength(body)), ...headers },
      },
      (res) => {
        let text = '';
        res.on('data', (d: Buffer) => (text.length < 4096 ? (text += d.toString()) : undefined));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0, body: text }));
      },
    );
    req.on('error', (e: NodeJS.ErrnoException) =>
      resolve({ status: 0, ms: performance.now() - t0, error: e.code ?? e.message, body: '' }),
    );
    req.end(body);
  });
}

async function inputShape(port: number): Promise<number[]> {
  const models = JSON.parse((await send(port, 'GET', '/models')).body) as { input: string };
  const m = /\[([0-9, ]+)\] per sample/.exec(models.input);
  if (!m) throw new Error(`cannot read the input shape from '${models.input}'`);
  return m[1].split(',').map((d) => Number(d.trim()));
}

const rows: [string, string, string][] = [];
const row = (what: string, figure: string, target: string) => {
  rows.push([what, figure, target]);
  console.log(`${what}: ${figure} (target ${target})`);
};

// 1. Fuzz: every kind of bad request, counted by status class.
if (section('fuzz') && values.fuzz > 0) {
  const s = await serve(['--backend', 'wasm']);
  const dims = await inputShape(s.port);
  const size = dims.reduce((a, b) => a * b, 1);
  const agent = new Agent({ keepAlive: true, maxSockets: 8 });
  let seed = 7;
  const r = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const sample = () => Array.from({ length: size }, () => r());
  const huge = [3e38, -3e38, 1e39, -1e39, 1e30, 3.4e38, 1e300, 2 ** 128];
  const kinds: (() => [string, Buffer | string | undefined, Record<string, string>])[] = [
    () => {
      const x = sample();
      for (let k = 0; k < 1 + Math.floor(r() * size); k++)
        x[Math.floor(r() * size)] = huge[Math.floor(r() * huge.length)];
      return ['/predict', JSON.stringify({ inputs: [x] }), { 'content-type': 'application/json' }];
    },
    () => {
      const x = new Float32Array(size).map(() => (r() < 0.5 ? 3e38 : -3e38) * r());
      return [
        '/predict',
        Buffer.from(x.buffer),
        { 'content-type': 'application/octet-stream', 'x-shape': `1,${size}` },
      ];
    },
    () => {
      const text = JSON.stringify({ inputs: [sample()] });
      return [
        '/predict',
        text.slice(0, Math.floor(r() * text.length)),
        { 'content-type': 'application/json' },
      ];
    },
    () => {
      const x: unknown[] = sample();
      x[Math.floor(r() * size)] = [null, 'x', {}, [], true][Math.floor(r() * 5)];
      return ['/predict', JSON.stringify({ inputs: [x] }), { 'content-type': 'application/json' }];
    },
    () => [
      '/predict',
      JSON.stringify({ inputs: [sample().slice(1)] }),
      { 'content-type': 'application/json' },
    ],
    () => [
      '/predict',
      Buffer.alloc(4 * size - 1 - Math.floor(r() * 8)),
      { 'content-type': 'application/octet-stream', 'x-shape': `1,${size}` },
    ],
    () => [
      '/predict',
      Buffer.alloc(4 * size),
      {
        'content-type': 'application/octet-stream',
        'x-shape': ['x', '0,1', '1,2,3,4,5,6,7,8,9', ''][Math.floor(r() * 4)],
      },
    ],
    () => [
      `/predict?maxFlops=${['-1', '1e999', 'abc', '0'][Math.floor(r() * 4)]}`,
      Buffer.alloc(4 * size),
      { 'content-type': 'application/octet-stream', 'x-shape': `1,${size}` },
    ],
    () => [
      '/predict',
      JSON.stringify({ inputs: [sample()], sub: ['depth=99', 'width=7', 'x', ''][Math.floor(r() * 4)] }),
      { 'content-type': 'application/json' },
    ],
    () => [
      '/predict',
      Buffer.from(Array.from({ length: Math.floor(r() * 2000) }, () => Math.floor(r() * 256))),
      {
        'content-type': ['text/plain', 'application/json', 'application/octet-stream', 'image/png'][
          Math.floor(r() * 4)
        ],
      },
    ],
  ];
  const counts: Record<string, number> = {};
  let nonFinite = 0;
  const t0 = performance.now();
  let next = 0;
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < values.fuzz) {
        const i = next++;
        const [path, body, headers] = kinds[i % kinds.length]();
        const a = await send(s.port, 'POST', path, body, headers, agent);
        const key = a.status === 0 ? a.error! : `${Math.floor(a.status / 100)}xx`;
        counts[key] = (counts[key] ?? 0) + 1;
        if (a.status === 200 && /NaN|Infinity|null/.test(a.body)) nonFinite++;
      }
    }),
  );
  agent.destroy();
  await stop(s);
  console.log(`fuzz: ${JSON.stringify(counts)} in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  row(`fuzz: ${values.fuzz} bad requests (${kinds.length} kinds), 5xx`, String(counts['5xx'] ?? 0), '0');
  row('fuzz: answers holding a non-finite value', String(nonFinite), '0');
}

/** Polls /health every 20 ms on one kept-alive connection (and /metrics for the RSS); prints JSON. */
const POLLER = `
import { Agent, request } from 'node:http';
const [port, ms] = process.argv.slice(-2).map(Number);
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
const get = (path) => new Promise((resolve) => {
  const t0 = performance.now();
  const req = request({ host: '127.0.0.1', port, path, agent }, (res) => {
    let body = '';
    res.on('data', (d) => (body += d));
    res.on('end', () => resolve({ ok: res.statusCode === 200, ms: performance.now() - t0, body }));
  });
  req.on('error', () => resolve({ ok: false, ms: Infinity, body: '' }));
  req.end();
});
const health = [];
let peakRss = 0;
const cpu = [];
for (const until = performance.now() + ms; performance.now() < until; ) {
  const h = await get('/health');
  health.push(h.ok ? h.ms : 1e9);
  const text = (await get('/metrics')).body;
  const m = /^sortednet_process_resident_memory_bytes (\\S+)/m.exec(text);
  if (m) peakRss = Math.max(peakRss, Number(m[1]));
  const c = /^sortednet_process_cpu_seconds_total (\\S+)/m.exec(text);
  if (c) cpu.push([performance.now(), Number(c[1])]);
  await new Promise((r) => setTimeout(r, 20));
}
agent.destroy();
// The server's CPU time per second of wall time: how much of a core it used (the flood's cost to it).
const cores = cpu.length > 1 ? (cpu.at(-1)[1] - cpu[0][1]) / ((cpu.at(-1)[0] - cpu[0][0]) / 1000) : NaN;
console.log(JSON.stringify({ health, peakRss, cores }));
`;

/**
 * /health latencies over `seconds`, from a process of its own: this one is busy writing 4 MB
 * bodies, and its event loop would add its own delays to the figures.
 */
function poll(port: number, seconds: number): Promise<{ health: number[]; peakRss: number; cores: number }> {
  return new Promise((resolve, reject) => {
    const child = spawn(
      process.execPath,
      ['--input-type=module', '-e', POLLER, String(port), String(seconds * 1000)],
      {
        stdio: ['ignore', 'pipe', 'inherit'],
      },
    );
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.on('exit', (code) =>
      code === 0
        ? resolve(JSON.parse(out) as { health: number[]; peakRss: number; cores: number })
        : reject(new Error(`health poller exited ${code}`)),
    );
  });
}

// 2. Flood: 4 MB JSON bodies from `--flood` connections at once, /health polled meanwhile.
if (section('flood')) {
  const s = await serve(['--backend', 'wasm']);
  const idle = await poll(s.port, 2);
  const big = Buffer.from(`{"inputs":[[${'0.5,'.repeat((4 << 20) / 4 - 8)}0.5]]}`);
  const health: number[] = [];
  const statuses: Record<string, number> = {};
  let peakRss = 0;
  let cores = NaN;
  const until = performance.now() + values.seconds * 1000;
  const flooders = Array.from({ length: values.flood }, async () => {
    while (performance.now() < until) {
      const a = await send(s.port, 'POST', '/predict', big, { 'content-type': 'application/json' });
      const key = a.status === 0 ? a.error! : String(a.status);
      statuses[key] = (statuses[key] ?? 0) + 1;
    }
  });
  const poller = poll(s.port, values.seconds).then((r) => {
    health.push(...r.health);
    peakRss = r.peakRss;
    cores = r.cores;
  });
  await Promise.all([...flooders, poller]);
  await stop(s);
  console.log(`flood: answers ${JSON.stringify(statuses)}; /health polled ${health.length} times`);
  row(
    `flood: /health p99 during ${values.flood} × 4 MB bodies`,
    `${quantile(health, 0.99).toFixed(1)} ms (max ${Math.max(...health).toFixed(1)})`,
    '< 100 ms',
  );
  row(
    'flood: /health p99 with no flood (the machine as it is)',
    `${quantile(idle.health, 0.99).toFixed(1)} ms`,
    '-',
  );
  row('flood: server peak RSS', `${(peakRss / 2 ** 20).toFixed(0)} MB`, 'bounded');
  row(
    "flood: the server's CPU (cores busy, from its /metrics)",
    `${cores.toFixed(2)} during the flood, ${idle.cores.toFixed(2)} before`,
    '-',
  );
}

/** Closed-loop capacity of the fixed full model, requests per second, over `seconds`. */
async function capacity(port: number, body: Buffer, shape: string, seconds: number): Promise<number> {
  const agent = new Agent({ keepAlive: true, maxSockets: 32 });
  const until = performance.now() + seconds * 1000;
  let ok = 0;
  await Promise.all(
    Array.from({ length: 32 }, async () => {
      while (performance.now() < until)
        if ((await predictBinary(port, body, shape, agent)).status === 200) ok++;
    }),
  );
  agent.destroy();
  return ok / seconds;
}

/** Open loop at `rate` req/s over keep-alive connections: latencies and outcomes. */
async function openLoop(
  port: number,
  body: Buffer,
  shape: string,
  rate: number,
  seconds: number,
  onStart?: () => void,
) {
  const agent = new Agent({ keepAlive: true, maxSockets: 128 });
  const outcome = { ok: 0, refused: 0, dropped: 0, notAccepted: 0, other: 0 };
  const errors: Record<string, number> = {};
  const latencies: number[] = [];
  const pending: Promise<void>[] = [];
  const t0 = performance.now();
  let stopSending = false;
  for (let i = 0; !stopSending && performance.now() - t0 < seconds * 1000; i++) {
    const due = t0 + (1000 * i) / rate;
    if (due > performance.now()) await new Promise((r) => setTimeout(r, due - performance.now()));
    if (i === 0) onStart?.();
    pending.push(
      predictBinary(port, body, shape, agent).then((a) => {
        if (a.status === 200) {
          outcome.ok++;
          latencies.push(a.ms);
        } else if (a.status === 503) {
          outcome.refused++;
          if (/shutting down/.test(a.body)) stopSending = true; // as a load balancer would
        } else if (a.error === 'ECONNREFUSED') {
          outcome.notAccepted++;
          stopSending = true;
        } else if (a.status === 0) {
          outcome.dropped++;
          errors[a.error ?? '?'] = (errors[a.error ?? '?'] ?? 0) + 1;
        } else outcome.other++;
      }),
    );
  }
  await Promise.all(pending);
  agent.destroy();
  return {
    outcome,
    errors,
    p99: quantile(latencies, 0.99),
    p50: quantile(latencies, 0.5),
    max: latencies.length ? Math.max(...latencies) : NaN,
  };
}

/** The server's samples per sub-model and batches, from /metrics. */
async function scrape(port: number): Promise<{ samples: Map<string, number>; batches: number }> {
  const text = (await send(port, 'GET', '/metrics')).body;
  const samples = new Map<string, number>();
  for (const m of text.matchAll(/^sortednet_samples_total\{sub="([^"]+)"\} (\S+)$/gm))
    samples.set(m[1], Number(m[2]));
  const batches = Number(/^sortednet_batch_samples_count (\S+)$/m.exec(text)?.[1] ?? NaN);
  return { samples, batches };
}

/** The sub-model mix and mean batch between two scrapes, e.g. "depth=3,width=0.5 70%, … ; 6.1 a batch". */
function mix(a: Awaited<ReturnType<typeof scrape>>, b: Awaited<ReturnType<typeof scrape>>): string {
  const served = [...b.samples]
    .map(([id, n]) => [id, n - (a.samples.get(id) ?? 0)] as const)
    .filter(([, n]) => n > 0);
  const total = served.reduce((x, [, n]) => x + n, 0);
  const parts = served
    .sort((x, y) => y[1] - x[1])
    .slice(0, 3)
    .map(([id, n]) => `${id} ${((100 * n) / total).toFixed(0)}%`);
  return `${parts.join(', ')}; ${(total / (b.batches - a.batches)).toFixed(1)} a batch`;
}

let fullCapacity = NaN;
/** The sub-model with the fewest FLOPs (the floor rows). */
let cheapest = '';
let payload: { body: Buffer; shape: string } | undefined;
async function measureCapacity(): Promise<void> {
  if (fullCapacity > 0) return;
  const s = await serve(['--sub', 'full', '--backend', 'wasm']);
  const dims = await inputShape(s.port);
  const x = Float32Array.from({ length: dims.reduce((a, b) => a * b, 1) }, (_, i) => Math.sin(i) * 0.5);
  payload = { body: Buffer.from(x.buffer), shape: `1,${dims.join(',')}` };
  const models = JSON.parse((await send(s.port, 'GET', '/models')).body) as {
    subModels: { id: string; flops: number }[];
  };
  cheapest = models.subModels.reduce((a, b) => (b.flops < a.flops ? b : a)).id;
  if (values.capacity !== undefined) {
    fullCapacity = values.capacity;
    await stop(s);
    console.log(`full model capacity: ${fullCapacity} req/s, as given (--capacity)`);
    return;
  }
  await capacity(s.port, payload.body, payload.shape, 1);
  fullCapacity = await capacity(s.port, payload.body, payload.shape, 3);
  await stop(s);
  console.log(`full model capacity (closed loop, 32 connections): ${fullCapacity.toFixed(0)} req/s`);
}

// 3. SIGTERM in the middle of an overload.
if (section('sigterm')) {
  await measureCapacity();
  const rate = Math.round(values.overload * fullCapacity);
  const s = await serve(['--sub', 'full', '--backend', 'wasm', '--grace-ms', '10000']);
  const run = openLoop(s.port, payload!.body, payload!.shape, rate, values.seconds + 5, () =>
    setTimeout(() => s.child.kill('SIGTERM'), values.seconds * 1000),
  );
  const [{ outcome, errors }, code] = await Promise.all([run, s.exited]);
  const drained = s.log.find((l) => /drained/.test(l)) ?? '(no drain report)';
  console.log(`sigterm: ${JSON.stringify(outcome)}; client errors ${JSON.stringify(errors)}; ${drained}`);
  row(
    `SIGTERM at ${values.overload}× capacity (${rate} req/s): answered / refused 503 / dropped`,
    `${outcome.ok} / ${outcome.refused} / ${outcome.dropped}, exit ${code}`,
    '0 dropped, exit 0',
  );
  row(
    'SIGTERM: accepted requests the server dropped (its own count)',
    /(\d+) requests dropped/.exec(drained)?.[1] ?? '?',
    '0',
  );
}

// 4. Adaptive p99 at each `--rates` multiple of the full model's capacity on a quiet machine, quiet
// and beside a 2-thread CPU hog; the client (this process), the server and the hog share the cores.
if (section('adaptive')) {
  await measureCapacity();
  const hogModes = values.hog === 'both' ? [false, true] : [values.hog === 'on'];
  for (let rep = 1; rep <= values.repeat; rep++)
    for (const hog of hogModes)
      for (const multiple of values.rates) {
        const rate = Math.round(multiple * fullCapacity);
        const hogs = hog
          ? Array.from({ length: 2 }, () =>
              track(
                spawn(process.execPath, ['-e', 'for (;;) Math.sqrt(Math.random())'], { stdio: 'ignore' }),
              ),
            )
          : [];
        const modes: [string, string[]][] = [
          [
            'adaptive',
            [
              '--target-p99-ms',
              String(values.targetP99Ms),
              ...(values.maxWaitMs === undefined ? [] : ['--max-wait-ms', String(values.maxWaitMs)]),
            ],
          ],
          ...(values.floor ? [[`fixed ${cheapest}`, ['--sub', cheapest]] as [string, string[]]] : []),
        ];
        for (const [mode, args] of modes) {
          const s = await serve([...args, '--backend', 'wasm']);
          await openLoop(s.port, payload!.body, payload!.shape, rate, 2); // settle, unmeasured
          const before = await scrape(s.port);
          const r = await openLoop(s.port, payload!.body, payload!.shape, rate, values.seconds);
          const after = await scrape(s.port);
          const switches = s.log.filter((l) => l.includes('"switch"')).length;
          await stop(s);
          const load = loadavg()[0].toFixed(1);
          const limit = hog ? 1.5 * values.targetP99Ms : values.targetP99Ms;
          row(
            `${mode} p99 at ${multiple}× capacity (${rate} req/s)${hog ? ', 2-thread CPU hog' : ', quiet'}, run ${rep}`,
            `${r.p99.toFixed(1)} ms (p50 ${r.p50.toFixed(1)}, max ${r.max.toFixed(0)}; ${switches} switches; ` +
              `${r.outcome.ok} answered, ${r.outcome.refused + r.outcome.dropped + r.outcome.other} not; ` +
              `${mix(before, after)}; load ${load})`,
            mode === 'adaptive' ? `≤ ${limit} ms` : 'the floor',
          );
        }
        for (const h of hogs) h.kill('SIGKILL');
      }
}

console.log(
  `\nload average (1, 5, 15 min) at the end: ${loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')}\n`,
);
console.log('| check | measured | target |');
console.log('|---|---:|---|');
for (const [what, figure, target] of rows) console.log(`| ${what} | ${figure} | ${target} |`);
