// Socketmap load generator (issues 4 and 6): the daemon (`mtastsdb serve`, its own process) against
// the loopback DNS fixture and a bench HTTPS policy host, driven by netstring clients in this
// process. Prints `name: value unit` lines:
// - ceiling: a constant-answer Node server (same client, same run) at 64 connections and 1;
// - warm lookups of cached domains at 64 connections (+ p50/p99) and at 1 connection;
// - cold discovery of distinct domains (TXT + A + TLS + HTTP + store) at 32 connections;
// - floods: 1,000,000 pipelined requests and 10,000 connections, every answer checked, peak RSS.
// Every phase is bounded in count and time. Env: MTASTSDB_BENCH_SECONDS (per warm phase, default 5),
// MTASTSDB_BENCH_COLD (cold domains, default 10000), MTASTSDB_BENCH_PIPELINED (default 1000000),
// MTASTSDB_BENCH_CONNECTIONS (flood connections, default 10000).
import 'reflect-metadata';
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { fileURLToPath } from 'node:url';
import { encodeNetstring } from '../src/socketmap/netstring.js';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { spawnServe } from '../test/helpers/serve-process.js';
import type { ServeProcess } from '../test/helpers/serve-process.js';
import { SocketmapClient } from '../test/helpers/socketmap-client.js';
import { getTestCa } from '../test/helpers/test-ca.js';

const envInt = (name: string, dflt: number): number => {
  const n = Number.parseInt(process.env[name] ?? '', 10);
  return Number.isSafeInteger(n) && n > 0 ? n : dflt;
};
const SECONDS = envInt('MTASTSDB_BENCH_SECONDS', 5);
const COLD = envInt('MTASTSDB_BENCH_COLD', 10_000);
const PIPELINED = envInt('MTASTSDB_BENCH_PIPELINED', 1_000_000);
const FLOOD_CONNECTIONS = envInt('MTASTSDB_BENCH_CONNECTIONS', 10_000);
const WARM_DOMAINS = 1000;
/** Phases to run (comma list of ceiling, cold, warm, flood); default all. */
const PHASES = new Set((process.env.MTASTSDB_BENCH_PHASES ?? 'ceiling,cold,warm,flood').split(','));

const line = (name: string, value: number | string, unit = ''): void =>
  console.log(
    `${name}: ${typeof value === 'number' ? Number(value.toFixed(value < 10 ? 3 : 0)) : value}${unit ? ` ${unit}` : ''}`,
  );

