/**
 * Shared parts of the policy-database suites (cache, refresher, downgrade, fleet): the loopback DNS
 * and HTTPS fixtures wired to a resolver and fetch options, the two real stores (a SQLite file in a
 * temporary directory, a PostgreSQL schema of its own), and small recorders for logs and metrics.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { createNodeResolver } from '../../src/discovery/node-resolver.js';
import type { DnsResolver } from '../../src/discovery/resolver.js';
import type { FetchPolicyOptions } from '../../src/fetch/fetcher.js';
import type { Logger } from '../../src/logger.js';
import type { FetchResult, GetResult, Metrics, RefreshResult } from '../../src/metrics/metrics.js';
import { openStore } from '../../src/store/open-store.js';
import type { PolicyStore } from '../../src/store/policy-store.js';
import { requireOrSkip } from './ci.js';
import { startDnsServer, type DnsServer } from './dns-server.js';
import { startHttpsHost, type HttpsHost } from './https-host.js';
import { postgresReachable, postgresTestUrl, testSchema } from './postgres.js';
import { getTestCa, type TestCa } from './test-ca.js';

/** The loopback network: DNS server, HTTPS policy host, and what a client needs to use them. */
export interface Net {
  readonly dns: DnsServer;
  readonly https: HttpsHost;
  readonly ca: TestCa;
  readonly resolver: DnsResolver;
  readonly fetchOptions: FetchPolicyOptions;
  close(): Promise<void>;
}

/** Starts the DNS and HTTPS fixtures. `dnsTimeoutMs` bounds each query (a dropped one costs that long). */
export async function startNet(options: { dnsTimeoutMs?: number; fetchTimeoutMs?: number } = {}): Promise<Net> {
  const ca = await getTestCa();
  const [dns, https] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
  const resolver = createNodeResolver({ servers: [dns.address], timeoutMs: options.dnsTimeoutMs ?? 1500 });
  return {
    dns,
    https,
    ca,
    resolver,
    fetchOptions: {
      ca: ca.certPem,
      port: https.port,
      allowPrivateAddresses: true,
      resolver,
      timeoutMs: options.fetchTimeoutMs ?? 3000,
    },
    async close() {
      await Promise.all([dns.close(), https.close()]);
    },
  };
}

let seq = 0;
/** A fresh `.test` domain name, so tests sharing fixtures never see each other's records. */
export function uniqueDomain(prefix = 'd'): string {
  seq++;
  return `${prefix}${seq}-${process.pid}.example.test`;
}

/** A policy body with CRLF lines. */
export function policyText(mode: 'enforce' | 'testing' | 'none', mx: readonly string[], maxAge: number): string {
  return ['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${maxAge}`, ''].join('\r\n');
}

/** Publishes `domain` with TXT id `id` and serves `text` as its policy. */
export function publish(net: Net, domain: string, id: string, text: string): void {
  net.dns.mtaSts(domain, { id });
  net.https.policy(domain, text);
}

/** Policy fetches the HTTPS fixture saw for `domain`. */
export function fetches(net: Net, domain: string): number {
  return net.https.requests(domain);
}

/** TXT queries the DNS fixture saw for `domain`'s record. */
export function txtQueries(net: Net, domain: string): number {
  return net.dns.queries(`_mta-sts.${domain}`, 'TXT');
}

/** One log call. */
export interface LogEntry {
  readonly level: 'debug' | 'info' | 'warn' | 'error';
  readonly obj: Record<string, unknown>;
  readonly msg: string;
}

/** A logger that keeps every entry (bindings of children merged in). */
export function captureLogger(): Logger & { readonly entries: LogEntry[] } {
  const entries: LogEntry[] = [];
  const make = (bindings: Record<string, unknown>): Logger => {
    const at =
      (level: LogEntry['level']) =>
      (obj: object, msg?: string): void => {
        entries.push({ level, obj: { ...bindings, ...(obj as Record<string, unknown>) }, msg: msg ?? '' });
      };
    return {
      debug: at('debug'),
      info: at('info'),
      warn: at('warn'),
      error: at('error'),
      child: (b) => make({ ...bindings, ...b }),
    };
  };
  return Object.assign(make({}), { entries });
}

/** Metrics that count everything. */
export function recordingMetrics(): Metrics & {
  readonly gets: Record<GetResult, number>;
  readonly cacheOutcomes: Record<'hit' | 'miss', number>;
  readonly fetchResults: Array<{ result: FetchResult; seconds: number }>;
  readonly refreshes: Record<RefreshResult, number>;
  readonly sizes: number[];
} {
  const gets: Record<GetResult, number> = { ok: 0, backoff: 0, notfound: 0, error: 0 };
  const cacheOutcomes = { hit: 0, miss: 0 };
  const fetchResults: Array<{ result: FetchResult; seconds: number }> = [];
  const refreshes: Record<RefreshResult, number> = { unchanged: 0, updated: 0, failed: 0, deleted: 0, skipped: 0 };
  const sizes: number[] = [];
  return {
    gets,
    cacheOutcomes,
    fetchResults,
    refreshes,
    sizes,
    get: (r) => void gets[r]++,
    cache: (o) => void cacheOutcomes[o]++,
    fetch: (result, seconds) => void fetchResults.push({ result, seconds }),
    refresh: (r) => void refreshes[r]++,
    cacheSize: (n) => void sizes.push(n),
    socketmapQuery() {},
    connections() {},
  };
}

/** Waits (real time) until `cond()` holds; fails after `timeoutMs`. */
export async function until(
  cond: () => boolean | Promise<boolean>,
  timeoutMs = 10_000,
  what = 'condition',
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/** A place for one store that can be opened again (to check what survived a close). */
export interface StoreHandle {
  readonly kind: 'sqlite' | 'postgres';
  /** The spec another process passes to `openStore({ store })` to reach the same data. */
  readonly spec: string;
  /** A new connection to the same data. */
  open(): Promise<PolicyStore>;
  /** Removes the data (temporary directory or schema). */
  cleanup(): Promise<void>;
}

/** Creates a store place of one kind. */
export interface StoreKind {
  readonly kind: 'sqlite' | 'postgres';
  /** Whether this machine has it; calls `requireOrSkip` (skips with a printed reason outside CI, fails in CI). */
  available(t: TestContext): Promise<boolean>;
  create(): Promise<StoreHandle>;
}

const sqliteKind: StoreKind = {
  kind: 'sqlite',
  available: async () => true,
  async create() {
    const dir = await mkdtemp(path.join(tmpdir(), 'mtastsdb-cache-'));
    const file = path.join(dir, 'mtasts.db');
    return {
      kind: 'sqlite',
      spec: `sqlite:${file}`,
      open: () => openStore({ path: file }),
      cleanup: () => rm(dir, { recursive: true, force: true }),
    };
  },
};

let reachable: Promise<{ readonly ok: boolean; readonly why: string }> | undefined;

const postgresKind: StoreKind = {
  kind: 'postgres',
  async available(t) {
    reachable ??= postgresReachable();
    const r = await reachable;
    return requireOrSkip(t, r.ok, r.why);
  },
  async create() {
    // Each test its own schema (created by the store on open, dropped by cleanup).
    const { schema, drop } = testSchema('cache');
    const url = `${postgresTestUrl}${postgresTestUrl.includes('?') ? '&' : '?'}schema=${schema}`;
    return {
      kind: 'postgres',
      spec: url,
      open: () => openStore({ store: url }),
      cleanup: drop,
    };
  },
};

/** Both stores: every suite that uses this runs on SQLite and on PostgreSQL. */
export const storeKinds: readonly StoreKind[] = [sqliteKind, postgresKind];
