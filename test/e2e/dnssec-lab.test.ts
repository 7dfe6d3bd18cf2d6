/**
 * The DNSSEC lab itself (test/helpers/dnssec-lab.ts) and DANE discovery over it: a real nsd serving an
 * ldns-signed zone, a validating and a non-validating unbound.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { createDnssecClient } from '../../src/dane/dnssec-client.js';
import { lookupDane } from '../../src/dane/discover.js';
import { requireOrSkip } from '../helpers/ci.js';
import {
  LAB_DOMAINS,
  LAB_MX,
  LAB_STS_ID,
  SHORT_TTL_SECONDS,
  dnssecLabMissing,
  startDnssecLab,
} from '../helpers/dnssec-lab.js';
import type { DnssecLab } from '../helpers/dnssec-lab.js';

describe('DNSSEC lab', () => {
  let lab: DnssecLab | undefined;
  before(async () => {
    if (dnssecLabMissing === undefined) lab = await startDnssecLab();
  });
  after(async () => {
    if (lab === undefined) return;
    const dir = lab.dir;
    await lab.close();
    assert.equal(existsSync(dir), false, 'the lab directory is removed');
  });
  const need = (t: TestContext): DnssecLab | undefined =>
    requireOrSkip(t, dnssecLabMissing === undefined, dnssecLabMissing ?? '') ? lab : undefined;

  it('the validating resolver sets AD on signed data, not on the unsigned zone, and fails the bogus TLSA', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const c = createDnssecClient({ server: l.validating });
    const tlsa = await c.query('_25._tcp.mx.dane.test', 'TLSA');
    assert.equal(tlsa.rcode, 'NOERROR');
    assert.equal(tlsa.ad, true);
    assert.equal(tlsa.answers.filter((a) => a.type === 'TLSA').length, 1);
    const bogus = await c.query('_25._tcp.mxbogus.dane.test', 'TLSA');
    assert.equal(bogus.rcode, 'SERVFAIL');
    const unsigned = await c.query('_25._tcp.mx.unsigned.dane.test', 'TLSA');
    assert.equal(unsigned.rcode, 'NOERROR');
    assert.equal(unsigned.ad, false);
    const ds = await c.query('unsigned.dane.test', 'DS');
    assert.deepEqual([ds.rcode, ds.ad, ds.answers.length], ['NOERROR', true, 0]);
    for (const host of [LAB_MX.secure, LAB_MX.short]) {
      const a = await c.query(host, 'A');
      assert.deepEqual([a.rcode, a.ad, a.answers.filter((r) => r.type === 'A').length], ['NOERROR', true, 1], host);
    }
    const short = await c.query(LAB_DOMAINS.short, 'MX');
    const [first] = short.answers;
    assert.ok(first !== undefined && first.type === 'MX' && (first.ttl ?? Infinity) <= SHORT_TTL_SECONDS);
    const txt = await c.query(`_mta-sts.${LAB_DOMAINS.partial}`, 'TXT');
    assert.equal(txt.ad, true);
    const [rec] = txt.answers;
    assert.equal(rec?.type, 'TXT');
    assert.match(String(rec.data), new RegExp(`id=${LAB_STS_ID}`));
  });

  it('the non-validating resolver never sets AD and passes the forged TLSA on', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const c = createDnssecClient({ server: l.nonValidating });
    const mx = await c.query('dane.test', 'MX');
    assert.deepEqual([mx.rcode, mx.ad], ['NOERROR', false]);
    const bogus = await c.query('_25._tcp.mxbogus.dane.test', 'TLSA');
    assert.deepEqual([bogus.rcode, bogus.ad], ['NOERROR', false]);
  });

  it('lookupDane over the validating resolver gives each lab domain its state (RFC 7672 §2.2)', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const client = createDnssecClient({ server: l.validating });
    const cases: Array<[string, string]> = [
      [LAB_DOMAINS.mandatory, 'dane-only'],
      [LAB_DOMAINS.alias, 'dane-only'],
      [LAB_DOMAINS.implicit, 'dane-only'],
      [LAB_DOMAINS.short, 'dane-only'],
      [LAB_DOMAINS.partial, 'dane'],
      [LAB_DOMAINS.hosted, 'dane'],
      [LAB_DOMAINS.pkix, 'unusable'],
      [LAB_DOMAINS.nullmx, 'none'],
      [LAB_DOMAINS.tohoster, 'none'],
      [LAB_DOMAINS.bogus, 'temp'],
    ];
    for (const [domain, kind] of cases) {
      const r = await lookupDane(domain, { client });
      assert.equal(r.state.kind, kind, `${domain}: ${JSON.stringify(r.state)}`);
      assert.ok(r.queries > 0, domain);
    }
  });

  it('lookupDane over the non-validating resolver never yields dane-only', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const client = createDnssecClient({ server: l.nonValidating });
    for (const domain of Object.values(LAB_DOMAINS)) {
      const r = await lookupDane(domain, { client });
      assert.notEqual(r.state.kind, 'dane-only', domain);
    }
  });
});
