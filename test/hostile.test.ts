// Hostile policy hosts and DNS: each case runs against the loopback fixtures with a bound
// on time and on memory. The functional behaviour of each code path is in discovery.test.ts and
// fetch.test.ts; here the point is that an attacker controlling DNS answers, the HTTPS server and
// its timing cannot make us hang, buffer without bound, decompress, follow, or connect inward.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import v8 from 'node:v8';
import vm from 'node:vm';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { startHttpsHost, type HostBehaviour, type HttpsHost } from './helpers/https-host.js';
import { getTestCa, type CertKind } from './helpers/test-ca.js';
import { createNodeResolver } from '../src/discovery/node-resolver.js';
import { lookupRecord } from '../src/discovery/lookup-record.js';
import { createHttpsFetcher, fetchPolicy } from '../src/fetch/https-fetcher.js';
import { parseDomain } from '../src/rfc8461/domain.js';
import { MAX_CNAME_HOPS, MAX_POLICY_BYTES } from '../src/rfc8461/limits.js';
import { isMtaStsError, type ErrorCode, type MtaStsError } from '../src/errors.js';
import type { DnsResolver } from '../src/discovery/resolver.js';
import type { FetchPolicyOptions } from '../src/fetch/fetcher.js';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n';
const MiB = 1024 * 1024;

let dns: DnsServer;
let host: HttpsHost;
let resolver: DnsResolver;
let base: FetchPolicyOptions;

before(async () => {
  const ca = await getTestCa();
  [dns, host] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
  resolver = createNodeResolver({ servers: [dns.address], timeoutMs: 1000 });
  base = { resolver, ca: ca.certPem, port: host.port, allowPrivateAddresses: true, timeoutMs: 2000 };
});
after(async () => {
  await Promise.all([dns?.close(), host?.close()]);
});

/** Runs `fn`, sampling heap + array buffers every few ms; returns its outcome, time and peak growth. */
async function bounded<T>(
  fn: () => Promise<T>,
): Promise<{ error: MtaStsError | undefined; ms: number; grewMiB: number }> {
  gc();
  const used = (): number => {
    const m = process.memoryUsage();
    return m.heapUsed + m.arrayBuffers;
  };
  const baseline = used();
  let peak = baseline;
  const sampler = setInterval(() => (peak = Math.max(peak, used())), 2);
  const started = performance.now();
  let error: MtaStsError | undefined;
  try {
    await fn();
  } catch (err) {
    assert.ok(isMtaStsError(err), `expected an MtaStsError, got ${String(err)}`);
    error = err;
  } finally {
    clearInterval(sampler);
  }
  peak = Math.max(peak, used());
  return { error, ms: performance.now() - started, grewMiB: (peak - baseline) / MiB };
}

let seq = 0;
function published(label: string, behaviour?: HostBehaviour): string {
  const d = `${label}${++seq}.hostile.test`;
  dns.mtaSts(d);
  if (behaviour) host.behave(d, behaviour);
  return d;
}

