import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { loadConfig, parseConfigText } from '../../src/config/load-config.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import type { Daemon } from '../../src/daemon/daemon.js';
import { parseDomain } from '../../src/rfc8461/domain.js';
import { captureLogger, policyText, publish, startNet, uniqueDomain } from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { spawnServe } from '../helpers/serve-process.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let net: Net;
let dir: string;
before(async () => {
  net = await startNet({ dnsTimeoutMs: 800, fetchTimeoutMs: 2000 });
  dir = await mkdtemp(join(tmpdir(), 'mtastsdb-daemon-'));
});
after(async () => {
  await net.close();
  await rm(dir, { recursive: true, force: true });
});

function configYaml(store: string, extra = ''): string {
  return `
host: 127.0.0.1
port: 0
cache_grace: 0
store: ${store}
proactive_policy_fetching:
  enabled: false
default_zone:
  timeout: 3
zones:
  postfix:
    timeout: 3
  strict:
    strict_testing: true
  nosni:
    require_sni: false
  tlsrpt:
    tlsrpt: true
  temp:
    temp_on_error: true
    timeout: 1
metrics:
  enabled: true
  port: 0
limits:
  # Every test domain is under example.test, one registrable domain: no share of the discoveries
  # (test/e2e/discovery-flood.test.ts tests the share).
  discovery_domain_share_percent: 100
  fetch_rate_per_domain:
    rate: 0.001
    burst: 4
${extra}`;
}

