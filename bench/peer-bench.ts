// Side by side (`npm run bench -- peer`): postfix-mta-sts-resolver (Debian's package, SQLite cache),
// a constant-answer Node server and `mtastsdb serve`, one after the other, against the same
// synthetic world with the same load generator (bench/helpers/socketmap-load.ts, in a child process).
//
// The world: a network namespace with a veth pair (test/helpers/netns.ts); on the host side of the
// pair the DNS fixture on port 53 (the namespace's resolv.conf names it, so both daemons use the
// system resolver) and the HTTPS policy host on port 443 with a test CA (trusted through
// SSL_CERT_FILE by the peer, `--ca` by mtastsdb). DOMAINS enforce domains (`c<i>.cold.test`, mx
// `mx.<d>` and `*.mx.<d>`) and a sample of other kinds. The daemons run inside the namespace; the
// load reaches them over the pair. Nothing leaves it.
//
// Per daemon: cold discovery of every domain at 16 connections (rate, daemon CPU per domain), the
// sample's answers, warm answers of the same domains at 64 and 1 connections (rate, p50/p99, daemon
// CPU per answer), RSS after the run. Daemon CPU is utime + stime of its process (/proc/<pid>/stat),
// all threads. Every answer is checked: the load generator counts wrong answers (order of `match=`
// read as a set, see bench/helpers/answers.ts), and the sample's answers of the two daemons are
// compared and every difference printed.
//
// Env: MTASTSDB_BENCH_PEER_DOMAINS (default 5000; e.g. 500 for a quick run), MTASTSDB_BENCH_SECONDS
// (per warm load, default 5), MTASTSDB_BENCH_PEER_DAEMONS (comma list of peer, constant, mtastsdb;
// default all three, in that order), MTASTSDB_BENCH_DAEMON_NODE_ARGS (extra Node flags of mtastsdb,
// e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof"). Needs root (apt, ip netns). Bounded: each cold load
// 300 s, each warm load SECONDS, each daemon start 20 s and stop 30 s.
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { createNetns, netnsAvailable } from '../test/helpers/netns.js';
import type { Netns } from '../test/helpers/netns.js';
import { ensurePeerDaemon, peerDaemonVersion, startPeerDaemon } from '../test/helpers/peer-daemon.js';
import { spawnServe } from '../test/helpers/serve-process.js';
import { SocketmapClient } from '../test/helpers/socketmap-client.js';
import { relateAnswers } from './helpers/answers.js';
import type { AnswerRelation } from './helpers/answers.js';
import { startConstantServer } from './helpers/constant-server.js';
import { startPolicyHost } from './helpers/policy-host.js';
import { cpuSeconds, rssMiB } from './helpers/proc.js';
import { fixtureDomain, loadInChild, policyFor } from './helpers/socketmap-load.js';
import type { KeySpec, LoadResult } from './helpers/socketmap-load.js';

const envInt = (name: string, dflt: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isSafeInteger(n) && n > 0 ? n : dflt;
};
const DOMAINS = envInt('MTASTSDB_BENCH_PEER_DOMAINS', 5000);
const SECONDS = envInt('MTASTSDB_BENCH_SECONDS', 5);
const COLD_CONNECTIONS = 16;
const COLD_BOUND_SECONDS = 300;
/** Per-request DNS and HTTPS timeout of both daemons, seconds (well above what the world needs). */
const TIMEOUT_SECONDS = 20;
/** Longer than the run: every warm answer comes from the cache, without DNS, on both daemons. */
const CACHE_GRACE_SECONDS = 86_400;
const DAEMONS = (process.env.MTASTSDB_BENCH_PEER_DAEMONS ?? 'peer,constant,mtastsdb')
  .split(',')
  .map((d) => d.trim())
  .filter((d) => d !== '');

/** A domain of the sample: its TXT record (null: none) and policy (null: 404). */
interface SampleDomain {
  readonly domain: string;
  readonly what: string;
  readonly record: string | null;
  readonly policy: string | null;
}

