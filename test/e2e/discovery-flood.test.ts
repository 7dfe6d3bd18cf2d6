// The discovery limits of `mtastsdb serve` (its own process, SQLite store) under two attacks:
// 1. hostile policy hosts: many subdomains of one attacker domain (then many attacker domains),
//    each policy host trickling its answer a byte a second, try to hold every discovery slot; a new
//    legitimate domain is still discovered within its zone timeout, a cached domain answers at once
//    and its TXT check still runs (the reserve), and the excess is refused at once;
// 2. a DNS black hole: lookups of distinct names whose DNS never answers, at 250 a second for 15 s;
//    the daemon's RSS stays bounded and the lookups over the limits get an immediate TEMP.
// Figures are printed as `# discovery-flood: …` lines.
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { hwmMiB, rssMiB, rssSampler } from '../../bench/helpers/proc.js';
import { policyText } from '../helpers/cache-fixture.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startHttpsHost, type HttpsHost } from '../helpers/https-host.js';
import { spawnServe, writeServeConfig, type ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { getTestCa, type TestCa } from '../helpers/test-ca.js';

const say = (msg: string): void => console.log(`# discovery-flood: ${msg}`);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The daemon's defaults: 256 in flight, 25 % reserved, 5 % per registrable domain. */
const MAX_IN_FLIGHT = 256;
const UNRESERVED = 192;
const PER_DOMAIN = 12;
/** Zone timeout of the `temp` zone (temp_on_error), seconds. */
const ZONE_TIMEOUT_S = 4;
/** Bound on the daemon's peak RSS during the black-hole flood, MiB. */
const RSS_BOUND_MIB = 300;

/**
 * Socketmap connections used one request at a time, as Postfix uses them (replies on one connection
 * come in order, so a request behind a slow one would wait for it): an idle one is reused, else a
 * new one is opened.
 */
class ClientPool {
  private readonly idle: SocketmapClient[] = [];
  private readonly all: SocketmapClient[] = [];
  constructor(private readonly port: number) {}

  /** The reply to `name key` and how long it took, ms. */
  async ask(name: string, key: string): Promise<{ reply: string; ms: number }> {
    let c = this.idle.pop();
    if (c === undefined) {
      c = await SocketmapClient.open({ host: '127.0.0.1', port: this.port });
      c.keepReplies = false;
      this.all.push(c);
    }
    const t0 = performance.now();
    const reply = await c.query(name, key);
    const ms = performance.now() - t0;
    this.idle.push(c);
    return { reply, ms };
  }

  get size(): number {
    return this.all.length;
  }

  close(): void {
    for (const c of this.all) c.destroy();
  }
}

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number;
}

async function metric(port: number | undefined, re: RegExp): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : NaN;
}

const serveConfig = (extra: readonly string[] = []): string[] => [
  // Every cached policy's TXT id is checked on each lookup: a cached domain needs a discovery slot.
  'cache_grace: 0',
  'proactive_policy_fetching:\n  enabled: false',
  'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
  `zones:\n  temp:\n    temp_on_error: true\n    timeout: ${ZONE_TIMEOUT_S}\n  patient:\n    temp_on_error: true\n    timeout: 30`,
  // Limits: the defaults (max_in_flight_discoveries 256, reserve 25 %, share 5 %).
  ...extra,
];