describe('daemon answers (loopback DNS + HTTPS, SQLite file)', () => {
  let daemon: Daemon;
  let client: SocketmapClient;
  const logger = captureLogger();

  before(async () => {
    daemon = await startDaemon({
      config: parseConfigText(configYaml(join(dir, 'answers.db'))),
      logger,
      resolver: net.resolver,
      fetchOptions: net.fetchOptions,
    });
    const a = daemon.address as { port: number };
    client = await SocketmapClient.open({ host: '127.0.0.1', port: a.port });
  });
  after(async () => {
    client.destroy();
    await daemon.close();
  });

  const q = (name: string, key: string): Promise<string> => client.query(name, key);

  it('enforce → OK secure match=… servername=hostname (peer refdata format)', async () => {
    const d = uniqueDomain('enf');
    publish(net, d, 'id1', policyText('enforce', [`mx.${d}`, `*.mx2.${d}`], 86400));
    assert.equal(await q('postfix', d), `OK secure match=mx.${d}:.mx2.${d} servername=hostname`);
    assert.equal(await q('nosni', d), `OK secure match=mx.${d}:.mx2.${d}`);
    // Case and trailing dot normalised; unknown socketmap name → default zone.
    assert.equal(await q('whatever', `${d.toUpperCase()}.`), `OK secure match=mx.${d}:.mx2.${d} servername=hostname`);
  });

  it('testing → NOTFOUND, unless the zone has strict_testing', async () => {
    const d = uniqueDomain('tst');
    publish(net, d, 'id1', policyText('testing', [`mx.${d}`], 86400));
    assert.equal(await q('postfix', d), 'NOTFOUND ');
    assert.equal(await q('strict', d), `OK secure match=mx.${d} servername=hostname`);
  });

  it('mode none → NOTFOUND', async () => {
    const d = uniqueDomain('none');
    publish(net, d, 'id1', policyText('none', [], 86400));
    assert.equal(await q('strict', d), 'NOTFOUND ');
  });

  it('no TXT record → NOTFOUND (TEMP never, even with temp_on_error)', async () => {
    const d = uniqueDomain('norec');
    assert.equal(await q('postfix', d), 'NOTFOUND ');
    assert.equal(await q('temp', d), 'NOTFOUND ');
  });

  it('fetch failure → NOTFOUND, then backoff without another fetch', async () => {
    const d = uniqueDomain('fail');
    net.dns.mtaSts(d, { id: 'id1' });
    net.https.behave(d, { status: 500, body: 'oops' });
    assert.equal(await q('postfix', d), 'NOTFOUND ');
    assert.equal(net.https.requests(d), 1);
    assert.equal(await q('temp', d), 'NOTFOUND ');
    assert.equal(net.https.requests(d), 1, 'back-off: no second fetch');
  });

  it('temporary DNS failure with nothing cached → NOTFOUND, or TEMP with temp_on_error', async () => {
    const d = uniqueDomain('servfail');
    net.dns.servfail(`_mta-sts.${d}`);
    assert.equal(await q('postfix', d), 'NOTFOUND ');
    assert.equal(await q('temp', d), 'TEMP MTA-STS DNS lookup failed');
  });

  it('zone timeout with nothing cached → TEMP … timed out within the zone timeout', async () => {
    const d = uniqueDomain('slow');
    net.dns.mtaSts(d, { id: 'x' });
    net.https.behave(d, { body: { kind: 'hang' } });
    const t0 = Date.now();
    assert.equal(await q('temp', d), 'TEMP MTA-STS lookup timed out');
    const took = Date.now() - t0;
    assert.ok(took >= 900 && took < 2500, `bounded by the zone timeout (${took} ms)`);
  });

  it('a cached enforce policy survives DNS failure, TXT removal and fetch failure (never weaker)', async () => {
    const d = uniqueDomain('keep');
    publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
    const ok = `OK secure match=mx.${d} servername=hostname`;
    assert.equal(await q('postfix', d), ok);
    net.dns.servfail(`_mta-sts.${d}`);
    assert.equal(await q('temp', d), ok);
    net.dns.remove(`_mta-sts.${d}`);
    assert.equal(await q('postfix', d), ok);
    net.dns.mtaSts(d, { id: 'id2' });
    net.https.behave(d, { status: 503 });
    assert.equal(await q('postfix', d), ok);
    net.dns.drop(`_mta-sts.${d}`);
    assert.equal(await q('temp', d), ok, 'a DNS timeout longer than the zone timeout still answers the cache');
  });

  it('IP literals and parent-domain keys → NOTFOUND without any DNS query', async () => {
    const before = net.dns.log.length;
    for (const key of ['[127.0.0.1]', '127.0.0.1', '[ipv6:::1]', '[::1]:25', `.${uniqueDomain()}`, 'not a domain!']) {
      assert.equal(await q('postfix', key), 'NOTFOUND ', key);
    }
    assert.equal(net.dns.log.length, before);
  });

  it('[host]:port and host:port → the host', async () => {
    const d = uniqueDomain('port');
    publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
    const ok = `OK secure match=mx.${d} servername=hostname`;
    assert.equal(await q('postfix', `[${d}]:25`), ok);
    assert.equal(await q('postfix', `[${d}]`), ok);
    assert.equal(await q('postfix', `${d}:587`), ok);
  });

  it('IDN domain: Unicode key, A-label DNS and SNI, A-label match list', async () => {
    const unicode = `bücher-${process.pid}.example.test`;
    const ascii = parseDomain(unicode).ascii;
    publish(net, ascii, 'idn1', policyText('enforce', [`mx.${ascii}`], 86400));
    assert.equal(await q('postfix', unicode.toUpperCase()), `OK secure match=mx.${ascii} servername=hostname`);
    assert.equal(await q('postfix', ascii), `OK secure match=mx.${ascii} servername=hostname`);
  });

  it('tlsrpt on: policy_type, policy_domain, mx_host_pattern, policy strings in served order', async () => {
    const d = uniqueDomain('rpt');
    const text = `version: STSv1\r\nmode: enforce\r\nmx: mx.${d}\r\nmx: *.b.${d}\r\nmax_age: 604800\r\n`;
    publish(net, d, 'id1', text);
    assert.equal(
      await q('tlsrpt', d),
      `OK secure match=mx.${d}:.b.${d} servername=hostname policy_type=sts policy_domain=${d} ` +
        `mx_host_pattern=mx.${d} mx_host_pattern=*.b.${d} { policy_string = version: STSv1 } ` +
        `{ policy_string = mode: enforce } { policy_string = mx: mx.${d} } { policy_string = mx: *.b.${d} } ` +
        `{ policy_string = max_age: 604800 }`,
    );
  });

  it('per-domain rate limit: TXT lookups of one domain stop at the burst', async () => {
    const d = uniqueDomain('rate');
    for (let i = 0; i < 4; i++) assert.equal(await q('postfix', d), 'NOTFOUND ');
    assert.equal(net.dns.queries(`_mta-sts.${d}`, 'TXT'), 4);
    assert.equal(await q('temp', d), 'TEMP MTA-STS DNS lookup failed', 'held back → temporary');
    assert.equal(net.dns.queries(`_mta-sts.${d}`, 'TXT'), 4, 'no fifth query reached DNS');
  });

  it('answers pipelined queries for many domains in order', async () => {
    const ds = Array.from({ length: 30 }, () => uniqueDomain('pipe'));
    ds.forEach((d, i) => {
      if (i % 2 === 0) publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
    });
    const replies = await Promise.all(ds.map((d) => q('postfix', d)));
    assert.deepEqual(
      replies,
      ds.map((d, i) => (i % 2 === 0 ? `OK secure match=mx.${d} servername=hostname` : 'NOTFOUND ')),
    );
  });

  it('serves /metrics and /healthz', async () => {
    const base = `http://127.0.0.1:${daemon.metricsAddress?.port}`;
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /mtastsdb_socketmap_queries_total\{zone="postfix",answer="OK"\} \d+/);
    assert.match(metrics, /mtastsdb_socketmap_queries_total\{zone="default",answer="OK"\} \d+/);
    assert.match(metrics, /mtastsdb_socketmap_query_duration_seconds_bucket\{le="0.005",zone="postfix"\}/);
    assert.match(metrics, /mtastsdb_cache_lookups_total\{outcome="hit"\} \d+/);
    assert.match(metrics, /mtastsdb_policy_fetches_total\{result="ok"\} \d+/);
    assert.match(metrics, /mtastsdb_discoveries_limited_total\{reason="rate_domain"\} [1-9]/);
    assert.match(metrics, /mtastsdb_process_resident_memory_bytes \d+/);
    assert.match(metrics, /mtastsdb_socketmap_connections 1/);
    const health = await fetch(`${base}/healthz`);
    assert.equal(health.status, 200);
    assert.equal(await health.text(), 'ok\n');
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  });
});

