// The policy database with many records in a SQLite store:
// - lookup of random cached domains, including the lastUse bookkeeping: p50 (target <= 20 us) and
//   ops/s on one core (target >= 50k/s);
// - get of a cached domain with txtRecheckSeconds > 0, as a ratio to lookup (target <= 1.5x);
// - the database size;
// - the refresher's memory while it walks every record with a resolver that says "same id"
//   (must stay flat, not grow with the store).
// Records: MTASTSDB_BENCH_RECORDS (default 1000000). Run alone: npx tsx bench/cache-bench.ts
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { MtaStsDb } from '../src/cache/mtastsdb.js';
import type { DnsResolver } from '../src/discovery/resolver.js';
import { MtaStsError } from '../src/errors.js';
import type { PolicyFetcher } from '../src/fetch/fetcher.js';
import { parsePolicy } from '../src/rfc8461/policy.js';
import type { PolicyRecord } from '../src/store/policy-store.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';
import { prng } from '../test/helpers/prng.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

/** 20 "providers" whose policy many domains share, as in real mail. */
const PROVIDERS = Array.from({ length: 20 }, (_, i) =>
  [
    'version: STSv1',
    'mode: enforce',
    `mx: mx1.provider${i}.example`,
    `mx: mx2.provider${i}.example`,
    `mx: *.mail.provider${i}.example`,
    'max_age: 604800',
    '',
  ].join('\r\n'),
);

function domainOf(i: number): string {
  return `customer-${i}.example-${i % 997}.test`;
}

/** Record i: 80% share a provider policy, 20% have their own. */
function textOf(i: number): string {
  if (i % 5 !== 0) return PROVIDERS[i % PROVIDERS.length]!;
  return `version: STSv1\r\nmode: enforce\r\nmx: mx.${domainOf(i)}\r\nmax_age: 1209600\r\n`;
}

