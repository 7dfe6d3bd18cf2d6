// lookupDane through createDnssecClient against the loopback DNS server, with AD set per name the
// way a validating resolver sets it for signed zones.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { startDnsServer, type DnsServer } from './helpers/dns-server.js';
import { createDnssecClient, type DnssecClient } from '../src/dane/dnssec-client.js';
import { lookupDane, type DaneReport } from '../src/dane/discover.js';
import { DaneStateCache } from '../src/dane/state-cache.js';
import { isMtaStsError } from '../src/errors.js';

let dns: DnsServer;
let client: DnssecClient;
const TIMEOUT_MS = 300;
const H = 'ab'.repeat(32); // a SHA-256 digest
const EE = `3 1 1 ${H}`;

before(async () => {
  dns = await startDnsServer();
  client = createDnssecClient({ server: dns.address, timeoutMs: TIMEOUT_MS });
});
after(() => dns?.close());
beforeEach(() => {
  dns.reset();
  // A signed zone (signed.test) and an unsigned one (plain.test), each with its SOA.
  dns.soa('signed.test', { ttl: 300, minimum: 120 }).ad('signed.test');
  dns.soa('plain.test', { ttl: 300, minimum: 120 }).ad('plain.test', false);
});

const lookup = (domain: string): Promise<DaneReport> => lookupDane(domain, { client });
const asked = (): string[] => dns.log.map((q) => `${q.name} ${q.type}`);

/** A signed MX host with an address and (unless `tlsa` is null) TLSA records. */
function secureHost(host: string, tlsa: string | null = EE): void {
  dns.a(host, '192.0.2.25');
  if (tlsa !== null) dns.tlsa(`_25._tcp.${host}`, tlsa);
}

describe('lookupDane: the MX lookup', () => {
  test('secure MX, secure address, usable TLSA → dane-only; AAAA not asked', async () => {
    dns.mx('signed.test', '10 mx.signed.test');
    secureHost('mx.signed.test');
    dns.ttl('signed.test', 3600).ttl('_25._tcp.mx.signed.test', 600);
    const r = await lookup('Signed.Test.');
    assert.equal(r.domain, 'signed.test');
    assert.deepEqual(r.state, { kind: 'dane-only', ttlSeconds: 600, reason: 'every MX host has usable TLSA' });
    assert.equal(r.mxSecure, true);
    assert.equal(r.implicitMx, false);
    assert.deepEqual(r.hosts, [
      {
        host: 'mx.signed.test',
        preference: 10,
        addressSecure: true,
        tlsaName: '_25._tcp.mx.signed.test',
        tlsaSecure: true,
        tlsa: [{ usage: 3, selector: 1, matchingType: 1, data: H, usable: true }],
      },
    ]);
    assert.deepEqual(asked(), ['signed.test MX', 'mx.signed.test A', '_25._tcp.mx.signed.test TLSA']);
    assert.equal(r.queries, 3);
  });

  test('insecure MX with a secure host and TLSA → dane (RFC 7672 §2.2.1)', async () => {
    dns.mx('plain.test', '10 mx.signed.test');
    secureHost('mx.signed.test');
    const r = await lookup('plain.test');
    assert.equal(r.state.kind, 'dane');
    assert.equal(r.mxSecure, false);
  });

  test('secure NODATA → implicit MX: the domain itself, TTL from the SOA (RFC 2308 §5)', async () => {
    secureHost('implicit.signed.test');
    dns.ttl('implicit.signed.test', 3600).ttl('_25._tcp.implicit.signed.test', 3600);
    const r = await lookup('implicit.signed.test');
    assert.equal(r.implicitMx, true);
    assert.equal(r.mxSecure, true);
    assert.deepEqual(
      r.hosts.map((h) => [h.host, h.preference]),
      [['implicit.signed.test', 0]],
    );
    assert.deepEqual(r.state, { kind: 'dane-only', ttlSeconds: 120, reason: 'every MX host has usable TLSA' });
  });

  test('insecure NODATA → none, nothing else asked', async () => {
    secureHost('implicit.plain.test');
    const r = await lookup('implicit.plain.test');
    assert.equal(r.state.kind, 'none');
    assert.equal(r.implicitMx, false);
    assert.deepEqual(asked(), ['implicit.plain.test MX']);
  });

  test('NXDOMAIN, secure or not → none with the negative TTL', async () => {
    for (const domain of ['gone.signed.test', 'gone.plain.test']) {
      dns.reset();
      dns.soa(domain.slice(5), { ttl: 300, minimum: 90 }).ad('signed.test');
      const r = await lookup(domain);
      assert.equal(r.state.kind, 'none', domain);
      assert.equal(r.state.ttlSeconds, 90, domain);
      assert.deepEqual(asked(), [`${domain} MX`]);
    }
  });

  test('Null MX (RFC 7505) → none, nothing else asked', async () => {
    dns.mx('nullmx.signed.test', '0 .');
    const r = await lookup('nullmx.signed.test');
    assert.equal(r.state.kind, 'none');
    assert.deepEqual(r.hosts, []);
    assert.deepEqual(asked(), ['nullmx.signed.test MX']);
  });

  test('Null MX mixed with a real MX: the real host counts', async () => {
    dns.mx('mixed.signed.test', '0 .', '10 mx.signed.test');
    secureHost('mx.signed.test');
    const r = await lookup('mixed.signed.test');
    assert.equal(r.state.kind, 'dane-only');
    assert.deepEqual(
      r.hosts.map((h) => h.host),
      ['mx.signed.test'],
    );
  });

  test('a CNAME at the domain: the MX of the target, the CNAME TTL caps the state', async () => {
    dns.cname('alias.signed.test', 'signed.test').ttl('alias.signed.test', 100);
    dns.mx('signed.test', '10 mx.signed.test');
    secureHost('mx.signed.test');
    const r = await lookup('alias.signed.test');
    assert.equal(r.state.kind, 'dane-only');
    assert.equal(r.state.ttlSeconds, 60);
    dns.ttl('mx.signed.test', 3600).ttl('_25._tcp.mx.signed.test', 3600).ttl('signed.test', 3600);
    assert.equal((await lookup('alias.signed.test')).state.ttlSeconds, 100);
  });

  test('duplicate MX hosts are asked once, with the lowest preference', async () => {
    dns.mx('dup.signed.test', '20 mx.signed.test', '10 MX.signed.test.');
    secureHost('mx.signed.test');
    const r = await lookup('dup.signed.test');
    assert.deepEqual(
      r.hosts.map((h) => [h.host, h.preference]),
      [['mx.signed.test', 10]],
    );
    assert.equal(dns.queries('mx.signed.test', 'A'), 1);
  });
});

