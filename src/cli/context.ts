import { isIP } from 'node:net';
import { readFile } from 'node:fs/promises';
import { InvalidArgumentError, Option, type Command } from 'commander';
import type { MtaStsDb } from '../cache/mtastsdb.js';
import type { Clock } from '../clock.js';
import type { Config } from '../config/schema.js';
import { createNodeResolver } from '../discovery/node-resolver.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { MtaStsError } from '../errors.js';
import type { FetchPolicyOptions } from '../fetch/fetcher.js';
import type { Logger } from '../logger.js';
import type { StoreTarget } from '../store/open-store.js';
import type { PolicyStore } from '../store/policy-store.js';
import { createTextLogger, LOG_LEVELS, type LogLevel } from './logger.js';

/** A writable text stream (stdout/stderr) as the CLI uses it. */
export interface CliOutput {
  write(chunk: string): boolean;
  once(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  removeListener(event: 'drain' | 'close' | 'error', listener: () => void): unknown;
  readonly isTTY?: boolean;
}

/**
 * What a command gets from the process: streams, environment, clock and the signal that SIGINT and
 * SIGTERM abort. Commands never touch `process` themselves, so they can run in-process in a test.
 */
export interface CliRuntime {
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly stdin: NodeJS.ReadableStream;
  readonly stdout: CliOutput;
  readonly stderr: CliOutput;
  readonly signal: AbortSignal;
  readonly clock: Clock;
}

/** The global options (given before or after the subcommand name). */
export interface GlobalOptions {
  readonly config?: string;
  readonly store?: string;
  readonly dataDir?: string;
  readonly dnsServer?: readonly string[];
  readonly ca?: readonly string[];
  readonly policyPort?: number;
  readonly allowPrivateAddresses?: boolean;
  readonly timeout?: number;
  readonly logLevel?: LogLevel;
}

function positiveNumber(value: string): number {
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number of seconds');
  return n;
}

function port(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n < 1 || n > 65535) throw new InvalidArgumentError('expected a port 1-65535');
  return n;
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

function dnsServer(value: string, previous: string[] | undefined): string[] {
  // host, host:port, [v6] or [v6]:port: the forms node:dns setServers accepts.
  const m = /^(?:([0-9.]+)|\[([0-9a-fA-F:.]+)\])(?::([0-9]{1,5}))?$|^([0-9a-fA-F:]+)$/.exec(value);
  const address = m?.[1] ?? m?.[2] ?? m?.[4];
  if (m === null || address === undefined || isIP(address) === 0) {
    throw new InvalidArgumentError('expected an IP address with an optional port, e.g. 127.0.0.1:5353');
  }
  // c-ares aborts the process (a native assertion) on port 0: refuse it here.
  const p = m[3] === undefined ? 53 : Number(m[3]);
  if (p < 1 || p > 65535) throw new InvalidArgumentError(`expected a port 1-65535, got ${m[3]}`);
  return collect(value, previous);
}

/** Adds the global options to the root command. */
export function addGlobalOptions(program: Command): Command {
  return program
    .addOption(
      new Option(
        '-c, --config <file>',
        "the daemon's configuration (YAML): its store is the one read (default: MTASTSDB_CONFIG)",
      ),
    )
    .addOption(
      new Option('--store <url>', 'policy store: postgres://… or sqlite:/path (default: SQLite in the data dir)').env(
        'MTASTSDB_STORE',
      ),
    )
    .addOption(
      new Option('--data-dir <dir>', 'directory of the SQLite store mtasts.db (default ./data)').env(
        'MTASTSDB_DATA_DIR',
      ),
    )
    .addOption(
      new Option(
        '--dns-server <host:port>',
        'DNS server to ask instead of /etc/resolv.conf (repeatable; labs and tests)',
      ).argParser(dnsServer),
    )
    .addOption(
      new Option('--ca <file>', 'extra trusted CA certificates (PEM) for policy fetches (repeatable)').argParser(
        collect,
      ),
    )
    .addOption(
      new Option('--policy-port <port>', 'connect to this port instead of 443 for policy fetches (labs and tests)')
        .env('MTASTSDB_POLICY_PORT')
        .argParser(port),
    )
    .addOption(
      new Option(
        '--allow-private-addresses',
        'allow policy hosts on loopback/private addresses (also MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1)',
      ),
    )
    .addOption(new Option('--timeout <seconds>', 'bound of each DNS query and policy fetch').argParser(positiveNumber))
    .addOption(
      new Option('--log-level <level>', 'log level of messages on stderr')
        .choices(LOG_LEVELS)
        .default('warn')
        .env('MTASTSDB_LOG_LEVEL'),
    );
}

/** How {@link CliContext.db} opens the database. */
export interface DbOptions {
  /**
   * The command only reads or maintains what is cached: a missing store is
   * `ERR_MTASTSDB_STORE_MISSING` (naming where it looked) and nothing is created.
   */
  readonly mustExist?: boolean;
  readonly txtRecheckSeconds?: number;
}

/** Where the store is, and which setting said so (for messages). */
export interface StoreLocation {
  readonly target: StoreTarget;
  /** e.g. `--data-dir ./data`, `MTASTSDB_STORE`, `cache in /etc/mta-sts-daemon.yml`, `the default ./data`. */
  readonly from: string;
}

/** Where an option's value came from: the command line, the environment, or neither. */
export type OptionSource = (name: 'store' | 'dataDir') => 'cli' | 'env' | undefined;

/**
 * Everything one command invocation needs, built lazily from the global options: a resolver, the
 * fetch options, the store and the policy database. `close()` releases what was opened.
 */
export class CliContext {
  readonly runtime: CliRuntime;
  readonly options: GlobalOptions;
  readonly logger: Logger;
  private resolverValue: DnsResolver | undefined;
  private fetchOptionsValue: Promise<FetchPolicyOptions> | undefined;
  private dbValue: Promise<MtaStsDb> | undefined;
  private configValue: Promise<Config> | undefined;
  private readonly source: OptionSource;

