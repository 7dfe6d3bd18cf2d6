/**
 * The real postfix-mta-sts-resolver (`mta-sts-daemon`, Debian's package) for tests and benchmarks:
 * install it when missing, start it with a configuration and a SQLite cache file, stop it by PID.
 *
 * It resolves with the system resolver and fetches policies from port 443, so it runs inside a
 * network namespace (test/helpers/netns.ts) whose resolv.conf names a DNS fixture on port 53, and
 * it trusts the test CA through `SSL_CERT_FILE` (Python's `ssl.create_default_context()`, which
 * aiohttp uses, reads it).
 *
 * ```ts
 * const ns = await createNetns();
 * const dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
 * const https = await startHttpsHost({ ca, host: ns.hostAddress, port: 443 });
 * dns.mtaSts('example.test', { address: ns.hostAddress });
 * const peer = await startPeerDaemon({ netns: ns, cachePath, caFile });
 * const c = await SocketmapClient.open({ host: peer.host, port: peer.port });
 * await c.query('postfix', 'example.test');
 * await peer.stop(); // the cache file at cachePath is the daemon's own (table sts_policy_cache)
 * ```
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import type { Netns } from './netns.js';

const run = promisify(execFile);

/** The daemon's entry point as Debian installs it. */
const PEER_DAEMON = '/usr/bin/mta-sts-daemon';
/** Debian's package. */
const PEER_PACKAGE = 'postfix-mta-sts-resolver';
/** Its init script and PID file (the service the package would start). */
const PEER_INIT_SCRIPT = '/etc/init.d/postfix-mta-sts-resolver';
const PEER_PID_FILE = '/var/run/mta-sts-daemon.pid';
const POLICY_RC_D = '/usr/sbin/policy-rc.d';

/** Bounds. */
const START_TIMEOUT_MS = 20_000;
const STOP_TIMEOUT_MS = 30_000;
const APT_TIMEOUT_MS = 600_000;

/** True when `mta-sts-daemon` is installed. */
export function peerDaemonInstalled(): boolean {
  return existsSync(PEER_DAEMON);
}

