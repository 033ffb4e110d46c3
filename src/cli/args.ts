/** Parsers for option values: each names the option and the value it could not read. */
import { InvalidArgumentError } from 'commander';

export function intArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isInteger(n))
    throw new InvalidArgumentError(`'${value}' is not an integer`);
  return n;
}

export function numArg(value: string): number {
  const n = Number(value);
  if (value.trim() === '' || !Number.isFinite(n))
    throw new InvalidArgumentError(`'${value}' is not a number`);
  return n;
}

/** A required option's value, with the command named in the error. */
export function need<T>(value: T | undefined, flag: string, command: string): T {
  if (value === undefined || value === '')
    throw new Error(`${command} needs ${flag}; see 'sortednet ${command} --help'`);
  return value;
}