  constructor(runtime: CliRuntime, options: GlobalOptions, source: OptionSource = () => undefined) {
    this.runtime = runtime;
    this.options = options;
    this.source = source;
    this.logger = createTextLogger(runtime.stderr, options.logLevel ?? 'warn');
  }

  /**
   * The daemon's configuration as the daemon reads it: `-c FILE`, else `MTASTSDB_CONFIG`, else the
   * defaults; then the environment; then `--store`/`--data-dir`.
   */
  config(): Promise<Config> {
    this.configValue ??= (async () => {
      const { loadConfig } = await import('../config/load-config.js');
      return loadConfig({
        ...(this.options.config !== undefined ? { file: this.options.config } : {}),
        overrides: {
          ...(this.options.store !== undefined ? { store: this.options.store } : {}),
          ...(this.options.dataDir !== undefined ? { dataDir: this.options.dataDir } : {}),
        },
        env: this.runtime.env,
      });
    })();
    return this.configValue;
  }

  /** The store the daemon with the same configuration opens, and which setting chose it. */
  async storeLocation(): Promise<StoreLocation> {
    const config = await this.config();
    const { resolveStoreTarget } = await import('../store/open-store.js');
    // The configuration has already applied the environment: resolve without it.
    const target = resolveStoreTarget(config.store !== undefined ? config.store : { dataDir: config.dataDir }, {});
    const file = this.options.config ?? this.runtime.env.MTASTSDB_CONFIG;
    const flag = (name: 'store' | 'dataDir', option: string, env: string): string | undefined => {
      const src = this.source(name);
      if (src === 'cli') return `${option} ${name === 'store' ? '…' : String(this.options[name])}`;
      if (src === 'env') return env;
      return undefined;
    };
    const from =
      flag('store', '--store', 'MTASTSDB_STORE') ??
      (config.store !== undefined && file !== undefined && file !== ''
        ? `store/cache in ${file}`
        : (flag('dataDir', '--data-dir', 'MTASTSDB_DATA_DIR') ??
          (file !== undefined && file !== '' ? `data_dir in ${file}` : `the default data dir ${config.dataDir}`)));
    return { target, from };
  }

  /** The signal aborted by SIGINT/SIGTERM. */
  get signal(): AbortSignal {
    return this.runtime.signal;
  }

