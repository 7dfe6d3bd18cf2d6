import { CommanderError } from 'commander';
import { isMtaStsError, type ErrorCode } from '../errors.js';

/**
 * Exit statuses of the `mtastsdb` command, one per class of outcome. Scripts branch on these, so a
 * status never changes meaning once released. The table below maps every error code to one of them;
 * it is typed as a total map so that adding a code to the union without a status fails to compile.
 */
export const EXIT = {
  /** Success. */
  OK: 0,
  /** A bug or an unexpected failure (anything that is not an MtaStsError). */
  INTERNAL: 1,
  /** Bad command line, configuration or input (including an invalid domain or import line). */
  USAGE: 2,
  /** The domain publishes no MTA-STS policy, or the cache has no record for it. */
  NOT_FOUND: 3,
  /** A temporary failure (DNS, policy fetch, timeout): try again later. */
  TEMPORARY: 4,
  /** The domain publishes invalid MTA-STS data (record or policy syntax, several records). */
  INVALID: 5,
  /** The policy store failed (SQLite/PostgreSQL error, busy, corrupt, read-only). */
  STORE: 6,
  /** The cache holds a backoff record: a recent fetch failed and no policy applies. */
  BACKOFF: 7,
  /** A command that reads the cache found no store where it looked (it creates none). */
  STORE_MISSING: 8,
  /** The daemon could not listen on its address (in use, not on this host, no such directory). */
  LISTEN: 9,
  /** Interrupted by SIGINT/SIGTERM (128 + 2, as shells report it). */
  INTERRUPTED: 130,
} as const;

/** One of the exit statuses above. */
export type ExitStatus = (typeof EXIT)[keyof typeof EXIT];

/** The exit status of every error code. */
export const EXIT_BY_CODE: Readonly<Record<ErrorCode, ExitStatus>> = {
  ERR_MTASTS_DOMAIN: EXIT.USAGE,
  ERR_MTASTS_USAGE: EXIT.USAGE,
  ERR_MTASTS_CONFIG: EXIT.USAGE,
  ERR_MTASTS_RECORD_SYNTAX: EXIT.INVALID,
  ERR_MTASTS_POLICY_SYNTAX: EXIT.INVALID,
  ERR_MTASTS_MULTIPLE_RECORDS: EXIT.INVALID,
  ERR_MTASTS_NO_RECORD: EXIT.NOT_FOUND,
  ERR_MTASTS_NO_POLICY: EXIT.NOT_FOUND,
  ERR_MTASTS_DNS: EXIT.TEMPORARY,
  ERR_DANE_DNS: EXIT.TEMPORARY,
  ERR_MTASTS_POLICY_FETCH: EXIT.TEMPORARY,
  ERR_MTASTS_ABORTED: EXIT.TEMPORARY,
  ERR_MTASTSDB_DISCOVERY_LIMIT: EXIT.TEMPORARY,
  ERR_MTASTSDB_NOT_FOUND: EXIT.NOT_FOUND,
  ERR_MTASTSDB_BACKOFF: EXIT.BACKOFF,
  ERR_MTASTSDB_STORE: EXIT.STORE,
  ERR_MTASTSDB_STORE_BUSY: EXIT.STORE,
  ERR_MTASTSDB_STORE_CORRUPT: EXIT.STORE,
  ERR_MTASTSDB_STORE_READONLY: EXIT.STORE,
  ERR_MTASTSDB_CLOSED: EXIT.STORE,
  ERR_MTASTSDB_STORE_MISSING: EXIT.STORE_MISSING,
  ERR_MTASTS_LISTEN: EXIT.LISTEN,
  // Socketmap framing errors reach the CLI only as bad input.
  ERR_MTASTS_NETSTRING: EXIT.USAGE,
  ERR_MTASTS_SOCKETMAP_REQUEST: EXIT.USAGE,
  ERR_MTASTS_INTERNAL: EXIT.INTERNAL,
};

/** The exit status for an error code. */
export function exitStatusOf(code: ErrorCode): ExitStatus {
  return EXIT_BY_CODE[code];
}

function oneLine(s: string): string {
  return s.replace(/\s*\n\s*/g, ' ');
}

/**
 * The exit status and the stderr line (if any) for an error thrown while running a command:
 * `CODE: message` for an MtaStsError, `ERR_MTASTS_USAGE: …` for a command-line error,
 * `ERR_MTASTS_INTERNAL: …` for anything else. `interrupted` is true after SIGINT/SIGTERM.
 */
export function failureOf(err: unknown, interrupted: boolean): { status: ExitStatus; line?: string } {
  if (err instanceof CommanderError) {
    // --help and --version end with exit code 0; help shown for a missing subcommand with 1.
    if (err.exitCode === 0) return { status: EXIT.OK };
    if (err.code === 'commander.help' || err.code === 'commander.helpDisplayed') return { status: EXIT.USAGE };
    return { status: EXIT.USAGE, line: `ERR_MTASTS_USAGE: ${oneLine(err.message.replace(/^error: /, ''))}` };
  }
  if (interrupted) return { status: EXIT.INTERRUPTED, line: 'ERR_MTASTS_ABORTED: interrupted' };
  if (isMtaStsError(err)) return { status: exitStatusOf(err.code), line: `${err.code}: ${oneLine(err.message)}` };
  const message = err instanceof Error ? err.message : String(err);
  return { status: EXIT.INTERNAL, line: `ERR_MTASTS_INTERNAL: ${oneLine(message)}` };
}
