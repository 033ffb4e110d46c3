/**
 * What installing the package says: no npm warning about the project's own config, and no
 * dependency a user installs (production, from the lock file) that refuses a Node our `engines` allows.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';

// semver comes with fastify (a dependency), so it is there wherever the package is installed.
const semver = createRequire(import.meta.url)('semver') as {
  satisfies(version: string, range: string): boolean;
  minVersion(range: string): { version: string } | null;
};

interface LockEntry {
  version?: string;
  dev?: boolean;
  engines?: { node?: string };
}

test("every production dependency in the lock accepts the oldest Node of the package's engines", () => {
  const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as { engines: { node: string } };
  const lock = JSON.parse(readFileSync('package-lock.json', 'utf8')) as {
    packages: Record<string, LockEntry>;
  };
  const oldest = semver.minVersion(pkg.engines.node)!.version;
  // The oldest Node we claim, and the Node 20 running this (a user's "Node 20").
  const nodes = [oldest, ...(process.versions.node.startsWith('20.') ? [process.versions.node] : [])];
  const refused = Object.entries(lock.packages)
    .filter(([path, e]) => path !== '' && !e.dev && typeof e.engines?.node === 'string')
    .flatMap(([path, e]) =>
      nodes
        .filter((v) => !semver.satisfies(v, e.engines!.node!))
        .map(
          (v) =>
            `${path.replace(/^.*node_modules\//, '')}@${e.version} needs node ${e.engines!.node}, not ${v}`,
        ),
    );
  assert.deepEqual(refused, [], `engines says node ${pkg.engines.node}`);
});

test('npm reads the project config without warnings (no unknown keys in .npmrc)', () => {
  const r = spawnSync('npm', ['pkg', 'get', 'name'], { encoding: 'utf8' });
  if (r.error) return; // no npm on PATH: nothing to check
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /Unknown project config/);
});
