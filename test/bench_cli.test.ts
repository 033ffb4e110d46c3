/** The bench scripts' command lines: --help, unknown options, bad values, user errors as one line. No benchmark runs. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const BENCH = fileURLToPath(new URL('../bench/', import.meta.url));
/** Modules the scripts import, not scripts; padnet.js parses its own flags for now. */
const NOT_SCRIPTS = ['cli.js', 'native.js', 'workloads.js'];
const SCRIPTS = readdirSync(BENCH).filter((f) => f.endsWith('.js') && !NOT_SCRIPTS.includes(f));

function bench(script: string, ...args: string[]): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BENCH + script, ...args], { encoding: 'utf8', timeout: 20_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Exit code 1 and exactly one line on stderr, matching `pattern`: no stack trace, no benchmark output. */
function refused(r: ReturnType<typeof bench>, pattern: RegExp): void {
  assert.equal(r.code, 1, r.stderr);
  assert.equal(r.stdout, '');
  const lines = r.stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `one line expected:\n${r.stderr}`);
  assert.match(lines[0], pattern);
}

test('--help lists the options with their defaults and exits 0', () => {
  const r = bench('decode.js', '--help');
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^Usage: node dist\/bench\/decode\.js \[options\]/);
  assert.match(r.stdout, /--run <dir>/);
  assert.match(r.stdout, /--prompts <n>.*\(default: 8\)/);
  assert.match(r.stdout, /--draft-depths <list>.*\(default: 1,2\)/);
  const g = bench('gemm.js', '--help');
  assert.equal(g.code, 0, g.stderr);
  assert.match(g.stdout, /--reps <n>[\s\S]*\(default: 5\)/);
});

test('every bench script refuses an unknown option and lists the known ones', () => {
  assert.ok(SCRIPTS.length >= 10, `bench scripts found: ${SCRIPTS.join(', ')}`);
  for (const script of SCRIPTS) {
    const name = `bench/${script.replace(/\.js$/, '')}`;
    refused(
      bench(script, '--no-such-flag'),
      new RegExp(`^${name}: unknown option '--no-such-flag'; known options of '${name}': .*--debug`),
    );
  }
  refused(
    bench('gemm.js', '--rep', '3'),
    /unknown option '--rep' \(Did you mean --reps\?\); known options of 'bench\/gemm': --reps --debug$/,
  );
});

test('a bad value names the flag and the value', () => {
  refused(
    bench('gemm.js', '--reps', 'abc'),
    /^bench\/gemm: option '--reps <n>' argument 'abc' is invalid\. 'abc' is not an integer$/,
  );
  refused(
    bench('serve.js', '--run', 'x', '--rates', '1,x'),
    /option '--rates <list>' argument '1,x' is invalid\. 'x' is not a number$/,
  );
  refused(
    bench('reliability.js', '--only', 'crash'),
    /option '--only <section>' argument 'crash' is invalid\. Allowed choices are kills, damage, pairs, nan, flips\.$/,
  );
  refused(
    bench('serve_reliability.js', '--run', 'x', '--capacity', '0'),
    /option '--capacity <req\/s>' argument '0' is invalid\. '0' must be a positive number of requests per second$/,
  );
  refused(bench('decode.js'), /^bench\/decode: required option '--run <dir>' not specified$/);
  refused(bench('gemm.js', '5'), /^bench\/gemm: too many arguments/);
});

test('a mistake found after parsing (a run folder that is not there) is one line too; --debug adds the stack', () => {
  refused(
    bench('decode.js', '--run', '/nonexistent/run'),
    /^bench\/decode: no checkpoint in \/nonexistent\/run/,
  );
  const r = bench('decode.js', '--run', '/nonexistent/run', '--debug');
  assert.equal(r.code, 1);
  assert.match(r.stderr, /\n\s+at /);
});
