import { InvalidArgumentError } from 'commander';
import { isMtaStsError } from '../errors.js';
import { parseDomain, type Domain } from '../rfc8461/domain.js';

/**
 * Parses a domain given on the command line. An invalid name throws `ERR_MTASTS_DOMAIN` from the
 * library (exit status 2, the library's message on stderr), before any store or network is touched.
 */
export function domainArgument(value: string): Domain {
  return parseDomain(value);
}

/** commander argument parser: a whole number ≥ `min`. */
export function integer(min: number): (value: string) => number {
  return (value) => {
    if (!/^[0-9]+$/.test(value) || Number(value) < min || !Number.isSafeInteger(Number(value))) {
      throw new InvalidArgumentError(`expected a whole number ≥ ${min}`);
    }
    return Number(value);
  };
}

/** The message of an error for a one-line report (the code is printed separately). */
export function messageOf(err: unknown): string {
  if (isMtaStsError(err)) return err.message;
  if (err instanceof Error) return err.message;
  return String(err);
}