describe('lookupDane: hosts and TLSA', () => {
  test('partial TLSA: one host covered, one with a secure NXDOMAIN → dane', async () => {
    dns.mx('partial.signed.test', '10 mx.signed.test', '20 mx2.signed.test');
    secureHost('mx.signed.test');
    secureHost('mx2.signed.test', null);
    const r = await lookup('partial.signed.test');
    assert.equal(r.state.kind, 'dane');
    const mx2 = r.hosts.find((h) => h.host === 'mx2.signed.test');
    assert.deepEqual(mx2, {
      host: 'mx2.signed.test',
      preference: 20,
      addressSecure: true,
      tlsaName: '_25._tcp.mx2.signed.test',
      tlsaSecure: true,
      tlsa: [],
    });
  });

  test('only unusable TLSA (PKIX-EE, a short digest) → unusable', async () => {
    dns.mx('pkix.signed.test', '10 mx.signed.test');
    secureHost('mx.signed.test', `1 1 1 ${H}`);
    dns.tlsa('_25._tcp.mx.signed.test', `1 1 1 ${H}`, `3 1 1 ${'ab'.repeat(31)}`);
    const r = await lookup('pkix.signed.test');
    assert.equal(r.state.kind, 'unusable');
    assert.deepEqual(
      r.hosts[0]?.tlsa.map((t) => t.usable),
      [false, false],
    );
  });

  test('TLSA without AD → no DANE for that host', async () => {
    dns.mx('signed.test', '10 mx.signed.test');
    secureHost('mx.signed.test');
    dns.ad('_25._tcp.mx.signed.test', false);
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'none');
    assert.equal(r.hosts[0]?.tlsaSecure, false);
    assert.deepEqual(r.hosts[0]?.tlsa, []);
  });

  test('a host with an insecure address is skipped (no TLSA asked) and caps at dane', async () => {
    dns.mx('signed.test', '10 mx.signed.test', '20 mx.plain.test');
    secureHost('mx.signed.test');
    secureHost('mx.plain.test');
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'dane');
    assert.equal(r.hosts.find((h) => h.host === 'mx.plain.test')?.addressSecure, false);
    assert.equal(dns.queries('_25._tcp.mx.plain.test', 'TLSA'), 0);
    assert.equal(dns.queries('mx.plain.test', 'AAAA'), 1);
  });

  test('a host with a secure NODATA for A and a secure AAAA is secure', async () => {
    dns.mx('signed.test', '10 mx6.signed.test');
    dns.aaaa('mx6.signed.test', '2001:db8::25').tlsa('_25._tcp.mx6.signed.test', EE);
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'dane-only');
    assert.deepEqual(asked().slice(1, 3), ['mx6.signed.test A', 'mx6.signed.test AAAA']);
  });

  test('a host whose name does not exist (secure NXDOMAIN) is skipped', async () => {
    dns.mx('signed.test', '10 mx.signed.test', '20 gone.signed.test');
    secureHost('mx.signed.test');
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'dane');
    assert.equal(r.hosts.find((h) => h.host === 'gone.signed.test')?.addressSecure, false);
  });

  test("a CNAME'd MX host: TLSA at the target first (RFC 7672 §2.2.2)", async () => {
    dns.soa('provider.test').ad('provider.test');
    dns.mx('signed.test', '10 mx.signed.test');
    dns.cname('mx.signed.test', 'host.provider.test');
    secureHost('host.provider.test');
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'dane-only');
    assert.equal(r.hosts[0]?.tlsaName, '_25._tcp.host.provider.test');
    assert.equal(dns.queries('_25._tcp.mx.signed.test', 'TLSA'), 0);
  });

  test("a CNAME'd MX host without TLSA at the target: the original name is asked next", async () => {
    dns.soa('provider.test').ad('provider.test');
    dns.mx('signed.test', '10 mx.signed.test');
    dns.cname('mx.signed.test', 'host.provider.test');
    secureHost('host.provider.test', null);
    dns.tlsa('_25._tcp.mx.signed.test', EE);
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'dane-only');
    assert.equal(r.hosts[0]?.tlsaName, '_25._tcp.mx.signed.test');
    assert.deepEqual(asked().slice(2), ['_25._tcp.host.provider.test TLSA', '_25._tcp.mx.signed.test TLSA']);
  });

  test("a CNAME'd MX host whose chain is not secure is skipped", async () => {
    dns.mx('signed.test', '10 mx.signed.test');
    dns.cname('mx.signed.test', 'host.plain.test').ad('mx.signed.test', false);
    secureHost('host.plain.test');
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'none');
    assert.equal(r.hosts[0]?.addressSecure, false);
  });

  test('at most 4 hosts at once (the default), and every host is done', async () => {
    const hosts = Array.from({ length: 7 }, (_, i) => `mx${i}.signed.test`);
    dns.mx('many.signed.test', ...hosts.map((h, i) => `${i} ${h}`));
    for (const h of hosts) {
      secureHost(h);
      dns.delay(h, 40);
    }
    let inFlight = 0;
    let peak = 0;
    const counting: DnssecClient = {
      async query(name, type, signal) {
        inFlight++;
        peak = Math.max(peak, inFlight);
        try {
          return await client.query(name, type, signal);
        } finally {
          inFlight--;
        }
      },
    };
    const r = await lookupDane('many.signed.test', { client: counting });
    assert.equal(r.state.kind, 'dane-only');
    assert.equal(r.hosts.length, 7);
    assert.equal(peak, 4);
    assert.equal(r.queries, 1 + 7 * 2);
  });
});

