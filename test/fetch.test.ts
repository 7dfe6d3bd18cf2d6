// fetchPolicy, createHttpsFetcher and getPolicy over real sockets: the loopback DNS server and
// the HTTPS policy host with a test CA.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { once } from 'node:events';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { mtaStsRejection as rejection } from './helpers/rejection.js';
import { startHttpsHost, type HostBehaviour, type HttpsHost } from './helpers/https-host.js';
import { getTestCa, type CertKind, type TestCa } from './helpers/test-ca.js';
import { createNodeResolver } from '../src/discovery/node-resolver.js';
import { createHttpsFetcher, fetchPolicy, POLICY_PATH } from '../src/fetch/https-fetcher.js';
import { getPolicy } from '../src/fetch/get-policy.js';
import { parseDomain } from '../src/rfc8461/domain.js';
import { MAX_POLICY_BYTES } from '../src/rfc8461/limits.js';
import { isMtaStsError, type ErrorCode, type MtaStsError } from '../src/errors.js';
import type { DnsResolver } from '../src/discovery/resolver.js';
import type { FetchPolicyOptions, PolicyFetcher } from '../src/fetch/fetcher.js';

const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n';
const LF_POLICY = 'version: STSv1\nmode: testing\nmx: mx.example.test\nmax_age: 600\n';

let ca: TestCa;
let dns: DnsServer;
let host: HttpsHost;
let resolver: DnsResolver;
let base: FetchPolicyOptions;

before(async () => {
  ca = await getTestCa();
  [dns, host] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
  resolver = createNodeResolver({ servers: [dns.address], timeoutMs: 1000 });
  base = { resolver, ca: ca.certPem, port: host.port, allowPrivateAddresses: true, timeoutMs: 3000 };
});
after(async () => {
  await Promise.all([dns?.close(), host?.close()]);
});

let seq = 0;
/** A fresh policy domain published in DNS (TXT + mta-sts A → 127.0.0.1). */
function domain(label = 'd'): string {
  const d = `${label}${++seq}.fetch.test`;
  dns.mtaSts(d);
  return d;
}

function causeCode(err: MtaStsError): unknown {
  return (err.cause as { code?: unknown } | undefined)?.code;
}

