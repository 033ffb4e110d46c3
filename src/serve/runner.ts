/**
 * Micro-batches through the deployed model: the jobs' samples joined into one batch, one call of
 * `DeployedModel.classify` (normalise, forward of the chosen sub-model, softmax), the rows split
 * back per job.
 */
import { DeployedModel, sampleSize } from '../deploy/model.js';
import { specOf } from '../models/index.js';
import type { SubModel } from '../sorted/submodel.js';
import { timesMs } from '../train/timing.js';
import type { InputSpec, Samples } from './inputs.js';
import type { ServedModel } from './types.js';

/** Class probabilities per sample of one job. */
export type Probabilities = Float32Array[];

/** The served run as the batches run it (normalisation checked): one per thread that runs batches. */
export function deployedOf(served: ServedModel): DeployedModel {
  const deployed = new DeployedModel(
    served.meta ?? { model: specOf(served.model), grid: {}, preprocess: served.preprocess },
    served.model,
    [],
    'the served run',
  );
  deployed.checkNormalisation();
  return deployed;
}

/** The jobs' samples joined into one fresh buffer (classify normalises it in place; the jobs' own data stays as sent). */
export function joinJobs(
  spec: InputSpec,
  jobs: readonly Samples[],
): { data: Float32Array | Int32Array; n: number } {
  const size = sampleSize(spec);
  const n = jobs.reduce((a, j) => a + j.n, 0);
  const data = spec.kind === 'tokens' ? new Int32Array(n * size) : new Float32Array(n * size);
  let at = 0;
  for (const j of jobs) {
    data.set(j.data, at);
    at += j.data.length;
  }
  return { data, n };
}

/** The rows of a batch's probabilities [n × classes], split back per job. */
export function splitRows(flat: Float32Array, jobs: readonly Samples[]): Probabilities[] {
  const n = jobs.reduce((a, j) => a + j.n, 0);
  const classes = flat.length / Math.max(n, 1);
  let row = 0;
  return jobs.map((j) =>
    Array.from({ length: j.n }, () => {
      const r = flat.slice(row * classes, (row + 1) * classes);
      row++;
      return r;
    }),
  );
}

/** Probabilities of sub-model `id` for every job's samples, split per job. */
export function runJobs(
  deployed: DeployedModel,
  id: string,
  sub: SubModel,
  jobs: readonly Samples[],
): Probabilities[] {
  const { data, n } = joinJobs(deployed.inputSpec, jobs);
  return splitRows(deployed.classify(data, n, id, sub), jobs);
}

/**
 * The fastest of `reps` runs of a batch of n zero samples through `id` (after one warm-up run), ms:
 * the time on an uncontended machine. Start-up may share the cores with other work, and a median
 * of a few runs then puts one sub-model's batch above a dearer one's; the controller scales these
 * figures by what batches take as it serves.
 */
function timeBatch(deployed: DeployedModel, id: string, sub: SubModel, n: number, reps = 5): number {
  const size = sampleSize(deployed.inputSpec);
  const job: Samples = {
    n,
    data: deployed.inputSpec.kind === 'tokens' ? new Int32Array(n * size) : new Float32Array(n * size),
  };
  return Math.min(...timesMs(() => runJobs(deployed, id, sub, [job]), reps));
}

/**
 * Runs `id` once at every batch size from 2 to maxBatch − 1 (1 and maxBatch are timed already): the
 * first batch of a size the process has not run yet is slower (buffers grow, kernels are set up
 * for the shape), and on a server that moves between sub-models those first batches land in the
 * tail of the latency.
 */
function warmBatches(deployed: DeployedModel, id: string, sub: SubModel, maxBatch: number): void {
  const size = sampleSize(deployed.inputSpec);
  for (let n = 2; n < maxBatch; n++) {
    const data = deployed.inputSpec.kind === 'tokens' ? new Int32Array(n * size) : new Float32Array(n * size);
    runJobs(deployed, id, sub, [{ n, data }]);
  }
}

/**
 * A sub-model's batch times for the controller (batch 1 and the full batch, ms), with every batch
 * size in between run once; throws when the sub-model cannot run (no BatchNorm statistics, shapes).
 */
export function timeSubModel(
  deployed: DeployedModel,
  id: string,
  sub: SubModel,
  maxBatch: number,
): { one: number; full: number } {
  const one = timeBatch(deployed, id, sub, 1);
  const full = timeBatch(deployed, id, sub, maxBatch);
  warmBatches(deployed, id, sub, maxBatch);
  return { one, full };
}
