/**
 * A deployable folder for the browser app: the built page, the run's current checkpoint under
 * model/ (without the optimizer state, which only training needs), its eval.json (the accuracy
 * curve) and samples.json (test images to click). Any static file server can host it.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import { checkpointDir, readCheckpointMeta } from '../io/checkpoint.js';
import { DATASET_NAMES } from '../data/registry.js';
import { exportSamples } from './samples_node.js';

export interface WebFolderOptions {
  /** The built page (index.html and assets/): `npm run web:build` writes web/dist. */
  page: string;
  /** Test images per class in samples.json (default 2). */
  samplesPerClass?: number;
}

export interface WebFolder {
  out: string;
  /** Files written under model/. */
  modelFiles: string[];
  /** Why there is no eval.json or samples.json, when there is none. */
  missing: string[];
}

/** Writes `out` (which must not exist, or be empty) from the run folder `run`; all or nothing. */
export function writeWebFolder(run: string, out: string, options: WebFolderOptions): WebFolder {
  if (!existsSync(join(options.page, 'index.html'))) {
    throw new Error(
      `${options.page} holds no built page (index.html): run 'npm run web:build' in a clone of sortednet, or pass --page DIR`,
    );
  }
  if (existsSync(out) && (!statSync(out).isDirectory() || readdirSync(out).length > 0)) {
    throw new Error(`${out} exists and is not an empty folder; choose another --out (nothing was written)`);
  }
  const meta = readCheckpointMeta(run);
  if (meta.preprocess?.features || meta.preprocess?.tokenizer) {
    const takes = meta.preprocess.features ? 'rows of features' : 'tokens';
    throw new Error(`the web app classifies images; the model of ${run} takes ${takes}`);
  }
  const ckpt = checkpointDir(run);
  // Built beside `out` and renamed into place: an interrupted export leaves no half folder behind.
  const tmp = join(dirname(resolve(out)), `.${basename(out)}.tmp-${process.pid}`);
  rmSync(tmp, { recursive: true, force: true });
  try {
    cpSync(options.page, tmp, { recursive: true });
    const model = join(tmp, 'model');
    mkdirSync(model, { recursive: true });
    const modelFiles: string[] = [];
    for (const f of readdirSync(ckpt)) {
      if (f === 'optimizer.safetensors' || !statSync(join(ckpt, f)).isFile()) continue;
      cpSync(join(ckpt, f), join(model, f));
      modelFiles.push(f);
    }
    const missing: string[] = [];
    const evalFile = [join(ckpt, 'eval.json'), join(run, 'eval.json')].find((p) => existsSync(p));
    if (evalFile) {
      if (!modelFiles.includes('eval.json')) {
        cpSync(evalFile, join(model, 'eval.json'));
        modelFiles.push('eval.json');
      }
    } else
      missing.push(
        `no eval.json: the run is not evaluated ('sortednet eval --run ${run}'), so the page shows no accuracy curve`,
      );
    if (meta.dataset && (DATASET_NAMES as readonly string[]).includes(meta.dataset)) {
      const samples = exportSamples(meta.dataset, options.samplesPerClass ?? 2);
      writeFileSync(join(model, 'samples.json'), JSON.stringify(samples));
      modelFiles.push('samples.json');
    } else {
      missing.push(
        `no samples.json: the run's data (${meta.dataset ?? 'own data'}) is not a built-in dataset; the page offers drawing and image files`,
      );
    }
    if (existsSync(out)) rmSync(out, { recursive: true });
    renameSync(tmp, out);
    return { out, modelFiles, missing };
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
}
