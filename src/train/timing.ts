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

/** Milliseconds of each of `reps` calls of `run`, after `warmUps` untimed calls (one by default). */
export function timesMs(run: () => void, reps: number, warmUps = 1): number[] {
  if (!(Number.isInteger(reps) && reps >= 1))
    throw new Error(`timing: reps ${reps} must be a positive integer`);
  for (let w = 0; w < warmUps; w++) run();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    run();
    times.push(performance.now() - t0);
  }
  return times;
}

/** Median milliseconds of `reps` calls of `run`, after one warm-up call (or `warmUps`). */
export function medianMs(run: () => void, reps: number, warmUps = 1): number {
  return median(timesMs(run, reps, warmUps));
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