const policy = (mode: string, ...mx: string[]): string =>
  `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}\r\n`).join('')}max_age: 604800\r\n`;

const SAMPLE: readonly SampleDomain[] = [
  {
    domain: 'enforce.sample.test',
    what: 'enforce, two mx',
    record: 'v=STSv1; id=s1;',
    policy: policy('enforce', 'mail.enforce.sample.test', 'backup.enforce.sample.test'),
  },
  {
    domain: 'testing.sample.test',
    what: 'testing',
    record: 'v=STSv1; id=s1;',
    policy: policy('testing', 'mail.testing.sample.test'),
  },
  {
    domain: 'none.sample.test',
    what: 'none',
    record: 'v=STSv1; id=s1;',
    policy: 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n',
  },
  { domain: 'norecord.sample.test', what: 'no record (NXDOMAIN)', record: null, policy: null },
  { domain: 'notsts.sample.test', what: 'TXT but no STSv1 record', record: 'v=spf1 -all', policy: null },
  {
    domain: 'wildcard.sample.test',
    what: 'wildcard mx',
    record: 'v=STSv1; id=s1;',
    policy: policy('enforce', '*.mx.wildcard.sample.test', 'mail.wildcard.sample.test'),
  },
  { domain: 'nopolicy.sample.test', what: 'record, policy 404', record: 'v=STSv1; id=s1;', policy: null },
];

const line = (name: string, value: number | string, unit = ''): void =>
  console.log(
    `${name}: ${typeof value === 'number' ? Number(value.toFixed(value < 10 ? 3 : 0)) : value}${unit ? ` ${unit}` : ''}`,
  );
const loadLine = (name: string): void => line(name, Number(loadavg()[0]?.toFixed(2)), '(1-min load average)');

/** What one daemon did. */
interface DaemonFigures {
  readonly cold: { readonly rate: number; readonly cpuMs: number; readonly result: LoadResult } | undefined;
  readonly w64: LoadResult;
  readonly w1: LoadResult;
  /** Daemon CPU per warm answer at 64 connections, µs. */
  readonly warmCpuUs: number;
  readonly warmCpuUs1: number;
  readonly rssMiB: number;
  /** The sample's answers (second query: from the cache). */
  readonly sample: ReadonlyMap<string, string>;
}

/** A daemon under test, started inside the namespace. */
interface Started {
  readonly pid: number;
  readonly host: string;
  readonly port: number;
  stop(): Promise<void>;
}

const warmKeys: KeySpec = { kind: 'fixture', zone: 'cold', count: DOMAINS };

async function measure(name: string, d: Started, discovers: boolean): Promise<DaemonFigures> {
  const load = (connections: number, seconds: number, max: number, keys: KeySpec) =>
    loadInChild({ host: d.host, port: d.port, connections, seconds, maxRequests: max, keys, matchAsSet: true });
  const report = (what: string, r: LoadResult): LoadResult => {
    if (r.wrong > 0) {
      const w = r.firstWrong;
      console.log(`# ${name} ${what}: ${r.wrong} wrong answers; first: ${w?.key} -> ${JSON.stringify(w?.reply)}`);
    }
    return r;
  };
  let cold: DaemonFigures['cold'];
  const sample = new Map<string, string>();
  if (discovers) {
    loadLine(`${name}_cold_loadavg`);
    const cpu0 = cpuSeconds(d.pid);
    const r = report('cold', await load(COLD_CONNECTIONS, COLD_BOUND_SECONDS, DOMAINS, warmKeys));
    const cpuMs = ((cpuSeconds(d.pid) - cpu0) * 1000) / Math.max(1, r.answers);
    cold = { rate: r.answers / r.seconds, cpuMs, result: r };
    line(`${name}_cold_discovery_16conn`, cold.rate, 'domains/s');
    line(`${name}_cold_domains`, r.answers, 'domains');
    line(`${name}_cold_wrong`, r.wrong, 'answers');
    line(`${name}_cold_p50`, r.p50ms, 'ms');
    line(`${name}_cold_p99`, r.p99ms, 'ms');
    line(`${name}_cold_daemon_cpu_per_domain`, cpuMs, 'ms');
    const c = await SocketmapClient.open({ host: d.host, port: d.port });
    try {
      for (const s of SAMPLE) {
        await c.query('postfix', s.domain);
        sample.set(s.domain, await c.query('postfix', s.domain));
      }
    } finally {
      c.destroy();
    }
  }
  loadLine(`${name}_warm_loadavg`);
  const keys: KeySpec = discovers ? warmKeys : { kind: 'constant' };
  let cpu0 = cpuSeconds(d.pid);
  const w64 = report('warm 64conn', await load(64, SECONDS, 10_000_000, keys));
  const warmCpuUs = ((cpuSeconds(d.pid) - cpu0) * 1e6) / Math.max(1, w64.answers);
  cpu0 = cpuSeconds(d.pid);
  const w1 = report('warm 1conn', await load(1, SECONDS, 10_000_000, keys));
  const warmCpuUs1 = ((cpuSeconds(d.pid) - cpu0) * 1e6) / Math.max(1, w1.answers);
  const rss = rssMiB(d.pid);
  line(`${name}_warm_64conn`, w64.answers / w64.seconds, 'answers/s');
  line(`${name}_warm_64conn_p50`, w64.p50ms, 'ms');
  line(`${name}_warm_64conn_p99`, w64.p99ms, 'ms');
  line(`${name}_warm_64conn_wrong`, w64.wrong, 'answers');
  line(`${name}_warm_64conn_daemon_cpu_per_answer`, warmCpuUs, 'µs');
  line(`${name}_warm_1conn`, w1.answers / w1.seconds, 'answers/s');
  line(`${name}_warm_1conn_p50`, w1.p50ms, 'ms');
  line(`${name}_warm_1conn_p99`, w1.p99ms, 'ms');
  line(`${name}_warm_1conn_wrong`, w1.wrong, 'answers');
  line(`${name}_warm_1conn_daemon_cpu_per_answer`, warmCpuUs1, 'µs');
  line(`${name}_rss_after_run`, rss, 'MiB');
  return { cold, w64, w1, warmCpuUs, warmCpuUs1, rssMiB: rss, sample };
}

