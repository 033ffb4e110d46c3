/** A trained LM run as a library user needs it: the model and its tokenizer, from the checkpoint. */
import { engineInitialised } from '../engine/backend.js';
import { loadCheckpoint, type CheckpointMeta } from '../io/checkpoint.js';
import { Transformer } from '../models/transformer.js';
import { BpeTokenizer } from '../tokenizer/bpe.js';

export const TOKENIZER_FILE = 'tokenizer.json';

export interface LoadedLm {
  model: Transformer;
  tokenizer: BpeTokenizer;
  meta: CheckpointMeta;
  /** The window the model was trained on (tokens), when the checkpoint records it. */
  trainedContext?: number;
}

/** The LM of a run folder (latest checkpoint) and the tokenizer saved with it. */
export async function loadLm(runDir: string): Promise<LoadedLm> {
  if (!engineInitialised())
    throw new Error(
      `loadLm(${JSON.stringify(runDir)}): the tensor engine is not initialised; call \`await initEngine()\` (exported by sortednet) once before loading a model`,
    );
  const { model, meta, extraFiles } = await loadCheckpoint(runDir);
  if (!(model instanceof Transformer) || model.config.task !== 'lm')
    throw new Error(`${runDir}: the checkpoint is not a language model (family ${meta.model.family})`);
  const name = meta.preprocess?.tokenizer ?? TOKENIZER_FILE;
  const bytes = extraFiles.get(name);
  if (!bytes) throw new Error(`${runDir}: the checkpoint has no ${name}; it was not trained as an LM run`);
  const tokenizer = BpeTokenizer.fromHuggingFaceJson(new TextDecoder().decode(bytes), `${runDir}/${name}`);
  if (tokenizer.vocabSize !== model.config.vocab)
    throw new Error(
      `${runDir}: tokenizer has ${tokenizer.vocabSize} tokens, the model ${model.config.vocab}`,
    );
  const trainedContext = meta.preprocess?.trainedContext;
  return { model, tokenizer, meta, ...(trainedContext !== undefined ? { trainedContext } : {}) };
}