function rssMiB(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function hwmMiB(pid: number | undefined): number {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number;
}

interface LoadResult {
  readonly answers: number;
  readonly seconds: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly wrong: number;
}

/**
 * `connections` clients, each with one request outstanding at a time (as Postfix's socketmap client
 * does), for `seconds` or until `maxRequests` are answered. `key(i)` picks the key of request i;
 * `check` validates a reply.
 */
export async function load(
  port: number,
  connections: number,
  seconds: number,
  maxRequests: number,
  key: (i: number) => string,
  check: (reply: string, key: string) => boolean,
): Promise<LoadResult> {
  const clients = await Promise.all(
    Array.from({ length: connections }, () => SocketmapClient.open({ host: '127.0.0.1', port })),
  );
  for (const c of clients) c.keepReplies = false;
  const latencies = new Float64Array(Math.min(maxRequests, 5_000_000));
  let next = 0;
  let answered = 0;
  let wrong = 0;
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  await Promise.all(
    clients.map(async (c) => {
      for (;;) {
        if (next >= maxRequests || process.hrtime.bigint() >= deadline) return;
        const i = next++;
        const k = key(i);
        const t0 = process.hrtime.bigint();
        const reply = await c.query('postfix', k);
        const dt = Number(process.hrtime.bigint() - t0) / 1e6;
        if (answered < latencies.length) latencies[answered] = dt;
        answered++;
        if (!check(reply, k)) wrong++;
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  for (const c of clients) c.destroy();
  const lat = latencies.subarray(0, Math.min(answered, latencies.length)).sort();
  return { answers: answered, seconds: secs, p50ms: percentile(lat, 50), p99ms: percentile(lat, 99), wrong };
}

// The "trivial Node server that parses netstrings and answers a constant" of issue 4, as plain JS.
const CONSTANT_SERVER = `
const net = require('node:net');
const reply = Buffer.from('44:OK secure match=mail.loc servername=hostname,');
const server = net.createServer((s) => {
  let buf = Buffer.alloc(0);
  s.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const colon = buf.indexOf(58);
      if (colon < 0) break;
      const len = Number(buf.subarray(0, colon).toString());
      if (buf.length < colon + len + 2) break;
      buf = buf.subarray(colon + len + 2);
      s.write(reply);
    }
  });
  s.on('error', () => {});
});
server.listen(0, '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
`;

async function startConstantServer(): Promise<{ child: ChildProcess; port: number }> {
  const child = spawn(process.execPath, ['-e', CONSTANT_SERVER], { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`constant server exited ${code}`)));
  });
  return { child, port };
}

/** A bench HTTPS policy host: one certificate per 100 hosts (SANs), so 10,000 hosts cost 100 keys. */
async function startPolicyHost(domains: readonly string[], text: (d: string) => string) {
  const ca = await getTestCa();
  const contexts = new Map<string, Promise<SecureContext>>();
  const group = new Map<string, number>();
  domains.forEach((d, i) => group.set(`mta-sts.${d}`, Math.floor(i / 100)));
  const contextOf = (g: number): Promise<SecureContext> => {
    const k = String(g);
    let c = contexts.get(k);
    if (c === undefined) {
      const names = domains.slice(g * 100, g * 100 + 100).map((d) => `mta-sts.${d}`);
      c = ca.leaf(names).then((leaf) => createSecureContext({ cert: leaf.chainPem, key: leaf.keyPem }));
      contexts.set(k, c);
    }
    return c;
  };
  // Make every certificate up front: the bench measures the daemon, not key generation.
  await Promise.all(Array.from({ length: Math.ceil(domains.length / 100) }, (_, g) => contextOf(g)));
  const fallback = await ca.leaf(['default.test']);
  let requests = 0;
  const server = createHttpsServer(
    {
      cert: fallback.chainPem,
      key: fallback.keyPem,
      SNICallback(name, cb) {
        const g = group.get(name.toLowerCase());
        if (g === undefined) cb(new Error('unknown host'));
        else contextOf(g).then((ctx) => cb(null, ctx), cb);
      },
    },
    (req, res) => {
      requests++;
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      const d = host.replace(/^mta-sts\./, '');
      res.writeHead(200, { 'content-type': 'text/plain' }).end(text(d));
    },
  );
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    caPem: ca.certPem,
    requests: () => requests,
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const policyFor = (d: string): string =>
  `version: STSv1\r\nmode: enforce\r\nmx: mx.${d}\r\nmx: *.mx.${d}\r\nmax_age: 604800\r\n`;
const okFor = (d: string): string => `OK secure match=mx.${d}:.mx.${d} servername=hostname`;

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

export async function run(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-smbench-'));
  const dns = await startDnsServer();
  const warm = Array.from({ length: WARM_DOMAINS }, (_, i) => `w${i}.warm.test`);
  const cold = Array.from({ length: COLD }, (_, i) => `c${i}.cold.test`);
  for (const d of [...warm, ...cold]) dns.mtaSts(d, { id: 'bench1' });
  const host = await startPolicyHost([...warm, ...cold], policyFor);
  const caFile = join(dir, 'ca.pem');
  await writeFile(caFile, host.caPem);
  const configFile = join(dir, 'bench.yml');
  await writeFile(
    configFile,
    [
      'host: 127.0.0.1',
      'port: 0',
      `store: ${join(dir, 'bench.db')}`,
      'proactive_policy_fetching:\n  enabled: false',
      'default_zone:\n  timeout: 20',
      'zones:\n  postfix:\n    timeout: 20',
      'logging:\n  level: info',
      'limits:',
      `  max_connections: ${FLOOD_CONNECTIONS + 2000}`,
      '  max_in_flight_discoveries: 256',
      '  fetch_rate_global:\n    rate: 100000\n    burst: 100000',
      '',
    ].join('\n'),
  );

  // Ceiling: the constant-answer server, same client, same machine, same run.
  let ceiling = NaN;
  if (PHASES.has('ceiling')) {
    const constant = await startConstantServer();
    const c64 = await load(
      constant.port,
      64,
      SECONDS,
      10_000_000,
      () => 'example.com',
      () => true,
    );
    const c1 = await load(
      constant.port,
      1,
      SECONDS,
      10_000_000,
      () => 'example.com',
      () => true,
    );
    constant.child.kill();
    ceiling = c64.answers / c64.seconds;
    line('socketmap_ceiling_64conn', ceiling, 'answers/s');
    line('socketmap_ceiling_64conn_p99', c64.p99ms, 'ms');
    line('socketmap_ceiling_1conn', c1.answers / c1.seconds, 'answers/s');
  }

  let serve: ServeProcess | undefined;
  try {
    serve = await spawnServe(
      ['-c', configFile, '--dns-server', dns.address, '--policy-port', String(host.port), '--ca', caFile],
      { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
      // e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof" to profile the daemon
      (process.env.MTASTSDB_BENCH_DAEMON_NODE_ARGS ?? '').split(' ').filter((a) => a !== ''),
    );
    const pid = serve.child.pid;
    line('daemon_rss_start', rssMiB(pid), 'MiB');

    // Cold discovery: every domain is new (TXT + A + TLS handshake + HTTP GET + store write).
    if (PHASES.has('cold')) {
      const cr = await load(
        serve.port,
        32,
        120,
        cold.length,
        (i) => cold[i] as string,
        (r, k) => r === okFor(k),
      );
      line('socketmap_cold_discovery_32conn', cr.answers / cr.seconds, 'domains/s');
      line('socketmap_cold_discovery_domains', cr.answers, 'domains');
      line('socketmap_cold_discovery_wrong', cr.wrong, 'answers');
      line('socketmap_cold_discovery_p99', cr.p99ms, 'ms');
      line('daemon_rss_after_cold', rssMiB(pid), 'MiB');
    }

    // Warm: prime the warm set (also needed by the floods), then measure.
    await load(
      serve.port,
      32,
      60,
      warm.length,
      (i) => warm[i] as string,
      () => true,
    );
    if (PHASES.has('warm')) {
      const w64 = await load(
        serve.port,
        64,
        SECONDS,
        10_000_000,
        (i) => warm[i % warm.length] as string,
        (r, k) => r === okFor(k),
      );
      line('socketmap_warm_64conn', w64.answers / w64.seconds, 'answers/s');
      line('socketmap_warm_64conn_p50', w64.p50ms, 'ms');
      line('socketmap_warm_64conn_p99', w64.p99ms, 'ms');
      line('socketmap_warm_64conn_wrong', w64.wrong, 'answers');
      line('socketmap_warm_vs_ceiling', (100 * (w64.answers / w64.seconds)) / ceiling, '%');
      const w1 = await load(
        serve.port,
        1,
        SECONDS,
        10_000_000,
        (i) => warm[i % warm.length] as string,
        (r, k) => r === okFor(k),
      );
      line('socketmap_warm_1conn', w1.answers / w1.seconds, 'answers/s');
      line('socketmap_warm_1conn_p99', w1.p99ms, 'ms');
      line('daemon_rss_after_warm', rssMiB(pid), 'MiB');
    }

    // Issue 6 floods: pipelined requests and many connections, every answer checked.
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

    serve.child.kill('SIGTERM');
    const t0 = Date.now();
    const code = await serve.exited;
    line('daemon_shutdown', (Date.now() - t0) / 1000, 's');
    if (code !== 0) throw new Error(`daemon exited ${code}`);
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
