import { readFile } from 'node:fs/promises';
import { parse } from 'yaml';
import { MtaStsError } from '../errors.js';
import { LOG_LEVEL_NAMES, validateConfig } from './schema.js';
import type { Config, LogLevelName } from './schema.js';

/** Settings given on the command line; they win over the environment and the file. */
export interface ConfigOverrides {
  readonly host?: string;
  readonly port?: number;
  /** A Unix socket path (then host/port are not used). */
  readonly path?: string;
  readonly dataDir?: string;
  readonly store?: string;
  readonly logLevel?: LogLevelName;
  readonly logFormat?: 'json' | 'text';
}

/** Options of {@link loadConfig}. */
export interface LoadConfigOptions {
  /** The YAML file (`-c`). Default: `MTASTSDB_CONFIG` if set, else built-in defaults only. */
  readonly file?: string;
  readonly overrides?: ConfigOverrides;
  /**
   * The environment: `MTASTSDB_CONFIG`, `MTASTSDB_HOST`, `MTASTSDB_PORT`, `MTASTSDB_DATA_DIR`,
   * `MTASTSDB_STORE`, `MTASTSDB_LOG_LEVEL`, `MTASTSDB_LOG_FORMAT`. Default `process.env`.
   */
  readonly env?: Readonly<Record<string, string | undefined>>;
}

function fail(key: string, message: string, cause?: unknown): never {
  throw new MtaStsError('ERR_MTASTS_CONFIG', `${key}: ${message}`, {
    details: { key },
    ...(cause !== undefined ? { cause } : {}),
  });
}

/**
 * Parses YAML text the way postfix-mta-sts-resolver (PyYAML) does: YAML 1.1, so `mode: 0666` is
 * octal and `yes`/`no` are booleans. Duplicate keys are an error.
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG`
 */
export function parseConfigText(text: string, source = 'configuration'): Config {
  let doc: unknown;
  try {
    doc = parse(text, { version: '1.1', uniqueKeys: true, prettyErrors: true });
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_CONFIG', `${source}: not valid YAML: ${(err as Error).message}`, {
      cause: err,
      details: { key: '' },
    });
  }
  try {
    return validateConfig(doc);
  } catch (err) {
    if (err instanceof MtaStsError && source !== 'configuration') {
      throw new MtaStsError(err.code, `${source}: ${err.message}`, { cause: err.cause, details: err.details });
    }
    throw err;
  }
}

function envValue(env: LoadConfigOptions['env'], name: string): string | undefined {
  const v = env?.[name];
  return v === undefined || v === '' ? undefined : v;
}

function envPort(value: string, key: string): number {
  if (!/^[0-9]{1,5}$/.test(value) || Number(value) > 65535) fail(key, `expected a port 0-65535, got ${value}`);
  return Number(value);
}

/**
 * Loads the daemon configuration: the YAML file (if any), then the environment, then `overrides`
 * (flags), each winning over the one before, validated and frozen.
 *
 * @throws MtaStsError `ERR_MTASTS_CONFIG` with `details.key` naming the offending key (or the
 *   environment variable), also when the file cannot be read.
 */
export async function loadConfig(options: LoadConfigOptions = {}): Promise<Config> {
  const env = options.env ?? process.env;
  const file = options.file ?? envValue(env, 'MTASTSDB_CONFIG');
  let base: Config;
  if (file === undefined) {
    base = validateConfig(null);
  } else {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      fail('', `cannot read configuration file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, err);
    }
    base = parseConfigText(text, file);
  }

  const o = options.overrides ?? {};
  const envHost = envValue(env, 'MTASTSDB_HOST');
  const envPortText = envValue(env, 'MTASTSDB_PORT');
  const host = o.host ?? envHost;
  const port = o.port ?? (envPortText === undefined ? undefined : envPort(envPortText, 'MTASTSDB_PORT'));
  if (o.port !== undefined && (!Number.isInteger(o.port) || o.port < 0 || o.port > 65535)) {
    fail('port', `expected a port 0-65535, got ${o.port}`);
  }
  const level = o.logLevel ?? envValue(env, 'MTASTSDB_LOG_LEVEL');
  if (level !== undefined && !(LOG_LEVEL_NAMES as readonly string[]).includes(level)) {
    fail('MTASTSDB_LOG_LEVEL', `expected one of ${LOG_LEVEL_NAMES.join(', ')}, got ${level}`);
  }
  const format = o.logFormat ?? envValue(env, 'MTASTSDB_LOG_FORMAT');
  if (format !== undefined && format !== 'json' && format !== 'text') {
    fail('MTASTSDB_LOG_FORMAT', `expected json or text, got ${format}`);
  }
  const store = o.store ?? envValue(env, 'MTASTSDB_STORE') ?? base.store;
  const dataDir = o.dataDir ?? envValue(env, 'MTASTSDB_DATA_DIR') ?? base.dataDir;

  // A host or port given on the command line or in the environment means TCP, even when the file
  // names a Unix socket; a path given the same way means the socket.
  const tcpOverride = host !== undefined || port !== undefined;
  const path = o.path ?? (tcpOverride ? undefined : base.path);
  const { path: _p, mode: _m, store: _s, ...rest } = base;
  const config: Config = {
    ...rest,
    host: host ?? base.host,
    port: port ?? base.port,
    ...(path !== undefined ? { path } : {}),
    ...(path !== undefined && base.mode !== undefined ? { mode: base.mode } : {}),
    dataDir,
    ...(store !== undefined ? { store } : {}),
    logging: Object.freeze({
      format: (format as 'json' | 'text' | undefined) ?? base.logging.format,
      level: (level as LogLevelName | undefined) ?? base.logging.level,
    }),
  };
  return Object.freeze(config);
}