describe('hostile policy hosts', () => {
  interface Case {
    readonly name: string;
    readonly behaviour: HostBehaviour | ((domain: string) => HostBehaviour);
    readonly code: ErrorCode;
    readonly maxMs: number;
    readonly maxMiB: number;
    readonly options?: FetchPolicyOptions;
    readonly check?: (err: MtaStsError) => void;
  }
  const CASES: readonly Case[] = [
    {
      // Bytes keep coming (an idle timeout would never fire); the total timeout still holds.
      name: 'a body trickled one byte a second',
      behaviour: { body: { kind: 'trickle', data: POLICY, intervalMs: 1000 } },
      options: { timeoutMs: 1500 },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 2200,
      maxMiB: 16,
      check: (e) => assert.equal(e.details.timeout, true),
    },
    {
      name: 'an endless chunked body',
      behaviour: { body: { kind: 'endless' } },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
      check: (e) => assert.equal(e.details.limit, MAX_POLICY_BYTES),
    },
    {
      name: 'an endless body with requireTextPlain off and a bogus type',
      behaviour: { body: { kind: 'endless', chunkBytes: 1 }, contentType: 'application/x-evil' },
      options: { requireTextPlain: false },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1500,
      maxMiB: 16,
    },
    {
      name: 'a gzip bomb (1 GiB of zeros, Content-Encoding: gzip)',
      behaviour: { body: { kind: 'gzip-bomb', inflatedMiB: 1024 } },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'a gzip bomb sent without Content-Encoding (bytes count, never inflated)',
      behaviour: { body: { kind: 'gzip-bomb', inflatedMiB: 1024 }, headers: { 'content-encoding': 'identity' } },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
      check: (e) => assert.equal(e.details.limit, MAX_POLICY_BYTES),
    },
    {
      name: 'a 1 MiB header block',
      behaviour: { body: POLICY, hugeHeaderBytes: MiB },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'a 3xx loop (redirect to itself)',
      behaviour: (d) => ({ status: 308, headers: { location: `https://mta-sts.${d}/.well-known/mta-sts.txt` } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
      check: (e) => assert.equal(e.details.httpStatus, 308),
    },
    {
      name: 'a Content-Length far beyond 64 KiB',
      behaviour: { body: { kind: 'oversized', bytes: 1024 * MiB } },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'invalid UTF-8 in the body',
      behaviour: { body: Buffer.from([0x76, 0x65, 0x72, 0xc0, 0xaf, 0xed, 0xa0, 0x80, 0xf8, 0x88, 0x80, 0x80, 0x80]) },
      code: 'ERR_MTASTS_POLICY_SYNTAX',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'binary garbage body of 64 KiB',
      behaviour: { body: Buffer.from(Array.from({ length: MAX_POLICY_BYTES }, (_, i) => (i * 7919) & 0xff)) },
      code: 'ERR_MTASTS_POLICY_SYNTAX',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'non-ASCII bytes in the Content-Type',
      behaviour: { body: POLICY, contentType: 'text/pl\u00e4in; charset=\u00ff' },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
    },
    {
      name: 'non-ASCII bytes in a redirect Location',
      behaviour: { status: 302, headers: { location: 'https://\u00ff\u00fe.test/\u0080' } },
      code: 'ERR_MTASTS_POLICY_FETCH',
      maxMs: 1000,
      maxMiB: 16,
    },
  ];

  for (const c of CASES) {
    test(`${c.name}: ${c.code} within ${c.maxMs} ms and ${c.maxMiB} MiB`, async (t) => {
      const d = published('h');
      host.behave(d, typeof c.behaviour === 'function' ? c.behaviour(d) : c.behaviour);
      const r = await bounded(() => fetchPolicy(d, { ...base, ...c.options }));
      t.diagnostic(`${r.ms.toFixed(0)} ms, peak +${r.grewMiB.toFixed(1)} MiB`);
      assert.equal(r.error?.code, c.code, r.error?.message);
      assert.ok(r.ms < c.maxMs, `took ${r.ms.toFixed(0)} ms`);
      assert.ok(r.grewMiB < c.maxMiB, `memory grew by ${r.grewMiB.toFixed(1)} MiB`);
      c.check?.(r.error as MtaStsError);
      assert.ok(host.requests(d) <= 1, 'never more than one request: nothing followed or retried');
    });
  }

  test('a TLS handshake that never finishes: the total timeout holds', async () => {
    const d = published('silent');
    const r = await bounded(() => fetchPolicy(d, { ...base, port: host.silentPort, timeoutMs: 500 }));
    assert.equal(r.error?.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(r.error?.details.timeout, true);
    assert.ok(r.ms >= 480 && r.ms < 1200, `took ${r.ms} ms`);
  });

  const CERTS: readonly CertKind[] = ['wrong-name', 'expired', 'self-signed', 'untrusted'];
  for (const kind of CERTS) {
    test(`a ${kind} certificate is refused (webpki) before any request`, async () => {
      const d = published('cert', { body: POLICY, cert: kind });
      const r = await bounded(() => fetchPolicy(d, base));
      assert.equal(r.error?.code, 'ERR_MTASTS_POLICY_FETCH');
      assert.equal(r.error?.details.webpki, true);
      assert.equal(host.requests(d), 0);
      assert.ok(r.ms < 1000);
    });
  }

  for (const [family, address] of [
    ['A', '127.0.0.1'],
    ['A', '10.1.2.3'],
    ['A', '169.254.169.254'],
    ['A', '0.0.0.0'],
    ['AAAA', '::1'],
    ['AAAA', '::ffff:10.0.0.1'],
    ['AAAA', 'fe80::1'],
  ] as const) {
    test(`a policy host at ${address} is refused by default, with no connection`, async () => {
      const d = `inward${++seq}.hostile.test`;
      dns.txt(`_mta-sts.${d}`, ['v=STSv1; id=1;']);
      if (family === 'A') dns.a(`mta-sts.${d}`, address);
      else dns.aaaa(`mta-sts.${d}`, address);
      host.policy(d, POLICY);
      const { allowPrivateAddresses: _, ...defaults } = base;
      const r = await bounded(() => fetchPolicy(d, { ...defaults, allowPrivateAddresses: false }));
      assert.equal(r.error?.code, 'ERR_MTASTS_POLICY_FETCH');
      assert.equal(r.error?.details.refused, true);
      assert.equal(host.requests(d), 0);
    });
  }

  test('50 hostile fetches at once stay bounded', async (t) => {
    const kinds: HostBehaviour[] = [
      { body: { kind: 'endless' } },
      { body: { kind: 'gzip-bomb', inflatedMiB: 1024 } },
      { body: POLICY, hugeHeaderBytes: 256 * 1024 },
      { body: { kind: 'oversized', bytes: 4 * MiB, declareLength: false } },
      { body: { kind: 'hang' } },
    ];
    const { timeoutMs: _, ...rest } = base;
    const quick = createHttpsFetcher({ ...rest, timeoutMs: 800 }); // bounds the `hang` hosts
    const domains = Array.from({ length: 50 }, (_, i) => published('many', kinds[i % kinds.length]));
    const r = await bounded(async () => {
      const results = await Promise.allSettled(domains.map((d) => quick.fetch(parseDomain(d), {})));
      for (const s of results) {
        assert.equal(s.status, 'rejected');
        assert.ok(isMtaStsError(s.reason, 'ERR_MTASTS_POLICY_FETCH'), String(s.reason));
      }
    });
    t.diagnostic(`${r.ms.toFixed(0)} ms, peak +${r.grewMiB.toFixed(1)} MiB`);
    assert.equal(r.error, undefined);
    assert.ok(r.ms < 3000, `took ${r.ms} ms`);
    assert.ok(r.grewMiB < 96, `memory grew by ${r.grewMiB.toFixed(1)} MiB`);
  });
});

describe('hostile DNS', () => {
  test('thousands of CNAME hops, chased by the server: ERR_MTASTS_DNS after a bounded number of queries', async () => {
    const d = 'chain.hostile.test';
    dns.cname(`_mta-sts.${d}`, `c0.${d}`);
    for (let i = 0; i < 5000; i++) dns.cname(`c${i}.${d}`, `c${i + 1}.${d}`);
    dns.txt(`c5000.${d}`, ['v=STSv1; id=far;']);
    const before = dns.log.length;
    const r = await bounded(() => lookupRecord(d, { resolver }));
    assert.equal(r.error?.code, 'ERR_MTASTS_DNS');
    assert.equal(r.error?.details.reason, 'cname-hops');
    // Per hop one TXT and one CNAME query; answers over 512 octets are asked twice (UDP, then TCP).
    assert.ok(dns.log.length - before <= 4 * (MAX_CNAME_HOPS + 1), `${dns.log.length - before} queries`);
    assert.ok(r.ms < 1500, `took ${r.ms} ms`);
  });

  test('thousands of CNAME-only hops: ERR_MTASTS_DNS', async () => {
    const d = 'only.hostile.test';
    dns.cname(`_mta-sts.${d}`, `o0.${d}`, { only: true });
    for (let i = 0; i < 3000; i++) dns.cname(`o${i}.${d}`, `o${i + 1}.${d}`, { only: true });
    const r = await bounded(() => lookupRecord(d, { resolver }));
    assert.equal(r.error?.code, 'ERR_MTASTS_DNS');
    assert.ok(r.ms < 1500);
  });

  test('one answer holding 1,000 chained CNAMEs (TCP): ERR_MTASTS_DNS, bounded', async (t) => {
    t.after(() => (dns.chaseLimit = 16));
    const d = 'fat.hostile.test';
    dns.cname(`_mta-sts.${d}`, `f0.${d}`);
    for (let i = 0; i < 3000; i++) dns.cname(`f${i}.${d}`, `f${i + 1}.${d}`);
    dns.chaseLimit = 1000;
    const r = await bounded(() => lookupRecord(d, { resolver }));
    t.diagnostic(`${r.ms.toFixed(0)} ms, peak +${r.grewMiB.toFixed(1)} MiB`);
    assert.equal(r.error?.code, 'ERR_MTASTS_DNS');
    assert.ok(r.ms < 3000, `took ${r.ms} ms`);
    assert.ok(r.grewMiB < 48, `memory grew by ${r.grewMiB.toFixed(1)} MiB`);
  });

  test('a policy host behind thousands of CNAME hops: POLICY_FETCH, no connection', async () => {
    const d = 'hostchain.hostile.test';
    dns.txt(`_mta-sts.${d}`, ['v=STSv1; id=1;']).cname(`mta-sts.${d}`, `p0.${d}`, { only: true });
    for (let i = 0; i < 2000; i++) dns.cname(`p${i}.${d}`, `p${i + 1}.${d}`, { only: true });
    dns.a(`p2000.${d}`, '127.0.0.1');
    host.policy(d, POLICY);
    const r = await bounded(() => fetchPolicy(d, base));
    assert.equal(r.error?.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(host.requests(d), 0);
    assert.ok(r.ms < 1500);
  });

  const big = (n: number): string => 'x'.repeat(n);
  const TXT_CASES: readonly (readonly [string, (d: string) => void, ErrorCode | string])[] = [
    ['a single 64 KiB junk TXT record', (d) => void dns.txt(`_mta-sts.${d}`, [big(64_000)]), 'ERR_MTASTS_NO_RECORD'],
    [
      'a 64 KiB junk record next to the MTA-STS record',
      (d) => void dns.txt(`_mta-sts.${d}`, [big(63_000), 'v=STSv1; id=small;']),
      'small',
    ],
    [
      'a 64 KiB MTA-STS record (one huge extension)',
      (d) => void dns.txt(`_mta-sts.${d}`, [`v=STSv1; id=huge; ext=${big(63_000)};`]),
      'huge',
    ],
    [
      '200 MTA-STS records in one 57 KiB answer',
      (d) =>
        void dns.txt(
          `_mta-sts.${d}`,
          Array.from({ length: 200 }, (_, i) => `v=STSv1; id=${i};${' '.repeat(230)}`),
        ),
      'ERR_MTASTS_MULTIPLE_RECORDS',
    ],
    [
      '64 KiB of binary TXT data',
      (d) =>
        void dns.txt(`_mta-sts.${d}`, [Buffer.from(Array.from({ length: 63_000 }, (_, i) => (i * 131 + 7) & 0xff))]),
      'ERR_MTASTS_NO_RECORD',
    ],
  ];
  for (const [name, zone, want] of TXT_CASES) {
    test(`${name}: handled within bounds`, async (t) => {
      const d = `txt${++seq}.hostile.test`;
      zone(d);
      let id: string | undefined;
      const r = await bounded(async () => void (id = (await lookupRecord(d, { resolver })).id));
      t.diagnostic(`${r.ms.toFixed(0)} ms, peak +${r.grewMiB.toFixed(1)} MiB`);
      if (want.startsWith('ERR_')) assert.equal(r.error?.code, want);
      else assert.equal(id, want, r.error?.message);
      assert.ok(r.ms < 1500, `took ${r.ms} ms`);
      assert.ok(r.grewMiB < 32, `memory grew by ${r.grewMiB.toFixed(1)} MiB`);
      assert.ok(
        dns.log.some((q) => q.name === `_mta-sts.${d}` && q.transport === 'tcp'),
        'answer came over TCP',
      );
    });
  }

  test('a CNAME target with odd bytes: a coded error, no crash', async () => {
    const d = 'oddtarget.hostile.test';
    dns.cname(`_mta-sts.${d}`, 'a\u00ffb\u0001.c d.test', { only: true });
    const r = await bounded(() => lookupRecord(d, { resolver }));
    assert.ok(r.error !== undefined);
    assert.ok(['ERR_MTASTS_DNS', 'ERR_MTASTS_NO_RECORD'].includes(r.error.code), r.error.code);
  });

  test('non-UTF-8 and control bytes in domain input never reach the network', async () => {
    const before = dns.log.length;
    for (const bad of ['\udcff.test', 'a\u0000b.test', '\ufffd\ufffd.test', 'a.test\r\nX: y', 'exa\u2028mple.test']) {
      await assert.rejects(lookupRecord(bad, { resolver }), (e: unknown) => isMtaStsError(e, 'ERR_MTASTS_DOMAIN'));
      await assert.rejects(fetchPolicy(bad, base), (e: unknown) => isMtaStsError(e, 'ERR_MTASTS_DOMAIN'));
    }
    assert.equal(dns.log.length, before);
  });
});