describe('daemon operations', () => {
  it('reload(): zones change without dropping connections; a broken file keeps the old config', async () => {
    const file = join(dir, 'reload.yml');
    await writeFile(file, configYaml(join(dir, 'reload.db')));
    const logger = captureLogger();
    const daemon = await startDaemon({
      config: await loadConfig({ file, env: {} }),
      loadConfig: () => loadConfig({ file, env: {} }),
      logger,
      resolver: net.resolver,
      fetchOptions: net.fetchOptions,
      handleSignals: true,
    });
    try {
      const c = await SocketmapClient.open({ host: '127.0.0.1', port: (daemon.address as { port: number }).port });
      const d = uniqueDomain('hup');
      publish(net, d, 'id1', policyText('testing', [`mx.${d}`], 86400));
      assert.equal(await c.query('postfix', d), 'NOTFOUND ');
      await writeFile(
        file,
        configYaml(join(dir, 'reload.db')).replace(
          '  postfix:\n    timeout: 3',
          '  postfix:\n    strict_testing: true',
        ),
      );
      process.kill(process.pid, 'SIGHUP');
      for (let i = 0; i < 50 && !daemon.config().zones.postfix?.strictTesting; i++) await sleep(20);
      assert.equal(await c.query('postfix', d), `OK secure match=mx.${d} servername=hostname`, 'same connection');
      const reloaded = logger.entries.find((e) => e.msg === 'configuration reloaded');
      assert.ok(reloaded);
      // The log level applied is a field of its own: a second `level` key would clash with pino's.
      assert.equal(reloaded.obj.logLevel, 'info');
      assert.equal(Object.hasOwn(reloaded.obj, 'level'), false);

      await writeFile(file, 'port: [broken\n');
      await daemon.reload();
      assert.ok(logger.entries.some((e) => e.level === 'error' && e.msg.includes('reload failed')));
      assert.equal(daemon.config().zones.postfix?.strictTesting, true, 'kept the last good configuration');
      assert.equal(await c.query('postfix', d), `OK secure match=mx.${d} servername=hostname`);
      c.destroy();
    } finally {
      await daemon.close();
    }
    assert.equal(process.listenerCount('SIGHUP'), 0, 'signal handlers removed on close');
  });

  it('serve process: SIGTERM answers in-flight requests, closes the database and exits 0', async () => {
    const file = join(dir, 'serve.yml');
    await writeFile(file, configYaml(join(dir, 'serve.db')).replace('metrics:\n  enabled: true\n  port: 0\n', ''));
    const d = uniqueDomain('term');
    net.dns.mtaSts(d, { id: 'id1' });
    // The policy host answers after 600 ms, so the request is in flight when SIGTERM arrives.
    net.https.behave(d, {
      body: { kind: 'trickle', data: policyText('enforce', [`mx.${d}`], 86400), intervalMs: 8 },
    });
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, net.ca.certPem);
    const serve = await spawnServe(
      ['-c', file, '--dns-server', net.dns.address, '--policy-port', String(net.https.port), '--ca', caFile],
      { MTASTSDB_LOG_LEVEL: 'info', MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
    );
    try {
      const c = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
      const warm = uniqueDomain('warm');
      assert.equal(await c.query('postfix', warm), 'NOTFOUND ');
      const inflight = c.query('postfix', d);
      await sleep(100);
      serve.child.kill('SIGTERM');
      const reply = await inflight;
      assert.equal(reply, `OK secure match=mx.${d} servername=hostname`, 'the in-flight request was answered');
      assert.equal(await serve.exited, 0);
      await serve.waitFor(/"msg":"stopped"/);
    } finally {
      serve.child.kill('SIGKILL');
    }
  });

  it('serve process: a bad configuration exits 2 naming the key', async () => {
    const file = join(dir, 'bad.yml');
    await writeFile(file, 'zones:\n  postfix:\n    timeout: soon\n');
    await assert.rejects(spawnServe(['-c', file]), /exited \(2\).*zones\.postfix\.timeout/s);
  });
});
