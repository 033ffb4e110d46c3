/**
 * The softmax temperature of dynamic convolution's kernel attention (Chen et al. 2020, §3.2):
 * a high temperature early on keeps the attention near uniform so every kernel is trained,
 * then it anneals linearly to 1. The trainer reads `temperatureAt(schedule, step)` each step and
 * passes it to the forward pass in the context (ForwardContext.temperature).
 */
import { z } from 'zod';
import { count, positive } from '../schema/fields.js';

export const TemperatureScheduleSchema = z
  .object({
    /** Temperature at step 0. Chen et al.: 30. */
    start: positive,
    /** Temperature from `steps` on. Chen et al.: 1. */
    end: positive,
    /** Optimizer steps over which it falls linearly from `start` to `end` (Chen et al.: 10 epochs). */
    steps: count,
  })
  .strict();
export type TemperatureSchedule = Readonly<z.infer<typeof TemperatureScheduleSchema>>;

export function checkTemperatureSchedule(s: TemperatureSchedule, where = 'temperature'): TemperatureSchedule {
  if (!(s.start > 0 && s.end > 0)) throw new Error(`${where}: start ${s.start} and end ${s.end} must be > 0`);
  if (!(s.steps >= 0)) throw new Error(`${where}: steps ${s.steps} must be ≥ 0`);
  return s;
}

/**
 * Linear annealing: `start` at step 0, `end` at and after `schedule.steps`.
 *
 * ```ts
 * temperatureAt({ start: 30, end: 1, steps: 1000 }, 500); // 15.5
 * ```
 */
export function temperatureAt(schedule: TemperatureSchedule, step: number): number {
  const { start, end, steps } = checkTemperatureSchedule(schedule);
  if (!(step >= 0)) throw new Error(`temperatureAt: step ${step} must be ≥ 0`);
  if (steps === 0 || step >= steps) return end;
  return start + (end - start) * (step / steps);
}