describe('lookupDane: failures are temp, never insecure', () => {
  const rows: [string, (d: DnsServer) => void, string][] = [
    ['SERVFAIL at the MX', (d) => d.servfail('signed.test'), 'SERVFAIL at signed.test MX'],
    ['REFUSED at the MX', (d) => d.refused('signed.test'), 'REFUSED at signed.test MX'],
    ['SERVFAIL at A', (d) => d.servfail('mx.signed.test'), 'SERVFAIL at mx.signed.test A'],
    ['timeout at A', (d) => d.drop('mx.signed.test'), 'timeout at mx.signed.test A'],
    [
      'SERVFAIL at TLSA (bogus)',
      (d) => d.servfail('_25._tcp.mx.signed.test'),
      'SERVFAIL at _25._tcp.mx.signed.test TLSA',
    ],
    ['timeout at TLSA', (d) => d.drop('_25._tcp.mx.signed.test'), 'timeout at _25._tcp.mx.signed.test TLSA'],
  ];
  for (const [what, breakIt, reason] of rows) {
    test(`${what} → temp`, async () => {
      dns.mx('signed.test', '10 mx.signed.test');
      secureHost('mx.signed.test');
      breakIt(dns);
      const r = await lookup('signed.test');
      assert.deepEqual(r.state, { kind: 'temp', ttlSeconds: 0, reason });
    });
  }

  test('SERVFAIL at one host fails the domain even when another is covered', async () => {
    dns.mx('signed.test', '10 mx.signed.test', '20 mx2.signed.test');
    secureHost('mx.signed.test');
    secureHost('mx2.signed.test');
    dns.servfail('_25._tcp.mx2.signed.test');
    const r = await lookup('signed.test');
    assert.equal(r.state.kind, 'temp');
    assert.equal(r.state.reason, 'SERVFAIL at _25._tcp.mx2.signed.test TLSA');
  });

  test('SERVFAIL at AAAA when A gave no secure address → temp', async () => {
    dns.mx('signed.test', '10 mx6.signed.test');
    dns.nodata('mx6.signed.test');
    dns.ad('mx6.signed.test');
    // Only the AAAA query fails: a name-wide SERVFAIL would already fail the A query.
    const failing: DnssecClient = {
      query: (name, type, signal) =>
        type === 'AAAA' ? client.query('broken.signed.test', 'AAAA', signal) : client.query(name, type, signal),
    };
    dns.servfail('broken.signed.test');
    const r = await lookupDane('signed.test', { client: failing });
    assert.deepEqual(r.state, { kind: 'temp', ttlSeconds: 0, reason: 'SERVFAIL at mx6.signed.test AAAA' });
  });

  test('an aborted signal rejects with ERR_MTASTS_ABORTED', async () => {
    dns.mx('signed.test', '10 mx.signed.test');
    secureHost('mx.signed.test');
    dns.delay('mx.signed.test', 1000);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 30);
    await assert.rejects(lookupDane('signed.test', { client, signal: controller.signal }), (err) =>
      isMtaStsError(err, 'ERR_MTASTS_ABORTED'),
    );
  });

  test('a name that is not a host name → ERR_MTASTS_DOMAIN, nothing asked', async () => {
    await assert.rejects(lookup('[192.0.2.1]'), (err) => isMtaStsError(err, 'ERR_MTASTS_DOMAIN'));
    assert.equal(dns.log.length, 0);
  });
});

