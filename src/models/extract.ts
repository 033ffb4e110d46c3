/**
 * Extraction: a standalone model equal to one sub-model of a shared network. Every parameter
 * and buffer (PAD masks) of the small model is a prefix box of the shared one, so extraction is
 * "build the shrunk config, load the shared state dict sliced" — and the BatchNorm statistics of
 * that sub-model become the small model's 'full' ones.
 */
import type { SortedModel } from './model.js';
import { FULL, subModelId, type SubModel } from '../sorted/submodel.js';

export function extractSubModel<C>(
  shared: SortedModel<C>,
  sub: SubModel,
  build: (config: C) => SortedModel<C>,
): SortedModel<C> {
  shared.validate(sub);
  const small = build(shared.shrink(sub));
  // Not strict: the shared model has more (deeper blocks, other sub-models' statistics). An
  // uncalibrated sub-model brings no statistics: the caller recalibrates the extracted model.
  const { missing } = small.loadStateDict(shared.stateDict(), {
    slice: true,
    strict: false,
    subModel: { from: subModelId(sub), to: subModelId(FULL) },
    where: 'extract',
  });
  if (missing.length) {
    small.dispose();
    throw new Error(
      `extract: ${missing.map((n) => `'${n}'`).join(', ')} of the sub-model ${missing.length > 1 ? 'have' : 'has'} no counterpart in the shared model`,
    );
  }
  return small;
}
