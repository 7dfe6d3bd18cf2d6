import { readFile } from 'node:fs/promises';
import { Command, InvalidArgumentError, Option } from 'commander';
import type { ConfigOverrides } from '../../config/load-config.js';
import type { LogLevelName } from '../../config/schema.js';
import { createNodeResolver } from '../../discovery/node-resolver.js';
import { MtaStsError } from '../../errors.js';
import type { FetchPolicyOptions } from '../../fetch/fetcher.js';
import type { CliRuntime } from '../context.js';

function port(value: string): number {
  const n = Number(value);
  if (!/^[0-9]{1,5}$/.test(value) || n > 65535) throw new InvalidArgumentError('expected a port 0-65535');
  return n;
}

/** The value of option `name` when the user set it (flag or environment) on this command or a parent. */
function explicit<T>(cmd: Command, name: string): T | undefined {
  for (let c: Command | null = cmd; c !== null; c = c.parent) {
    const source = c.getOptionValueSource(name);
    if (source === 'cli' || source === 'env') return c.getOptionValue(name) as T;
  }
  return undefined;
}

interface ServeOptions {
  readonly host?: string;
  readonly port?: number;
  readonly path?: string;
  readonly logFormat?: 'json' | 'text';
}

/**
 * `mtastsdb serve`: the Postfix socketmap daemon. Reads the YAML configuration (`-c`), applies the
 * environment and flags, and runs until SIGTERM/SIGINT; SIGHUP reloads the configuration.
 */
export function command(runtime?: CliRuntime): Command {
  return new Command('serve')
    .summary('run the Postfix socketmap daemon (smtp_tls_policy_maps)')
    .description(
      'Serves MTA-STS policies to Postfix over the socketmap protocol, as a drop-in replacement for ' +
        'postfix-mta-sts-resolver (same configuration keys, same answers). In Postfix main.cf:\n' +
        '  smtp_tls_policy_maps = socketmap:inet:127.0.0.1:8461:postfix\n\n' +
        'Configuration: the YAML file given with -c (or MTASTSDB_CONFIG), then the environment ' +
        '(MTASTSDB_HOST, MTASTSDB_PORT, MTASTSDB_DATA_DIR, MTASTSDB_STORE, MTASTSDB_LOG_LEVEL, ' +
        'MTASTSDB_LOG_FORMAT), then flags. Logs go to stdout (JSON by default).\n' +
        'Signals: SIGTERM/SIGINT stop accepting, answer requests in flight (shutdown_timeout) and ' +
        'close the database; SIGHUP reloads the configuration (zones, log level) without dropping ' +
        'connections.\n\n' +
        'The socketmap address (and the metrics address) is bound before the store is opened: a ' +
        'daemon that cannot listen exits at once and creates nothing.\n\n' +
        'Exit status: 0 after a clean shutdown, 2 invalid configuration or flags, 6 store error, ' +
        '9 cannot listen (address in use, not on this host, socket directory missing), 1 a bug.',
    )
    .option('--host <host>', 'TCP listen address (default 127.0.0.1)')
    .option('--port <port>', 'TCP port (default 8461; 0 picks a free one)', port)
    .option('--path <socket>', 'listen on this Unix socket instead of TCP')
    .addOption(new Option('--log-format <format>', 'log format on stdout').choices(['json', 'text']))
    .action(async function (this: Command) {
      // Loaded here, not at start-up: the daemon, pino, prom-client and yaml cost ~0.1 s that the
      // other commands should not pay.
      const [{ loadConfig }, { startDaemon }, { createDaemonLogger }, { tuneDaemonHeap }] = await Promise.all([
        import('../../config/load-config.js'),
        import('../../daemon/daemon.js'),
        import('../../daemon/log.js'),
        import('../../daemon/heap-tuning.js'),
      ]);
      // This process is the daemon: size its heap for a long-running server.
      const heapFlags = tuneDaemonHeap();
      const opts = this.opts<ServeOptions>();
      const configFile = explicit<string>(this, 'config');
      const env = runtime?.env ?? process.env;
      const dataDir = explicit<string>(this, 'dataDir');
      const store = explicit<string>(this, 'store');
      const logLevel = explicit<LogLevelName>(this, 'logLevel');
      const overrides: ConfigOverrides = {
        ...(opts.host !== undefined ? { host: opts.host } : {}),
        ...(opts.port !== undefined ? { port: opts.port } : {}),
        ...(opts.path !== undefined ? { path: opts.path } : {}),
        ...(dataDir !== undefined ? { dataDir } : {}),
        ...(store !== undefined ? { store } : {}),
        ...(logLevel !== undefined ? { logLevel } : {}),
        ...(opts.logFormat !== undefined ? { logFormat: opts.logFormat } : {}),
      };
      const load = () => loadConfig({ ...(configFile !== undefined ? { file: configFile } : {}), overrides, env });
      const config = await load();

      // Global options meant for labs and tests: DNS servers, extra CAs, policy port, private addresses.
      const dnsServers = explicit<string[]>(this, 'dnsServer');
      const timeout = explicit<number>(this, 'timeout');
      const resolver =
        dnsServers !== undefined || timeout !== undefined
          ? createNodeResolver({
              ...(dnsServers !== undefined ? { servers: dnsServers } : {}),
              ...(timeout !== undefined ? { timeoutMs: timeout * 1000 } : {}),
            })
          : undefined;
      const ca: string[] = [];
      for (const file of explicit<string[]>(this, 'ca') ?? []) {
        try {
          ca.push(await readFile(file, 'utf8'));
        } catch (err) {
          throw new MtaStsError('ERR_MTASTS_USAGE', `cannot read --ca file ${file}: ${(err as Error).message}`, {
            cause: err,
          });
        }
      }
      const policyPort = explicit<number>(this, 'policyPort');
      const allowPrivate =
        explicit<boolean>(this, 'allowPrivateAddresses') === true || env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES === '1';
      const fetchOptions: Omit<FetchPolicyOptions, 'signal'> = {
        ...(resolver !== undefined ? { resolver } : {}),
        ...(ca.length > 0 ? { ca } : {}),
        ...(policyPort !== undefined ? { port: policyPort } : {}),
        ...(allowPrivate ? { allowPrivateAddresses: true } : {}),
        ...(timeout !== undefined ? { timeoutMs: timeout * 1000 } : {}),
      };
      const log = createDaemonLogger({ ...config.logging, ...(runtime ? { output: runtime.stdout } : {}) });
      log.logger.debug({ heapFlags }, 'V8 heap settings');
      const daemon = await startDaemon({
        config,
        loadConfig: async () => {
          const next = await load();
          log.setLevel(next.logging.level);
          return next;
        },
        logger: log.logger,
        ...(resolver !== undefined ? { resolver } : {}),
        fetchOptions,
        handleSignals: true,
        ...(configFile !== undefined || env.MTASTSDB_CONFIG
          ? { configFile: configFile ?? (env.MTASTSDB_CONFIG as string) }
          : {}),
      });
      await daemon.closed;
    });
}