test('property: without AD on the MX, address and TLSA answers of every host, never dane-only', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.boolean(),
      fc.array(fc.record({ address: fc.boolean(), tlsa: fc.boolean(), usable: fc.boolean() }), {
        minLength: 1,
        maxLength: 3,
      }),
      async (mxAd, hosts) => {
        dns.reset();
        dns.soa('p.test').ad('p.test', mxAd);
        dns.mx('p.test', ...hosts.map((_, i) => `10 mx${i}.p.test`));
        hosts.forEach((h, i) => {
          dns.a(`mx${i}.p.test`, '192.0.2.1').ad(`mx${i}.p.test`, h.address);
          dns.tlsa(`_25._tcp.mx${i}.p.test`, h.usable ? EE : `0 0 1 ${H}`).ad(`_25._tcp.mx${i}.p.test`, h.tlsa);
        });
        const r = await lookup('p.test');
        const authenticated = mxAd && hosts.every((h) => h.address && h.tlsa && h.usable);
        assert.equal(r.state.kind === 'dane-only', authenticated, JSON.stringify({ mxAd, hosts, state: r.state }));
      },
    ),
    { numRuns: 60 },
  );
});

test('DaneStateCache over lookupDane: one lookup per TTL, temp asked again', async () => {
  dns.mx('signed.test', '10 mx.signed.test');
  secureHost('mx.signed.test');
  const cache = new DaneStateCache({ lookup: (d, signal) => lookupDane(d, { client, signal }) });
  const [first, second] = await Promise.all([cache.get('signed.test'), cache.get('signed.test')]);
  assert.equal(first.kind, 'dane-only');
  assert.deepEqual(second, first);
  await cache.get('signed.test');
  assert.equal(dns.queries('signed.test', 'MX'), 1);
  dns.servfail('_25._tcp.mx.signed.test');
  cache.clear();
  assert.equal((await cache.get('signed.test')).kind, 'temp');
  assert.equal((await cache.get('signed.test')).kind, 'temp');
  assert.equal(dns.queries('signed.test', 'MX'), 3);
});
