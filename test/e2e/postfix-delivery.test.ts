/**
 * Real deliveries: a real Postfix (a second instance, test/helpers/postfix-instance.ts) inside a
 * network namespace, with `smtp_tls_policy_maps = socketmap:inet:…:postfix` pointing at
 * `mtastsdb serve` (the real CLI entry, inside the namespace too). Both use the namespace's system
 * resolver: the loopback DNS fixture on port 53 across the veth pair. The policy host and one SMTP
 * sink per MX host (each on an address of its own, STARTTLS with a certificate from the test CA,
 * or none) listen on this side of the pair. Each case is read from Postfix's own log.
 *
 * DANE: the daemon has `dane: prefer` and asks the same DNS fixture, which sets the AD bit on the
 * DANE domains' zone (as a validating resolver would on signed data; the real validation is
 * test/e2e/dane-daemon.test.ts); Postfix runs with `smtp_dns_support_level = dnssec` and reads
 * the AD bit through glibc (`trust-ad`), so a `dane-only` answer makes it check the TLSA records.
 *
 * Needs root, iproute2 and Postfix: skips with the reason elsewhere, fails in CI.
 */
import assert from 'node:assert/strict';
import { createHash, X509Certificate } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { policyText } from '../helpers/cache-fixture.js';
import { requireOrSkip } from '../helpers/ci.js';
import { startDnsServer } from '../helpers/dns-server.js';
import type { DnsServer } from '../helpers/dns-server.js';
import { startHttpsHost } from '../helpers/https-host.js';
import type { HttpsHost } from '../helpers/https-host.js';
import { createNetns, netnsAvailable } from '../helpers/netns.js';
import type { Netns } from '../helpers/netns.js';
import { postfixMissing, startPostfix } from '../helpers/postfix-instance.js';
import type { Delivery, PostfixInstance } from '../helpers/postfix-instance.js';
import { spawnServe } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { startSmtpSink } from '../helpers/smtp-server.js';
import type { SmtpSink } from '../helpers/smtp-server.js';
import { getTestCa } from '../helpers/test-ca.js';
import type { CertKind, TestCa } from '../helpers/test-ca.js';

const SENDER = 'sender@client.mtastsdb.test';
const DELIVERY_WAIT_MS = 40_000;

type Policy = 'enforce' | 'testing' | 'none' | 'no record';

interface Case {
  readonly name: string;
  readonly policy: Policy;
  /** The MX's certificate, or `null`: STARTTLS not offered. */
  readonly cert: CertKind | null;
  /** The policy's mx list names another host than the MX. */
  readonly mxMismatch?: boolean;
  readonly expect: 'sent' | 'deferred';
  /** What the deferral says (Postfix's text). */
  readonly why?: RegExp;
  /** Postfix's certificate verification failure for the MX. */
  readonly failure?: RegExp;
}

const CASES: readonly Case[] = [
  { name: 'enforce-good', policy: 'enforce', cert: 'good', expect: 'sent' },
  {
    name: 'enforce-wrong-name',
    policy: 'enforce',
    cert: 'wrong-name',
    expect: 'deferred',
    why: /Server certificate not verified/,
    failure: /hostname mismatch/,
  },
  {
    name: 'enforce-self-signed',
    policy: 'enforce',
    cert: 'self-signed',
    expect: 'deferred',
    why: /Server certificate not verified/,
    failure: /self-signed certificate/,
  },
  {
    name: 'enforce-expired',
    policy: 'enforce',
    cert: 'expired',
    expect: 'deferred',
    why: /Server certificate not verified/,
    failure: /certificate has expired/,
  },
  {
    name: 'enforce-no-starttls',
    policy: 'enforce',
    cert: null,
    expect: 'deferred',
    why: /TLS is required, but was not offered/,
  },
  {
    name: 'enforce-mx-not-in-policy',
    policy: 'enforce',
    cert: 'good',
    mxMismatch: true,
    expect: 'deferred',
    why: /Server certificate not verified/,
    failure: /hostname mismatch/,
  },
  // Not enforced: delivered over whatever TLS the MX offers, a certificate nobody trusts included.
  { name: 'testing-self-signed', policy: 'testing', cert: 'self-signed', expect: 'sent' },
  { name: 'none-self-signed', policy: 'none', cert: 'self-signed', expect: 'sent' },
  { name: 'no-record-self-signed', policy: 'no record', cert: 'self-signed', expect: 'sent' },
  { name: 'no-record-no-starttls', policy: 'no record', cert: null, expect: 'sent' },
];

