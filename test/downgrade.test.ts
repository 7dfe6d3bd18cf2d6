/**
 * Downgrade resistance in the style of RFC 8461 §10: with an `enforce` policy cached, no sequence of
 * DNS removal, DNS failure, HTTPS failure, a weaker policy served without a TXT id change, or an
 * attempt to provoke a back-off makes `get()` answer weaker than the cached policy before it
 * expires, with or without the refresher running in between. After expiry the behaviour is what
 * RFC 8461 §3.3 specifies (no record → no policy; DNS failing → temporary error; fetch failing →
 * back-off; a policy published by the owner → that policy).
 *
 * Real parts: the loopback DNS and HTTPS fixtures, a SQLite file and a PostgreSQL schema, a manual clock.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test, type TestContext } from 'node:test';
import fc from 'fast-check';
import { MtaStsDb } from '../src/cache/mtastsdb.js';
import type { GetOutcome } from '../src/cache/types.js';
import { isMtaStsError } from '../src/errors.js';
import type { PolicyStore } from '../src/store/policy-store.js';
import {
  policyText,
  publish,
  startNet,
  storeKinds,
  uniqueDomain,
  type Net,
  type StoreKind,
} from './helpers/cache-fixture.js';
import { ManualClock } from './helpers/manual-clock.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const MAX_AGE = 86400;

let net: Net;
before(async () => {
  net = await startNet({ dnsTimeoutMs: 400, fetchTimeoutMs: 1500 });
});
after(async () => {
  await net.close();
});

const ENFORCE = (d: string): string => policyText('enforce', [`mx1.${d}`, `*.mx.${d}`], MAX_AGE);

/** What happens once the cached policy has expired, per RFC 8461. */
type AfterExpiry = 'no-policy' | 'dns-error' | 'backoff' | 'none' | 'testing';

interface Attack {
  readonly name: string;
  readonly apply: (d: string) => void;
  readonly afterExpiry: AfterExpiry;
}

const ATTACKS: readonly Attack[] = [
  { name: 'TXT removed (NXDOMAIN)', apply: (d) => net.dns.nxdomain(`_mta-sts.${d}`), afterExpiry: 'no-policy' },
  { name: 'TXT removed (NODATA)', apply: (d) => net.dns.nodata(`_mta-sts.${d}`), afterExpiry: 'no-policy' },
  {
    name: 'TXT replaced by a non-STS record',
    apply: (d) => net.dns.txt(`_mta-sts.${d}`, ['v=spf1 -all']),
    afterExpiry: 'no-policy',
  },
  {
    name: 'a second TXT record added',
    apply: (d) => net.dns.txt(`_mta-sts.${d}`, ['v=STSv1; id=v1;', 'v=STSv1; id=evil;']),
    afterExpiry: 'no-policy',
  },
  {
    name: 'malformed TXT record',
    apply: (d) => net.dns.txt(`_mta-sts.${d}`, ['v=STSv1; id=no good;']),
    afterExpiry: 'no-policy',
  },
  { name: 'DNS SERVFAIL', apply: (d) => net.dns.servfail(`_mta-sts.${d}`), afterExpiry: 'dns-error' },
  { name: 'DNS REFUSED', apply: (d) => net.dns.refused(`_mta-sts.${d}`), afterExpiry: 'dns-error' },
  { name: 'DNS dropped (timeout)', apply: (d) => net.dns.drop(`_mta-sts.${d}`), afterExpiry: 'dns-error' },
  {
    name: 'TXT id changed, HTTPS 500',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil1' });
      net.https.behave(d, { status: 500 });
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'TXT id changed, HTTPS 404',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil2' });
      net.https.behave(d, { status: 404 });
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'TXT id changed, policy host gone',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil3' });
      net.dns.nxdomain(`mta-sts.${d}`);
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'TXT id changed, certificate for another name',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil4' });
      net.https.policy(d, policyText('none', [], MAX_AGE), { cert: 'wrong-name' });
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'TXT id changed, self-signed certificate serving none',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil5' });
      net.https.policy(d, policyText('none', [], MAX_AGE), { cert: 'self-signed' });
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'TXT id changed, garbage policy',
    apply: (d) => {
      net.dns.mtaSts(d, { id: 'evil6' });
      net.https.policy(d, '<html>hijacked</html>');
    },
    afterExpiry: 'backoff',
  },
  {
    name: 'none policy served, TXT id unchanged',
    apply: (d) => net.https.policy(d, policyText('none', [], MAX_AGE)),
    afterExpiry: 'none',
  },
  {
    name: 'testing policy served, TXT id unchanged',
    apply: (d) => net.https.policy(d, policyText('testing', [`evil.${d}`], MAX_AGE)),
    afterExpiry: 'testing',
  },
  {
    name: 'TXT removed and none policy served',
    apply: (d) => {
      net.dns.nxdomain(`_mta-sts.${d}`);
      net.https.policy(d, policyText('none', [], MAX_AGE));
    },
    afterExpiry: 'no-policy',
  },
];

interface Setup {
  readonly db: MtaStsDb;
  readonly store: PolicyStore;
  readonly clock: ManualClock;
}