/** The installed package's version (`dpkg-query`), or undefined. */
export async function peerDaemonVersion(): Promise<string | undefined> {
  try {
    const { stdout } = await run('dpkg-query', ['-W', '-f=${Version}', PEER_PACKAGE]);
    return stdout.trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Installs Debian's package when it is missing (root, apt), under a policy-rc.d that exits 101 so
 * its service does not start, then makes sure the service is not running. Returns what it did.
 */
export async function ensurePeerDaemon(): Promise<'present' | 'installed'> {
  if (!peerDaemonInstalled()) {
    if (process.getuid?.() !== 0) throw new Error(`${PEER_PACKAGE} is missing and installing it needs root`);
    // Another installer's policy-rc.d is left in place (and not removed by us).
    const ours = !existsSync(POLICY_RC_D);
    if (ours) writeFileSync(POLICY_RC_D, '#!/bin/sh\nexit 101\n', { mode: 0o755 });
    try {
      const opts = { timeout: APT_TIMEOUT_MS, env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } };
      const install = [
        '-o',
        'DPkg::Lock::Timeout=120',
        'install',
        '-y',
        '-qq',
        '--no-install-recommends',
        PEER_PACKAGE,
      ];
      try {
        await run('apt-get', install, opts);
      } catch {
        await run('apt-get', ['-o', 'DPkg::Lock::Timeout=120', 'update', '-qq'], opts);
        await run('apt-get', install, opts);
      }
    } finally {
      if (ours) rmSync(POLICY_RC_D, { force: true });
    }
    if (!peerDaemonInstalled()) throw new Error(`${PEER_PACKAGE} installed but ${PEER_DAEMON} is missing`);
    await stopPeerService();
    return 'installed';
  }
  await stopPeerService();
  return 'present';
}

/** Stops the package's own service if its PID file names a live mta-sts-daemon. */
async function stopPeerService(): Promise<void> {
  if (serviceRunning() && existsSync(PEER_INIT_SCRIPT)) await run(PEER_INIT_SCRIPT, ['stop']).catch(() => {});
  if (serviceRunning()) throw new Error(`the ${PEER_PACKAGE} service is running and did not stop`);
}

function serviceRunning(): boolean {
  try {
    const pid = Number.parseInt(readFileSync(PEER_PID_FILE, 'utf8'), 10);
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('mta-sts-daemon');
  } catch {
    return false;
  }
}

/** How to run the peer daemon. */
export interface PeerDaemonOptions {
  /** Its SQLite cache file (created by the daemon when absent). */
  readonly cachePath: string;
  /** Where its configuration file is written (default `<cachePath>.yml`). */
  readonly configPath?: string;
  /** Run inside this namespace (listening on its address); without it, on `host` in this one. */
  readonly netns?: Netns;
  /** Listen address; default the namespace's address, else 127.0.0.1. */
  readonly host?: string;
  /** Listen port; default 8461 (the daemon cannot pick a free one itself). */
  readonly port?: number;
  /** A PEM file the daemon trusts as its CA store (`SSL_CERT_FILE`). */
  readonly caFile?: string;
  /** `cache_grace`, seconds (its default 60). */
  readonly cacheGraceSeconds?: number;
  /** `timeout` of the default zone and of `zones`, seconds (its default 4). */
  readonly timeoutSeconds?: number;
  /** Socketmap names (zones) besides the default one, with `strict_testing`. */
  readonly zones?: Readonly<Record<string, { readonly strictTesting?: boolean; readonly requireSni?: boolean }>>;
  /** `-v` (its default `info`). */
  readonly verbosity?: 'debug' | 'info' | 'warn' | 'error';
}

/** A running peer daemon. */
export interface PeerDaemon {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  readonly child: ChildProcess;
  /** What it wrote to stderr (its log). */
  readonly log: () => string;
  /** SIGTERM, then SIGKILL after a bound; resolves when the process is gone. */
  stop(): Promise<void>;
}

/** The daemon's YAML configuration for `options` (SQLite cache). */
function peerConfig(options: PeerDaemonOptions & { host: string; port: number }): string {
  const timeout = options.timeoutSeconds ?? 4;
  const zones = Object.entries(options.zones ?? {});
  return [
    `host: ${JSON.stringify(options.host)}`,
    `port: ${options.port}`,
    // reuse_port: false leaves the server unstarted in 1.1.2 (responder.py builds no options then).
    'reuse_port: true',
    'shutdown_timeout: 5',
    `cache_grace: ${options.cacheGraceSeconds ?? 60}`,
    'proactive_policy_fetching:\n  enabled: false',
    `cache:\n  type: sqlite\n  options:\n    filename: ${JSON.stringify(options.cachePath)}`,
    `default_zone:\n  strict_testing: false\n  timeout: ${timeout}`,
    ...(zones.length === 0 ? [] : ['zones:']),
    ...zones.map(
      ([name, z]) =>
        `  ${JSON.stringify(name)}:\n    strict_testing: ${z.strictTesting === true}\n` +
        `    require_sni: ${z.requireSni !== false}\n    timeout: ${timeout}`,
    ),
    '',
  ].join('\n');
}

/** Starts `mta-sts-daemon` and resolves once it accepts connections. */
export async function startPeerDaemon(options: PeerDaemonOptions): Promise<PeerDaemon> {
  if (!peerDaemonInstalled()) throw new Error(`${PEER_DAEMON} is not installed (ensurePeerDaemon installs it)`);
  const host = options.host ?? options.netns?.address ?? '127.0.0.1';
  const port = options.port ?? 8461;
  const configPath = options.configPath ?? `${options.cachePath}.yml`;
  writeFileSync(configPath, peerConfig({ ...options, host, port }));
  const args = ['-c', configPath, '-v', options.verbosity ?? 'info'];
  const [file, argv] = options.netns?.command(PEER_DAEMON, args) ?? [PEER_DAEMON, args];
  const child = spawn(file, argv, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
      LANG: 'C.UTF-8',
      ...(options.caFile !== undefined ? { SSL_CERT_FILE: options.caFile } : {}),
    },
  });
  let log = '';
  child.stderr?.on('data', (d: Buffer) => {
    // Bounded: the last 64 KiB.
    log = (log + d.toString()).slice(-65_536);
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let gone = false;
  void exited.then(() => (gone = true));
  const stop = async (): Promise<void> => {
    if (gone || child.pid === undefined) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
    await exited;
    clearTimeout(timer);
  };
  try {
    const deadline = Date.now() + START_TIMEOUT_MS;
    while (!(await accepts(host, port))) {
      if (gone) throw new Error(`mta-sts-daemon exited before listening: ${log}`);
      if (Date.now() > deadline) throw new Error(`mta-sts-daemon not listening within ${START_TIMEOUT_MS} ms: ${log}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return { pid: child.pid as number, host, port, child, log: () => log, stop };
}

function accepts(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host, port });
    s.setTimeout(1000, () => s.destroy());
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
    s.once('close', () => resolve(false));
  });
}