function quantile(sorted: Float64Array, q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

/** Times `ops` sequential awaits of `fn(i)`; returns p50/p99 in µs and ops/s. */
async function timeOps(
  ops: number,
  fn: (i: number) => Promise<unknown>,
): Promise<{ p50: number; p99: number; opsPerSec: number }> {
  const lat = new Float64Array(ops);
  const t0 = process.hrtime.bigint();
  let prev = t0;
  for (let i = 0; i < ops; i++) {
    await fn(i);
    const now = process.hrtime.bigint();
    lat[i] = Number(now - prev) / 1000;
    prev = now;
  }
  const total = Number(process.hrtime.bigint() - t0) / 1e9;
  lat.sort();
  return { p50: quantile(lat, 0.5), p99: quantile(lat, 0.99), opsPerSec: Math.round(ops / total) };
}

const noNetwork: DnsResolver = {
  resolveTxt: () => Promise.reject(new Error('bench: no DNS expected')),
  resolveCname: () => Promise.reject(new Error('bench: no DNS expected')),
  resolve4: () => Promise.reject(new Error('bench: no DNS expected')),
  resolve6: () => Promise.reject(new Error('bench: no DNS expected')),
};
const sameId: DnsResolver = { ...noNetwork, resolveTxt: async () => [['v=STSv1; id=b1;']] };
const noFetch: PolicyFetcher = {
  fetch: () => Promise.reject(new MtaStsError('ERR_MTASTS_POLICY_FETCH', 'bench: no fetch expected')),
};

/** Prints the cache figures as `name: value unit` lines. */
export async function run(): Promise<void> {
  const n = Number(process.env.MTASTSDB_BENCH_RECORDS ?? 1_000_000);
  const ops = Math.min(200_000, Math.max(10_000, n));
  const dir = await mkdtemp(path.join(tmpdir(), 'mtastsdb-bench-'));
  const file = path.join(dir, 'mtasts.db');
  try {
    let store = await openSqliteStore({ path: file });
    const base = Date.now();

    // Fill: big transactions through the store's bulk insert.
    const policies = new Map<string, ReturnType<typeof parsePolicy>>();
    const policyOf = (text: string): ReturnType<typeof parsePolicy> => {
      let p = policies.get(text);
      if (p === undefined) {
        p = parsePolicy(text);
        if (policies.size < 1000) policies.set(text, p);
      }
      return p;
    };
    const t0 = performance.now();
    const rnd = prng(42);
    const BATCH = 50_000;
    for (let start = 0; start < n; start += BATCH) {
      const batch: PolicyRecord[] = [];
      for (let i = start; i < Math.min(n, start + BATCH); i++) {
        const text = textOf(i);
        batch.push({
          domain: domainOf(i),
          inserted: new Date(base - 30 * DAY),
          validEnd: new Date(base + 7 * DAY),
          lastUpdate: new Date(base - 13 * HOUR),
          lastUse: new Date(base - Math.floor(rnd() * 10 * DAY)),
          backoff: false,
          recordId: 'b1',
          policy: policyOf(text),
          policyText: text,
        });
      }
      await store.putMany(batch);
    }
    const fillS = (performance.now() - t0) / 1000;
    console.log(`cache fill (${n} records): ${Math.round(n / fillS)} records/s`);
    // Closing checkpoints the WAL into the file, so the size is the database's own.
    await store.close();
    const size = (await stat(file)).size;
    console.log(`cache database size (${n} records): ${(size / 1024 / 1024).toFixed(1)} MiB`);
    console.log(`cache database size per record: ${Math.round(size / n)} bytes`);
    store = await openSqliteStore({ path: file });

    // Random cached domains. Their stored lastUse is 0-10 days old, so the first lookup of each
    // must record a use (a deferred row write); a second lookup within the lastUse resolution
    // (60 s) needs none: that is the steady state of a daemon.
    const pick = prng(7);
    const names = Array.from({ length: ops }, () => domainOf(Math.floor(pick() * n)));
    const warmup = Array.from({ length: 20_000 }, () => domainOf(Math.floor(pick() * n)));
    const db = await MtaStsDb.open({ store, resolver: noNetwork, fetcher: noFetch });
    await timeOps(warmup.length, (i) => db.lookup(warmup[i]!));
    const first = await timeOps(ops, (i) => db.lookup(names[i]!));
    await db.flushUses();
    const lookup = await timeOps(ops, (i) => db.lookup(names[i]!));
    console.log(`cache lookup p50 (${n} records): ${lookup.p50.toFixed(1)} us`);
    console.log(`cache lookup p99 (${n} records): ${lookup.p99.toFixed(1)} us`);
    console.log(`cache lookup throughput (${n} records, 1 core): ${lookup.opsPerSec} ops/s`);
    console.log(`cache lookup first use p50 (lastUse written, ${n} records): ${first.p50.toFixed(1)} us`);
    console.log(`cache lookup first use throughput (lastUse written, ${n} records, 1 core): ${first.opsPerSec} ops/s`);
    await db.close();

    // get with a TXT recheck grace: answered from the cache, no DNS.
    const db2 = await MtaStsDb.open({ store, resolver: noNetwork, fetcher: noFetch, txtRecheckSeconds: 86400 });
    await timeOps(warmup.length, (i) => db2.get(warmup[i]!));
    const get = await timeOps(ops, (i) => db2.get(names[i]!));
    console.log(`cache get (txtRecheckSeconds>0) p50 (${n} records): ${get.p50.toFixed(1)} us`);
    console.log(`cache get (txtRecheckSeconds>0) throughput (${n} records, 1 core): ${get.opsPerSec} ops/s`);
    console.log(`cache get/lookup time ratio: ${(lookup.opsPerSec / get.opsPerSec).toFixed(2)} x`);
    await db2.close();

    // The refresher walking every due record (all are 13 h old) with a resolver saying "same id".
    const db3 = await MtaStsDb.open({ store, resolver: sameId, fetcher: noFetch });
    global.gc?.();
    const m0 = process.memoryUsage();
    let peakRss = m0.rss;
    let peakHeap = m0.heapUsed;
    const sampler = setInterval(() => {
      const m = process.memoryUsage();
      if (m.rss > peakRss) peakRss = m.rss;
      if (m.heapUsed > peakHeap) peakHeap = m.heapUsed;
    }, 50);
    const w0 = performance.now();
    const summary = await db3.refresh();
    const walkS = (performance.now() - w0) / 1000;
    clearInterval(sampler);
    await db3.close();
    const mib = (b: number): string => (b / 1024 / 1024).toFixed(1);
    console.log(`refresher walk (${n} records): ${summary.unchanged} records extended in ${walkS.toFixed(1)} s`);
    console.log(`refresher walk throughput: ${Math.round(summary.checked / walkS)} records/s`);
    console.log(`refresher walk RSS before: ${mib(m0.rss)} MiB`);
    console.log(`refresher walk RSS peak: ${mib(peakRss)} MiB`);
    console.log(`refresher walk heap before: ${mib(m0.heapUsed)} MiB`);
    console.log(`refresher walk heap peak: ${mib(peakHeap)} MiB`);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
