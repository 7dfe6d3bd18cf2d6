/**
 * Store benchmark: fills a SQLite file store with MTASTSDB_BENCH_RECORDS typical
 * records (default 1,000,000; 4-mx policies, each text distinct), then measures `get` of cached
 * domains at random (p50/p99, ops/s on one core), a hot set, `touch` batches, a full streaming walk
 * (and the heap it needs), and the file size; then the cost of durability: single-record `put`s
 * and a `touch` batch with `synchronous=FULL` (the default: every commit fsynced) against `NORMAL`
 * on the same file. The same on PostgreSQL when it is reachable
 * (MTASTSDB_TEST_POSTGRES or the local server): one connection, and a pool of 8 under concurrency.
 *
 * Run alone: `npx tsx bench/store-bench.ts`. Prints `name: value unit` lines.
 */
import { mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';
import pg from 'pg';
import { parsePolicy } from '../src/rfc8461/policy.js';
import type { PolicyRecord, PolicyStore } from '../src/store/policy-store.js';
import { openPostgresStore } from '../src/store/postgres-store.js';
import { openSqliteStore } from '../src/store/sqlite-store.js';

const T0 = Date.UTC(2026, 0, 1);
const FILL_CHUNK = 20_000;

function records(): number {
  const raw = process.env.MTASTSDB_BENCH_RECORDS;
  const n = raw === undefined || raw === '' ? 1_000_000 : Number(raw);
  if (!Number.isSafeInteger(n) || n < 1000) throw new Error('MTASTSDB_BENCH_RECORDS must be an integer ≥ 1000');
  return n;
}

function domainOf(i: number): string {
  return `d${i}.example${i % 97}.test`;
}

/** A typical record: a 4-mx enforce policy, CRLF, with text unique to the domain. */
function typicalRecord(i: number): PolicyRecord {
  const d = `example${i % 97}.test`;
  const text =
    `version: STSv1\r\nmode: enforce\r\nmx: mx1.d${i}.${d}\r\nmx: mx2.d${i}.${d}\r\n` +
    `mx: *.backup.${d}\r\nmx: mx4.mailhost${i % 13}.test\r\nmax_age: 1209600\r\n`;
  return {
    domain: domainOf(i),
    inserted: new Date(T0 + i),
    validEnd: new Date(T0 + i + 1_209_600_000),
    lastUpdate: new Date(T0 + i),
    lastUse: new Date(T0 + (i % 86_400) * 1000),
    backoff: false,
    recordId: `20260101T${i}`,
    policy: parsePolicy(text),
    policyText: text,
  };
}

function print(name: string, value: number, unit: string, digits = 1): void {
  console.log(`${name}: ${value.toFixed(digits)} ${unit}`);
}

/** Deterministic pseudo-random keys (xorshift), so runs are comparable. */
function randomIndexes(count: number, n: number, seed = 0x9e3779b9): Uint32Array {
  const out = new Uint32Array(count);
  let x = seed >>> 0;
  for (let i = 0; i < count; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    out[i] = x % n;
  }
  return out;
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** Sequential gets of `keys`: latency percentiles (µs) and throughput. */
async function measureGets(store: PolicyStore, keys: Uint32Array, name: string): Promise<void> {
  const lat = new Float64Array(keys.length);
  const start = process.hrtime.bigint();
  for (let i = 0; i < keys.length; i++) {
    const t = process.hrtime.bigint();
    const r = await store.get(domainOf(keys[i]!));
    lat[i] = Number(process.hrtime.bigint() - t) / 1000;
    if (r === undefined) throw new Error(`missing ${domainOf(keys[i]!)}`);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  lat.sort();
  print(`${name}.p50`, percentile(lat, 0.5), 'us');
  print(`${name}.p99`, percentile(lat, 0.99), 'us');
  print(`${name}.rate`, keys.length / seconds, 'ops/s', 0);
}

/** `workers` concurrent loops of gets over `keys`: throughput. */
async function measureConcurrentGets(store: PolicyStore, keys: Uint32Array, workers: number, name: string) {
  let next = 0;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (next < keys.length) {
        const k = keys[next++]!;
        if ((await store.get(domainOf(k))) === undefined) throw new Error(`missing ${domainOf(k)}`);
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  print(`${name}.rate`, keys.length / seconds, 'ops/s', 0);
}

async function fill(
  store: PolicyStore & { putMany(r: Iterable<PolicyRecord>): Promise<number> },
  n: number,
  name: string,
) {
  const start = process.hrtime.bigint();
  for (let i = 0; i < n; i += FILL_CHUNK) {
    const chunk: PolicyRecord[] = [];
    for (let j = i; j < Math.min(n, i + FILL_CHUNK); j++) chunk.push(typicalRecord(j));
    await store.putMany(chunk);
  }
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  print(`${name}.fill.rate`, n / seconds, 'records/s', 0);
}

/** A full GC, so heap figures count retained memory, not garbage not yet collected. */
function gcNow(): void {
  v8.setFlagsFromString('--expose-gc');
  (runInNewContext('gc') as () => void)();
}

async function walk(store: PolicyStore, n: number, name: string): Promise<void> {
  gcNow();
  const base = process.memoryUsage().heapUsed;
  let peak = base;
  let seen = 0;
  let gcTime = 0n;
  const start = process.hrtime.bigint();
  for await (const _ of store.list({ pageSize: 1000 })) {
    if (++seen % 100_000 === 0) {
      const t = process.hrtime.bigint();
      gcNow();
      peak = Math.max(peak, process.memoryUsage().heapUsed);
      gcTime += process.hrtime.bigint() - t;
    }
  }
  const seconds = Number(process.hrtime.bigint() - start - gcTime) / 1e9;
  if (seen !== n) throw new Error(`walk saw ${seen} of ${n}`);
  print(`${name}.list.rate`, seen / seconds, 'records/s', 0);
  // Sampled after a full GC every 100k records: memory the walk keeps, which must not grow with
  // the store (one page of rows plus the bounded policy memo).
  print(`${name}.list.heap_retained_growth`, (peak - base) / 1048576, 'MiB');
}

async function touchBatch(store: PolicyStore, n: number, name: string): Promise<void> {
  const keys = randomIndexes(10_000, n, 7);
  const at = new Date(T0 + 200 * 86_400_000);
  const uses = Array.from(keys, (k) => ({ domain: domainOf(k), lastUse: at }));
  const start = process.hrtime.bigint();
  await store.touch(uses);
  const us = Number(process.hrtime.bigint() - start) / 1000;
  print(`${name}.touch_10k_batch`, us / 1000, 'ms');
  print(`${name}.touch.per_use`, us / uses.length, 'us', 2);
}

/** `count` single-record puts, each its own commit (as the daemon writes a discovery); µs per put. */
async function putEach(store: PolicyStore, n: number, count: number, round: number): Promise<number> {
  const start = process.hrtime.bigint();
  for (let i = 0; i < count; i++) {
    const r = typicalRecord((i * 7919) % n);
    await store.put({ ...r, lastUpdate: new Date(r.lastUpdate.getTime() + round * 1_000_000 + i) });
  }
  return Number(process.hrtime.bigint() - start) / 1000 / count;
}

/** 10,000 random uses at day `day` after T0 (later than any before, so every row is written); ms. */
async function touchAt(store: PolicyStore, n: number, day: number): Promise<number> {
  const keys = randomIndexes(10_000, n, 7);
  const at = new Date(T0 + day * 86_400_000);
  const start = process.hrtime.bigint();
  await store.touch(Array.from(keys, (k) => ({ domain: domainOf(k), lastUse: at })));
  return Number(process.hrtime.bigint() - start) / 1e6;
}

/**
 * The same writes with synchronous NORMAL and FULL on one file: a warm-up round, then two rounds
 * of each, alternated so neither mode gets the warmer page cache. The ratio is the cost of the
 * fsync at each commit.
 */
async function durabilityBench(path: string, n: number): Promise<void> {
  const put: Record<string, number[]> = { normal: [], full: [] };
  const touch: Record<string, number[]> = { normal: [], full: [] };
  const rounds = ['normal', 'normal', 'full', 'normal', 'full'] as const;
  for (const [round, synchronous] of rounds.entries()) {
    const store = await openSqliteStore({ path, synchronous });
    try {
      const p = await putEach(store, n, 1000, round + 1);
      const t = await touchAt(store, n, 300 + round);
      if (round === 0) continue; // warm-up
      put[synchronous]!.push(p);
      touch[synchronous]!.push(t);
    } finally {
      await store.close();
    }
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  for (const mode of ['normal', 'full']) {
    print(`store.sqlite.sync_${mode}.put_each`, mean(put[mode]!), 'us', 0);
    print(`store.sqlite.sync_${mode}.touch_10k_batch`, mean(touch[mode]!), 'ms');
  }
  print('store.sqlite.sync_full_vs_normal.put_each', mean(put.full!) / mean(put.normal!), 'x', 2);
  print('store.sqlite.sync_full_vs_normal.touch_10k_batch', mean(touch.full!) / mean(touch.normal!), 'x', 2);
}

async function sqliteBench(n: number): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-bench-'));
  try {
    const path = join(dir, 'mtasts.db');
    let store = await openSqliteStore({ path });
    await fill(store, n, 'store.sqlite');
    await store.close();
    let bytes = 0;
    for (const f of await readdir(dir)) bytes += (await stat(join(dir, f))).size;
    print('store.sqlite.records', n, 'records', 0);
    print('store.sqlite.file_size', bytes / 1048576, 'MiB');
    print('store.sqlite.bytes_per_record', bytes / n, 'B', 0);

    store = await openSqliteStore({ path });
    await measureGets(store, randomIndexes(20_000, n, 1), 'store.sqlite.get.warmup');
    await measureGets(store, randomIndexes(300_000, n, 2), 'store.sqlite.get.random');
    // A hot set, as a mail server sees it: 1,000 domains asked again and again.
    const hot = randomIndexes(300_000, 1000, 3).map((k) => (k * 997) % n);
    await measureGets(store, hot, 'store.sqlite.get.hot1000');
    await touchBatch(store, n, 'store.sqlite');
    await walk(store, n, 'store.sqlite');
    await store.close();
    await durabilityBench(path, n);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function postgresBench(n: number): Promise<void> {
  const url = process.env.MTASTSDB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
  const admin = new pg.Client({ connectionString: url, connectionTimeoutMillis: 3000 });
  try {
    await admin.connect();
  } catch (err) {
    console.log(`# store.postgres skipped: ${url} unreachable: ${(err as Error).message}`);
    return;
  }
  const schema = `mtastsdb_bench_${process.pid}`;
  try {
    const filler = await openPostgresStore({ url, schema, poolSize: 4, statementTimeoutMs: 600_000 });
    try {
      await fill(filler, n, 'store.postgres');
      await admin.query(`VACUUM ANALYZE "${schema}".policies`);
    } finally {
      await filler.close();
    }
    const size = await admin.query<{ b: string }>(`SELECT pg_total_relation_size('"${schema}".policies')::text AS b`);
    print('store.postgres.records', n, 'records', 0);
    print('store.postgres.table_size', Number(size.rows[0]!.b) / 1048576, 'MiB');

    const one = await openPostgresStore({ url, schema, poolSize: 1 });
    try {
      await measureGets(one, randomIndexes(5_000, n, 1), 'store.postgres.get.warmup');
      await measureGets(one, randomIndexes(30_000, n, 2), 'store.postgres.get.1conn');
    } finally {
      await one.close();
    }
    const pool = await openPostgresStore({ url, schema, poolSize: 8 });
    try {
      await measureConcurrentGets(pool, randomIndexes(20_000, n, 4), 8, 'store.postgres.get.pool8.warmup');
      await measureConcurrentGets(pool, randomIndexes(100_000, n, 5), 8, 'store.postgres.get.pool8_c8');
      await measureConcurrentGets(pool, randomIndexes(100_000, n, 6), 32, 'store.postgres.get.pool8_c32');
      await touchBatch(pool, n, 'store.postgres');
      await walk(pool, n, 'store.postgres');
    } finally {
      await pool.close();
    }
  } finally {
    await admin.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).catch(() => undefined);
    await admin.end();
  }
}

/** Runs the store benchmark and prints its figures. */
export async function run(): Promise<void> {
  const n = records();
  await sqliteBench(n);
  await postgresBench(n);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
