/** What every server of this folder takes and gives: options, the served run, the handle. */
import type { FastifyInstance } from 'fastify';
import type { AppOptions, ShutdownReport } from './app.js';
import type { SortedModel } from '../models/model.js';
import type { CheckpointMeta, Preprocess } from '../io/checkpoint_codec.js';
import type { BpeTokenizer } from '../tokenizer/bpe.js';
import type { Switch } from './controller.js';
import type { ServedSubModel } from './ladder.js';

export interface ServeOptions extends AppOptions {
  /** With a target the controller adapts the default sub-model; without, it stays fixed. */
  targetP99Ms?: number;
  /** The default sub-model in fixed mode (default: the most accurate). */
  fixedSub?: string;
  windowMs?: number;
  maxBatch?: number;
  /** Most samples queued before requests are refused with 503. */
  maxQueue?: number;
  /**
   * Queue deadline, ms: a request that waited longer for its batch is refused with 503 and
   * Retry-After. Default (and 0): none.
   */
  maxWaitMs?: number;
  /** Controller options beyond the target (hysteresis, windows). */
  controller?: { holdMs?: number; upFraction?: number; p99WindowMs?: number; minSamples?: number };
}

export interface ServedModel {
  model: SortedModel;
  subs: ServedSubModel[];
  preprocess?: Preprocess;
  /** The checkpoint's metadata, when served from a run folder. */
  meta?: CheckpointMeta;
  /** Language models: the run's tokenizer, for text prompts. */
  tokenizer?: BpeTokenizer;
  /** Language models: the window the model was trained on (tokens), when known; longer requests get a warning. */
  trainedContext?: number;
}

export interface Server {
  app: FastifyInstance;
  /** The default sub-model now. */
  active(): string;
  /** Switches the controller made, oldest first. */
  switches: Switch[];
  /** Listens on `host` (default 127.0.0.1: loopback only unless told otherwise); resolves to the URL. */
  listen(port: number, host?: string): Promise<string>;
  /**
   * Stop accepting; finish every accepted request and stream, up to `graceMs` (default the
   * `graceMs` option, else 10 s), then end what is left; release timers. Says what was dropped.
   */
  shutdown(graceMs?: number): Promise<ShutdownReport>;
}
