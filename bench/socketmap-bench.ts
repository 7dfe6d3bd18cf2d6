// Socketmap load generator (the daemon's warm and cold rates, latency, memory, DANE cost and
// survival under floods): the daemon (`mtastsdb serve`, its own process) against the loopback DNS
// fixture and a bench HTTPS policy host, driven by netstring clients in a third process
// (bench/helpers/socketmap-load.ts), so that on a 2-core machine the client does not share an
// event loop with the fixtures. Prints `name: value unit` lines. Phases (MTASTSDB_BENCH_PHASES, a
// comma list; default all, in this order):
// - ceiling: a constant-answer Node server (same client, same run) at 64 connections and 1;
// - cold: cold discovery of distinct domains (TXT + A + TLS + HTTP + store) at 32 connections,
//   the CPU the daemon and the fixtures spend per domain, and a bare Node client fetching the same
//   hosts with a new TLS connection each (the most any Node daemon could do here);
// - warm: warm lookups of 1,000 cached domains at 64 connections (p50/p99) and at 1 connection;
// - flood: 1,000,000 pipelined requests and 10,000 connections, every answer checked, peak RSS
//   (these two run their clients in the bench process: they test survival, not speed);
// - dane (warm answers with the DANE state cached against DANE off, target ≥ 0.90): one daemon
//   with two maps, `dane` (a zone with `dane: prefer`) and `postfix` (DANE off), over
//   MTASTSDB_BENCH_DANE_DOMAINS domains (default 1,000) with MTA-STS enforce and DNSSEC-signed
//   MX, A and TLSA `3 1 1` records (the fixture sets AD); both maps warmed (every domain once
//   through each: `OK dane-only`, `OK secure …`), then MTASTSDB_BENCH_DANE_ROUNDS (default 4)
//   timed rounds per map at 64 connections, alternated, every answer checked: answers/s, p99,
//   daemon CPU per answer, and the ratio DANE / off;
// - postgres (the daemon on PostgreSQL against SQLite, target ≥ 50 %): the warm workload against
//   a daemon on PostgreSQL (a fresh schema, dropped afterwards) and one on SQLite, alternated,
//   with the ratio, as shipped (`socketmap_*`) and with the memory cache off so every lookup reads
//   its store (`socketmap_storeonly_*`); skipped with a line when PostgreSQL is unreachable
//   (MTASTSDB_TEST_POSTGRES, else postgres://postgres@127.0.0.1:5432/test);
// - memory (the daemon's RSS with 1,000,000 cached policies, target ≤ 150 MB): a SQLite store
//   filled with MTASTSDB_BENCH_RECORDS typical records (default 1,000,000; filled by a child
//   process), the daemon started on it, warm lookups of a random sample of them
//   (MTASTSDB_BENCH_MEMORY_REQUESTS, default 200,000, at 64 connections), and the daemon's RSS at
//   start, after the load and at peak (VmHWM), with its V8 heap from /metrics; then the same with
//   the Node flags of MTASTSDB_BENCH_MEMORY_TUNED_NODE_ARGS (`memory_tuned_*`; default
//   `--max-semi-space-size=4`, `none` skips it). MTASTSDB_BENCH_MEMORY_CONFIG adds YAML lines to
//   both daemons' configuration (`\n` between lines), e.g. `memory_cache:\n  entries: 0`.
// Every phase is bounded in count and time. Env: MTASTSDB_BENCH_SECONDS (per warm phase or round,
// default 5), MTASTSDB_BENCH_COLD (cold domains, default 10000), MTASTSDB_BENCH_PIPELINED (default
// 1000000), MTASTSDB_BENCH_CONNECTIONS (flood connections, default 10000),
// MTASTSDB_BENCH_DAEMON_NODE_ARGS (extra Node flags of every daemon, e.g. "--cpu-prof
// --cpu-prof-dir=/tmp/prof").
// Run alone: `npx tsx bench/socketmap-bench.ts` (the daemon then runs under tsx, whose loader thread
// adds memory: the RSS figures of record come from `npm run bench`, which runs compiled JS); one
// phase: `MTASTSDB_BENCH_PHASES=dane npm run bench -- socketmap`.
import 'reflect-metadata';
import { readFileSync } from 'node:fs';
import { copyFile, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeNetstring } from '../src/socketmap/netstring.js';
import { startConstantServer } from './helpers/constant-server.js';
import { startPolicyHost } from './helpers/policy-host.js';
import { cpuSeconds, hwmMiB, rssMiB, rssSampler } from './helpers/proc.js';
import { startDnsServer } from '../test/helpers/dns-server.js';
import type { DnsServer } from '../test/helpers/dns-server.js';
import { dropSchema, postgresReachable, postgresTestUrl, uniqueSchemaName } from '../test/helpers/postgres.js';
import { spawnServe } from '../test/helpers/serve-process.js';
import type { ServeProcess } from '../test/helpers/serve-process.js';
import { SocketmapClient } from '../test/helpers/socketmap-client.js';
import {
  fillInChild,
  fixtureDomain,
  loadInChild,
  okFor,
  policyFor,
  tlsFloorInChild,
} from './helpers/socketmap-load.js';
import type { KeySpec, LoadResult } from './helpers/socketmap-load.js';

