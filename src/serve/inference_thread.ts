/**
 * The inference thread of a classifier server (see ./inference_worker.ts): loads the run, times
 * every sub-model where its batches will run, then answers batches. Its own engine and kernels;
 * nothing of the model is shared with the event loop's thread but the run's files.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { engineDescription, initEngine } from '../engine/backend.js';
import { loadServedModel } from './load.js';
import { deployedOf, timeSubModel } from './runner.js';
import type { ThreadReply, ThreadRequest, ThreadSetup, SubModelTiming } from './inference_worker.js';

const port = parentPort!;
const setup = workerData as ThreadSetup;

async function start(): Promise<void> {
  await initEngine(setup.backend);
  const served = await loadServedModel(setup.runDir);
  const deployed = deployedOf(served);
  const subs = new Map(served.subs.map((s) => [s.id, s.sub]));
  const timings: SubModelTiming[] = [];
  for (const s of served.subs) {
    try {
      timings.push({ id: s.id, ...timeSubModel(deployed, s.id, s.sub, setup.maxBatch) });
    } catch (e) {
      timings.push({ id: s.id, error: (e as Error).message });
    }
  }
  port.on('message', (m: ThreadRequest) => {
    let reply: ThreadReply;
    const transfer: ArrayBuffer[] = [];
    try {
      const sub = subs.get(m.id);
      if (!sub) throw new Error(`the inference thread has no sub-model '${m.id}'`);
      let probs = deployed.classify(m.data, m.n, m.id, sub);
      // Only a buffer of its own can be handed over without a copy.
      if (probs.byteOffset !== 0 || probs.byteLength !== probs.buffer.byteLength) probs = probs.slice();
      reply = { type: 'done', seq: m.seq, probs };
      transfer.push(probs.buffer as ArrayBuffer);
    } catch (e) {
      reply = { type: 'error', seq: m.seq, message: (e as Error).message };
    }
    port.postMessage(reply, transfer);
  });
  port.postMessage({ type: 'ready', timings, engine: engineDescription() } satisfies ThreadReply);
}

start().catch((e: Error) => port.postMessage({ type: 'failed', message: e.message } satisfies ThreadReply));
