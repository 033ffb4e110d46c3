/**
 * Elastic depth for staged networks. Blocks are added round-robin across stages
 * (s0b0, s1b0, s2b0, s0b1, …), so a depth budget d runs the first d blocks of that order: every
 * stage keeps its first (downsampling) block, and depth sub-models stay nested.
 */
export function blocksPerStage(stageSizes: readonly number[], depth: number): number[] {
  const used = stageSizes.map(() => 0);
  let left = depth;
  for (let round = 0; left > 0; round++) {
    for (let s = 0; s < stageSizes.length && left > 0; s++) {
      if (round < stageSizes[s]) {
        used[s]++;
        left--;
      }
    }
  }
  return used;
}