const domainOf = (name: string): string => `${name}.pf.mtastsdb.test`;
/** The zone whose answers carry AD (DNSSEC-secure, as the resolver says). */
const DANE_ZONE = 'dane.pf.mtastsdb.test';

/** The TLSA `3 1 1` data of a certificate: SHA-256 of its SubjectPublicKeyInfo (RFC 6698 §2.1). */
function spkiSha256(certPem: string): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('hex');
}
const mxOf = (domain: string): string => `mx.${domain}`;

/** The `smtp` log lines about the TLS session with `host` (Postfix logs them per MX host). */
function tlsLines(log: string, host: string): string[] {
  return log.split('\n').filter((l) => l.includes(` ${host}[`) && /TLS connection established|certificate/.test(l));
}

const missing: string | undefined = (() => {
  if (!netnsAvailable()) return 'network namespaces need root and iproute2 (`ip`)';
  return postfixMissing();
})();

describe('real Postfix delivering through mtastsdb serve (network namespace)', () => {
  let ns: Netns | undefined;
  let dns: DnsServer;
  let https: HttpsHost;
  let ca: TestCa;
  let dir: string;
  let serve: ServeProcess | undefined;
  let postfix: PostfixInstance | undefined;
  const sinks = new Map<string, SmtpSink>();
  const outcomes = new Map<string, Promise<Delivery>>();

  /** Publishes `domain`'s MX (a new address here, a sink on port 25) and, unless `no record`, its policy. */
  async function mxHost(domain: string, policy: Policy, cert: CertKind | null, mxList: readonly string[]) {
    const netns = ns as Netns;
    const address = await netns.addHostAddress();
    const host = mxOf(domain);
    dns.mx(domain, `10 ${host}`).a(host, address);
    const sink = await startSmtpSink({
      host: address,
      hostname: host,
      tls: cert === null ? null : await ca.leaf([host], cert),
    });
    sinks.set(domain, sink);
    if (policy !== 'no record') {
      dns.mtaSts(domain, { id: '1', address: netns.hostAddress });
      https.policy(domain, policyText(policy, mxList, 86400));
    }
    return sink;
  }

  before(async () => {
    if (missing !== undefined) return;
    ca = await getTestCa();
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-pfdelivery-'));
    ns = await createNetns();
    dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
    https = await startHttpsHost({ ca, host: ns.hostAddress });
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, ca.certPem);
    const config = join(dir, 'mtastsdb.yml');
    // cache_grace 0: every lookup goes to DNS, so the cached-policy case meets the failing TXT.
    await writeFile(
      config,
      [
        'host: 127.0.0.1',
        'port: 0',
        'cache_grace: 0',
        `store: ${join(dir, 'policies.db')}`,
        'proactive_policy_fetching:\n  enabled: false',
        'default_zone:\n  timeout: 3\n  dane: prefer',
        // The line per answer (debug) shows what Postfix was told.
        'logging:\n  level: debug',
        // The DNS fixture across the veth pair, which sets AD on the DANE zone; the probe asks its apex.
        `dane:\n  resolver: ${ns.hostAddress}:53\n  allow_remote_resolver: true\n  probe: ${DANE_ZONE}`,
        '',
      ].join('\n'),
    );
    serve = await spawnServe(
      ['-c', config, '--ca', caFile, '--policy-port', String(https.port)],
      { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
      [],
      ['ip', 'netns', 'exec', ns.name],
    );
    dns.soa(DANE_ZONE).ad(DANE_ZONE);
    postfix = await startPostfix({
      netns: ns,
      caFile,
      policyMaps: `socketmap:inet:127.0.0.1:${serve.port}:postfix`,
      // What DANE needs of Postfix (README "DANE and MTA-STS"); 3.7.11 predates the insecure-MX default.
      mainCf: ['smtp_dns_support_level = dnssec', 'smtp_tls_dane_insecure_mx_policy = dane'],
    });
    for (const c of CASES) {
      const d = domainOf(c.name);
      await mxHost(d, c.policy, c.cert, [c.mxMismatch === true ? `other.${d}` : mxOf(d)]);
    }
    // All cases at once: Postfix delivers them in parallel.
    for (const c of CASES) {
      const rcpt = `user@${domainOf(c.name)}`;
      await postfix.send(SENDER, rcpt);
      outcomes.set(c.name, postfix.delivery(rcpt, DELIVERY_WAIT_MS));
    }
    // A rejection nobody awaits yet (a test still waiting for its turn) is not unhandled.
    for (const p of outcomes.values()) p.catch(() => {});
  });

  after(async () => {
    await postfix?.stop();
    if (serve !== undefined) {
      serve.child.kill('SIGTERM');
      await Promise.race([serve.exited, new Promise((r) => setTimeout(r, 5000))]);
      serve.child.kill('SIGKILL');
    }
    for (const s of sinks.values()) await s.close();
    await dns?.close();
    await https?.close();
    await ns?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const ready = (t: TestContext): boolean => requireOrSkip(t, missing === undefined, missing ?? '');

  for (const c of CASES) {
    it(`${c.name}: ${c.expect}`, async (t) => {
      if (!ready(t)) return;
      const d = domainOf(c.name);
      const got = await (outcomes.get(c.name) as Promise<Delivery>);
      const log = await (postfix as PostfixInstance).log();
      const sink = sinks.get(d) as SmtpSink;
      assert.equal(got.status, c.expect, got.line);
      if (c.expect === 'sent') {
        assert.match(got.dsn, /^2\./, got.line);
        assert.equal(sink.messages.length, 1, 'the sink holds the message');
        assert.deepEqual(sink.messages[0]?.to, [`user@${d}`]);
        assert.equal(sink.messages[0]?.from, SENDER);
        assert.equal(sink.messages[0]?.tls, c.cert !== null, 'over TLS whenever the MX offered it');
      } else {
        assert.match(got.dsn, /^4\.7\./, got.line);
        assert.match(got.line, c.why as RegExp);
        assert.equal(sink.messages.length, 0, 'nothing reached the sink');
      }
      const tls = tlsLines(log, mxOf(d));
      if (c.failure !== undefined)
        assert.ok(
          tls.some((l) => c.failure?.test(l)),
          `${c.failure}:\n${tls.join('\n')}`,
        );
      if (c.name === 'enforce-good') {
        assert.ok(
          tls.some((l) => l.includes(`Verified TLS connection established to ${mxOf(d)}[`)),
          `verified TLS:\n${tls.join('\n')}`,
        );
      } else if (c.policy !== 'enforce' && c.cert !== null) {
        assert.ok(
          tls.some((l) => /Untrusted TLS connection established/.test(l)),
          `opportunistic TLS:\n${tls.join('\n')}`,
        );
      }
    });
  }

  it('a cached enforce policy outlives its TXT: with DNS failing, a bad certificate is still deferred', async (t) => {
    if (!ready(t)) return;
    const pf = postfix as PostfixInstance;
    const d = domainOf('cached-enforce');
    const sink = await mxHost(d, 'enforce', 'good', [mxOf(d)]);
    await pf.send(SENDER, `first@${d}`);
    const first = await pf.delivery(`first@${d}`, DELIVERY_WAIT_MS);
    assert.equal(first.status, 'sent', first.line);
    const fetched = https.requests(d);
    assert.equal(fetched, 1, 'the policy was fetched once and cached');

    // The TXT record is gone and the DNS server fails for it; the policy host is gone too; the MX
    // now presents a certificate nobody trusts.
    dns.remove(`_mta-sts.${d}`).servfail(`_mta-sts.${d}`);
    https.remove(d);
    sink.setTls(await ca.leaf([mxOf(d)], 'self-signed'));
    const txtBefore = dns.queries(`_mta-sts.${d}`, 'TXT');
    await pf.send(SENDER, `second@${d}`);
    const second = await pf.delivery(`second@${d}`, DELIVERY_WAIT_MS);
    assert.equal(second.status, 'deferred', second.line);
    assert.match(second.dsn, /^4\.7\./, second.line);
    assert.match(second.line, /Server certificate not verified/);
    assert.ok(dns.queries(`_mta-sts.${d}`, 'TXT') > txtBefore, 'the daemon asked DNS again and got SERVFAIL');
    assert.equal(https.requests(d), fetched, 'no fetch: the answer came from the cache');
    assert.equal(sink.messages.length, 1, 'only the first message reached the sink');
  });
  it('DANE beats MTA-STS: a TLSA match is sent; a TLSA mismatch is deferred though the Web PKI accepts the certificate', async (t) => {
    if (!ready(t)) return;
    const pf = postfix as PostfixInstance;
    const netns = ns as Netns;
    const run = async (name: string, tlsaOf: 'own' | 'other') => {
      const d = `${name}.${DANE_ZONE}`;
      const host = mxOf(d);
      const address = await netns.addHostAddress();
      const leaf = await ca.leaf([host], 'good');
      const other = await ca.leaf([`other.${host}`], 'good');
      dns
        .mx(d, `10 ${host}`)
        .a(host, address)
        .tlsa(`_25._tcp.${host}`, `3 1 1 ${spkiSha256((tlsaOf === 'own' ? leaf : other).certPem)}`);
      dns.mtaSts(d, { id: '1', address: netns.hostAddress });
      https.policy(d, policyText('enforce', [host], 86400));
      const sink = await startSmtpSink({ host: address, hostname: host, tls: leaf });
      sinks.set(d, sink);
      await pf.send(SENDER, `user@${d}`);
      return { d, host, sink, delivery: pf.delivery(`user@${d}`, DELIVERY_WAIT_MS) };
    };
    const [match, mismatch] = await Promise.all([run('tlsa-match', 'own'), run('tlsa-mismatch', 'other')]);
    // What the daemon told Postfix: DANE, not the MTA-STS policy (which this certificate satisfies).
    for (const c of [match, mismatch]) {
      const line = await (serve as ServeProcess).waitFor(
        new RegExp(`"key":"${c.d.replace(/\./g, '\\.')}".*"answered"|"answered".*"key":"${c.d.replace(/\./g, '\\.')}"`),
      );
      assert.match(line, /"answer":"OK dane-only"/, line);
    }
    const sent = await match.delivery;
    assert.equal(sent.status, 'sent', sent.line);
    assert.equal(match.sink.messages.length, 1);
    const log = await pf.log();
    assert.ok(
      tlsLines(log, match.host).some((l) => l.includes(`Verified TLS connection established to ${match.host}[`)),
      `verified by DANE:\n${tlsLines(log, match.host).join('\n')}`,
    );
    const deferred = await mismatch.delivery;
    assert.equal(deferred.status, 'deferred', deferred.line);
    assert.match(deferred.dsn, /^4\.7\./, deferred.line);
    assert.match(deferred.line, /Server certificate not verified/);
    assert.equal(mismatch.sink.messages.length, 0, 'nothing reached the sink');
    // Postfix checked the TLSA records, not the Web PKI.
    assert.ok(
      log
        .split('\n')
        .some(
          (l) => l.includes(`verification failed for ${mismatch.host}[`) && /no matching DANE TLSA records/.test(l),
        ),
      `Postfix's DANE verification failure:\n${tlsLines(log, mismatch.host).join('\n')}`,
    );
  });
});