const envInt = (name: string, dflt: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isSafeInteger(n) && n > 0 ? n : dflt;
};
const SECONDS = envInt('MTASTSDB_BENCH_SECONDS', 5);
const COLD = envInt('MTASTSDB_BENCH_COLD', 10_000);
const PIPELINED = envInt('MTASTSDB_BENCH_PIPELINED', 1_000_000);
const FLOOD_CONNECTIONS = envInt('MTASTSDB_BENCH_CONNECTIONS', 10_000);
const WARM_DOMAINS = 1000;
/** Records of the memory phase's store (the memory target is set at 1,000,000). */
const MEMORY_RECORDS = envInt('MTASTSDB_BENCH_RECORDS', 1_000_000);
/** Warm lookups of the memory phase: a random sample of the records, 64 connections. */
const MEMORY_REQUESTS = envInt('MTASTSDB_BENCH_MEMORY_REQUESTS', 200_000);
/** The memory target: daemon RSS ≤ 150 MB with 1,000,000 cached policies. */
const MEMORY_TARGET_MIB = 150;
/** Domains of the dane phase, each with MTA-STS enforce and DANE records. */
const DANE_DOMAINS = envInt('MTASTSDB_BENCH_DANE_DOMAINS', 1000);
/** Timed rounds per map of the dane phase (alternated, MTASTSDB_BENCH_SECONDS each; even, so each map leads as often). */
const DANE_ROUNDS = envInt('MTASTSDB_BENCH_DANE_ROUNDS', 4);
/** The dane target: warm answers with the DANE state cached ≥ 90 % of the rate with DANE off. */
const DANE_TARGET_RATIO = 0.9;
/** Phases to run (comma list of ceiling, cold, warm, flood, dane, postgres, memory); default all. */
const PHASES = new Set(
  (process.env.MTASTSDB_BENCH_PHASES ?? 'ceiling,cold,warm,flood,dane,postgres,memory').split(',').map((p) => p.trim()),
);

const line = (name: string, value: number | string, unit = ''): void =>
  console.log(
    `${name}: ${typeof value === 'number' ? Number(value.toFixed(value < 10 ? 3 : 0)) : value}${unit ? ` ${unit}` : ''}`,
  );

/** The daemon's V8 heap and external memory from its /metrics (prom-client's process metrics), MiB. */
async function heapMiB(metricsPort: number | undefined): Promise<Record<string, number>> {
  if (metricsPort === undefined) return {};
  try {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const out: Record<string, number> = {};
    for (const [name, re] of [
      ['heap_used', /^mtastsdb_nodejs_heap_size_used_bytes (\S+)$/m],
      ['heap_total', /^mtastsdb_nodejs_heap_size_total_bytes (\S+)$/m],
      ['external', /^mtastsdb_nodejs_external_memory_bytes (\S+)$/m],
    ] as const) {
      const m = re.exec(text);
      if (m) out[name] = Number(m[1]) / 1048576;
    }
    return out;
  } catch {
    return {};
  }
}

/** A load from a child process; `port` and bounds as {@link loadInChild}. */
function load(port: number, connections: number, seconds: number, maxRequests: number, keys: KeySpec) {
  return loadInChild({ port, connections, seconds, maxRequests, keys });
}

/** Prints the first wrong answer of a load, if any (the `_wrong` lines count them), so a failure is diagnosable. */
function checked(r: LoadResult, what: string): LoadResult {
  if (r.wrong > 0) {
    const w = r.firstWrong;
    console.log(`# ${what}: ${r.wrong} wrong answers; first: ${w?.key} -> ${JSON.stringify(w?.reply)}`);
  }
  return r;
}

/** 1,000,000 requests pipelined over a few connections, written with client-side backpressure. */
async function pipelinedFlood(port: number, total: number, domains: readonly string[], pid: number | undefined) {
  const conns = 4;
  const clients = await Promise.all(
    Array.from({ length: conns }, () => SocketmapClient.open({ host: '127.0.0.1', port })),
  );
  let wrong = 0;
  let answered = 0;
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
  const started = Date.now();
  await Promise.all(
    clients.map(async (c, ci) => {
      c.keepReplies = false;
      const per = Math.ceil(total / conns);
      const done: Promise<void>[] = [];
      const batch = 1000;
      for (let i = 0; i < per; i += batch) {
        const parts: Buffer[] = [];
        for (let j = i; j < Math.min(per, i + batch); j++) {
          const d = domains[(j * conns + ci) % domains.length] as string;
          parts.push(encodeNetstring(`postfix ${d}`));
          done.push(
            c.expect().then((r) => {
              answered++;
              if (r !== okFor(d)) wrong++;
            }),
          );
        }
        if (!c.socket.write(Buffer.concat(parts))) await new Promise((r) => c.socket.once('drain', r));
        // Keep at most ~20,000 requests outstanding per connection in the client (its own memory).
        if (done.length - answered / conns > 20_000) await done[done.length - 15_000];
      }
      await Promise.all(done);
    }),
  );
  clearInterval(sampler);
  for (const c of clients) c.destroy();
  return { answered, wrong, seconds: (Date.now() - started) / 1000, peakRss: Math.max(peak, rssMiB(pid)) };
}

