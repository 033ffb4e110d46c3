#!/usr/bin/env node
/**
 * `npm install` hook: builds the optional OpenBLAS addon (native/binding.gyp) and, beside it, the optional
 * oneDNN addon (native/dnnl/binding.gyp) with node-gyp. Each is built on its own, so OpenBLAS works without
 * oneDNN. It never fails the install: without a compiler, node-gyp or a library the project runs on what it
 * has (down to the portable wasm path), and this prints one line per addon saying why and how to enable it.
 */
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const nativeDir = path.dirname(fileURLToPath(import.meta.url));

/** npm exports its bundled node-gyp to lifecycle scripts; outside npm, look where npm keeps it. */
function findNodeGyp() {
  const candidates = [
    process.env.npm_config_node_gyp,
    path.join(
      path.dirname(process.execPath),
      '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js',
    ),
  ];
  try {
    candidates.push(createRequire(import.meta.url).resolve('node-gyp/bin/node-gyp.js'));
  } catch {
    // not a dependency of this project; fine
  }
  return candidates.find((p) => p && fs.existsSync(p)) ?? null;
}

/** The first line of node-gyp's output that says what went wrong, in the reader's terms. */
function reasonFrom(output) {
  if (/cblas\.h: No such file/.test(output)) return 'OpenBLAS headers (cblas.h) not found';
  if (/cannot find -lopenblas/.test(output)) return 'OpenBLAS library (libopenblas.so) not found';
  if (/dnnl\.h: No such file/.test(output)) return 'oneDNN headers (dnnl.h) not found';
  if (/cannot find -ldnnl/.test(output)) return 'oneDNN library (libdnnl.so) not found';
  if (/not found: (make|cc|gcc|g\+\+)|No such file or directory.*\b(cc|gcc|make)\b/.test(output))
    return 'no C compiler or make';
  if (/Could not find any Python/.test(output)) return 'node-gyp needs Python 3, which was not found';
  const line = output.split('\n').find((l) => /error/i.test(l) && !/^gyp (info|ERR! )/.test(l));
  return line ? `node-gyp failed: ${line.trim().slice(0, 160)}` : 'node-gyp failed';
}

/** Builds the addon in `dir` (a folder with a binding.gyp); null on success, else why not. */
function build(dir, name, probe) {
  const nodeGyp = findNodeGyp();
  if (!nodeGyp) return 'node-gyp not found';
  const args = [nodeGyp, 'rebuild', '-C', dir];
  // Offline machines: build against the headers installed with Node (e.g. /usr/include/node) rather than
  // letting node-gyp download them. npm passes its `nodedir` setting as npm_config_nodedir.
  const prefix = path.resolve(path.dirname(process.execPath), '..');
  if (!process.env.npm_config_nodedir && fs.existsSync(path.join(prefix, 'include/node/node_api.h')))
    args.push(`--nodedir=${prefix}`);
  const run = spawnSync(process.execPath, args, { encoding: 'utf8', timeout: 5 * 60_000 });
  if (run.error) return `could not run node-gyp (${run.error.message})`;
  if (run.status !== 0) return reasonFrom(`${run.stdout}\n${run.stderr}`);
  const addon = path.join(dir, `build/Release/${name}.node`);
  // Loading it catches a library that links but is missing at run time.
  const load = spawnSync(process.execPath, ['-e', `require(${JSON.stringify(addon)}).${probe}`], {
    encoding: 'utf8',
  });
  if (load.status !== 0)
    return `built but does not load: ${(load.stderr.split('\n').find((l) => /Error/.test(l)) ?? '').trim()}`;
  return null;
}

function attempt(dir, name, probe) {
  try {
    return build(dir, name, probe);
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

const blas = attempt(nativeDir, 'sortednet_blas', 'config()');
if (blas)
  console.log(
    `sortednet: native BLAS kernels not built (${blas}); using the portable wasm path. To enable: apt-get install libopenblas-dev and npm rebuild`,
  );
else
  console.log(
    'sortednet: native BLAS kernels built (OpenBLAS); the wasm backend uses them for large matmuls and convolutions',
  );
const dnnl = attempt(path.join(nativeDir, 'dnnl'), 'sortednet_dnnl', 'config()');
if (dnnl)
  console.log(
    `sortednet: oneDNN convolutions not built (${dnnl}); convolutions stay on ${blas ? 'the portable wasm path' : 'OpenBLAS'}. To enable: apt-get install libdnnl-dev and npm rebuild`,
  );
else console.log('sortednet: oneDNN convolutions built; the wasm backend runs convolutions on them');
process.exit(0);
