import type { Command } from 'commander';

/** A command file adds its command to the program; its action reports the exit code through `exit`. */
export type RegisterCommand = (program: Command, exit: (code: number) => void) => void;