/** `n` connections open at once, each sending one request. */
async function connectionFlood(port: number, n: number, domains: readonly string[], pid: number | undefined) {
  let peak = 0;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), 100);
  const started = Date.now();
  const clients: SocketmapClient[] = [];
  let failedConnect = 0;
  for (let i = 0; i < n; i += 500) {
    const opened = await Promise.allSettled(
      Array.from({ length: Math.min(500, n - i) }, () => SocketmapClient.open({ host: '127.0.0.1', port })),
    );
    for (const o of opened) {
      if (o.status === 'fulfilled') clients.push(o.value);
      else failedConnect++;
    }
  }
  let wrong = 0;
  let lost = 0;
  await Promise.all(
    clients.map(async (c, i) => {
      const d = domains[i % domains.length] as string;
      try {
        if ((await c.query('postfix', d)) !== okFor(d)) wrong++;
      } catch {
        lost++;
      }
    }),
  );
  const seconds = (Date.now() - started) / 1000;
  clearInterval(sampler);
  const openPeak = Math.max(peak, rssMiB(pid));
  for (const c of clients) c.destroy();
  return { opened: clients.length, failedConnect, wrong, lost, seconds, peakRss: openPeak };
}

/** What the phases share: the fixtures and how to start a daemon on them. */
interface BenchContext {
  readonly dir: string;
  readonly warmKeys: KeySpec;
  /** The DNS fixture, `127.0.0.1:<port>` (also the DANE resolver: it sets AD where told to). */
  readonly dnsAddress: string;
  /** Queries the DNS fixture has answered so far. */
  dnsQueries(): number;
  /**
   * Writes a daemon configuration file on `store` and returns its path. `zones` replaces the
   * `zones:` mapping's body (default: `postfix` with a 20 s timeout).
   */
  config(
    name: string,
    store: string,
    extra?: readonly string[],
    refresher?: boolean,
    zones?: readonly string[],
  ): Promise<string>;
  /** Starts `mtastsdb serve -c <config>` against the fixtures, as a process of its own. */
  serve(configFile: string, nodeArgs?: readonly string[]): Promise<ServeProcess>;
}

const loadLine = (name: string): void => line(name, Number(loadavg()[0]?.toFixed(2)), '(1-min load average)');

/** SIGTERM, then the exit within the daemon's shutdown bound; prints the time it took. */
async function stopServe(serve: ServeProcess, name: string): Promise<void> {
  serve.child.kill('SIGTERM');
  const t0 = Date.now();
  const code = await serve.exited;
  line(name, (Date.now() - t0) / 1000, 's');
  if (code !== 0) throw new Error(`daemon exited ${code}`);
}

/** Primes a daemon's cache with the warm set (discovery over the fixtures). */
async function prime(ctx: BenchContext, port: number): Promise<void> {
  const r = await load(port, 32, 60, WARM_DOMAINS, ctx.warmKeys);
  if (r.wrong > 0 || r.answers < WARM_DOMAINS) {
    throw new Error(`priming the warm set: ${r.answers} answers, ${r.wrong} wrong (${JSON.stringify(r.firstWrong)})`);
  }
}

/**
 * The PostgreSQL target (≥ 50 % of SQLite's rate): the same warm workload (1,000 cached domains)
 * against a daemon on PostgreSQL and one on SQLite, both primed the same way; the 64-connection
 * runs alternate (SQLite, PostgreSQL, twice) so that load from other processes on a shared machine
 * hits both alike. Rates are the means of the two runs.
 */
async function postgresPhase(ctx: BenchContext): Promise<void> {
  const reach = await postgresReachable(postgresTestUrl);
  if (!reach.ok) {
    console.log(`# socketmap postgres phase skipped: ${reach.why}`);
    return;
  }
  // As shipped (the memory cache answers repeated lookups), then with every lookup reading its store.
  await compareStores(ctx, 'socketmap', []);
  await compareStores(ctx, 'socketmap_storeonly', ['memory_cache:\n  entries: 0']);
}

