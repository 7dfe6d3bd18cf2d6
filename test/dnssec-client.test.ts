// createDnssecClient against a real DNS server on 127.0.0.1 (UDP + TCP), and against raw sockets
// that misbehave in ways the test server does not.
import { after, before, beforeEach, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import * as packet from 'dns-packet';
import { startDnsServer, type DnsServer, type Spoof } from './helpers/dns-server.js';
import { mtaStsRejection as failureOf } from './helpers/rejection.js';
import { createDnssecClient, type DnssecClient } from '../src/dane/dnssec-client.js';
import { isMtaStsError } from '../src/errors.js';

let dns: DnsServer;
let client: DnssecClient;
const TIMEOUT_MS = 400;

before(async () => {
  dns = await startDnsServer();
  client = createDnssecClient({ server: dns.address, timeoutMs: TIMEOUT_MS });
});
after(() => dns?.close());
beforeEach(() => dns.reset());

function dataOf(a: packet.Answer): unknown {
  return a.type === 'OPT' ? undefined : a.data;
}

/** A reply to `q` with its id and question (fields override). */
function response(q: packet.DecodedPacket, fields: Partial<packet.Packet> = {}): Buffer {
  return packet.encode({ type: 'response', id: q.id ?? 0, flags: 0, questions: q.questions ?? [], ...fields });
}
const truncated = (q: packet.DecodedPacket): Buffer[] => [response(q, { flags: packet.TRUNCATED_RESPONSE })];

/** Runs `use` with a client of a raw UDP "resolver" on 127.0.0.1 that answers each query with `replies(query)`. */
async function withRawResolver(
  replies: (q: packet.DecodedPacket) => Buffer[],
  use: (client: DnssecClient, port: number) => Promise<void>,
  timeoutMs = TIMEOUT_MS,
): Promise<void> {
  const udp = dgram.createSocket('udp4');
  udp.on('message', (msg, rinfo) => {
    for (const b of replies(packet.decode(msg))) udp.send(b, rinfo.port, rinfo.address);
  });
  udp.bind(0, '127.0.0.1');
  await once(udp, 'listening');
  const port = udp.address().port;
  try {
    await use(createDnssecClient({ server: `127.0.0.1:${port}`, timeoutMs }), port);
  } finally {
    udp.close();
  }
}

/** UDP and TCP handles this process holds (to check that every query closes its socket). */
function sockets(): number {
  return process.getActiveResourcesInfo().filter((r) => r === 'UDPWRAP' || r === 'TCPSocketWrap').length;
}

describe('DNSSEC client: what it sends', () => {
  test('EDNS0 with a 1232-octet UDP size and DO, RD and AD in the header, no CD', async () => {
    dns.a('mx.signed.example', '192.0.2.1').ad('signed.example');
    const answer = await client.query('mx.signed.example', 'A');
    assert.equal(answer.rcode, 'NOERROR');
    assert.equal(answer.ad, true);
    assert.deepEqual(
      answer.answers.map((a) => [a.type, a.name, dataOf(a)]),
      [['A', 'mx.signed.example', '192.0.2.1']],
    );
    assert.deepEqual(dns.log, [
      {
        name: 'mx.signed.example',
        type: 'A',
        transport: 'udp',
        ednsUdpSize: 1232,
        dnssecOk: true,
        ad: true,
        rd: true,
        cd: false,
      },
    ]);
  });

  test('a fresh random id on every query', async () => {
    const ids = new Set<number>();
    const replies = (q: packet.DecodedPacket): Buffer[] => {
      ids.add(q.id ?? -1);
      return [response(q)];
    };
    await withRawResolver(replies, async (c) => {
      for (let i = 0; i < 20; i++) await c.query('x.example', 'A');
    });
    // 20 draws from 65536 ids: a repeat has probability below 0.3 %; a counter or a constant fails.
    assert.ok(ids.size >= 19, `ids ${[...ids].join(',')}`);
  });
});

describe('DNSSEC client: what it reads', () => {
  test('the AD bit as the resolver set it', async () => {
    dns.a('mx.unsigned.example', '192.0.2.2');
    const answer = await client.query('mx.unsigned.example', 'A');
    assert.equal(answer.rcode, 'NOERROR');
    assert.equal(answer.ad, false);
  });

  test('MX, TLSA and a Null MX', async () => {
    dns.mx('signed.example', '10 mx.signed.example', '20 mx2.signed.example').ad('signed.example');
    dns.mx('null.example', '0 .');
    dns.tlsa('_25._tcp.mx.signed.example', `3 1 1 ${'ab'.repeat(32)}`);
    const mx = await client.query('signed.example', 'MX');
    assert.deepEqual(mx.answers.map(dataOf), [
      { preference: 10, exchange: 'mx.signed.example' },
      { preference: 20, exchange: 'mx2.signed.example' },
    ]);
    const nullMx = await client.query('null.example', 'MX');
    assert.deepEqual(nullMx.answers.map(dataOf), [{ preference: 0, exchange: '.' }]);
    const tlsa = await client.query('_25._tcp.mx.signed.example', 'TLSA');
    assert.equal(tlsa.ad, true);
    const [record] = tlsa.answers;
    assert.ok(record?.type === 'TLSA');
    assert.deepEqual(
      [record.data.usage, record.data.selector, record.data.matchingType, record.data.certificate.toString('hex')],
      [3, 1, 1, 'ab'.repeat(32)],
    );
  });

  test('negative answers: NXDOMAIN and NODATA with the SOA in the authority section', async () => {
    dns.soa('signed.example', { ttl: 300, minimum: 120 }).ad('signed.example');
    dns.a('mx.signed.example', '192.0.2.1');
    const nx = await client.query('_25._tcp.mx.signed.example', 'TLSA');
    assert.equal(nx.rcode, 'NXDOMAIN');
    assert.equal(nx.ad, true);
    const [soa] = nx.authorities;
    assert.ok(soa?.type === 'SOA');
    assert.equal(soa.ttl, 300);
    assert.equal(soa.data.minimum, 120);
    const nodata = await client.query('mx.signed.example', 'TLSA');
    assert.equal(nodata.rcode, 'NOERROR');
    assert.deepEqual(nodata.answers, []);
    assert.deepEqual(
      nodata.authorities.map((a) => a.type),
      ['SOA'],
    );
  });

  for (const rcode of ['SERVFAIL', 'REFUSED', 'FORMERR', 'NOTIMP'] as const) {
    test(`${rcode} is an answer, without AD`, async () => {
      dns.fail('bogus.signed.example', rcode).ad('signed.example');
      const answer = await client.query('bogus.signed.example', 'TLSA');
      assert.equal(answer.rcode, rcode);
      assert.equal(answer.ad, false);
    });
  }

  test('an IPv6 resolver, written in a non-canonical form', async (t) => {
    const udp = dgram.createSocket('udp6');
    udp.on('message', (msg, rinfo) =>
      udp.send(response(packet.decode(msg), { flags: packet.AUTHENTIC_DATA }), rinfo.port, rinfo.address),
    );
    try {
      udp.bind(0, '::1');
      await once(udp, 'listening');
    } catch (err) {
      udp.close();
      t.skip(`no IPv6 loopback: ${String(err)}`);
      return;
    }
    try {
      const c = createDnssecClient({ server: `[0:0:0:0:0:0:0:1]:${udp.address().port}`, timeoutMs: TIMEOUT_MS });
      assert.equal((await c.query('mx.signed.example', 'A')).ad, true);
    } finally {
      udp.close();
    }
  });

  test('a reply whose question differs only in letter case is accepted (RFC 4343)', async () => {
    const upper = (q: packet.DecodedPacket): Buffer[] => [
      response(q, {
        flags: packet.AUTHENTIC_DATA,
        questions: (q.questions ?? []).map((x) => ({ ...x, name: x.name.toUpperCase() })),
      }),
    ];
    await withRawResolver(upper, async (c) => {
      assert.equal((await c.query('mx.signed.example.', 'A')).ad, true);
    });
  });
});

describe('DNSSEC client: truncation and spoofing', () => {
  test('TC=1 over UDP → the same question over TCP', async () => {
    dns.tlsa('_25._tcp.mx.signed.example', `3 1 1 ${'cd'.repeat(32)}`).ad('signed.example');
    dns.truncate('_25._tcp.mx.signed.example');
    const answer = await client.query('_25._tcp.mx.signed.example', 'TLSA');
    assert.equal(answer.rcode, 'NOERROR');
    assert.equal(answer.ad, true);
    assert.equal(answer.answers.length, 1);
    assert.deepEqual(
      dns.log.map((q) => [q.name, q.type, q.transport, q.dnssecOk, q.ednsUdpSize]),
      [
        ['_25._tcp.mx.signed.example', 'TLSA', 'udp', true, 1232],
        ['_25._tcp.mx.signed.example', 'TLSA', 'tcp', true, 1232],
      ],
    );
  });

  test('an answer too large for UDP arrives over TCP', async () => {
    const many = Array.from({ length: 40 }, (_, i) => `192.0.2.${i + 1}`);
    dns.a('big.signed.example', ...many);
    const answer = await client.query('big.signed.example', 'A');
    assert.deepEqual(answer.answers.map(dataOf), many);
    assert.deepEqual(
      dns.log.map((q) => q.transport),
      ['udp', 'tcp'],
    );
  });

  const spoofs: Spoof[][] = [['id'], ['question'], ['port'], ['id', 'question', 'port']];
  for (const kinds of spoofs) {
    test(`spoofed replies ignored: ${kinds.join(', ')}`, async () => {
      dns.a('mx.spoofed.example', '192.0.2.7');
      dns.spoof('mx.spoofed.example', ...kinds);
      const answer = await client.query('mx.spoofed.example', 'A');
      // The forged replies say NXDOMAIN with AD and 192.0.2.66; the real one NOERROR, no AD, 192.0.2.7.
      assert.equal(answer.rcode, 'NOERROR');
      assert.equal(answer.ad, false);
      assert.deepEqual(answer.answers.map(dataOf), ['192.0.2.7']);
      assert.equal(dns.spoofsSent, kinds.length);
    });
  }

  test('a spoofed reply and no real one → timeout, not the forgery', async () => {
    const forged = (q: packet.DecodedPacket): Buffer[] => [
      response(q, { id: ((q.id ?? 0) + 1) & 0xffff, flags: packet.AUTHENTIC_DATA }),
      Buffer.from('garbage'),
    ];
    await withRawResolver(
      forged,
      async (c) => {
        const err = await failureOf(c.query('mx.signed.example', 'A'));
        assert.equal(err.code, 'ERR_DANE_DNS');
        assert.equal(err.details.reason, 'timeout');
      },
      150,
    );
  });
});

describe('DNSSEC client: failures are coded and sockets closed', () => {
  test('no reply → ERR_DANE_DNS timeout, within the deadline', async () => {
    dns.drop('mx.silent.example');
    const before = sockets();
    const started = performance.now();
    const err = await failureOf(client.query('mx.silent.example', 'A'));
    const elapsed = performance.now() - started;
    assert.equal(err.code, 'ERR_DANE_DNS');
    assert.equal(err.details.reason, 'timeout');
    assert.equal(err.message, 'timeout at mx.silent.example A');
    assert.ok(elapsed >= TIMEOUT_MS - 5 && elapsed < TIMEOUT_MS + 1000, `${elapsed} ms`);
    await new Promise((r) => setImmediate(r));
    // The server's own sockets live in this process too and may close meanwhile: never more than before.
    assert.ok(sockets() <= before, `${sockets()} sockets open, ${before} before`);
  });

  test('the TCP retry shares the deadline of the query', async () => {
    dns.a('slow.signed.example', '192.0.2.8').truncate('slow.signed.example');
    // Each answer is delayed by 250 ms: UDP (250) + TCP (250) exceeds the 400 ms budget.
    dns.delay('slow.signed.example', 250);
    const err = await failureOf(client.query('slow.signed.example', 'A'));
    assert.equal(err.details.reason, 'timeout');
    assert.deepEqual(
      dns.log.map((q) => q.transport),
      ['udp', 'tcp'],
    );
  });

  test('an aborted signal → ERR_MTASTS_ABORTED, at once and mid-query', async () => {
    const pre = await failureOf(client.query('x.example', 'A', AbortSignal.abort()));
    assert.equal(pre.code, 'ERR_MTASTS_ABORTED');
    assert.equal(pre.details.reason, 'aborted');
    assert.deepEqual(dns.log, []);

    dns.a('slow.example', '192.0.2.9').delay('slow.example', 2000);
    const before = sockets();
    const controller = new AbortController();
    const started = performance.now();
    setTimeout(() => controller.abort(new Error('shutdown')), 30);
    const mid = await failureOf(client.query('slow.example', 'A', controller.signal));
    assert.equal(mid.code, 'ERR_MTASTS_ABORTED');
    assert.equal(mid.details.reason, 'aborted');
    assert.ok(performance.now() - started < TIMEOUT_MS, 'aborted before the timeout');
    await new Promise((r) => setImmediate(r));
    // The server's own sockets live in this process too and may close meanwhile: never more than before.
    assert.ok(sockets() <= before, `${sockets()} sockets open, ${before} before`);
  });

  test('TC=1 with nothing listening on TCP → ERR_DANE_DNS network', async () => {
    await withRawResolver(truncated, async (c) => {
      const err = await failureOf(c.query('mx.signed.example', 'A'));
      assert.equal(err.code, 'ERR_DANE_DNS');
      assert.equal(err.details.reason, 'network');
    });
  });

  test('a TCP reply for another question → ERR_DANE_DNS malformed', async () => {
    await withRawResolver(truncated, async (c, port) => {
      const tcp = net.createServer((s) => {
        s.on('error', () => {});
        s.once('data', (data) => {
          const q = packet.streamDecode(data);
          const other = {
            type: 'response' as const,
            id: q.id ?? 0,
            questions: [{ type: 'A' as const, name: 'other.example' }],
          };
          s.write(packet.streamEncode(other));
        });
      });
      tcp.listen(port, '127.0.0.1');
      await once(tcp, 'listening');
      try {
        const err = await failureOf(c.query('mx.signed.example', 'A'));
        assert.equal(err.code, 'ERR_DANE_DNS');
        assert.equal(err.details.reason, 'malformed');
      } finally {
        await new Promise((r) => tcp.close(r));
      }
    });
  });

  test('bad options → ERR_MTASTS_USAGE', () => {
    for (const server of [
      '127.0.0.1',
      'localhost:53',
      '::1:53',
      '[::1]',
      '127.0.0.1:0',
      '127.0.0.1:65536',
      '[fe80::1%lo]:53',
      '',
    ]) {
      assert.throws(
        () => createDnssecClient({ server }),
        (err) => isMtaStsError(err, 'ERR_MTASTS_USAGE'),
        server,
      );
    }
    assert.throws(
      () => createDnssecClient({ server: '127.0.0.1:53', timeoutMs: 0 }),
      (err) => isMtaStsError(err, 'ERR_MTASTS_USAGE'),
    );
    assert.doesNotThrow(() => createDnssecClient({ server: '[::1]:53' }));
  });
});
