/**
 * Field types the config schemas share. Their messages are predicates ("must be …") so that an
 * error reads `steps must be a positive integer, got 0` or `train.steps: must be …` (describe.ts).
 */
import { z } from 'zod';

export const posInt = z.number().int('must be a positive integer').positive('must be a positive integer');
export const posInts = z.array(posInt);
/** An integer ≥ 0 (a count that may be zero). */
export const count = z.number().int('must be an integer ≥ 0').min(0, 'must be an integer ≥ 0');
export const positive = z.number().positive('must be > 0');
/** A probability-like fraction in [0, 1). */
export const unitInterval = z.number().min(0, 'must be in [0, 1)').lt(1, 'must be in [0, 1)');

/**
 * A seed: any integer a double holds exactly (src/data/random.ts hashes it to 32 bits); a larger one
 * would silently be a different seed. The message quotes the value itself (`showsValue`).
 */
export const seed = z
  .number()
  .int('must be an integer')
  // (a fraction is told it must be an integer, above: the refinement runs on regardless)
  .refine(
    (v) => !Number.isInteger(v) || Number.isSafeInteger(v),
    (v) => ({
      message: `${v} cannot be represented exactly; give an integer of at most ±${Number.MAX_SAFE_INTEGER}`,
      params: { showsValue: true },
    }),
  );

/** `z.enum` of a readonly list of names (the lists the modules export). */
export const oneOf = <T extends string>(names: readonly T[]) => z.enum(names as [T, ...T[]]);
