/**
 * Forwarding only: the resume checks are run logic and live in src/run/resume_flags.ts. This file
 * keeps `commands/train.ts`'s import working; once that file imports src/run directly, delete it.
 */
export { FIXED_ON_RESUME, resumeChanges } from '../run/resume_flags.js';