describe('fetchPolicy: success', () => {
  test('fetches, parses and returns the exact text', async () => {
    const d = domain();
    host.policy(d, POLICY);
    const { policy, text } = await fetchPolicy(d, base);
    assert.equal(text, POLICY);
    assert.equal(policy.mode, 'enforce');
    assert.equal(policy.maxAgeSeconds, 86400);
    assert.deepEqual(
      policy.mx.map((m) => [m.wildcard, m.domain.ascii]),
      [
        [false, 'mx1.example.test'],
        [true, 'mx.example.test'],
      ],
    );
    assert.equal(host.requests(d), 1);
  });

  test('GET /.well-known/mta-sts.txt with SNI mta-sts.<domain>, no caching, identity encoding', async () => {
    const d = domain();
    host.policy(d, POLICY);
    await fetchPolicy(d, { ...base, userAgent: 'mtastsdb-test/1' });
    const req = host.log.find((r) => r.host === `mta-sts.${d}`);
    assert.ok(req);
    assert.equal(req.method, 'GET');
    assert.equal(req.path, POLICY_PATH);
    assert.equal(req.headers['cache-control'], 'no-cache');
    assert.equal(req.headers['accept-encoding'], 'identity');
    assert.equal(req.headers['user-agent'], 'mtastsdb-test/1');
    assert.equal(req.headers.host, `mta-sts.${d}:${host.port}`);
  });

  test('LF line endings and a Domain object', async () => {
    const d = domain();
    host.policy(d, LF_POLICY);
    const { policy, text } = await fetchPolicy(parseDomain(d), base);
    assert.equal(policy.mode, 'testing');
    assert.equal(text, LF_POLICY);
  });

  test('an IDN domain is fetched from its A-label host', async () => {
    dns.mtaSts('xn--bcher-kva.fetch.test');
    host.policy('xn--bcher-kva.fetch.test', POLICY);
    await fetchPolicy('BÜCHER.fetch.test.', base);
    assert.equal(host.requests('mta-sts.xn--bcher-kva.fetch.test'), 1);
  });

  for (const type of ['text/plain', 'text/plain; charset=utf-8', 'TEXT/PLAIN', 'Text/Plain ;charset="us-ascii"']) {
    test(`Content-Type ${JSON.stringify(type)} is accepted`, async () => {
      const d = domain();
      host.policy(d, POLICY, { contentType: type });
      assert.equal((await fetchPolicy(d, base)).text, POLICY);
    });
  }

  test('Content-Encoding: identity is accepted', async () => {
    const d = domain();
    host.policy(d, POLICY, { headers: { 'content-encoding': 'identity' } });
    assert.equal((await fetchPolicy(d, base)).text, POLICY);
  });

  test('a body of exactly 64 KiB is accepted', async () => {
    const d = domain();
    let body = 'version: STSv1\nmode: enforce\nmx: mx.example.test\nmax_age: 86400\n';
    for (let i = 0; body.length < MAX_POLICY_BYTES - 100; i++) body += `x${i}: ${'v'.repeat(60)}\n`;
    body += `pad: ${'p'.repeat(MAX_POLICY_BYTES - body.length - 6)}\n`;
    assert.equal(Buffer.byteLength(body), MAX_POLICY_BYTES);
    host.policy(d, body);
    const { text } = await fetchPolicy(d, base);
    assert.equal(text.length, MAX_POLICY_BYTES);
  });

  test('a policy host that is a CNAME (followed by the server, or CNAME-only)', async () => {
    const a = `cn${++seq}.fetch.test`;
    dns.txt(`_mta-sts.${a}`, ['v=STSv1; id=1;']).cname(`mta-sts.${a}`, 'real-host.fetch.test');
    dns.a('real-host.fetch.test', '127.0.0.1');
    host.policy(a, POLICY);
    assert.equal((await fetchPolicy(a, base)).text, POLICY);
    const b = `cn${++seq}.fetch.test`;
    dns.cname(`mta-sts.${b}`, 'real-host.fetch.test', { only: true });
    host.policy(b, POLICY);
    assert.equal((await fetchPolicy(b, base)).text, POLICY);
  });

  test('MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1 allows loopback when the option is not given', async (t) => {
    const d = domain();
    host.policy(d, POLICY);
    const saved = process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES;
    t.after(() => {
      if (saved === undefined) delete process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES;
      else process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES = saved;
    });
    process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES = '1';
    const { allowPrivateAddresses: _, ...withoutOption } = base;
    assert.equal((await fetchPolicy(d, withoutOption)).text, POLICY);
    // An explicit false wins over the environment.
    const err = await rejection(fetchPolicy(d, { ...base, allowPrivateAddresses: false }));
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(err.details.refused, true);
    process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES = '0';
    assert.equal((await rejection(fetchPolicy(d, withoutOption))).details.refused, true);
  });
});