async function compareStores(ctx: BenchContext, prefix: string, extra: readonly string[]): Promise<void> {
  const schema = uniqueSchemaName('smbench');
  const url = new URL(postgresTestUrl);
  url.searchParams.set('schema', schema);
  // cache_grace well beyond the phase, so every lookup is a cache hit without DNS on both stores.
  const grace = ['cache_grace: 3600', ...extra];
  const daemons: Record<'sqlite' | 'postgres', ServeProcess | undefined> = { sqlite: undefined, postgres: undefined };
  try {
    daemons.sqlite = await ctx.serve(await ctx.config(`${prefix}-sqlite`, join(ctx.dir, `${prefix}.db`), grace));
    daemons.postgres = await ctx.serve(await ctx.config(`${prefix}-postgres`, url.href, grace));
    const both = [
      ['sqlite', daemons.sqlite],
      ['postgres', daemons.postgres],
    ] as const;
    for (const [, d] of both) await prime(ctx, d.port);
    const r64: Record<string, LoadResult[]> = { sqlite: [], postgres: [] };
    for (let round = 0; round < 2; round++) {
      for (const [name, d] of both) {
        r64[name]?.push(checked(await load(d.port, 64, SECONDS, 10_000_000, ctx.warmKeys), `${name} 64conn`));
      }
    }
    const rate = (rs: readonly LoadResult[]): number =>
      rs.reduce((sum, r) => sum + r.answers / r.seconds, 0) / Math.max(1, rs.length);
    const r1: Record<string, LoadResult> = {};
    for (const [name, d] of both) r1[name] = checked(await load(d.port, 1, SECONDS, 10_000_000, ctx.warmKeys), name);
    for (const [name, d] of both) {
      const rs = r64[name] ?? [];
      line(`${prefix}_${name}_warm_64conn`, rate(rs), 'answers/s');
      line(`${prefix}_${name}_warm_64conn_p99`, Math.max(...rs.map((r) => r.p99ms)), 'ms');
      line(
        `${prefix}_${name}_warm_64conn_wrong`,
        rs.reduce((n, r) => n + r.wrong, 0),
        'answers',
      );
      const one = r1[name] as LoadResult;
      line(`${prefix}_${name}_warm_1conn`, one.answers / one.seconds, 'answers/s');
      line(`${prefix}_${name}_warm_1conn_p99`, one.p99ms, 'ms');
      line(`${prefix}_${name}_daemon_rss_hwm`, hwmMiB(d.child.pid), 'MiB');
    }
    const sq1 = r1.sqlite as LoadResult;
    const pg1 = r1.postgres as LoadResult;
    // Target: ≥ 50 %.
    line(`${prefix}_postgres_vs_sqlite_64conn`, (100 * rate(r64.postgres ?? [])) / rate(r64.sqlite ?? []), '%');
    line(`${prefix}_postgres_vs_sqlite_1conn`, (100 * (pg1.answers / pg1.seconds)) / (sq1.answers / sq1.seconds), '%');
    for (const [name, d] of both) await stopServe(d, `${prefix}_${name}_daemon_shutdown`);
  } finally {
    daemons.sqlite?.child.kill('SIGKILL');
    daemons.postgres?.child.kill('SIGKILL');
    await dropSchema(schema).catch((err: unknown) => console.log(`# dropping schema ${schema}: ${String(err)}`));
  }
}

/** The dane phase's zone, signed: the fixture sets AD on every answer at or below it. */
const DANE_ZONE = 'dane.test';
/** TTL of the dane set's MX and TLSA records (s): the daemon keeps the DANE state this long (at most an hour). */
const DANE_RECORD_TTL_SECONDS = 3600;

/**
 * Publishes the DANE side of `domains` in the fixture (RFC 7672 §2.2): the MX `mx.<d>` (the host
 * the MTA-STS policy names), its A record and TLSA `3 1 1` at `_25._tcp.mx.<d>`, all secure (AD),
 * so each domain's DANE state is `dane-only`; the zone apex's SOA answers the daemon's resolver
 * probe. MX and TLSA carry an hour's TTL so the state outlives the phase.
 */
function publishDane(dns: DnsServer, domains: readonly string[]): void {
  dns.soa(DANE_ZONE).ad(DANE_ZONE);
  for (const d of domains) {
    const mx = `mx.${d}`;
    dns.mx(d, `10 ${mx}`).ttl(d, DANE_RECORD_TTL_SECONDS);
    dns.a(mx, '192.0.2.25');
    dns.tlsa(`_25._tcp.${mx}`, `3 1 1 ${'ab'.repeat(32)}`).ttl(`_25._tcp.${mx}`, DANE_RECORD_TTL_SECONDS);
  }
}

/**
 * The dane target (warm answers with the DANE state cached ≥ 90 % of the DANE-off rate): one
 * daemon, the dane set's domains asked through the map `dane` (`dane: prefer`: MTA-STS state, then
 * the cached DANE state, `OK dane-only`) and through `postfix` (DANE off: `OK secure …`). Both maps
 * are warmed first, so the timed rounds need no DNS (`cache_grace` beyond the phase, DANE states
 * kept for their hour's TTL), then loaded for 2 s each untimed; the rounds alternate, the first map
 * flipping each round, so that load from other processes on a shared machine hits both alike.
 * Rates are the means of the rounds, p50 and p99 the worst round's; the daemon's CPU per answer
 * (`/proc`, all its threads) is the other figure to compare.
 */