describe('discovery limits: hostile policy hosts', { timeout: 120_000 }, () => {
  const pid = process.pid;
  let dir: string;
  let dns: DnsServer;
  let https: HttpsHost;
  let serve: ServeProcess;
  let metricsPort: number | undefined;
  let pool: ClientPool;
  let ca: TestCa;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-discovery-flood-'));
    ca = await getTestCa();
    [dns, https] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, ca.certPem);
    const config = await writeServeConfig(join(dir, 'serve.yml'), join(dir, 'policies.db'), serveConfig());
    serve = await spawnServe([
      ...['--dns-server', dns.address, '--ca', caFile, '--policy-port', String(https.port)],
      // A trickling host holds its discovery slot for the whole fetch deadline.
      ...['--timeout', '60', '--allow-private-addresses', '-c', config],
    ]);
    const line = await serve.waitFor(/metrics endpoint listening/);
    metricsPort = (JSON.parse(line) as { address?: { port?: number } }).address?.port;
    pool = new ClientPool(serve.port);
  });

  after(async () => {
    pool?.close();
    serve?.child.kill('SIGKILL');
    await Promise.all([dns?.close(), https?.close()]);
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  /**
   * Domains whose policy hosts trickle a long policy one byte a second: their fetches never end in
   * time. Their certificates are made first, so that making them does not slow the attack's answers.
   */
  const hostile = async (domains: readonly string[]): Promise<void> => {
    await Promise.all(domains.map((d) => ca.leaf([`mta-sts.${d}`])));
    for (const d of domains) trickle(d);
  };
  const trickle = (domain: string): void => {
    dns.mtaSts(domain, { id: 'evil1' });
    https.behave(domain, {
      body: { kind: 'trickle', data: policyText('enforce', [`mx.${domain}`], 86400).repeat(20), intervalMs: 1000 },
    });
  };

  it('one attacker domain holds its share only; a new domain is discovered, a cached one answers', async () => {
    const cached = `cached-${pid}.test`;
    dns.mtaSts(cached, { id: 'c1' });
    https.policy(cached, policyText('enforce', [`mx.${cached}`], 86400));
    const cachedOk = `OK secure match=mx.${cached} servername=hostname`;
    assert.equal((await pool.ask('postfix', cached)).reply, cachedOk, 'cached before the attack');

    // 300 subdomains of one attacker domain at once.
    const evil = Array.from({ length: 300 }, (_, i) => `a${i}.evil-${pid}.test`);
    await hostile(evil);
    const t0 = performance.now();
    const attack = evil.map((d) => pool.ask('temp', d));
    // The admitted ones time out at the zone timeout; the rest are refused at once.
    const replies = await Promise.all(attack);
    const refused = replies.filter((r) => r.reply === 'TEMP MTA-STS discovery limit reached');
    const timedOut = replies.filter((r) => r.reply === 'TEMP MTA-STS lookup timed out');
    assert.equal(refused.length + timedOut.length, evil.length, `only TEMP answers: ${replies[0]?.reply}`);
    assert.equal(timedOut.length, PER_DOMAIN, 'one registrable domain holds its share of the slots');
    assert.equal(await metric(metricsPort, /^mtastsdb_discoveries_in_flight (\d+)$/m), PER_DOMAIN);
    const slowRefusal = Math.max(...refused.map((r) => r.ms));
    assert.ok(slowRefusal < ZONE_TIMEOUT_S * 1000, `refusals come before the zone timeout (${slowRefusal} ms)`);
    const limited = await metric(metricsPort, /^mtastsdb_discoveries_limited_total\{reason="domain_share"\} (\d+)$/m);
    assert.equal(limited, evil.length - PER_DOMAIN);

    // Under the attack (every trickling host still holds its slot): a new domain is discovered.
    const legit = `legit-${pid}.test`;
    dns.mtaSts(legit, { id: 'l1' });
    https.policy(legit, policyText('enforce', [`mx.${legit}`], 86400));
    const fresh = await pool.ask('postfix', legit);
    assert.equal(fresh.reply, `OK secure match=mx.${legit} servername=hostname`);
    const old = await pool.ask('postfix', cached);
    assert.equal(old.reply, cachedOk);
    assert.ok(dns.queries(`_mta-sts.${cached}`, 'TXT') >= 2, 'the cached domain had its TXT check');
    say(
      `one attacker domain, 300 subdomains trickling 1 byte/s: ${timedOut.length} admitted, ${refused.length} ` +
        `refused (slowest refusal ${slowRefusal.toFixed(0)} ms), attack answered in ${(performance.now() - t0).toFixed(0)} ms; ` +
        `new domain discovered in ${fresh.ms.toFixed(0)} ms, cached domain answered in ${old.ms.toFixed(0)} ms`,
    );
  });

  it('many attacker domains fill what new domains may use; the reserve keeps cached domains checked', async () => {
    const cached = `cached-${pid}.test`;
    const inFlight = await metric(metricsPort, /^mtastsdb_discoveries_in_flight (\d+)$/m);
    // 250 attacker domains, one subdomain each: together they take every unreserved slot.
    const evil = Array.from({ length: 250 }, (_, i) => `www.evil${i}-${pid}.test`);
    await hostile(evil);
    const attack = evil.map((d) => pool.ask('temp', d));
    const deadline = Date.now() + 3000;
    let now = NaN;
    while ((now = await metric(metricsPort, /^mtastsdb_discoveries_in_flight (\d+)$/m)) < UNRESERVED) {
      if (Date.now() > deadline) break;
      await sleep(20);
    }
    assert.equal(now, UNRESERVED);

    // A new domain now gets an immediate temporary answer, not a wait for the zone timeout.
    const late = `late-${pid}.test`;
    dns.mtaSts(late, { id: 'l1' });
    https.policy(late, policyText('enforce', [`mx.${late}`], 86400));
    const refusedNew = await pool.ask('temp', late);
    assert.equal(refusedNew.reply, 'TEMP MTA-STS discovery limit reached');
    assert.ok(refusedNew.ms < ZONE_TIMEOUT_S * 1000, `immediate (${refusedNew.ms} ms)`);
    assert.equal(dns.queries(`_mta-sts.${late}`, 'TXT'), 0, 'refused before any DNS');

    // The cached domain's TXT check runs on the reserve: a new id is seen and its policy fetched
    // (in a zone with a long timeout: under this load the fetch, not the admission, takes time).
    dns.mtaSts(cached, { id: 'c2' });
    https.policy(cached, policyText('enforce', [`mx2.${cached}`], 86400));
    const checked = await pool.ask('patient', cached);
    assert.equal(checked.reply, `OK secure match=mx2.${cached} servername=hostname`, 'the new policy, fetched');

    const replies = await Promise.all(attack);
    const refused = replies.filter((r) => r.reply === 'TEMP MTA-STS discovery limit reached').length;
    assert.equal(refused, evil.length - (UNRESERVED - inFlight));
    assert.equal(
      await metric(metricsPort, /^mtastsdb_discoveries_limited_total\{reason="reserved"\} (\d+)$/m),
      refused + 1,
    );
    say(
      `250 attacker domains: ${UNRESERVED - inFlight} admitted up to ${UNRESERVED} of ${MAX_IN_FLIGHT}, ${refused} refused; ` +
        `new domain refused in ${refusedNew.ms.toFixed(1)} ms; cached domain's changed policy fetched on the reserve ` +
        `in ${checked.ms.toFixed(0)} ms`,
    );
  });
});

