/** Language-model evaluation of every sub-model: per-token loss, perplexity and next-token accuracy. */
import * as tf from '@tensorflow/tfjs-core';
import type { SortedModel } from '../models/model.js';
import type { GridEntry } from '../sorted/grid.js';
import { tokenBatches, type TokenDataset } from '../data/tokens.js';
import { subModelContext } from '../nn/module.js';

export interface LmEvalRow {
  id: string;
  params: number;
  flops: number;
  loss: number;
  perplexity: number;
  accuracy: number;
}

export function evaluateLm(
  model: SortedModel,
  entries: readonly GridEntry[],
  test: TokenDataset,
  maxWindows = 64,
): LmEvalRow[] {
  return entries.map((e) => {
    let lossSum = 0;
    let correct = 0;
    let count = 0;
    for (const b of tokenBatches(test, { batchSize: 16 })) {
      if (count >= maxWindows * test.seqLen) break;
      const [loss, hits] = tf.tidy(() => {
        const logits = tf.reshape(
          model.forward(
            tf.tensor2d(b.x, [b.size, test.seqLen], 'int32'),
            e.sub,
            subModelContext(e.sub, 'eval'),
          ),
          [-1, test.vocab],
        );
        const y = tf.tensor1d(b.y, 'int32');
        const l = tf.losses.softmaxCrossEntropy(
          tf.oneHot(y, test.vocab),
          logits,
          undefined,
          0,
          tf.Reduction.SUM,
        );
        const h = tf.sum(tf.cast(tf.equal(tf.argMax(logits, -1), y), 'float32'));
        return [l.dataSync()[0], h.dataSync()[0]];
      });
      lossSum += loss;
      correct += hits;
      count += b.y.length;
    }
    const loss = lossSum / count;
    return {
      id: e.id,
      params: e.cost.params,
      flops: e.cost.flops,
      loss,
      perplexity: Math.exp(loss),
      accuracy: correct / count,
    };
  });
}