function startMtastsdb(ns: Netns, dir: string, caFile: string): Promise<Started> {
  const config = join(dir, 'mtastsdb.yml');
  const nodeArgs = (process.env.MTASTSDB_BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== '');
  return writeFile(
    config,
    [
      `host: ${ns.address}`,
      'port: 0',
      `store: ${JSON.stringify(join(dir, 'mtastsdb.db'))}`,
      `cache_grace: ${CACHE_GRACE_SECONDS}`,
      'proactive_policy_fetching:\n  enabled: false',
      `default_zone:\n  timeout: ${TIMEOUT_SECONDS}`,
      `zones:\n  postfix:\n    timeout: ${TIMEOUT_SECONDS}`,
      'limits:',
      '  max_in_flight_discoveries: 256',
      // The fixture domains share a few registrable domains (`cold.test`, …), and cold discoveries
      // may take every slot, as before the discovery limits: figures stay comparable.
      '  discovery_domain_share_percent: 100',
      '  discovery_reserve_percent: 0',
      '  fetch_rate_global:\n    rate: 100000\n    burst: 100000',
      '',
    ].join('\n'),
  )
    .then(() =>
      spawnServe(['-c', config, '--ca', caFile], { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' }, nodeArgs, [
        'ip',
        'netns',
        'exec',
        ns.name,
      ]),
    )
    .then((serve) => ({
      pid: serve.child.pid as number,
      host: ns.address,
      port: serve.port,
      async stop() {
        serve.child.kill('SIGTERM');
        const timer = setTimeout(() => serve.child.kill('SIGKILL'), 30_000);
        const code = await serve.exited;
        clearTimeout(timer);
        if (code !== 0) console.log(`# mtastsdb exited ${code}`);
      },
    }));
}

const ratio = (a: number | undefined, b: number | undefined): string =>
  a === undefined || b === undefined || !Number.isFinite(a / b) ? '—' : `${(a / b).toFixed(2)}×`;
const fmt = (n: number | undefined, digits = 0): string =>
  n === undefined || !Number.isFinite(n)
    ? '—'
    : n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });

/** The table of BENCHMARKS.md, and the ratios the targets are stated in. */
function summary(fig: Readonly<Record<string, DaemonFigures | undefined>>): void {
  const m = fig.mtastsdb;
  const p = fig.peer;
  const c = fig.constant;
  const rate = (r: LoadResult | undefined): number | undefined => (r === undefined ? undefined : r.answers / r.seconds);
  const rows: [string, (f: DaemonFigures | undefined) => string, string, string][] = [
    [
      'warm answers/s, 64 connections',
      (f) => fmt(rate(f?.w64)),
      ratio(rate(m?.w64), rate(p?.w64)),
      ratio(rate(m?.w64), rate(c?.w64)),
    ],
    [
      'warm p50 / p99, 64 connections (ms)',
      (f) => `${fmt(f?.w64.p50ms, 2)} / ${fmt(f?.w64.p99ms, 2)}`,
      ratio(m?.w64.p99ms, p?.w64.p99ms),
      ratio(m?.w64.p99ms, c?.w64.p99ms),
    ],
    [
      'warm answers/s, 1 connection',
      (f) => fmt(rate(f?.w1)),
      ratio(rate(m?.w1), rate(p?.w1)),
      ratio(rate(m?.w1), rate(c?.w1)),
    ],
    [
      'warm p50 / p99, 1 connection (ms)',
      (f) => `${fmt(f?.w1.p50ms, 3)} / ${fmt(f?.w1.p99ms, 3)}`,
      ratio(m?.w1.p99ms, p?.w1.p99ms),
      ratio(m?.w1.p99ms, c?.w1.p99ms),
    ],
    [
      'daemon CPU per warm answer, 64 connections (µs)',
      (f) => fmt(f?.warmCpuUs, 1),
      ratio(m?.warmCpuUs, p?.warmCpuUs),
      ratio(m?.warmCpuUs, c?.warmCpuUs),
    ],
    [
      'daemon CPU per warm answer, 1 connection (µs)',
      (f) => fmt(f?.warmCpuUs1, 1),
      ratio(m?.warmCpuUs1, p?.warmCpuUs1),
      ratio(m?.warmCpuUs1, c?.warmCpuUs1),
    ],
    ['cold discovery, 16 connections (domains/s)', (f) => fmt(f?.cold?.rate), ratio(m?.cold?.rate, p?.cold?.rate), '—'],
    [
      'cold p50 / p99 (ms)',
      (f) => (f?.cold ? `${fmt(f.cold.result.p50ms, 1)} / ${fmt(f.cold.result.p99ms, 1)}` : '—'),
      '—',
      '—',
    ],
    ['daemon CPU per cold domain (ms)', (f) => fmt(f?.cold?.cpuMs, 2), ratio(m?.cold?.cpuMs, p?.cold?.cpuMs), '—'],
    ['RSS after the run (MiB)', (f) => fmt(f?.rssMiB, 1), ratio(m?.rssMiB, p?.rssMiB), ratio(m?.rssMiB, c?.rssMiB)],
  ];
  console.log(
    '\n| figure | mtastsdb | postfix-mta-sts-resolver | constant-answer server | mtastsdb / peer | mtastsdb / constant |',
  );
  console.log('| --- | --- | --- | --- | --- | --- |');
  for (const [what, cell, vsPeer, vsConst] of rows)
    console.log(`| ${what} | ${cell(m)} | ${cell(p)} | ${cell(c)} | ${vsPeer} | ${vsConst} |`);
  console.log('');
  const num = (s: string): number => Number.parseFloat(s);
  line('ratio_warm_cpu_mtastsdb_vs_constant', num(ratio(m?.warmCpuUs, c?.warmCpuUs)), '(target ≤ 1.3)');
  line('ratio_warm_p99_64conn_mtastsdb_vs_constant', num(ratio(m?.w64.p99ms, c?.w64.p99ms)), '(target ≤ 1.5)');
  line('ratio_cold_cpu_mtastsdb_vs_peer', num(ratio(m?.cold?.cpuMs, p?.cold?.cpuMs)), '(target ≤ 0.5)');
  line('ratio_cold_rate_mtastsdb_vs_peer', num(ratio(m?.cold?.rate, p?.cold?.rate)), '(target ≥ 1.5)');
  line('ratio_rss_mtastsdb_vs_constant', num(ratio(m?.rssMiB, c?.rssMiB)), '(target ≤ 1.5)');
}