async function setup(t: TestContext, kind: StoreKind): Promise<Setup | undefined> {
  if (!(await kind.available(t))) return undefined;
  const handle = await kind.create();
  const store = await handle.open();
  const clock = new ManualClock();
  const db = await MtaStsDb.open({ store, clock, resolver: net.resolver, fetchOptions: net.fetchOptions });
  t.after(async () => {
    await db.close();
    await store.close();
    await handle.cleanup();
  });
  return { db, store, clock };
}

/** Publishes and caches an enforce policy for a new domain; returns the domain. */
async function cacheEnforce(s: Setup): Promise<string> {
  const d = uniqueDomain('dg');
  publish(net, d, 'v1', ENFORCE(d));
  const out = await s.db.get(d);
  assert.equal(out.policy?.mode, 'enforce');
  return d;
}

/** The answer is the cached enforce policy, unweakened. */
function assertEnforce(out: GetOutcome, d: string, what: string): void {
  assert.ok(out.policy !== null, `${what}: policy must not be null`);
  assert.equal(out.policy.mode, 'enforce', what);
  assert.deepEqual(
    out.policy.mx.map((m) => (m.wildcard ? '*.' : '') + m.domain.ascii),
    [`mx1.${d}`, `*.mx.${d}`],
    what,
  );
}

async function assertStoredEnforce(s: Setup, d: string, what: string): Promise<void> {
  const rec = await s.store.get(d);
  assert.ok(rec, `${what}: record kept`);
  assert.equal(rec.backoff, false, `${what}: no back-off over the cached policy`);
  assert.equal(rec.policy.mode, 'enforce', what);
}

for (const kind of storeKinds) {
  describe(`downgrade resistance on ${kind.kind}`, () => {
    for (const attack of ATTACKS) {
      test(`${attack.name}: enforce until expiry, then as specified`, async (t) => {
        const s = await setup(t, kind);
        if (!s) return;
        const d = await cacheEnforce(s);
        const cachedAt = s.clock.now();
        attack.apply(d);

        // Before expiry: every get, including repeated ones across 5-minute back-off windows.
        for (const at of [MIN, 5 * MIN + 1, 11 * MIN, HOUR, 12 * HOUR, MAX_AGE * 1000 - 1]) {
          await s.clock.set(cachedAt + at);
          for (let i = 0; i < 2; i++) assertEnforce(await s.db.get(d), d, `${attack.name} at +${at} ms`);
          await assertStoredEnforce(s, d, `${attack.name} at +${at} ms`);
          assert.equal((await s.db.lookup(d)).policy.mode, 'enforce');
        }

        // After expiry.
        await s.clock.set(cachedAt + MAX_AGE * 1000);
        let out: GetOutcome | undefined;
        let err: unknown;
        try {
          out = await s.db.get(d);
        } catch (e) {
          err = e;
        }
        switch (attack.afterExpiry) {
          case 'no-policy':
            assert.equal(out?.policy, null, attack.name);
            break;
          case 'dns-error':
            assert.ok(isMtaStsError(err, 'ERR_MTASTS_DNS'), `${attack.name}: ${String(err)}`);
            break;
          case 'backoff':
            assert.equal(out?.policy, null, attack.name);
            assert.equal((await s.store.get(d))?.backoff, true, attack.name);
            break;
          case 'none':
          case 'testing':
            assert.equal(out?.policy?.mode, attack.afterExpiry, attack.name);
            break;
        }
      });
    }

    test('the refresher during an attack never stores a weaker policy', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domains: Array<[string, Attack]> = [];
      for (const attack of ATTACKS) {
        const d = await cacheEnforce(s);
        attack.apply(d);
        domains.push([d, attack]);
      }
      await s.clock.advance(13 * HOUR);
      await s.db.refresh();
      await s.clock.advance(MIN);
      for (const [d, attack] of domains) {
        assertEnforce(await s.db.get(d), d, `${attack.name} after a refresh pass`);
        await assertStoredEnforce(s, d, `${attack.name} after a refresh pass`);
      }
    });

    test('random sequences of attacks and recoveries never weaken the answer before expiry', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      // Quick attacks only (no DNS timeouts) so that many sequences fit in the time.
      const quick = ATTACKS.filter((a) => !a.name.includes('dropped'));
      await fc.assert(
        fc.asyncProperty(
          fc.array(
            fc.record({
              attack: fc.integer({ min: 0, max: quick.length }), // quick.length = "publish the genuine policy again"
              advance: fc.integer({ min: 0, max: 4 * HOUR }),
              refresh: fc.boolean(),
            }),
            { minLength: 1, maxLength: 5 },
          ),
          async (steps) => {
            const d = await cacheEnforce(s);
            const validEnd = (await s.store.get(d))!.validEnd.getTime();
            for (const step of steps) {
              // Each step is a whole state: the genuine publication, then (maybe) one attack on it.
              // So a weaker policy is only ever served under the genuine, unchanged TXT id.
              net.dns.remove(`_mta-sts.${d}`).remove(`mta-sts.${d}`);
              publish(net, d, 'v1', ENFORCE(d));
              if (step.attack < quick.length) quick[step.attack]!.apply(d);
              await s.clock.advance(step.advance);
              if (s.clock.now() >= validEnd) break;
              if (step.refresh) await s.db.refresh([d]);
              assertEnforce(await s.db.get(d), d, JSON.stringify(steps));
            }
          },
        ),
        { numRuns: 12 },
      );
    });
  });
}
