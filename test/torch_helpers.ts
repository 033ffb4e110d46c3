/** Shared by the PyTorch round-trip tests: the interpreter, the package path, and the skip reason. */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ModelSpec } from '../src/models/index.js';
import { resnetConfig } from '../src/models/resnet.js';
import { fileURLToPath } from 'node:url';

/** Debian's python3-torch installs for this interpreter; PATH's python3 may be another. */
export const PYTHON = '/usr/bin/python3';

/** The repository's python/ folder (tests run from dist/test/). */
export const PYTHON_PACKAGE = fileURLToPath(new URL('../../python', import.meta.url));

const probe = spawnSync(PYTHON, ['-c', 'import torch, numpy'], { encoding: 'utf8' });

/** A skip reason when PyTorch is not importable, else false. */
export const torchSkip: string | false =
  probe.status === 0
    ? false
    : `PyTorch is not importable by ${PYTHON} (install it with: apt-get install python3-torch): ${
        (probe.stderr || String(probe.error ?? '')).trim().split('\n').pop() ?? ''
      }`;

/** Why the torchvision tests skip (false: they run); probed once, on first use. */
let torchvisionProbe: string | false | undefined;
export function torchvisionSkip(): string | false {
  if (torchvisionProbe !== undefined) return torchvisionProbe;
  const p = spawnSync(PYTHON, ['-c', 'import torch, torchvision, numpy'], { encoding: 'utf8' });
  torchvisionProbe =
    p.status === 0
      ? false
      : `torchvision is not importable by ${PYTHON} (apt-get install python3-torchvision): ${
          (p.stderr || String(p.error ?? '')).trim().split('\n').pop() ?? ''
        }`;
  return torchvisionProbe;
}

/** Runs `python3 ARGS` with the package importable; throws with its output when it fails. */
export function runPython(
  args: string[],
  opts: { env?: Record<string, string>; timeoutMs?: number } = {},
): string {
  const r = spawnSync(PYTHON, args, {
    encoding: 'utf8',
    env: { ...process.env, PYTHONPATH: PYTHON_PACKAGE, OMP_NUM_THREADS: '1', ...opts.env },
    timeout: opts.timeoutMs ?? 120_000,
  });
  if (r.status !== 0) {
    const message = `${PYTHON} ${args.join(' ')} exited with ${r.status ?? r.signal}:\n${r.stdout}\n${r.stderr}`;
    throw NATIVE_CRASH.test(`${r.signal ?? ''}\n${r.stderr}`) ? new TorchCrash(message) : new Error(message);
  }
  return r.stdout;
}

/**
 * PyTorch's own native code died (a segfault or heap corruption inside torch, e.g. in a
 * convolution's backward): the package under test is pure Python and cannot do that, so a test
 * that meets it skips with the message rather than blaming the project. Any other failure fails.
 */
export class TorchCrash extends Error {}
const NATIVE_CRASH =
  /SIGSEGV|SIGABRT|Fatal Python error: Segmentation fault|double free or corruption|exitcode: -(6|11)\b/;

/** Runs `body`; a TorchCrash inside it skips the test `t` with the crash's first lines. */
export async function skipOnTorchCrash(
  t: { skip: (message: string) => void },
  body: () => unknown,
): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (!(e instanceof TorchCrash)) throw e;
    const crash = e.message.split('\n').find((l) => NATIVE_CRASH.test(l)) ?? 'a native crash';
    t.skip(`PyTorch itself crashed on this machine (${crash.trim()}); not a fault of sortednet_torch`);
  }
}

/** A fresh temporary folder, removed when the test process exits. */
export function scratch(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.on('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** A small sorted ResNet for 28×28 grey images, 10 classes (stem 8): quick to train in tests. */
export function smallResNet(widths: number[], blocks: number[]): ModelSpec {
  return {
    family: 'resnet',
    config: resnetConfig({ inChannels: 1, imageSize: 28, classes: 10, stem: 8, widths, blocks }),
  };
}