async function danePhase(ctx: BenchContext): Promise<void> {
  const offKeys: KeySpec = { kind: 'fixture', zone: 'dane', count: DANE_DOMAINS };
  const daneKeys: KeySpec = { ...offKeys, answer: 'dane-only' };
  const configFile = await ctx.config(
    'dane',
    join(ctx.dir, 'dane.db'),
    // The default zone (DANE off) is the one every configuration of this bench writes.
    ['cache_grace: 3600', `dane:\n  resolver: ${ctx.dnsAddress}\n  timeout: 2\n  probe: ${DANE_ZONE}`],
    false,
    ['  postfix:', '    timeout: 20', '    dane: off', '  dane:', '    timeout: 20', '    dane: prefer'],
  );
  const serve = await ctx.serve(configFile);
  try {
    const pid = serve.child.pid;
    // Warming: each domain once through each map (discovery of the MTA-STS policy, then the DANE state).
    for (const [map, keys] of [
      ['postfix', offKeys],
      ['dane', daneKeys],
    ] as const) {
      const r = await loadInChild({
        port: serve.port,
        connections: 32,
        seconds: 120,
        maxRequests: DANE_DOMAINS,
        keys,
        map,
      });
      if (r.wrong > 0 || r.answers < DANE_DOMAINS) {
        throw new Error(
          `warming the ${map} map: ${r.answers} answers, ${r.wrong} wrong (${JSON.stringify(r.firstWrong)})`,
        );
      }
    }
    // Untimed warm load through both maps, so the collection of the warming's garbage (TLS, DNS)
    // falls in no timed round.
    for (const [map, keys] of [
      ['postfix', offKeys],
      ['dane', daneKeys],
    ] as const) {
      const r = await loadInChild({
        port: serve.port,
        connections: 64,
        seconds: 2,
        maxRequests: 10_000_000,
        keys,
        map,
      });
      if (r.wrong > 0) throw new Error(`settling the ${map} map: ${r.wrong} wrong (${JSON.stringify(r.firstWrong)})`);
    }
    const runs = { dane: [] as LoadResult[], off: [] as LoadResult[] };
    const cpu = { dane: 0, off: 0 };
    // Warm means no DNS: a query during a round is a state or policy learnt again.
    const queries = { dane: 0, off: 0 };
    const pair = [
      ['dane', 'dane', daneKeys],
      ['off', 'postfix', offKeys],
    ] as const;
    for (let round = 0; round < DANE_ROUNDS; round++) {
      // Which map goes first flips every round (DANE, off; off, DANE; …): with an even number of
      // rounds each goes first equally often.
      for (const [which, map, keys] of round % 2 === 0 ? pair : [...pair].reverse()) {
        const cpu0 = cpuSeconds(pid);
        const queries0 = ctx.dnsQueries();
        const r = await loadInChild({
          port: serve.port,
          connections: 64,
          seconds: SECONDS,
          maxRequests: 10_000_000,
          keys,
          map,
        });
        cpu[which] += cpuSeconds(pid) - cpu0;
        queries[which] += ctx.dnsQueries() - queries0;
        runs[which].push(checked(r, `dane phase, ${map} map, round ${round + 1}`));
      }
    }
    const rate = (rs: readonly LoadResult[]): number =>
      rs.reduce((sum, r) => sum + r.answers / r.seconds, 0) / Math.max(1, rs.length);
    const answers = (rs: readonly LoadResult[]): number => rs.reduce((n, r) => n + r.answers, 0);
    for (const which of ['dane', 'off'] as const) {
      const rs = runs[which];
      const name = `socketmap_dane_${which === 'dane' ? 'prefer' : 'off'}_warm_64conn`;
      line(name, rate(rs), 'answers/s');
      line(`${name}_rounds`, rs.map((r) => Math.round(r.answers / r.seconds)).join(' '), 'answers/s');
      line(`${name}_p50`, Math.max(...rs.map((r) => r.p50ms)), 'ms');
      line(`${name}_p99`, Math.max(...rs.map((r) => r.p99ms)), 'ms');
      line(
        `${name}_wrong`,
        rs.reduce((n, r) => n + r.wrong, 0),
        'answers',
      );
      line(`${name}_dns_queries`, queries[which], 'queries');
      line(`${name}_daemon_cpu_per_answer`, (1e6 * cpu[which]) / Math.max(1, answers(rs)), 'µs');
    }
    const ratio = rate(runs.dane) / rate(runs.off);
    line('socketmap_dane_vs_off_warm_64conn', ratio, `(DANE / off; target ≥ ${DANE_TARGET_RATIO})`);
    const cpuRatio = cpu.dane / Math.max(1, answers(runs.dane)) / (cpu.off / Math.max(1, answers(runs.off)));
    line('socketmap_dane_vs_off_daemon_cpu_per_answer', cpuRatio, '(DANE / off)');
    line('socketmap_dane_daemon_rss_hwm', hwmMiB(pid), 'MiB');
    await stopServe(serve, 'socketmap_dane_daemon_shutdown');
  } finally {
    serve.child.kill('SIGKILL');
  }
}