  /** Milliseconds from `--timeout`, or undefined for the library's defaults. */
  get timeoutMs(): number | undefined {
    return this.options.timeout === undefined ? undefined : Math.round(this.options.timeout * 1000);
  }

  /** The DNS resolver: `--dns-server` servers, else the system's. */
  resolver(): DnsResolver {
    this.resolverValue ??= createNodeResolver({
      ...(this.options.dnsServer !== undefined && this.options.dnsServer.length > 0
        ? { servers: this.options.dnsServer }
        : {}),
      ...(this.timeoutMs !== undefined ? { timeoutMs: this.timeoutMs } : {}),
    });
    return this.resolverValue;
  }

  /** Whether policy hosts may be on private addresses: the flag or `MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1`. */
  get allowPrivateAddresses(): boolean {
    return this.options.allowPrivateAddresses === true || this.runtime.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES === '1';
  }

  /** Options of the HTTPS policy fetch, from `--ca`, `--policy-port`, `--timeout`, `--allow-private-addresses`. */
  fetchOptions(): Promise<FetchPolicyOptions> {
    this.fetchOptionsValue ??= (async () => {
      const ca: string[] = [];
      for (const file of this.options.ca ?? []) {
        try {
          ca.push(await readFile(file, 'utf8'));
        } catch (err) {
          throw new MtaStsError('ERR_MTASTS_USAGE', `cannot read --ca file ${file}: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
      return {
        resolver: this.resolver(),
        allowPrivateAddresses: this.allowPrivateAddresses,
        ...(ca.length > 0 ? { ca } : {}),
        ...(this.options.policyPort !== undefined ? { port: this.options.policyPort } : {}),
        ...(this.timeoutMs !== undefined ? { timeoutMs: this.timeoutMs } : {}),
      };
    })();
    return this.fetchOptionsValue;
  }

  /** The policy store the database is on (for reads that must not touch `lastUse`). */
  async store(options: DbOptions = {}): Promise<PolicyStore> {
    return (await this.db(options)).store;
  }

  /**
   * The policy database, without the refresher, on the store the daemon would open (see
   * {@link storeLocation}). The first call opens it; `options` only count then.
   */
  db(options: DbOptions = {}): Promise<MtaStsDb> {
    this.dbValue ??= (async () => {
      const { target, from } = await this.storeLocation();
      if (options.mustExist === true) {
        const { requireExistingStore } = await import('../store/store-presence.js');
        await requireExistingStore(target, from);
      }
      const fetchOptions = await this.fetchOptions();
      // Loaded on first use: `lookup` and `--help` never pay for the database modules.
      const { MtaStsDb } = await import('../cache/mtastsdb.js');
      return MtaStsDb.open({
        store: target.kind === 'sqlite' ? target.path : target.url,
        ...(options.txtRecheckSeconds !== undefined ? { txtRecheckSeconds: options.txtRecheckSeconds } : {}),
        refresher: false,
        clock: this.runtime.clock,
        resolver: this.resolver(),
        fetchOptions,
        logger: this.logger,
      });
    })();
    return this.dbValue;
  }

  /** Closes the database (and its store) if it was opened. Idempotent. */
  async close(): Promise<void> {
    const db = this.dbValue;
    this.dbValue = undefined;
    if (db === undefined) return;
    const opened = await db.catch(() => undefined);
    await opened?.close();
  }
}

/**
 * Runs `fn` with a context for the command being run (global options merged), and closes the
 * context afterwards whatever happens.
 */
export async function withContext<T>(
  cmd: Command,
  runtime: CliRuntime,
  fn: (ctx: CliContext) => Promise<T>,
): Promise<T> {
  const ctx = new CliContext(runtime, cmd.optsWithGlobals<GlobalOptions>(), (name) => {
    const src: string | undefined = cmd.getOptionValueSourceWithGlobals(name);
    return src === 'cli' ? 'cli' : src === 'env' ? 'env' : undefined;
  });
  let result: T;
  try {
    result = await fn(ctx);
  } catch (err) {
    // The command's error is what the user needs to see; a close failure after it is secondary.
    await ctx.close().catch((closeErr: unknown) => ctx.logger.warn({ err: closeErr }, 'closing the store failed'));
    throw err;
  }
  await ctx.close();
  return result;
}
