/**
 * The logging calls mtastsdb makes: a subset of pino's API, so a pino logger can be passed as is.
 * Library code logs through an injected logger; the default is silent.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
  child(bindings: Record<string, unknown>): Logger;
  /** Whether lines at `level` are written (pino has it); lets callers skip building debug lines. */
  isLevelEnabled?(level: string): boolean;
}

/** A logger that drops everything. */
export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
  child() {
    return silentLogger;
  },
};
