import type { Logger } from '../logger.js';

/** Log levels of the CLI, most verbose first; `silent` logs nothing. */
export const LOG_LEVELS = ['debug', 'info', 'warn', 'error', 'silent'] as const;
/** One of {@link LOG_LEVELS}. */
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * A logger that writes one human-readable line per entry to `out` (stderr):
 * `warn: message key=value …`. The CLI's output is for people and scripts reading stdout, so logs
 * stay out of the way in plain text; the daemon uses pino for structured logs instead.
 */
export function createTextLogger(
  out: { write(s: string): unknown },
  level: LogLevel,
  bindings: Record<string, unknown> = {},
): Logger {
  const min = LOG_LEVELS.indexOf(level);
  const emit =
    (lvl: Exclude<LogLevel, 'silent'>) =>
    (obj: object, msg?: string): void => {
      if (LOG_LEVELS.indexOf(lvl) < min) return;
      const fields = { ...bindings, ...obj };
      const parts = Object.entries(fields)
        .filter(([, v]) => v !== undefined)
        .map(([k, v]) => `${k}=${formatValue(v)}`);
      out.write(`${lvl}: ${[msg ?? '', ...parts].filter((p) => p !== '').join(' ')}\n`);
    };
  return {
    debug: emit('debug'),
    info: emit('info'),
    warn: emit('warn'),
    error: emit('error'),
    child: (more) => createTextLogger(out, level, { ...bindings, ...more }),
  };
}

function formatValue(v: unknown): string {
  if (v instanceof Error) {
    const code = (v as { code?: unknown }).code;
    return JSON.stringify(typeof code === 'string' ? `${code}: ${v.message}` : v.message);
  }
  if (v instanceof Date) return v.toISOString();
  if (typeof v === 'string') return /^[\w.:@/+-]+$/.test(v) ? v : JSON.stringify(v);
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}