/** Compares the sample's answers of mtastsdb and the peer; prints each, and every difference. */
function compareSample(m: DaemonFigures | undefined, p: DaemonFigures | undefined): number {
  if (m === undefined || p === undefined) return 0;
  const counts: Record<AnswerRelation, number> = { same: 0, 'same-set': 0, different: 0 };
  for (const s of SAMPLE) {
    const a = m.sample.get(s.domain) ?? '(none)';
    const b = p.sample.get(s.domain) ?? '(none)';
    const rel = relateAnswers(a, b);
    counts[rel]++;
    const shown = rel === 'same' ? JSON.stringify(a) : `mtastsdb ${JSON.stringify(a)}, peer ${JSON.stringify(b)}`;
    console.log(`# sample ${s.domain} (${s.what}): ${rel === 'different' ? 'DIFFERENT' : rel}: ${shown}`);
  }
  line('sample_answers_same', counts.same, 'domains');
  line('sample_answers_same_as_set', counts['same-set'], 'domains (only the order of match= differs)');
  line('sample_answers_different', counts.different, 'domains');
  return counts.different;
}

export async function run(): Promise<void> {
  if (!netnsAvailable()) throw new Error('the peer benchmark needs root and iproute2 (ip netns)');
  line('peer_daemon_package', await ensurePeerDaemon());
  line('peer_daemon_version', (await peerDaemonVersion()) ?? 'unknown');
  line('peer_domains', DOMAINS, 'domains');
  loadLine('peer_bench_loadavg_start');
  const ns = await createNetns();
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-peerbench-'));
  const cleanups: (() => Promise<void>)[] = [];
  try {
    const dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
    cleanups.push(() => dns.close());
    const bulk = Array.from({ length: DOMAINS }, (_, i) => fixtureDomain('cold', i));
    for (const d of bulk) dns.mtaSts(d, { id: 'bench1', address: ns.hostAddress });
    const texts = new Map<string, string>();
    for (const s of SAMPLE) {
      if (s.record !== null) dns.txt(`_mta-sts.${s.domain}`, [s.record]);
      dns.a(`mta-sts.${s.domain}`, ns.hostAddress);
      if (s.policy !== null) texts.set(s.domain, s.policy);
    }
    const host = await startPolicyHost(
      [...bulk, ...SAMPLE.map((s) => s.domain)],
      (d) => texts.get(d) ?? (d.endsWith('.cold.test') ? policyFor(d) : undefined),
      {
        host: ns.hostAddress,
        port: 443,
      },
    );
    cleanups.push(() => host.close());
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, host.caPem);

    const figures: Record<string, DaemonFigures | undefined> = {};
    for (const name of DAEMONS) {
      let d: Started;
      if (name === 'peer') {
        d = await startPeerDaemon({
          netns: ns,
          cachePath: join(dir, 'peer-cache.db'),
          caFile,
          cacheGraceSeconds: CACHE_GRACE_SECONDS,
          timeoutSeconds: TIMEOUT_SECONDS,
        });
      } else if (name === 'constant') {
        const c = await startConstantServer(ns.address, ['ip', 'netns', 'exec', ns.name]);
        d = {
          pid: c.child.pid as number,
          host: c.host,
          port: c.port,
          stop: async () => {
            const gone = new Promise((r) => c.child.once('exit', r));
            c.child.kill('SIGTERM');
            await gone;
          },
        };
      } else if (name === 'mtastsdb') {
        d = await startMtastsdb(ns, dir, caFile);
      } else throw new Error(`unknown daemon ${name} (have peer, constant, mtastsdb)`);
      console.log(`\n# ${name}: pid ${d.pid}, ${d.host}:${d.port}`);
      try {
        figures[name] = await measure(name, d, name !== 'constant');
      } finally {
        await d.stop();
      }
    }
    const different = compareSample(figures.mtastsdb, figures.peer);
    summary(figures);
    loadLine('peer_bench_loadavg_end');
    const wrong = Object.values(figures).reduce(
      (n, f) => n + (f === undefined ? 0 : (f.cold?.result.wrong ?? 0) + f.w64.wrong + f.w1.wrong),
      0,
    );
    if (different > 0 || wrong > 0)
      console.log(`# answers: ${different} sample differences, ${wrong} wrong in the loads`);
  } finally {
    for (const c of cleanups.reverse()) await c().catch((err: unknown) => console.log(`# cleanup: ${String(err)}`));
    await ns.close();
    await rm(dir, { recursive: true, force: true });
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  await run();
}
