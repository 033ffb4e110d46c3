/**
 * The one latency timer: the median of `reps` timed runs after one untimed warm-up (first calls
 * compile kernels and allocate). Evaluation, deployment and the server all report this figure.
 */

/** Median of `times` (sorted copy; the upper middle for an even count). */
export function median(times: readonly number[]): number {
  if (times.length === 0) throw new Error('median: no times');
  const s = [...times].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

/** Median milliseconds of `reps` calls of `run`, after one warm-up call. */
export function medianMs(run: () => void, reps: number): number {
  if (!(Number.isInteger(reps) && reps >= 1))
    throw new Error(`timing: reps ${reps} must be a positive integer`);
  run();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  return median(times);
}

/** `medianMs` for work that ends asynchronously (a GPU read-back in the browser). */
export async function medianMsAsync(run: () => Promise<void>, reps: number): Promise<number> {
  if (!(Number.isInteger(reps) && reps >= 1))
    throw new Error(`timing: reps ${reps} must be a positive integer`);
  await run();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await run();
    times.push(performance.now() - t0);
  }
  return median(times);
}
