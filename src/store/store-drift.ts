/**
 * Store drift: the database changed under a running store (a table dropped, the SQLite file
 * deleted or replaced). Both stores repair what they can and say what happened through
 * {@link PolicyStore.problem}, which the daemon adds to `/healthz`; this file holds the tunables
 * and the one small piece of state they share.
 */
import type { Clock } from '../clock.js';

/** How long a store reports a repair through `problem()` after it happened, ms (1 hour). */
export const STORE_PROBLEM_REPORT_MS = 3_600_000;
/**
 * Most often a store recreates a missing table at run time, ms. A table that keeps vanishing (an
 * operator's script dropping it in a loop) fails calls in between instead of recreating it for
 * each one.
 */
export const TABLE_REPAIR_INTERVAL_MS = 10_000;
/** Most often a SQLite read compares the file at the path with the one open, ms (writes always do). */
export const FILE_CHECK_INTERVAL_MS = 1000;

/**
 * The last repair a store made, reported for {@link STORE_PROBLEM_REPORT_MS} after it (a monitor
 * polling `/healthz` every few minutes sees it; the log has the error for good).
 */
export class DriftReport {
  private text: string | null = null;
  private at = 0;

  constructor(private readonly clock: Clock) {}

  /** Records what happened now, replacing an earlier report. */
  note(what: string): void {
    this.at = this.clock.now();
    this.text = `${what} at ${new Date(this.at).toISOString()}`;
  }

  /** The report while it is recent, else null. */
  current(): string | null {
    if (this.text === null) return null;
    if (this.clock.now() - this.at >= STORE_PROBLEM_REPORT_MS) this.text = null;
    return this.text;
  }
}

/**
 * Recreated objects in words, in the order of the schema's current definitions:
 * `table policies (empty) and indexes policies_last_use, policies_last_update`.
 */
export function namedObjects(
  objects: readonly { readonly type: 'table' | 'index'; readonly name: string }[],
  names: readonly string[],
): string {
  const of = (type: 'table' | 'index'): string[] =>
    objects.filter((o) => o.type === type && names.includes(o.name)).map((o) => o.name);
  const tables = of('table');
  const indexes = of('index');
  const parts: string[] = [];
  if (tables.length > 0) parts.push(`${tables.length === 1 ? 'table' : 'tables'} ${tables.join(', ')} (empty)`);
  if (indexes.length > 0) parts.push(`${indexes.length === 1 ? 'index' : 'indexes'} ${indexes.join(', ')}`);
  return parts.join(' and ');
}
