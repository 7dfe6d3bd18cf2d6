/**
 * A child process running one MtaStsDb node for the fleet and refresher tests. Runs from source
 * (`node --import tsx`) and compiled (`build/test/helpers/fleet-node.js`).
 *
 * Modes (argv[2]):
 * - `idle <dataDir>`: opens a SQLite database with the refresher on the system clock, prints
 *   `refresher started` and returns without closing: the process must exit on its own (no timer of
 *   ours may hold it open).
 * - `fleet <json config>`: opens the store named in the config with the refresher on a
 *   {@link ManualClock} that the parent drives over IPC:
 *   `{ op: 'advance', ms }` moves the clock, `{ op: 'status' }` reports, `{ op: 'close' }` closes and
 *   exits. Every reply carries the clock, its pending sleeps and this node's refresh counts.
 */
import { join } from 'node:path';
import { MtaStsDb } from '../../src/cache/mtastsdb.js';
import { createNodeResolver } from '../../src/discovery/node-resolver.js';
import type { PolicyFetcher } from '../../src/fetch/fetcher.js';
import { createHttpsFetcher } from '../../src/fetch/https-fetcher.js';
import type { RefreshResult } from '../../src/metrics/metrics.js';
import { noopMetrics } from '../../src/metrics/metrics.js';
import { openStore } from '../../src/store/open-store.js';
import { ManualClock } from './manual-clock.js';
import { prng } from './prng.js';

/** Configuration of a fleet node, passed as JSON in argv[3]. */
export interface FleetNodeConfig {
  /** Store spec for `openStore` (a postgres URL with its schema). */
  readonly store: string;
  /** Options for openStore besides the spec (e.g. a PostgreSQL schema). */
  readonly storeOptions?: Record<string, unknown>;
  readonly dnsServer: string;
  readonly httpsPort: number;
  readonly caPem: string;
  /** The manual clock's start (ms since the epoch). */
  readonly start: number;
  readonly owner: string;
  readonly seed: number;
  readonly concurrency?: number;
  readonly leaseSeconds?: number;
}

/** What a node reports to the parent. */
export interface FleetNodeReply {
  readonly op: string;
  readonly owner: string;
  readonly now: number;
  readonly pending: number;
  readonly sleeps: number;
  readonly refreshes: Record<RefreshResult, number>;
  /** Domains whose policy fetch is in progress. */
  readonly fetching: readonly string[];
}

async function idle(dataDir: string): Promise<void> {
  // `path`, not `dataDir`: an MTASTSDB_STORE in the environment must not redirect this test.
  await MtaStsDb.open({
    path: join(dataDir, 'mtasts.db'),
    refresher: true,
    resolver: createNodeResolver({ servers: ['127.0.0.1:9'] }),
  });
  console.log('refresher started');
}

/** Counts the calls in progress on an object's methods, so the node can tell when it is idle. */
function counted<T extends object>(target: T, active: { n: number }): T {
  return new Proxy(target, {
    get(obj, prop, receiver) {
      const v = Reflect.get(obj, prop, receiver) as unknown;
      if (typeof v !== 'function' || prop === 'list') return typeof v === 'function' ? v.bind(obj) : v;
      return (...args: unknown[]) => {
        active.n++;
        const r = (v as (...a: unknown[]) => unknown).apply(obj, args);
        if (r instanceof Promise) return r.finally(() => active.n--);
        active.n--;
        return r;
      };
    },
  });
}

async function fleet(config: FleetNodeConfig): Promise<void> {
  const clock = new ManualClock(config.start);
  const refreshes: Record<RefreshResult, number> = { unchanged: 0, updated: 0, failed: 0, deleted: 0, skipped: 0 };
  const active = { n: 0 };
  const fetching = new Set<string>();
  const resolver = counted(createNodeResolver({ servers: [config.dnsServer], timeoutMs: 2000 }), active);
  const store = counted(await openStore({ store: config.store, ...(config.storeOptions ?? {}) }), active);
  const https = createHttpsFetcher({
    ca: config.caPem,
    port: config.httpsPort,
    allowPrivateAddresses: true,
    resolver,
    timeoutMs: 30_000,
  });
  const fetcher: PolicyFetcher = {
    async fetch(domain, options) {
      fetching.add(domain.ascii);
      active.n++;
      try {
        return await https.fetch(domain, options);
      } finally {
        active.n--;
        fetching.delete(domain.ascii);
      }
    },
  };
  /** Waits until no store, DNS or fetch call is in progress (at most `maxMs` of real time). */
  const quiet = async (maxMs: number): Promise<void> => {
    const deadline = Date.now() + maxMs;
    let calm = 0;
    while (calm < 3 && Date.now() < deadline) {
      await new Promise((r) => setImmediate(r));
      if (active.n === 0) calm++;
      else {
        calm = 0;
        await new Promise((r) => setTimeout(r, 1));
      }
    }
  };
  const db = await MtaStsDb.open({
    store,
    clock,
    resolver,
    fetcher,
    metrics: { ...noopMetrics, refresh: (r) => void refreshes[r]++ },
    refresher: true,
    refresherOptions: {
      owner: config.owner,
      random: prng(config.seed),
      concurrency: config.concurrency ?? 4,
      ...(config.leaseSeconds !== undefined ? { leaseSeconds: config.leaseSeconds } : {}),
    },
  });
  const reply = (op: string): void => {
    const msg: FleetNodeReply = {
      op,
      owner: config.owner,
      now: clock.now(),
      pending: clock.pending(),
      sleeps: clock.sleeps.length,
      refreshes,
      fetching: [...fetching],
    };
    process.send?.(msg);
  };
  process.on('message', (m: { op: string; ms?: number }) => {
    void (async () => {
      if (m.op === 'advance') {
        await clock.advance(m.ms ?? 0);
        await quiet(300);
        reply('advanced');
      } else if (m.op === 'status') {
        await quiet(300);
        reply('status');
      } else if (m.op === 'close') {
        await db.close();
        await store.close();
        reply('closed');
        process.disconnect?.();
      }
    })();
  });
  reply('ready');
}

const [mode, arg] = process.argv.slice(2);
if (mode === 'idle' && arg !== undefined) {
  await idle(arg);
} else if (mode === 'fleet' && arg !== undefined) {
  await fleet(JSON.parse(arg) as FleetNodeConfig);
} else {
  console.error('usage: fleet-node idle <dataDir> | fleet <json>');
  process.exitCode = 2;
}
