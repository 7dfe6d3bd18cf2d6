/**
 * The daemon's logger: pino to stdout, as JSON lines or as plain `time level msg key=value` text,
 * with a level that SIGHUP can change at run time (children included).
 */
import { pino } from 'pino';
import { isMtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import type { LogLevelName } from '../config/schema.js';

const RANK: Readonly<Record<LogLevelName, number>> = { debug: 20, info: 30, warn: 40, error: 50, silent: 100 };
const NAME_OF: Readonly<Record<number, string>> = {
  10: 'trace',
  20: 'debug',
  30: 'info',
  40: 'warn',
  50: 'error',
  60: 'fatal',
};

/** A logger whose level can be changed, with a way to flush it on exit. */
export interface DaemonLogger {
  readonly logger: Logger;
  setLevel(level: LogLevelName): void;
  flush(): void;
}

/** A destination stream: anything with `write(string)`. Default stdout. */
export interface LogOutput {
  write(s: string): unknown;
}

function textValue(v: unknown): string {
  if (typeof v === 'string') return /^[\w.:@/+-]+$/.test(v) ? v : JSON.stringify(v);
  return JSON.stringify(v) ?? String(v);
}

/** Turns one pino JSON line into `2026-01-01T00:00:00.000Z info message key=value …`. */
export function formatTextLine(json: string): string {
  let entry: Record<string, unknown>;
  try {
    entry = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return json;
  }
  const { time, level, msg, pid: _pid, hostname: _h, ...rest } = entry;
  const when = typeof time === 'number' ? new Date(time).toISOString() : '';
  const parts = Object.entries(rest).map(([k, v]) => `${k}=${textValue(v)}`);
  return `${[when, NAME_OF[level as number] ?? String(level), msg ?? '', ...parts].filter((p) => p !== '').join(' ')}\n`;
}

/**
 * `err` in a log line. A coded error is an expected outcome (no policy, back-off, a failed fetch,
 * a refusing store): its code, message and the message of its cause, one line, no stack. Anything
 * else is a bug and keeps pino's full form with the stack.
 */
export function serializeError(err: unknown): unknown {
  if (!isMtaStsError(err)) return pino.stdSerializers.err(err as Error);
  const cause = err.cause;
  const causeCode = cause instanceof Error ? (cause as { code?: unknown }).code : undefined;
  return {
    code: err.code,
    message: err.message,
    ...(cause instanceof Error
      ? { cause: typeof causeCode === 'string' ? `${causeCode}: ${cause.message}` : cause.message }
      : {}),
  };
}

/** Creates the daemon logger (`format` json or text, initial `level`). */
export function createDaemonLogger(options: {
  readonly format: 'json' | 'text';
  readonly level: LogLevelName;
  readonly output?: LogOutput;
}): DaemonLogger {
  const out: LogOutput = options.output ?? process.stdout;
  const stream =
    options.format === 'text'
      ? { write: (line: string) => out.write(formatTextLine(line)) }
      : { write: (line: string) => out.write(line) };
  // pino logs everything it is given; the level check is ours so it can change for children too.
  const base = pino(
    {
      level: 'debug',
      base: null,
      timestamp: pino.stdTimeFunctions.epochTime,
      serializers: { err: serializeError },
    },
    stream,
  );
  const state = { min: RANK[options.level] };
  const wrap = (p: pino.Logger): Logger => ({
    debug: (obj, msg) => {
      if (state.min <= 20) p.debug(obj, msg);
    },
    info: (obj, msg) => {
      if (state.min <= 30) p.info(obj, msg);
    },
    warn: (obj, msg) => {
      if (state.min <= 40) p.warn(obj, msg);
    },
    error: (obj, msg) => {
      if (state.min <= 50) p.error(obj, msg);
    },
    child: (bindings) => wrap(p.child(bindings)),
    isLevelEnabled: (level) => state.min <= (RANK[level as LogLevelName] ?? 100),
  });
  return {
    logger: wrap(base),
    setLevel(level) {
      state.min = RANK[level];
    },
    flush() {
      base.flush();
    },
  };
}