/** RssAnon and RssFile of `pid` (MiB): the daemon's own memory, and mapped files (the node binary, addons). */
function rssParts(pid: number | undefined): { anon: number; file: number } {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (re: RegExp): number => Number(re.exec(status)?.[1] ?? NaN) / 1024;
    return { anon: kb(/RssAnon:\s+(\d+) kB/), file: kb(/RssFile:\s+(\d+) kB/) };
  } catch {
    return { anon: NaN, file: NaN };
  }
}

/**
 * The memory target: the daemon's memory with MEMORY_RECORDS cached policies. The store is filled
 * by a child process (valid for 14 days, `lastUpdate` now, `lastUse` a day ago, so that the first
 * hit of each domain is a deferred `lastUse` write, as after a restart); the daemon runs with the
 * default configuration but `cache_grace: 86400` (so warm lookups need no DNS) and the metrics
 * endpoint (for its V8 heap figures), the refresher on as in production. A second daemon, on an
 * identical copy of the store and with the same workload (another random sample), runs with the
 * Node flags of MTASTSDB_BENCH_MEMORY_TUNED_NODE_ARGS (default `--max-semi-space-size=4`; `none`
 * skips it). What makes the peak is V8's heap under load, not what the daemon keeps: `serve` sets a
 * heap growing factor of 25 % (src/daemon/heap-tuning.ts) so the old generation is collected before
 * it balloons; the flag also caps the young generation (2 × 16 MiB by default).
 */
async function memoryPhase(ctx: BenchContext): Promise<void> {
  const path = join(ctx.dir, 'many.db');
  const filled = await fillInChild({ path, count: MEMORY_RECORDS, now: Date.now() });
  let bytes = 0;
  for (const f of await readdir(ctx.dir)) if (f.startsWith('many.db')) bytes += (await stat(join(ctx.dir, f))).size;
  line('memory_store_records', MEMORY_RECORDS, 'records');
  line('memory_store_fill_rate', MEMORY_RECORDS / filled.seconds, 'records/s');
  line('memory_store_file_size', bytes / 1048576, 'MiB');
  const tunedArgs = process.env.MTASTSDB_BENCH_MEMORY_TUNED_NODE_ARGS ?? '--max-semi-space-size=4';
  const tuned = tunedArgs === 'none' ? undefined : tunedArgs.split(' ').filter((a) => a !== '');
  // The store is closed (a single file, rollback journal): a copy is the same store.
  if (tuned !== undefined) await copyFile(path, join(ctx.dir, 'many-tuned.db'));

  await memoryRun(ctx, 'memory', path, 0x9e3779b9, []);
  if (tuned !== undefined) {
    console.log(`# memory_tuned: daemon with node ${tuned.join(' ')}`);
    await memoryRun(ctx, 'memory_tuned', join(ctx.dir, 'many-tuned.db'), 0x85ebca6b, tuned);
  }
}

async function memoryRun(
  ctx: BenchContext,
  name: string,
  path: string,
  seed: number,
  nodeArgs: readonly string[],
): Promise<void> {
  loadLine(`${name}_loadavg`);
  const configFile = await ctx.config(
    name,
    path,
    [
      'cache_grace: 86400',
      'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
      ...(process.env.MTASTSDB_BENCH_MEMORY_CONFIG ?? '').split('\\n').filter((l) => l !== ''),
    ],
    true,
  );
  const serve = await ctx.serve(configFile, nodeArgs);
  try {
    const pid = serve.child.pid;
    const metricsLine = await serve.waitFor(/metrics endpoint listening/);
    const metricsPort = (JSON.parse(metricsLine) as { address?: { port?: number } }).address?.port;
    line(`${name}_daemon_rss_start`, rssMiB(pid), 'MiB');
    for (const [k, v] of Object.entries(await heapMiB(metricsPort))) line(`${name}_daemon_${k}_start`, v, 'MiB');

    const sampler = rssSampler(pid, 100);
    const r = checked(
      await load(serve.port, 64, 300, MEMORY_REQUESTS, { kind: 'store', count: MEMORY_RECORDS, seed }),
      `${name} load`,
    );
    const sampledPeak = sampler.stop();
    line(`${name}_warm_64conn`, r.answers / r.seconds, 'answers/s');
    line(`${name}_warm_64conn_p50`, r.p50ms, 'ms');
    line(`${name}_warm_64conn_p99`, r.p99ms, 'ms');
    line(`${name}_warm_answers`, r.answers, 'answers');
    line(`${name}_warm_wrong`, r.wrong, 'answers');
    line(`${name}_daemon_rss_after_load`, rssMiB(pid), 'MiB');
    const parts = rssParts(pid);
    line(`${name}_daemon_rss_anon_after_load`, parts.anon, 'MiB');
    line(`${name}_daemon_rss_file_after_load`, parts.file, 'MiB');
    for (const [k, v] of Object.entries(await heapMiB(metricsPort))) line(`${name}_daemon_${k}_after_load`, v, 'MiB');
    const peak = Math.max(sampledPeak, hwmMiB(pid));
    line(`${name}_daemon_rss_peak`, peak, 'MiB');
    // Target: RSS ≤ 150 MB with 1,000,000 cached policies (read as MiB here).
    line(`${name}_daemon_rss_peak_vs_target`, (100 * peak) / MEMORY_TARGET_MIB, '%');
    await stopServe(serve, `${name}_daemon_shutdown`);
  } finally {
    serve.child.kill('SIGKILL');
  }
}

