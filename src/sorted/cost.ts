/** Analytic cost of a (sub-)model: parameters and forward FLOPs per sample (multiply-add = 2 FLOPs). */
export interface Cost {
  params: number;
  flops: number;
}

export const zeroCost = (): Cost => ({ params: 0, flops: 0 });

export function addCost(total: Cost, ...parts: Cost[]): Cost {
  for (const p of parts) {
    total.params += p.params;
    total.flops += p.flops;
  }
  return total;
}
