/**
 * The browser app: `npm run web` serves it with the model of a run folder at /model/
 * (SORTEDNET_RUN, default runs/demo); `npm run web:build` writes a minified static site to
 * web/dist, and `sortednet web-export --run DIR --out SITE` puts it together with the run's model,
 * eval.json and samples.json into one folder for any static host.
 */
import { defineConfig, type Plugin } from 'vite';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';

// Cross-origin isolation lets the wasm backend use threads (SharedArrayBuffer).
const ISOLATION = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/** Dev server: /model/* from the run folder, /model/samples.json made from its dataset's test split. */
function serveRun(): Plugin {
  const run = resolve(process.env.SORTEDNET_RUN ?? 'runs/demo');
  return {
    name: 'sortednet-serve-run',
    configureServer(server) {
      server.middlewares.use('/model/', async (req, res) => {
        const path = decodeURIComponent((req.url ?? '/').split('?')[0]).replace(/^\/+/, '');
        if (path === 'samples.json' && !existsSync(join(run, path))) {
          const { readCheckpointMeta } = await import('../dist/src/io/checkpoint.js');
          const { exportSamples } = await import('../dist/src/deploy/samples_node.js');
          const meta = readCheckpointMeta(run);
          res.setHeader('Content-Type', 'application/json');
          return res.end(JSON.stringify(meta.dataset ? exportSamples(meta.dataset) : { samples: [] }));
        }
        const file = resolve(run, path);
        if (!file.startsWith(run) || !existsSync(file) || !statSync(file).isFile()) {
          res.statusCode = 404; // not the app's page: the loader probes for files that may be absent
          return res.end();
        }
        res.setHeader(
          'Content-Type',
          file.endsWith('.json') ? 'application/json' : 'application/octet-stream',
        );
        res.end(readFileSync(file));
      });
    },
  };
}

/**
 * tfjs-backend-wasm's threaded build hands the source text of its module factory to its workers;
 * minified, the factory's one outer variable (_scriptDir) is renamed and the workers fail with
 * "e is not defined" (tfjs issue 4253). As a global property it survives minification.
 */
function wasmThreadsMinifySafe(): Plugin {
  return {
    name: 'sortednet-wasm-threads-minify-safe',
    transform(code, id) {
      if (!/tfjs-backend-wasm-threaded-simd\.js$/.test(id)) return null;
      return {
        code: code
          .replace(/\b_scriptDir\b/g, 'globalThis.__tfjsWasmScriptDir')
          .replace(/var globalThis\./g, 'globalThis.'),
        map: null,
      };
    },
  };
}

export default defineConfig({
  root: 'web',
  base: './',
  plugins: [serveRun(), wasmThreadsMinifySafe()],
  server: { headers: ISOLATION },
  preview: { headers: ISOLATION },
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    target: 'es2022',
    minify: true,
    rollupOptions: {
      // Node-only pieces reached only behind `typeof process` checks: never loaded in a page.
      external: (id) => id === 'webgpu' || /[\\/]engine[\\/]native[\\/]/.test(id),
    },
  },
});