export async function run(): Promise<void> {
  loadLine('socketmap_loadavg_start');
  const dns = await startDnsServer();
  const warm = Array.from({ length: WARM_DOMAINS }, (_, i) => fixtureDomain('warm', i));
  // The cold set costs a certificate per SANS hosts up front: only made when that phase runs.
  const cold = Array.from({ length: PHASES.has('cold') ? COLD : 0 }, (_, i) => fixtureDomain('cold', i));
  // The dane set, with its DNSSEC records, likewise only when its phase runs.
  const daneSet = Array.from({ length: PHASES.has('dane') ? DANE_DOMAINS : 0 }, (_, i) => fixtureDomain('dane', i));
  for (const d of [...warm, ...cold, ...daneSet]) dns.mtaSts(d, { id: 'bench1' });
  if (daneSet.length > 0) publishDane(dns, daneSet);
  // Names per certificate (MTASTSDB_BENCH_SANS, default 1: each host its own certificate).
  const host = await startPolicyHost([...warm, ...cold, ...daneSet], policyFor, {
    sans: envInt('MTASTSDB_BENCH_SANS', 1),
  });
  // Made last, so that a fixture failing to start leaves no directory behind.
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-smbench-'));
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, host.caPem);
  const nodeArgs = (process.env.MTASTSDB_BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  const ctx: BenchContext = {
    dir,
    warmKeys: { kind: 'fixture', zone: 'warm', count: WARM_DOMAINS },
    dnsAddress: dns.address,
    dnsQueries: () => dns.log.length,
    async config(name, store, extra = [], refresher = false, zones = ['  postfix:', '    timeout: 20']) {
      const file = join(dir, `${name}.yml`);
      await writeFile(
        file,
        [
          'host: 127.0.0.1',
          'port: 0',
          `store: ${JSON.stringify(store)}`,
          `proactive_policy_fetching:\n  enabled: ${refresher}`,
          'default_zone:\n  timeout: 20',
          'zones:',
          ...zones,
          'logging:\n  level: info',
          'limits:',
          `  max_connections: ${FLOOD_CONNECTIONS + 2000}`,
          '  max_in_flight_discoveries: 256',
          // The fixture domains share a few registrable domains (`cold.test`, …), and cold discoveries
          // may take every slot, as before the discovery limits: figures stay comparable.
          '  discovery_domain_share_percent: 100',
          '  discovery_reserve_percent: 0',
          '  fetch_rate_global:\n    rate: 100000\n    burst: 100000',
          ...extra,
          '',
        ].join('\n'),
      );
      return file;
    },
    serve: (configFile, extraNodeArgs = []) =>
      spawnServe(
        ['-c', configFile, '--dns-server', dns.address, '--policy-port', String(host.port), '--ca', caFile],
        { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
        [...nodeArgs, ...extraNodeArgs],
      ),
  };

  let serve: ServeProcess | undefined;
  try {
    // Ceiling: the constant-answer server, same client, same machine, same run.
    let ceiling = NaN;
    if (PHASES.has('ceiling')) {
      const constant = await startConstantServer();
      try {
        const c64 = await load(constant.port, 64, SECONDS, 10_000_000, { kind: 'constant' });
        const c1 = await load(constant.port, 1, SECONDS, 10_000_000, { kind: 'constant' });
        ceiling = c64.answers / c64.seconds;
        line('socketmap_ceiling_64conn', ceiling, 'answers/s');
        line('socketmap_ceiling_64conn_p99', c64.p99ms, 'ms');
        line('socketmap_ceiling_1conn', c1.answers / c1.seconds, 'answers/s');
      } finally {
        constant.child.kill();
      }
    }

    if (PHASES.has('cold') || PHASES.has('warm') || PHASES.has('flood')) {
      serve = await ctx.serve(await ctx.config('bench', join(dir, 'bench.db')));
      const pid = serve.child.pid;
      line('daemon_rss_start', rssMiB(pid), 'MiB');

      // Cold discovery: every domain is new (TXT + A + TLS handshake + HTTP GET + store write).
      // With it, what this machine allows: the CPU each side spends per domain, and a bare Node
      // client fetching the same hosts with a new TLS connection each (bench/helpers/tls-floor.ts).
      if (PHASES.has('cold')) {
        loadLine('socketmap_cold_loadavg');
        const daemonCpu0 = cpuSeconds(pid);
        const fixturesCpu0 = process.cpuUsage();
        const cr = checked(
          await load(serve.port, 32, 120, cold.length, { kind: 'fixture', zone: 'cold', count: COLD }),
          'cold',
        );
        const daemonMs = ((cpuSeconds(pid) - daemonCpu0) * 1000) / Math.max(1, cr.answers);
        const fixtures = process.cpuUsage(fixturesCpu0);
        const fixturesMs = (fixtures.user + fixtures.system) / 1000 / Math.max(1, cr.answers);
        line('socketmap_cold_discovery_32conn', cr.answers / cr.seconds, 'domains/s');
        line('socketmap_cold_discovery_domains', cr.answers, 'domains');
        line('socketmap_cold_discovery_wrong', cr.wrong, 'answers');
        line('socketmap_cold_discovery_p99', cr.p99ms, 'ms');
        line('socketmap_cold_daemon_cpu_per_domain', daemonMs, 'ms');
        line('socketmap_cold_fixtures_cpu_per_domain', fixturesMs, 'ms');
        // Both sides on this machine's cores, nothing else running: the most it could do.
        line('socketmap_cold_machine_cap', (1000 * cpus().length) / (daemonMs + fixturesMs), 'domains/s');
        line('daemon_rss_after_cold', rssMiB(pid), 'MiB');
        const floor = await tlsFloorInChild({ port: host.port, caFile, count: COLD, concurrency: 32 });
        line('socketmap_cold_node_tls_client', floor.tls.rate, 'fetches/s');
        line('socketmap_cold_node_tls_client_cpu', floor.tls.cpuMs, 'ms/fetch');
        line('socketmap_cold_node_https_client', floor.https.rate, 'fetches/s');
        line('socketmap_cold_node_https_client_cpu', floor.https.cpuMs, 'ms/fetch');
        line('socketmap_cold_vs_node_https_client', (100 * (cr.answers / cr.seconds)) / floor.https.rate, '%');
      }

      // Warm: prime the warm set (also needed by the floods), then measure.
      await prime(ctx, serve.port);
      if (PHASES.has('warm')) {
        loadLine('socketmap_warm_loadavg');
        const w64 = checked(await load(serve.port, 64, SECONDS, 10_000_000, ctx.warmKeys), 'warm 64conn');
        line('socketmap_warm_64conn', w64.answers / w64.seconds, 'answers/s');
        line('socketmap_warm_64conn_p50', w64.p50ms, 'ms');
        line('socketmap_warm_64conn_p99', w64.p99ms, 'ms');
        line('socketmap_warm_64conn_wrong', w64.wrong, 'answers');
        line('socketmap_warm_vs_ceiling', (100 * (w64.answers / w64.seconds)) / ceiling, '%');
        const w1 = checked(await load(serve.port, 1, SECONDS, 10_000_000, ctx.warmKeys), 'warm 1conn');
        line('socketmap_warm_1conn', w1.answers / w1.seconds, 'answers/s');
        line('socketmap_warm_1conn_p50', w1.p50ms, 'ms');
        line('socketmap_warm_1conn_p99', w1.p99ms, 'ms');
        line('socketmap_warm_1conn_wrong', w1.wrong, 'answers');
        line('daemon_rss_after_warm', rssMiB(pid), 'MiB');
      }

      // Floods: pipelined requests and many connections, every answer checked.
      if (PHASES.has('flood')) {
        const pf = await pipelinedFlood(serve.port, PIPELINED, warm, pid);
        line('flood_pipelined_requests', PIPELINED, 'requests');
        line('flood_pipelined_answered', pf.answered, 'answers');
        line('flood_pipelined_wrong', pf.wrong, 'answers');
        line('flood_pipelined_rate', pf.answered / pf.seconds, 'answers/s');
        line('flood_pipelined_daemon_peak_rss', pf.peakRss, 'MiB');
        const cf = await connectionFlood(serve.port, FLOOD_CONNECTIONS, warm, pid);
        line('flood_connections_opened', cf.opened, 'connections');
        line('flood_connections_failed_connect', cf.failedConnect, 'connections');
        line('flood_connections_wrong', cf.wrong, 'answers');
        line('flood_connections_lost', cf.lost, 'answers');
        line('flood_connections_seconds', cf.seconds, 's');
        line('flood_connections_daemon_peak_rss', cf.peakRss, 'MiB');
      }
      line('daemon_rss_hwm', hwmMiB(pid), 'MiB');
      await stopServe(serve, 'daemon_shutdown');
    }

    if (PHASES.has('dane')) {
      loadLine('socketmap_dane_loadavg');
      await danePhase(ctx);
    }
    if (PHASES.has('postgres')) {
      loadLine('socketmap_postgres_loadavg');
      await postgresPhase(ctx);
    }
    if (PHASES.has('memory')) await memoryPhase(ctx);
    loadLine('socketmap_loadavg_end');
  } finally {
    serve?.child.kill('SIGKILL');
    await host.close();
    await dns.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await run();
}