describe('discovery limits: DNS black hole', { timeout: 120_000 }, () => {
  let dir: string;
  let hole: dgram.Socket;
  let serve: ServeProcess;
  let metricsPort: number | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-blackhole-'));
    // A DNS server that reads every query and never answers.
    hole = dgram.createSocket('udp4');
    hole.on('message', () => {});
    hole.bind(0, '127.0.0.1');
    await once(hole, 'listening');
    const config = await writeServeConfig(join(dir, 'serve.yml'), join(dir, 'policies.db'), serveConfig());
    serve = await spawnServe([
      ...['--dns-server', `127.0.0.1:${hole.address().port}`, '--timeout', '10', '-c', config],
    ]);
    const line = await serve.waitFor(/metrics endpoint listening/);
    metricsPort = (JSON.parse(line) as { address?: { port?: number } }).address?.port;
  });

  after(async () => {
    serve?.child.kill('SIGKILL');
    hole?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('250 distinct names a second for 15 s: bounded RSS, the excess answered TEMP at once', async () => {
    const RATE = 250;
    const SECONDS = 15;
    const pid = serve.child.pid;
    const pool = new ClientPool(serve.port);
    const startRss = rssMiB(pid);
    const sampler = rssSampler(pid);
    const asked: Array<Promise<{ reply: string; ms: number }>> = [];
    const t0 = performance.now();
    try {
      // Sent on a schedule, not as answers come back: the flood does not slow down for the daemon.
      for (let i = 0; i < RATE * SECONDS; i++) {
        const due = t0 + (i * 1000) / RATE;
        const wait = due - performance.now();
        if (wait > 1) await sleep(wait);
        asked.push(pool.ask('temp', `n${i}.hole${i % 997}-${process.pid}.test`));
      }
      const sentS = (performance.now() - t0) / 1000;
      const replies = await Promise.all(asked);
      const peak = sampler.stop();
      const hwm = hwmMiB(pid);
      const refused = replies.filter((r) => r.reply === 'TEMP MTA-STS discovery limit reached');
      const timedOut = replies.filter((r) => r.reply === 'TEMP MTA-STS lookup timed out');
      assert.equal(refused.length + timedOut.length, replies.length, 'every answer is TEMP');
      assert.ok(refused.length > 0 && timedOut.length > 0, `${refused.length} refused, ${timedOut.length} admitted`);
      // Admitted lookups hold their slot for the DNS timeout (10 s): at most 192 per 10 s then.
      assert.ok(
        timedOut.length <= UNRESERVED * (Math.ceil(sentS / 10) + 1),
        `${timedOut.length} admitted over ${sentS.toFixed(1)} s`,
      );
      const ms = refused.map((r) => r.ms).sort((a, b) => a - b);
      const max = ms[ms.length - 1] as number;
      assert.ok(max < ZONE_TIMEOUT_S * 1000, `refused lookups answered before the zone timeout (max ${max} ms)`);
      const limited = await metric(metricsPort, /^mtastsdb_discoveries_limited_total\{reason="reserved"\} (\d+)$/m);
      assert.equal(limited, refused.length);
      say(
        `black hole, ${replies.length} distinct names at ${RATE}/s over ${sentS.toFixed(1)} s: ${timedOut.length} ` +
          `admitted (TEMP after the zone timeout), ${refused.length} refused with TEMP in p50 ${percentile(ms, 50).toFixed(1)} ms, ` +
          `p99 ${percentile(ms, 99).toFixed(1)} ms, max ${max.toFixed(1)} ms; ${pool.size} connections; daemon RSS ` +
          `${startRss.toFixed(1)} MiB at start, peak ${peak.toFixed(1)} MiB (sampled), VmHWM ${hwm.toFixed(1)} MiB`,
      );
      assert.ok(peak < RSS_BOUND_MIB, `peak RSS ${peak.toFixed(1)} MiB < ${RSS_BOUND_MIB} MiB`);
      assert.ok(hwm < RSS_BOUND_MIB, `VmHWM ${hwm.toFixed(1)} MiB < ${RSS_BOUND_MIB} MiB`);
    } finally {
      sampler.stop();
      pool.close();
    }
  });
});