describe('fetchPolicy: HTTP failures', () => {
  interface Case {
    readonly name: string;
    readonly behaviour: (d: string) => HostBehaviour;
    readonly code: ErrorCode;
    readonly status?: number;
    readonly options?: FetchPolicyOptions;
  }
  const CASES: readonly Case[] = [
    {
      name: '301 to another host is not followed',
      behaviour: () => ({
        status: 301,
        headers: { location: 'https://mta-sts.elsewhere.fetch.test/.well-known/mta-sts.txt' },
      }),
      code: 'ERR_MTASTS_POLICY_FETCH',
      status: 301,
    },
    {
      name: '302 loop to itself is not followed',
      behaviour: (d) => ({ status: 302, headers: { location: `https://mta-sts.${d}${POLICY_PATH}` } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
      status: 302,
    },
    { name: '307 without Location', behaviour: () => ({ status: 307 }), code: 'ERR_MTASTS_POLICY_FETCH', status: 307 },
    { name: '404', behaviour: () => ({ status: 404, body: 'not here' }), code: 'ERR_MTASTS_NO_POLICY', status: 404 },
    { name: '500', behaviour: () => ({ status: 500, body: POLICY }), code: 'ERR_MTASTS_POLICY_FETCH', status: 500 },
    { name: '503', behaviour: () => ({ status: 503 }), code: 'ERR_MTASTS_POLICY_FETCH', status: 503 },
    { name: '204 No Content', behaviour: () => ({ status: 204 }), code: 'ERR_MTASTS_POLICY_FETCH', status: 204 },
    { name: '410 Gone', behaviour: () => ({ status: 410 }), code: 'ERR_MTASTS_POLICY_FETCH', status: 410 },
    {
      name: 'Content-Type text/html',
      behaviour: () => ({ body: POLICY, contentType: 'text/html' }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'Content-Type text/plainx',
      behaviour: () => ({ body: POLICY, contentType: 'text/plainx' }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'no Content-Type',
      behaviour: () => ({ body: POLICY, contentType: null }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'Content-Encoding: gzip',
      behaviour: () => ({ body: POLICY, headers: { 'content-encoding': 'gzip' } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'Content-Encoding: br',
      behaviour: () => ({ body: POLICY, headers: { 'content-encoding': 'br' } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'body one byte over 64 KiB, with Content-Length',
      behaviour: () => ({ body: { kind: 'oversized', bytes: MAX_POLICY_BYTES + 1 } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'body of 1 MiB, chunked (no Content-Length)',
      behaviour: () => ({ body: { kind: 'oversized', bytes: 1024 * 1024, declareLength: false } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'connection dropped mid-body',
      behaviour: () => ({ body: { kind: 'truncated', data: POLICY.repeat(50) } }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
    {
      name: 'an HTML error page served as text/plain',
      behaviour: () => ({ body: '<html>oops</html>' }),
      code: 'ERR_MTASTS_POLICY_SYNTAX',
    },
    { name: 'an empty 200', behaviour: () => ({ body: '' }), code: 'ERR_MTASTS_POLICY_SYNTAX' },
    {
      name: 'a non-UTF-8 body',
      behaviour: () => ({ body: Buffer.concat([Buffer.from(POLICY), Buffer.from([0xff, 0xfe, 0x80])]) }),
      code: 'ERR_MTASTS_POLICY_SYNTAX',
    },
    {
      name: 'huge response headers',
      behaviour: () => ({ body: POLICY, hugeHeaderBytes: 256 * 1024 }),
      code: 'ERR_MTASTS_POLICY_FETCH',
    },
  ];

  for (const c of CASES) {
    test(c.name, async () => {
      const d = domain();
      host.behave(d, c.behaviour(d));
      const err = await rejection(fetchPolicy(d, { ...base, ...c.options }));
      assert.equal(err.code, c.code, err.message);
      if (c.status !== undefined) assert.equal(err.details.httpStatus, c.status);
      assert.equal(host.requests(d), 1, 'exactly one request: nothing followed or retried');
      assert.equal(host.requests('elsewhere.fetch.test'), 0);
    });
  }

  test('requireTextPlain: false accepts another Content-Type', async () => {
    const d = domain();
    host.policy(d, POLICY, { contentType: 'application/octet-stream' });
    assert.equal((await fetchPolicy(d, { ...base, requireTextPlain: false })).text, POLICY);
    host.policy(d, POLICY, { contentType: null });
    assert.equal((await fetchPolicy(d, { ...base, requireTextPlain: false })).text, POLICY);
  });

  test('a port with nothing listening: POLICY_FETCH with ECONNREFUSED', async () => {
    const s = net.createServer().listen(0, '127.0.0.1');
    await once(s, 'listening');
    const { port } = s.address() as net.AddressInfo;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    const err = await rejection(fetchPolicy(domain(), { ...base, port }));
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(causeCode(err), 'ECONNREFUSED');
  });
});

describe('fetchPolicy: certificates (Web PKI)', () => {
  const KINDS: readonly (readonly [CertKind, string])[] = [
    ['expired', 'CERT_HAS_EXPIRED'],
    ['not-yet-valid', 'CERT_NOT_YET_VALID'],
    ['self-signed', 'DEPTH_ZERO_SELF_SIGNED_CERT'],
    ['untrusted', 'SELF_SIGNED_CERT_IN_CHAIN'],
    ['wrong-name', 'ERR_TLS_CERT_ALTNAME_INVALID'],
  ];
  for (const [kind, tlsCode] of KINDS) {
    test(`${kind} certificate → POLICY_FETCH, webpki, ${tlsCode}`, async () => {
      const d = domain();
      host.policy(d, POLICY, { cert: kind });
      const err = await rejection(fetchPolicy(d, base));
      assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
      assert.equal(err.details.webpki, true);
      assert.equal(causeCode(err), tlsCode);
      assert.equal(host.requests(d), 0, 'no HTTP request after a failed handshake');
    });
  }

  test('without the test CA the good certificate is untrusted: Node roots only', async () => {
    const d = domain();
    host.policy(d, POLICY);
    const { ca: _, ...noCa } = base;
    const err = await rejection(fetchPolicy(d, noCa));
    assert.equal(err.details.webpki, true);
  });

  test('ca as an array, alongside the Node roots', async () => {
    const d = domain();
    host.policy(d, POLICY);
    assert.equal((await fetchPolicy(d, { ...base, ca: [ca.certPem] })).text, POLICY);
  });

  test('an invalid ca is ERR_MTASTS_USAGE', async () => {
    const err = await rejection(fetchPolicy(domain(), { ...base, ca: 'not a certificate' }));
    assert.equal(err.code, 'ERR_MTASTS_USAGE');
  });

  test('a TLS handshake that never finishes ends at the total timeout', async () => {
    const d = domain();
    const started = performance.now();
    const before = host.silentConnections();
    const err = await rejection(fetchPolicy(d, { ...base, port: host.silentPort, timeoutMs: 300 }));
    const ms = performance.now() - started;
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(err.details.timeout, true);
    assert.ok(ms >= 280 && ms < 1500, `took ${ms} ms`);
    assert.equal(host.silentConnections(), before + 1);
  });
});

describe('fetchPolicy: policy host addresses and DNS', () => {
  const REFUSED = [
    '127.0.0.1',
    '127.1.2.3',
    '10.0.0.1',
    '172.16.5.4',
    '192.168.1.1',
    '169.254.169.254',
    '0.0.0.0',
    '100.64.0.1',
  ];
  for (const address of REFUSED) {
    test(`A ${address} is refused by default, without connecting`, async () => {
      const d = `priv${++seq}.fetch.test`;
      dns.mtaSts(d, { address });
      host.policy(d, POLICY);
      const { allowPrivateAddresses: _, ...defaults } = base;
      const err = await rejection(fetchPolicy(d, { ...defaults, allowPrivateAddresses: false }));
      assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
      assert.equal(err.details.refused, true);
      assert.deepEqual(err.details.addresses, [address]);
      assert.equal(host.requests(d), 0);
    });
  }

  for (const address of ['::1', 'fe80::1', 'fd00::1', '::ffff:127.0.0.1', '::']) {
    test(`AAAA ${address} is refused by default`, async () => {
      const d = `priv6${++seq}.fetch.test`;
      dns.txt(`_mta-sts.${d}`, ['v=STSv1; id=1;']).aaaa(`mta-sts.${d}`, address);
      const err = await rejection(fetchPolicy(d, { ...base, allowPrivateAddresses: false }));
      assert.equal(err.details.refused, true);
    });
  }

  test('loopback is allowed with allowPrivateAddresses', async () => {
    const d = domain();
    host.policy(d, POLICY);
    assert.equal((await fetchPolicy(d, { ...base, allowPrivateAddresses: true })).text, POLICY);
  });

  const DNS_CASES: readonly (readonly [string, (name: string) => void, ErrorCode])[] = [
    ['NXDOMAIN policy host', () => {}, 'ERR_MTASTS_NO_POLICY'],
    ['policy host with no A or AAAA (NODATA)', (n) => void dns.nodata(n), 'ERR_MTASTS_NO_POLICY'],
    ['policy host CNAME to nowhere', (n) => void dns.cname(n, 'nowhere.fetch.test'), 'ERR_MTASTS_NO_POLICY'],
    ['policy host SERVFAIL', (n) => void dns.servfail(n), 'ERR_MTASTS_POLICY_FETCH'],
    ['policy host REFUSED', (n) => void dns.refused(n), 'ERR_MTASTS_POLICY_FETCH'],
    ['policy host CNAME-only loop', (n) => void dns.cname(n, n, { only: true }), 'ERR_MTASTS_POLICY_FETCH'],
  ];
  for (const [name, zone, code] of DNS_CASES) {
    test(name, async () => {
      const d = `dnsx${++seq}.fetch.test`;
      zone(`mta-sts.${d}`);
      const err = await rejection(fetchPolicy(d, base));
      assert.equal(err.code, code, err.message);
      assert.equal(host.requests(d), 0);
    });
  }

  test('policy host lookup that never answers ends at the total timeout', async () => {
    const d = `dnsdrop${++seq}.fetch.test`;
    dns.drop(`mta-sts.${d}`);
    const started = performance.now();
    const err = await rejection(fetchPolicy(d, { ...base, timeoutMs: 300 }));
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(err.details.timeout, true);
    assert.ok(performance.now() - started < 1000);
  });

  test('A answers, AAAA is dropped: the fetch goes ahead after a short grace', async () => {
    const d = `halfdrop${++seq}.fetch.test`;
    dns.a(`mta-sts.${d}`, '127.0.0.1');
    host.policy(d, POLICY);
    // The fixture drops per name, so AAAA queries go to a dropped twin name.
    const slow = createNodeResolver({ servers: [dns.address], timeoutMs: 5000 });
    const dropping: DnsResolver = { ...slow, resolve6: (_name, signal) => slow.resolve6(`never.${d}`, signal) };
    dns.drop(`never.${d}`);
    const started = performance.now();
    assert.equal((await fetchPolicy(d, { ...base, resolver: dropping })).text, POLICY);
    assert.ok(performance.now() - started < 1500);
  });

  test('a domain whose policy host name would be too long is NO_POLICY without DNS', async () => {
    const label = 'a'.repeat(63);
    const d = `${label}.${label}.${label}.${'b'.repeat(56)}.test`;
    const before = dns.log.length;
    assert.equal((await rejection(fetchPolicy(d, base))).code, 'ERR_MTASTS_NO_POLICY');
    assert.equal(dns.log.length, before);
  });

  test('invalid domain and invalid timeout are coded errors', async () => {
    await assert.rejects(fetchPolicy('not a domain', base), (e: unknown) => isMtaStsError(e, 'ERR_MTASTS_DOMAIN'));
    await assert.rejects(fetchPolicy(domain(), { ...base, timeoutMs: 0 }), (e: unknown) =>
      isMtaStsError(e, 'ERR_MTASTS_USAGE'),
    );
  });
});

describe('fetchPolicy: timeouts and aborts', () => {
  test('a slow trickle ends at the total timeout', async () => {
    const d = domain();
    host.behave(d, { body: { kind: 'trickle', data: POLICY, intervalMs: 20 } });
    const started = performance.now();
    const err = await rejection(fetchPolicy(d, { ...base, timeoutMs: 500 }));
    const ms = performance.now() - started;
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal(err.details.timeout, true);
    assert.ok(ms >= 480 && ms < 2000, `took ${ms} ms`);
  });

  test('a fast enough trickle completes', async () => {
    const d = domain();
    host.behave(d, { body: { kind: 'trickle', data: LF_POLICY, intervalMs: 1 } });
    assert.equal((await fetchPolicy(d, base)).text, LF_POLICY);
  });

  test('headers then silence ends at the total timeout', async () => {
    const d = domain();
    host.behave(d, { body: { kind: 'hang' } });
    const err = await rejection(fetchPolicy(d, { ...base, timeoutMs: 300 }));
    assert.equal(err.details.timeout, true);
  });

  test('no response at all ends at the total timeout', async () => {
    const d = domain();
    host.behave(d, { noResponse: true });
    const err = await rejection(fetchPolicy(d, { ...base, timeoutMs: 300 }));
    assert.equal(err.details.timeout, true);
  });

  test('an already aborted signal: ERR_MTASTS_ABORTED, no DNS, no request', async () => {
    const d = domain();
    host.policy(d, POLICY);
    const err = await rejection(fetchPolicy(d, { ...base, signal: AbortSignal.abort() }));
    assert.equal(err.code, 'ERR_MTASTS_ABORTED');
    assert.equal(dns.queries(`mta-sts.${d}`), 0);
    assert.equal(host.requests(d), 0);
  });

  for (const [phase, behaviour, port] of [
    ['the body', { body: { kind: 'trickle', data: POLICY, intervalMs: 50 } }, undefined],
    ['the TLS handshake', {}, 'silent'],
  ] as const) {
    test(`aborting during ${phase}: ERR_MTASTS_ABORTED at once`, async () => {
      const d = domain();
      host.behave(d, behaviour);
      const ac = new AbortController();
      const reason = new Error('shutting down');
      setTimeout(() => ac.abort(reason), 100);
      const started = performance.now();
      const err = await rejection(
        fetchPolicy(d, { ...base, signal: ac.signal, ...(port === 'silent' ? { port: host.silentPort } : {}) }),
      );
      assert.equal(err.code, 'ERR_MTASTS_ABORTED');
      assert.ok(performance.now() - started < 600);
    });
  }

  test('aborting during DNS: ERR_MTASTS_ABORTED', async () => {
    const d = `dnsabort${++seq}.fetch.test`;
    dns.drop(`mta-sts.${d}`);
    const ac = new AbortController();
    setTimeout(() => ac.abort(), 50);
    assert.equal((await rejection(fetchPolicy(d, { ...base, signal: ac.signal }))).code, 'ERR_MTASTS_ABORTED');
  });

  test('a long-lived caller signal collects no listeners', async () => {
    const d = domain();
    host.policy(d, POLICY);
    const ac = new AbortController();
    let added = 0;
    let removed = 0;
    const add = ac.signal.addEventListener.bind(ac.signal);
    const remove = ac.signal.removeEventListener.bind(ac.signal);
    ac.signal.addEventListener = ((...a: Parameters<typeof add>) => (added++, add(...a))) as typeof add;
    ac.signal.removeEventListener = ((...a: Parameters<typeof remove>) => (removed++, remove(...a))) as typeof remove;
    for (let i = 0; i < 3; i++) await fetchPolicy(d, { ...base, signal: ac.signal });
    await rejection(fetchPolicy('nx-listener.fetch.test', { ...base, signal: ac.signal }));
    assert.ok(added > 0);
    assert.equal(added, removed);
  });
});

describe('createHttpsFetcher', () => {
  test('fetches with fixed options and a per-call signal', async () => {
    const { timeoutMs: _, ...rest } = base;
    const fetcher = createHttpsFetcher({ ...rest, timeoutMs: 300 });
    const d = domain();
    host.policy(d, POLICY);
    for (let i = 0; i < 3; i++) assert.equal((await fetcher.fetch(parseDomain(d))).text, POLICY);
    assert.equal(host.requests(d), 3);
    const err = await rejection(fetcher.fetch(parseDomain(d), { signal: AbortSignal.abort() }));
    assert.equal(err.code, 'ERR_MTASTS_ABORTED');
    const slow = domain();
    host.behave(slow, { body: { kind: 'hang' } });
    assert.equal((await rejection(fetcher.fetch(parseDomain(slow)))).details.timeout, true);
  });
});

describe('getPolicy', () => {
  test('returns the record, the policy and the text', async () => {
    const d = `gp${++seq}.fetch.test`;
    dns.mtaSts(d, { id: '20250101' });
    host.policy(d, POLICY);
    const got = await getPolicy(d, base);
    assert.equal(got.record.id, '20250101');
    assert.equal(got.policy.mode, 'enforce');
    assert.equal(got.text, POLICY);
  });

  test('no TXT record: NO_RECORD and no HTTPS request', async () => {
    const d = `gp${++seq}.fetch.test`;
    dns.a(`mta-sts.${d}`, '127.0.0.1');
    host.policy(d, POLICY);
    assert.equal((await rejection(getPolicy(d, base))).code, 'ERR_MTASTS_NO_RECORD');
    assert.equal(host.requests(d), 0);
  });

  for (const [name, behaviour, code] of [
    ['404', { status: 404 }, 'ERR_MTASTS_NO_POLICY'],
    ['500', { status: 500 }, 'ERR_MTASTS_POLICY_FETCH'],
    ['expired certificate', { body: POLICY, cert: 'expired' }, 'ERR_MTASTS_POLICY_FETCH'],
    ['invalid policy', { body: 'version: STSv1\n' }, 'ERR_MTASTS_POLICY_SYNTAX'],
  ] as const) {
    test(`a failed fetch (${name}) keeps the record in details and the original in cause`, async () => {
      const d = `gp${++seq}.fetch.test`;
      dns.mtaSts(d, { id: 'kept1' });
      host.behave(d, behaviour);
      const err = await rejection(getPolicy(d, base));
      assert.equal(err.code, code);
      assert.deepEqual(err.details.record, { version: 'STSv1', id: 'kept1', extensions: [] });
      assert.ok(isMtaStsError(err.cause, code));
      if (name === 'expired certificate') assert.equal(err.details.webpki, true);
    });
  }

  test('an injected fetcher is used, and its plain errors are coded', async () => {
    const d = `gp${++seq}.fetch.test`;
    dns.mtaSts(d, { id: 'inj' });
    host.policy(d, LF_POLICY);
    const real = createHttpsFetcher(base);
    const seen: string[] = [];
    const counting: PolicyFetcher = {
      fetch(dom, opts) {
        seen.push(dom.ascii);
        return real.fetch(dom, opts);
      },
    };
    assert.equal((await getPolicy(d, { resolver, fetcher: counting })).policy.mode, 'testing');
    assert.deepEqual(seen, [d]);
    const failing: PolicyFetcher = { fetch: () => Promise.reject(new Error('boom')) };
    const err = await rejection(getPolicy(d, { resolver, fetcher: failing }));
    assert.equal(err.code, 'ERR_MTASTS_POLICY_FETCH');
    assert.equal((err.details.record as { id: string }).id, 'inj');
  });

  test('an aborted signal stops before DNS', async () => {
    const d = `gp${++seq}.fetch.test`;
    dns.mtaSts(d);
    const err = await rejection(getPolicy(d, { ...base, signal: AbortSignal.abort() }));
    assert.equal(err.code, 'ERR_MTASTS_ABORTED');
    assert.equal(dns.queries(`_mta-sts.${d}`), 0);
  });
});
