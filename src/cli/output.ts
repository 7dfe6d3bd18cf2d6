import type { Clock } from '../clock.js';
import type { CliOutput } from './context.js';

/**
 * Writes `text`, waiting for `drain` when the stream's buffer is full (large exports to a slow
 * pipe). A stream that closes or fails instead (the reader went away: EPIPE) ends the wait too;
 * main.ts learns of that from the stream's `error` event.
 */
export async function write(out: CliOutput, text: string): Promise<void> {
  if (out.write(text)) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      for (const e of ['drain', 'close', 'error'] as const) out.removeListener(e, done);
      resolve();
    };
    for (const e of ['drain', 'close', 'error'] as const) out.once(e, done);
  });
}

/** Writes `value` as one JSON line. */
export function writeJsonLine(out: CliOutput, value: unknown): Promise<void> {
  return write(out, `${JSON.stringify(value)}\n`);
}

/** A date for people: `2026-01-31 23:59:59Z` (UTC, no milliseconds). */
export function formatDate(d: Date): string {
  return d
    .toISOString()
    .replace('T', ' ')
    .replace(/\.\d+Z$/, 'Z');
}

/** Duration in seconds for people: `1d 2h`, `5m`, `300s`. */
export function formatSeconds(seconds: number): string {
  const units: [number, string][] = [
    [86400, 'd'],
    [3600, 'h'],
    [60, 'm'],
  ];
  for (const [size, unit] of units) {
    if (seconds >= size && seconds % size === 0) return `${seconds / size}${unit}`;
  }
  return `${seconds}s`;
}

/** Left-aligned `label: value` lines with the values in one column. */
export function formatFields(fields: ReadonlyArray<readonly [string, string | readonly string[]]>): string {
  const width = Math.max(...fields.map(([k]) => k.length)) + 2;
  const lines: string[] = [];
  for (const [key, value] of fields) {
    const values = typeof value === 'string' ? [value] : value.length === 0 ? ['-'] : value;
    values.forEach((v, i) => lines.push(`${i === 0 ? `${key}:`.padEnd(width) : ' '.repeat(width)}${v}`));
  }
  return `${lines.join('\n')}\n`;
}

/** Indents every line of a policy text for display (CRLF shown as line breaks). */
export function indentText(text: string, prefix = '  '): string {
  const lines = text.replace(/\r\n/g, '\n').replace(/\n$/, '').split('\n');
  return `${lines.map((l) => `${prefix}${l}`).join('\n')}\n`;
}

/**
 * A one-line progress indicator on a terminal's stderr, redrawn with `\r` at most every 100 ms.
 * Does nothing when stderr is not a terminal, so logs and pipes stay clean.
 */
export class Progress {
  private readonly out: CliOutput;
  private readonly clock: Clock;
  private readonly enabled: boolean;
  private last = 0;
  private width = 0;

  constructor(out: CliOutput, clock: Clock, enabled = out.isTTY === true) {
    this.out = out;
    this.clock = clock;
    this.enabled = enabled;
  }

  /** Shows `text` now if `force`, otherwise only when 100 ms passed since the last redraw. */
  update(text: string, force = false): void {
    if (!this.enabled) return;
    const now = this.clock.now();
    if (!force && now - this.last < 100) return;
    this.last = now;
    this.out.write(`\r${text.padEnd(this.width)}`);
    this.width = text.length;
  }

  /** Erases the progress line. */
  clear(): void {
    if (!this.enabled || this.width === 0) return;
    this.out.write(`\r${' '.repeat(this.width)}\r`);
    this.width = 0;
  }
}
