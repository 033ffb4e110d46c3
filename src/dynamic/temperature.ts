/**
 * The softmax temperature of dynamic convolution's kernel attention (Chen et al. 2020, §3.2):
 * a high temperature early on keeps the attention near uniform so every kernel is trained,
 * then it anneals linearly to 1. The trainer reads `temperatureAt(schedule, epoch)` once per
 * epoch (or per step, with a fractional epoch) and passes it to the forward pass in the context.
 */

export interface TemperatureSchedule {
  /** Temperature at epoch 0. Chen et al.: 30. */
  readonly start: number;
  /** Temperature from `epochs` on. Chen et al.: 1. */
  readonly end: number;
  /** Epochs over which it falls linearly from `start` to `end`. Chen et al.: 10. */
  readonly epochs: number;
}

export const DEFAULT_TEMPERATURE: TemperatureSchedule = { start: 30, end: 1, epochs: 10 };

/**
 * Linear annealing: `start` at epoch 0, `end` at and after `schedule.epochs`.
 *
 * ```ts
 * temperatureAt({ start: 30, end: 1, epochs: 10 }, 5); // 15.5
 * ```
 */
export function temperatureAt(schedule: TemperatureSchedule, epoch: number): number {
  const { start, end, epochs } = schedule;
  if (!(start > 0 && end > 0))
    throw new Error(`temperature schedule: start ${start} and end ${end} must be > 0`);
  if (!(epochs >= 0)) throw new Error(`temperature schedule: epochs ${epochs} must be ≥ 0`);
  if (!(epoch >= 0)) throw new Error(`temperatureAt: epoch ${epoch} must be ≥ 0`);
  if (epochs === 0 || epoch >= epochs) return end;
  return start + (end - start) * (epoch / epochs);
}
