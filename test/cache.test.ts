/**
 * MtaStsDb end to end: the loopback DNS and HTTPS fixtures, a real store (SQLite file and
 * PostgreSQL schema), and a manual clock moved through max_age, the 5-minute back-off, the TXT
 * recheck grace and expiry. Fetches are counted at the HTTPS fixture, TXT queries at the DNS fixture.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { MtaStsDb } from '../src/cache/mtastsdb.js';
import { USE_FLUSH_ENTRIES } from '../src/cache/tunables.js';
import * as mtastsdb from '../src/cache/module-api.js';
import { BACKOFF_REASON, FALLBACK_SUFFIX } from '../src/cache/tlsrpt-report.js';
import type { MtaStsDbOptions } from '../src/cache/types.js';
import { isMtaStsError, MtaStsError } from '../src/errors.js';
import { parseDomain } from '../src/rfc8461/domain.js';
import { parsePolicy } from '../src/rfc8461/policy.js';
import { openStore } from '../src/store/open-store.js';
import type { PolicyRecord, PolicyStore } from '../src/store/policy-store.js';
import {
  captureLogger,
  fetches,
  policyText,
  publish,
  recordingMetrics,
  startNet,
  storeKinds,
  txtQueries,
  until,
  uniqueDomain,
  type Net,
  type StoreHandle,
  type StoreKind,
} from './helpers/cache-fixture.js';
import { countingGets } from './helpers/store-contract.js';
import { ManualClock } from './helpers/manual-clock.js';

const HOUR = 3600_000;
const DAY = 24 * HOUR;

let net: Net;
before(async () => {
  net = await startNet({ dnsTimeoutMs: 600, fetchTimeoutMs: 2000 });
});
after(async () => {
  await net.close();
});

interface Setup {
  readonly db: MtaStsDb;
  readonly store: PolicyStore;
  readonly handle: StoreHandle;
  readonly clock: ManualClock;
  readonly logger: ReturnType<typeof captureLogger>;
  readonly metrics: ReturnType<typeof recordingMetrics>;
}

async function setup(t: TestContext, kind: StoreKind, options: MtaStsDbOptions = {}): Promise<Setup | undefined> {
  if (!(await kind.available(t))) return undefined;
  const handle = await kind.create();
  const store = await handle.open();
  const clock = new ManualClock();
  const logger = captureLogger();
  const metrics = recordingMetrics();
  const db = await MtaStsDb.open({
    store,
    clock,
    resolver: net.resolver,
    fetchOptions: net.fetchOptions,
    logger,
    metrics,
    ...options,
  });
  t.after(async () => {
    await db.close();
    await store.close();
    await handle.cleanup();
  });
  return { db, store, handle, clock, logger, metrics };
}

const ENFORCE = (domain: string, maxAge = 86400): string =>
  policyText('enforce', [`mx1.${domain}`, `*.mx.${domain}`], maxAge);

/** The record another node stores: `text` fetched under `recordId` at `at`, valid for a day. */
function otherNodeRecord(domain: string, recordId: string, text: string, at: number): PolicyRecord {
  const now = new Date(at);
  return {
    domain,
    inserted: now,
    validEnd: new Date(at + DAY),
    lastUpdate: now,
    lastUse: now,
    backoff: false,
    recordId,
    policy: parsePolicy(text),
    policyText: text,
  };
}

/** Caches `count` domains named `<tag>-<pid>`, then moves the clock an hour on: each next lookup is a use to record. */
async function cachedAnHourAgo(s: Setup, tag: string, count: number): Promise<string[]> {
  const policy = parsePolicy(ENFORCE(`${tag}.example.test`));
  const names = Array.from({ length: count }, (_, i) => `${tag.charAt(0)}${i}.${tag}-${process.pid}.example.test`);
  await Promise.all(names.map((n) => s.db.upsert(n, 'x', policy)));
  await s.clock.advance(HOUR);
  return names;
}

/** After a flush, no domain tagged `tag` has a `lastUse` before now: every use reached the store. */
async function assertUsesStored(s: Setup, tag: string): Promise<void> {
  await s.db.flushUses();
  let n = 0;
  for await (const r of s.store.list({ usedBefore: new Date(s.clock.now()) })) if (r.domain.includes(`${tag}-`)) n++;
  assert.equal(n, 0, 'every lastUse reached the store');
}

async function rejectsWith(p: Promise<unknown>, code: string): Promise<MtaStsError> {
  let caught: unknown;
  try {
    await p;
  } catch (err) {
    caught = err;
  }
  assert.ok(isMtaStsError(caught), `expected an MtaStsError ${code}, got ${String(caught)}`);
  assert.equal(caught.code, code);
  return caught;
}

for (const kind of storeKinds) {
  describe(`MtaStsDb on ${kind.kind}`, () => {
    test('discovery: fetches, stores with the exact text, reports the policy; a second get checks only the TXT id', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      const text = ENFORCE(domain);
      publish(net, domain, 'id1', text);

      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, true);
      assert.deepEqual(out.report, {
        policy: {
          type: 'sts',
          string: ['version: STSv1', 'mode: enforce', `mx: mx1.${domain}`, `mx: *.mx.${domain}`, 'max_age: 86400'],
          domain,
          mxHost: [`mx1.${domain}`, `*.mx.${domain}`],
        },
        failureDetails: [],
      });
      assert.equal(fetches(net, domain), 1);
      assert.equal(txtQueries(net, domain), 1);

      const rec = await s.store.get(domain);
      assert.ok(rec);
      assert.equal(rec.policyText, text);
      assert.equal(rec.recordId, 'id1');
      assert.equal(rec.backoff, false);
      assert.equal(rec.inserted.getTime(), s.clock.now());
      assert.equal(rec.validEnd.getTime(), s.clock.now() + 86400_000);

      await s.clock.advance(HOUR);
      const again = await s.db.get(domain);
      assert.equal(again.policy?.mode, 'enforce');
      assert.equal(again.fresh, true);
      assert.equal(fetches(net, domain), 1, 'same TXT id: no fetch');
      assert.equal(txtQueries(net, domain), 2, 'txtRecheckSeconds 0: every get checks the TXT id');
      assert.deepEqual(s.metrics.gets, { ok: 2, backoff: 0, notfound: 0, error: 0 });
      assert.deepEqual(s.metrics.cacheOutcomes, { hit: 1, miss: 1 });
      assert.equal(s.metrics.fetchResults.length, 1);
      assert.equal(s.metrics.fetchResults[0]?.result, 'ok');
      assert.ok((s.metrics.fetchResults[0]?.seconds ?? -1) >= 0);
    });

    test('max_age: the policy expires, then is discovered again; max_age above one year is capped', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'a1', ENFORCE(domain, 3600));
      await s.db.get(domain);
      await s.clock.advance(3600_000 - 1);
      assert.equal((await s.db.lookup(domain)).policy.mode, 'enforce');
      await s.clock.advance(1);
      await rejectsWith(s.db.lookup(domain), 'ERR_MTASTSDB_NOT_FOUND');
      const out = await s.db.get(domain);
      assert.equal(out.fresh, true);
      assert.equal(fetches(net, domain), 2, 'expired: fetched again');

      const big = uniqueDomain();
      publish(net, big, 'b1', ENFORCE(big, 9_999_999_999));
      const o2 = await s.db.get(big);
      assert.equal(o2.policy?.maxAgeSeconds, 9_999_999_999, 'published value kept');
      const rec = await s.db.lookup(big);
      // RFC 8461 §3.2: at most 31557600 s.
      assert.equal(rec.validEnd.getTime(), s.clock.now() + 31_557_600_000);
    });

    test('no TXT record: policy null, no-policy-found, nothing stored, no fetch', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      net.https.policy(domain, ENFORCE(domain));
      for (const mode of ['nxdomain', 'nodata', 'other-txt'] as const) {
        if (mode === 'nxdomain') net.dns.nxdomain(`_mta-sts.${domain}`);
        if (mode === 'nodata') net.dns.nodata(`_mta-sts.${domain}`);
        if (mode === 'other-txt') net.dns.txt(`_mta-sts.${domain}`, ['v=spf1 -all']);
        const out = await s.db.get(domain);
        assert.equal(out.policy, null, mode);
        assert.equal(out.fresh, true);
        assert.equal(out.record, undefined);
        assert.deepEqual(out.report, {
          policy: { type: 'no-policy-found', string: [], domain, mxHost: [] },
          failureDetails: [],
        });
        assert.equal(await s.store.get(domain), undefined, `${mode}: nothing stored`);
      }
      assert.equal(fetches(net, domain), 0);
      assert.equal(s.metrics.gets.notfound, 3);
    });

    test('several or malformed TXT records: policy null, nothing stored, reported as a fetch error', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const cases = [
        { records: ['v=STSv1; id=a1;', 'v=STSv1; id=a2;'], reason: 'multiple-mta-sts-records' },
        { records: ['v=STSv1; id=bad id!;'], reason: 'malformed-mta-sts-dns-txt-record' },
      ];
      for (const c of cases) {
        const domain = uniqueDomain();
        net.dns.txt(`_mta-sts.${domain}`, c.records).a(`mta-sts.${domain}`, '127.0.0.1');
        net.https.policy(domain, ENFORCE(domain));
        const out = await s.db.get(domain);
        assert.equal(out.policy, null);
        assert.equal(out.report.policy.type, 'sts');
        assert.deepEqual(out.report.failureDetails, [
          { resultType: 'sts-policy-fetch-error', failureReasonCode: c.reason },
        ]);
        assert.equal(await s.store.get(domain), undefined);
        assert.equal(fetches(net, domain), 0);
      }
    });

    test('temporary DNS failure without a cached policy throws ERR_MTASTS_DNS with the report, stores nothing', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      for (const fail of ['servfail', 'drop'] as const) {
        const domain = uniqueDomain();
        net.https.policy(domain, ENFORCE(domain));
        if (fail === 'servfail') net.dns.servfail(`_mta-sts.${domain}`);
        else net.dns.drop(`_mta-sts.${domain}`);
        const err = await rejectsWith(s.db.get(domain), 'ERR_MTASTS_DNS');
        const report = err.details.report as {
          policy: { type: string };
          failureDetails: Array<{ resultType: string; failureReasonCode: string }>;
        };
        assert.equal(report.policy.type, 'sts');
        assert.equal(report.failureDetails[0]?.resultType, 'sts-policy-fetch-error');
        assert.match(report.failureDetails[0]?.failureReasonCode ?? '', /^dns-error/);
        assert.equal(await s.store.get(domain), undefined);
        assert.equal(fetches(net, domain), 0);
      }
      assert.equal(s.metrics.gets.error, 2);
    });

    test('fetch failures store a 5-minute back-off record; no network while it lasts; retried after', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const cases: Array<{
        name: string;
        arrange: (domain: string) => void;
        resultType: string;
        reason: RegExp;
        fetchResult: string;
      }> = [
        {
          name: 'HTTP 500',
          arrange: (d) => net.https.behave(d, { status: 500, body: 'oops' }),
          resultType: 'sts-policy-fetch-error',
          reason: /^policy-fetch-error\+http-500$/,
          fetchResult: 'error',
        },
        {
          name: 'HTTP 404',
          arrange: (d) => net.https.behave(d, { status: 404 }),
          resultType: 'sts-policy-fetch-error',
          reason: /^no-policy\+http-404$/,
          fetchResult: 'no_policy',
        },
        {
          name: 'policy syntax',
          arrange: (d) => net.https.policy(d, 'version: STSv1\r\nmode: bogus\r\n'),
          resultType: 'sts-policy-invalid',
          reason: /^malformed-policy/,
          fetchResult: 'invalid',
        },
        {
          name: 'policy body over 64 KiB (RFC 8461 §3.3): an invalid policy, as mox reports it',
          arrange: (d) => net.https.behave(d, { body: { kind: 'oversized', bytes: 64 * 1024 + 1 } }),
          resultType: 'sts-policy-invalid',
          reason: /^policy-fetch-error/,
          fetchResult: 'error',
        },
        {
          name: 'expired certificate',
          arrange: (d) => net.https.policy(d, ENFORCE(d), { cert: 'expired' }),
          resultType: 'sts-webpki-invalid',
          reason: /^certificate-expired$/,
          fetchResult: 'error',
        },
        {
          name: 'certificate for another name',
          arrange: (d) => net.https.policy(d, ENFORCE(d), { cert: 'wrong-name' }),
          resultType: 'sts-webpki-invalid',
          reason: /^certificate-host-mismatch$/,
          fetchResult: 'error',
        },
        {
          name: 'untrusted certificate',
          arrange: (d) => net.https.policy(d, ENFORCE(d), { cert: 'untrusted' }),
          resultType: 'sts-webpki-invalid',
          reason: /^certificate-not-trusted$/,
          fetchResult: 'error',
        },
      ];
      for (const c of cases) {
        const domain = uniqueDomain();
        net.dns.mtaSts(domain, { id: 'bk1' });
        c.arrange(domain);
        const start = s.clock.now();
        const out = await s.db.get(domain);
        assert.equal(out.policy, null, c.name);
        assert.equal(out.fresh, true);
        assert.deepEqual(out.report.policy, { type: 'sts', string: [], domain, mxHost: [] });
        assert.equal(out.report.failureDetails.length, 1);
        assert.equal(out.report.failureDetails[0]?.resultType, c.resultType, c.name);
        assert.match(out.report.failureDetails[0]?.failureReasonCode ?? '', c.reason, c.name);
        assert.equal(s.metrics.fetchResults.at(-1)?.result, c.fetchResult, c.name);

        const rec = await s.store.get(domain);
        assert.ok(rec, `${c.name}: back-off stored`);
        assert.equal(rec.backoff, true);
        assert.equal(rec.recordId, 'bk1');
        assert.equal(rec.policy.mode, 'none');
        assert.equal(rec.policy.maxAgeSeconds, 300);
        assert.equal(rec.validEnd.getTime(), start + 300_000);
        const lerr = await rejectsWith(s.db.lookup(domain), 'ERR_MTASTSDB_BACKOFF');
        assert.equal((lerr.details.record as { domain: string }).domain, domain);

        const f = fetches(net, domain);
        const q = txtQueries(net, domain);
        await s.clock.advance(299_999);
        const during = await s.db.get(domain);
        assert.equal(during.policy, null);
        assert.equal(during.fresh, false);
        assert.deepEqual(during.report.failureDetails, [
          { resultType: 'sts-policy-fetch-error', failureReasonCode: BACKOFF_REASON },
        ]);
        assert.equal(fetches(net, domain), f, `${c.name}: no fetch during back-off`);
        assert.equal(txtQueries(net, domain), q, `${c.name}: no DNS during back-off`);

        // After the 5 minutes a good policy is fetched and replaces the back-off record.
        net.https.policy(domain, ENFORCE(domain));
        await s.clock.advance(1);
        const later = await s.db.get(domain);
        assert.equal(later.policy?.mode, 'enforce', c.name);
        assert.equal(fetches(net, domain), f + 1);
        const after = await s.store.get(domain);
        assert.equal(after?.backoff, false);
        assert.equal(after?.inserted.getTime(), rec.inserted.getTime(), 'inserted kept on overwrite');
      }
      assert.equal(s.metrics.gets.backoff, cases.length * 2);
    });

    test('cached policy, TXT record gone: cached policy, not fresh, logged as a possible downgrade', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'c1', ENFORCE(domain));
      await s.db.get(domain);
      net.dns.nxdomain(`_mta-sts.${domain}`);
      await s.clock.advance(HOUR);
      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, false);
      assert.equal(out.report.policy.type, 'sts');
      assert.equal(out.report.policy.string.length, 5);
      assert.deepEqual(out.report.failureDetails, [
        { resultType: 'sts-policy-fetch-error', failureReasonCode: `no-mta-sts-dns-txt-record${FALLBACK_SUFFIX}` },
      ]);
      const downgrades = () => s.logger.entries.filter((e) => e.obj.event === 'downgrade-suspected');
      assert.equal(downgrades().length, 1);
      assert.equal(downgrades()[0]?.level, 'warn');
      assert.match(downgrades()[0]?.msg ?? '', /downgrade attempt/);
      assert.deepEqual(
        [downgrades()[0]?.obj.domain, downgrades()[0]?.obj.sign, downgrades()[0]?.obj.mode],
        [domain, 'txt_vanished', 'enforce'],
      );
      // It recurs on every lookup: one line per domain per interval.
      await s.clock.advance(HOUR);
      assert.equal((await s.db.get(domain)).policy?.mode, 'enforce');
      assert.equal(downgrades().length, 1);
      assert.equal(fetches(net, domain), 1);
    });

    test('cached none policy, TXT gone: cached, not fresh, no downgrade error logged', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'n1', policyText('none', [], 86400));
      const first = await s.db.get(domain);
      assert.equal(first.policy?.mode, 'none');
      assert.equal(first.report.policy.type, 'no-policy-found');
      net.dns.nxdomain(`_mta-sts.${domain}`);
      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'none');
      assert.equal(out.fresh, false);
      assert.deepEqual(out.report.failureDetails, [
        { resultType: 'sts-policy-fetch-error', failureReasonCode: 'no-mta-sts-dns-txt-record' },
      ]);
      assert.equal(s.logger.entries.filter((e) => e.level === 'error').length, 0);
    });

    test('cached policy, DNS failing: cached policy, not fresh, logged at debug', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'c1', ENFORCE(domain));
      await s.db.get(domain);
      net.dns.servfail(`_mta-sts.${domain}`);
      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, false);
      assert.match(out.report.failureDetails[0]?.failureReasonCode ?? '', /^dns-error.*\+fallback-to-cached-policy$/);
      assert.equal(s.logger.entries.filter((e) => e.level === 'error').length, 0);
      assert.ok(s.logger.entries.some((e) => e.level === 'debug' && e.obj.domain === domain));
    });

    test('cached policy, new TXT id: the new policy is fetched and stored, inserted kept', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'v1', ENFORCE(domain));
      await s.db.get(domain);
      const inserted = s.clock.now();
      await s.clock.advance(2 * HOUR);
      const newer = policyText('testing', [`mx9.${domain}`], 7200);
      publish(net, domain, 'v2', newer);
      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'testing');
      assert.equal(out.fresh, true);
      assert.deepEqual(out.report.policy.mxHost, [`mx9.${domain}`]);
      assert.equal(fetches(net, domain), 2);
      const rec = await s.store.get(domain);
      assert.equal(rec?.recordId, 'v2');
      assert.equal(rec?.policyText, newer);
      assert.equal(rec?.inserted.getTime(), inserted);
      assert.equal(rec?.lastUpdate.getTime(), s.clock.now());
      assert.equal(rec?.validEnd.getTime(), s.clock.now() + 7200_000);
      // The change is an audit line: what the id, mode and patterns were and became.
      const changed = s.logger.entries.filter((e) => e.msg === 'MTA-STS policy changed');
      assert.equal(changed.length, 1);
      assert.equal(changed[0]?.level, 'info');
      assert.deepEqual(changed[0]?.obj.changes, ['id', 'mode', 'mx']);
      assert.deepEqual(changed[0]?.obj.id, { from: 'v1', to: 'v2' });
      assert.deepEqual(changed[0]?.obj.mxAdded, [`mx9.${domain}`]);
    });

    test('cached policy, new TXT id, fetch fails: cached policy kept (no back-off written), error logged', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'v1', ENFORCE(domain));
      await s.db.get(domain);
      const before = await s.store.get(domain);
      net.dns.mtaSts(domain, { id: 'v2' });
      net.https.behave(domain, { status: 503 });
      const out = await s.db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, false);
      assert.deepEqual(out.report.failureDetails, [
        { resultType: 'sts-policy-fetch-error', failureReasonCode: `policy-fetch-error+http-503${FALLBACK_SUFFIX}` },
      ]);
      assert.equal(out.report.policy.type, 'sts');
      assert.equal(out.report.policy.string.length, 5, 'the cached policy is reported');
      const rec = await s.store.get(domain);
      assert.equal(rec?.backoff, false);
      assert.equal(rec?.recordId, 'v1');
      assert.equal(rec?.lastUpdate.getTime(), before?.lastUpdate.getTime());
      assert.ok(
        s.logger.entries.some(
          (e) => e.level === 'warn' && e.obj.domain === domain && e.obj.sign === 'policy_fetch_failed',
        ),
      );
      // RFC 8461 §3.3: no back-off record over a cached policy, but the policy of id v2 is not
      // fetched again for five minutes; the cached policy answers meanwhile.
      await s.clock.advance(60_000);
      const again = await s.db.get(domain);
      assert.equal(again.policy?.mode, 'enforce');
      assert.equal(again.fresh, false);
      assert.match(again.report.failureDetails[0]?.failureReasonCode ?? '', /http-503/);
      assert.equal(fetches(net, domain), 2, 'a minute later: no fetch');
      await s.clock.advance(240_000 - 1);
      await s.db.get(domain);
      assert.equal(fetches(net, domain), 2, 'just under five minutes: no fetch');
      await s.clock.advance(1);
      await s.db.get(domain);
      assert.equal(fetches(net, domain), 3, 'five minutes after the failure: fetched again');
      // Another new id is a new policy: fetched at once.
      net.dns.mtaSts(domain, { id: 'v3' });
      await s.db.get(domain);
      assert.equal(fetches(net, domain), 4, 'a newer id is fetched at once');
      // Once the host serves again (after the wait), the new policy is fetched and stored.
      net.https.policy(domain, ENFORCE(domain));
      await s.clock.advance(300_000);
      const fixed = await s.db.get(domain);
      assert.equal(fixed.fresh, true);
      assert.equal((await s.store.get(domain))?.recordId, 'v3');
      assert.equal(fetches(net, domain), 5);
    });

    test('txtRecheckSeconds: within the grace no DNS; a confirmation extends validity', async (t) => {
      const s = await setup(t, kind, { txtRecheckSeconds: 60 });
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'g1', ENFORCE(domain, 3600));
      await s.db.get(domain);
      assert.equal(txtQueries(net, domain), 1);
      for (let i = 0; i < 5; i++) {
        await s.clock.advance(10_000);
        const out = await s.db.get(domain);
        assert.equal(out.policy?.mode, 'enforce');
        assert.equal(out.fresh, true);
      }
      assert.equal(txtQueries(net, domain), 1, 'no DNS within 60 s of the last check');
      await s.clock.advance(10_000); // 60 s since the check
      await s.db.get(domain);
      assert.equal(txtQueries(net, domain), 2);
      const rec = await s.store.get(domain);
      assert.equal(rec?.lastUpdate.getTime(), s.clock.now(), 'confirmation recorded');
      assert.equal(rec?.validEnd.getTime(), s.clock.now() + 3600_000, 'validity extended');
      await s.clock.advance(30_000);
      await s.db.get(domain);
      assert.equal(txtQueries(net, domain), 2, 'the grace restarts at the confirmation');
      assert.equal(fetches(net, domain), 1);
    });

    test('memoryCache: repeated gets read the store once per ttl; own writes show at once, another node’s within ttl', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const counting = countingGets(s.store);
      const db = await MtaStsDb.open({
        store: counting.store,
        clock: s.clock,
        resolver: net.resolver,
        fetchOptions: net.fetchOptions,
        txtRecheckSeconds: 60,
        memoryCache: { seconds: 5 },
      });
      t.after(() => db.close());
      const domain = uniqueDomain();
      publish(net, domain, 'm1', ENFORCE(domain));
      assert.equal((await db.get(domain)).policy?.mode, 'enforce');
      counting.resetReads();
      for (let i = 0; i < 100; i++) {
        const out = await db.get(domain);
        assert.equal(out.policy?.mode, 'enforce');
        assert.equal(out.fresh, true);
      }
      assert.equal(
        counting.reads(),
        2,
        '100 gets within the ttl: the store is read until a copy is kept (second read)',
      );
      assert.equal(txtQueries(net, domain), 1);

      // Another node stores a newer policy: seen once the ttl has passed, not before.
      const testing = policyText('testing', [`mx1.${domain}`], 86400);
      await s.clock.advance(1000);
      await s.store.put(otherNodeRecord(domain, 'm2', testing, s.clock.now()));
      assert.equal((await db.get(domain)).policy?.mode, 'enforce');
      await s.clock.advance(4000);
      assert.equal((await db.get(domain)).policy?.mode, 'testing');

      // This database's own writes show at once.
      await db.upsert(domain, 'm3', parsePolicy(policyText('none', [], 86400)));
      assert.equal((await db.get(domain)).policy?.mode, 'none');
      await db.delete(domain);
      await rejectsWith(db.lookup(domain), 'ERR_MTASTSDB_NOT_FOUND');
      assert.equal(fetches(net, domain), 1);
    });

    test('single-flight: 10 concurrent gets make one TXT query and one fetch; an aborted caller does not abort the others', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'sf1', ENFORCE(domain));
      net.dns.delay(`_mta-sts.${domain}`, 150);
      const ac = new AbortController();
      const gets = Array.from({ length: 10 }, (_, i) => s.db.get(domain, i === 0 ? { signal: ac.signal } : {}));
      setTimeout(() => ac.abort(), 20);
      const results = await Promise.allSettled(gets);
      const first = results[0]!;
      assert.equal(first.status, 'rejected');
      assert.ok(isMtaStsError((first as PromiseRejectedResult).reason, 'ERR_MTASTS_ABORTED'));
      for (const r of results.slice(1)) {
        assert.equal(r.status, 'fulfilled');
        assert.equal((r as PromiseFulfilledResult<{ policy: { mode: string } | null }>).value.policy?.mode, 'enforce');
      }
      assert.equal(fetches(net, domain), 1);
      assert.equal(txtQueries(net, domain), 1);

      // Cached: 10 concurrent gets share one TXT check.
      const more = await Promise.all(Array.from({ length: 10 }, () => s.db.get(domain)));
      assert.ok(more.every((o) => o.fresh && o.policy?.mode === 'enforce'));
      assert.equal(txtQueries(net, domain), 2);
      assert.equal(fetches(net, domain), 1);
    });

    test('lastUse: every hit records it; writes are deferred and never lost on close', async (t) => {
      if (!(await kind.available(t))) return;
      const handle = await kind.create();
      t.after(() => handle.cleanup());
      const clock = new ManualClock();
      const store = await handle.open();
      const db = await MtaStsDb.open({ store, clock, resolver: net.resolver, fetchOptions: net.fetchOptions });
      const domain = uniqueDomain();
      publish(net, domain, 'u1', ENFORCE(domain));
      await db.get(domain);
      const t1 = clock.now();
      await clock.advance(HOUR);
      const rec = await db.lookup(domain);
      assert.equal(rec.lastUse.getTime(), clock.now(), 'lookup answers with the use recorded');
      await clock.advance(HOUR);
      await db.get(domain);
      const t3 = clock.now();
      assert.ok(t3 > t1);
      // Through the store directly, before close: not necessarily written yet (deferred)…
      const pending = await store.get(domain);
      assert.ok(pending !== undefined && pending.lastUse.getTime() <= t3);
      // …but listing flushes first.
      const listed = await db.policyRecords();
      assert.equal(listed.find((r) => r.domain === domain)?.lastUse.getTime(), t3);
      await clock.advance(HOUR);
      await db.lookup(domain);
      const t4 = clock.now();
      await db.close();
      await store.close();
      const again = await handle.open();
      try {
        assert.equal((await again.get(domain))?.lastUse.getTime(), t4, 'close() wrote the last use');
      } finally {
        await again.close();
      }
    });

    test('lastUse resolution: a hit within 60 s of the recorded use is not written again; 0 writes every hit', async (t) => {
      for (const resolution of [undefined, 0] as const) {
        const s = await setup(t, kind, resolution === undefined ? {} : { lastUseResolutionSeconds: resolution });
        if (!s) return;
        const domain = uniqueDomain();
        await s.db.upsert(domain, 'r', parsePolicy(ENFORCE(domain)));
        const t0 = s.clock.now();
        const stored = async (): Promise<number | undefined> => {
          await s.db.flushUses();
          return (await s.store.get(domain))?.lastUse.getTime();
        };
        await s.clock.advance(30_000);
        assert.equal((await s.db.lookup(domain)).lastUse.getTime(), s.clock.now(), 'the answer carries the use');
        assert.equal(await stored(), resolution === 0 ? t0 + 30_000 : t0);
        await s.clock.advance(31_000);
        await s.db.lookup(domain);
        assert.equal(await stored(), t0 + 61_000);
      }
    });

    test('lastUse writes are batched: 2500 hits of 2500 domains reach the store', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const names = await cachedAnHourAgo(s, 'batch', 2500);
      for (const n of names) await s.db.lookup(n);
      // 1000-entry batches went out on their own; the rest by a flush.
      await assertUsesStored(s, 'batch');
    });

    test('lookups faster than the store: waiting lastUse writes stay bounded and none is lost', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const names = await cachedAnHourAgo(s, 'flood', 15_000);
      // A tight loop: nothing but the lookups' own awaits lets the flush run.
      let most = 0;
      for (const n of names) {
        await s.db.lookup(n);
        most = Math.max(most, s.db.pendingUseCount);
      }
      assert.ok(most <= 10 * USE_FLUSH_ENTRIES + 1, `at most ~10,000 uses waited (saw ${most})`);
      await assertUsesStored(s, 'flood');
    });

    test('upsert: null stores a back-off record; inserted kept; policyText defaults to the formatted policy', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      await s.db.upsert(domain, 'r1', null);
      const b = await s.store.get(domain);
      assert.equal(b?.backoff, true);
      assert.equal(b?.policy.mode, 'none');
      assert.equal(b?.policy.maxAgeSeconds, 300);
      assert.equal(b?.recordId, 'r1');
      assert.equal(b?.validEnd.getTime(), s.clock.now() + 300_000);
      const inserted = s.clock.now();
      await s.clock.advance(1000);
      const p = parsePolicy(ENFORCE(domain, 600));
      await s.db.upsert(domain, 'r2', p);
      const r = await s.db.lookup(domain);
      assert.equal(r.backoff, false);
      assert.equal(r.recordId, 'r2');
      assert.equal(r.inserted.getTime(), inserted);
      assert.equal(r.lastUpdate.getTime(), s.clock.now());
      assert.equal(r.validEnd.getTime(), s.clock.now() + 600_000);
      assert.deepEqual(parsePolicy(r.policyText), p);
      const lf = ENFORCE(domain, 600).replace(/\r\n/g, '\n');
      await s.db.upsert(parseDomain(domain), 'r3', p, lf);
      assert.equal((await s.store.get(domain))?.policyText, lf, 'the text as given');
    });

    test('IDN domains are keyed by their Unicode name and reported in A-label form', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const label = `bücher${process.pid}`;
      const d = parseDomain(`${label}.example.test`);
      publish(net, d.ascii, 'i1', ENFORCE(d.ascii));
      const out = await s.db.get(d.unicode);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.report.policy.domain, d.ascii);
      assert.equal(out.record?.domain, d.unicode);
      assert.ok(await s.store.get(d.unicode));
      assert.equal((await s.db.lookup(d.ascii)).domain, d.unicode);
    });

    test('policyRecords: newest lastUse first, then domain descending; stream with filters; delete; purge; importRecord', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const p = parsePolicy(ENFORCE('list.example.test'));
      const base = `l${process.pid}.example.test`;
      await s.db.upsert(`b.${base}`, '1', p);
      await s.db.upsert(`a.${base}`, '1', p);
      await s.clock.advance(1000);
      await s.db.upsert(`c.${base}`, '1', p);
      const all = (await s.db.policyRecords()).map((r) => r.domain);
      assert.deepEqual(all, [`c.${base}`, `b.${base}`, `a.${base}`]); // equal lastUse: domain descending (mox)
      await s.clock.advance(60_000); // lastUse resolution: a use is recorded a minute after the last
      await s.db.lookup(`b.${base}`);
      assert.deepEqual(
        (await s.db.policyRecords()).map((r) => r.domain),
        [`b.${base}`, `c.${base}`, `a.${base}`],
      );
      const streamed: string[] = [];
      for await (const r of s.db.policyRecordsStream({ usedBefore: new Date(s.clock.now()) })) streamed.push(r.domain);
      assert.deepEqual(streamed, [`c.${base}`, `a.${base}`]);

      assert.equal(await s.db.delete(`a.${base}`), true);
      assert.equal(await s.db.delete(`a.${base}`), false);

      // purge: expired now (none yet), then unused since a moment ago.
      assert.equal(await s.db.purge(), 0);
      assert.equal(await s.db.purge({ unusedSince: new Date(s.clock.now()) }), 1); // c
      await s.clock.advance(DAY + 1000);
      assert.equal(await s.db.purge({ expiredBefore: new Date(s.clock.now()) }), 1); // b
      assert.deepEqual(await s.db.policyRecords(), []);

      const now = new Date(s.clock.now());
      const rec = {
        domain: `imp.${base}`,
        inserted: now,
        validEnd: new Date(now.getTime() + DAY),
        lastUpdate: now,
        lastUse: now,
        backoff: false,
        recordId: 'imp',
        policy: p,
        policyText: ENFORCE('list.example.test'),
      };
      assert.equal(await s.db.importRecord(rec), true);
      assert.equal(await s.db.importRecord({ ...rec, lastUpdate: new Date(now.getTime() - 1) }), false, 'older loses');
      assert.deepEqual((await s.db.lookup(rec.domain)).policyText, rec.policyText);
    });

    test('refresh(domains): cached ones through the refresher step, unknown ones discovered', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const cached = uniqueDomain();
      const fresh = uniqueDomain();
      const none = uniqueDomain();
      publish(net, cached, 'r1', ENFORCE(cached));
      publish(net, fresh, 'r1', ENFORCE(fresh));
      net.dns.nxdomain(`_mta-sts.${none}`);
      await s.db.get(cached);
      await s.clock.advance(HOUR);
      publish(net, cached, 'r2', ENFORCE(cached, 999));
      const progress: Array<[number, number]> = [];
      const sum = await s.db.refresh([cached, fresh, none], { onProgress: (d, n) => progress.push([d, n]) });
      assert.deepEqual(sum, { checked: 3, unchanged: 0, updated: 2, failed: 1, deleted: 0 });
      assert.deepEqual(progress.at(-1), [3, 3]);
      assert.equal((await s.store.get(cached))?.recordId, 'r2');
      assert.equal((await s.store.get(cached))?.policy.maxAgeSeconds, 999);
      assert.ok(await s.store.get(fresh));
      assert.equal(await s.store.get(none), undefined);
    });

    test('closed database: every call throws ERR_MTASTSDB_CLOSED; close is idempotent; a get in flight ends', async (t) => {
      if (!(await kind.available(t))) return;
      const handle = await kind.create();
      t.after(() => handle.cleanup());
      const store = await handle.open();
      t.after(() => store.close());
      const db = await MtaStsDb.open({ store, resolver: net.resolver, fetchOptions: net.fetchOptions });
      const domain = uniqueDomain();
      publish(net, domain, 'x', ENFORCE(domain));
      net.dns.drop(`_mta-sts.${domain}`);
      const inflight = db.get(domain);
      const started = Date.now();
      await Promise.all([db.close(), db.close()]);
      assert.ok(Date.now() - started < 500, 'close does not wait for the DNS timeout');
      await rejectsWith(inflight, 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(db.get(domain), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(db.lookup(domain), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(db.upsert(domain, '1', null), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(db.policyRecords(), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(db.refresh(), 'ERR_MTASTSDB_CLOSED');
      await db.close();
      // The store was the caller's: still open.
      assert.equal(await store.get(domain), undefined);
    });

    test('a failed discovery never writes a back-off over a policy another node stored meanwhile', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      net.dns.mtaSts(domain, { id: 'f1' });
      const text = ENFORCE(domain);
      const db = await MtaStsDb.open({
        store: s.store,
        clock: s.clock,
        resolver: net.resolver,
        // The "other node" stores a good policy while our fetch fails.
        fetcher: {
          async fetch() {
            await s.store.put(otherNodeRecord(domain, 'f1', text, s.clock.now()));
            throw new MtaStsError('ERR_MTASTS_POLICY_FETCH', 'connection reset');
          },
        },
      });
      t.after(() => db.close());
      const out = await db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, false);
      assert.match(out.report.failureDetails[0]?.failureReasonCode ?? '', /fallback-to-cached-policy$/);
      assert.equal((await s.store.get(domain))?.backoff, false);
    });

    test('a record written while a clock ran a year ahead is stale: a new id and new MX hosts apply, refresh does not skip it', async (t) => {
      const s = await setup(t, kind, { txtRecheckSeconds: 3600 });
      if (!s) return;
      const YEAR = 365 * DAY;
      const [a, b] = [uniqueDomain('ahead'), uniqueDomain('ahead')];
      publish(net, a, 'f1', policyText('enforce', [`old.${a}`], 86400));
      publish(net, b, 'f1', policyText('enforce', [`old.${b}`], 86400));
      // Another node (or this one before its clock was corrected) ran a year ahead.
      const fast = await MtaStsDb.open({
        store: s.store,
        clock: new ManualClock(s.clock.now() + YEAR),
        resolver: net.resolver,
        fetchOptions: net.fetchOptions,
      });
      await fast.get(a);
      await fast.get(b);
      await fast.close();
      assert.equal((await s.store.get(a))?.lastUpdate.getTime(), s.clock.now() + YEAR);

      // The domains move to new MX hosts under new ids.
      publish(net, a, 'f2', policyText('enforce', [`new.${a}`], 86400));
      publish(net, b, 'f2', policyText('enforce', [`new.${b}`], 86400));
      // Not "confirmed within the grace": the TXT id is checked, the new policy fetched and stored.
      const out = await s.db.get(a);
      assert.equal(out.fresh, true);
      assert.deepEqual(
        out.policy?.mx.map((m) => m.domain.ascii),
        [`new.${a}`],
      );
      const ra = await s.store.get(a);
      assert.equal(ra?.recordId, 'f2');
      assert.equal(ra?.lastUpdate.getTime(), s.clock.now(), 'the future record was replaced');
      // Refresh by name: refreshed, not skipped as if another node held it.
      const summary = await s.db.refresh([b]);
      assert.deepEqual(summary, { checked: 1, unchanged: 0, updated: 1, failed: 0, deleted: 0 });
      const rb = await s.store.get(b);
      assert.equal(rb?.recordId, 'f2');
      assert.equal(rb?.policy.mx[0]?.domain.ascii, `new.${b}`);
      // Within the skew, a slightly fast clock still counts as fresh (no TXT query in the grace).
      const c = uniqueDomain('ahead');
      publish(net, c, 'g1', policyText('enforce', [`mx.${c}`], 86400));
      const slightly = await MtaStsDb.open({
        store: s.store,
        clock: new ManualClock(s.clock.now() + 60_000),
        resolver: net.resolver,
        fetchOptions: net.fetchOptions,
      });
      await slightly.get(c);
      await slightly.close();
      const q = txtQueries(net, c);
      assert.equal((await s.db.get(c)).fresh, true);
      assert.equal(txtQueries(net, c), q, 'one minute ahead is within the skew: answered in the grace');
    });

    test('a store failure on write still returns the fetched policy (logged)', async (t) => {
      const s = await setup(t, kind);
      if (!s) return;
      const domain = uniqueDomain();
      publish(net, domain, 'w1', ENFORCE(domain));
      const inner = s.store;
      const failing: PolicyStore = {
        kind: inner.kind,
        get: (d) => inner.get(d),
        put: () => Promise.reject(new MtaStsError('ERR_MTASTSDB_STORE_READONLY', 'read-only')),
        touch: (u) => inner.touch(u),
        delete: (d) => inner.delete(d),
        count: () => inner.count(),
        list: (o) => inner.list(o),
        claimRefresh: (d, c) => inner.claimRefresh(d, c),
        releaseRefresh: (d, o) => inner.releaseRefresh(d, o),
        close: async () => {},
      };
      const logger = captureLogger();
      const db = await MtaStsDb.open({
        store: failing,
        clock: s.clock,
        resolver: net.resolver,
        fetchOptions: net.fetchOptions,
        logger,
      });
      t.after(() => db.close());
      const out = await db.get(domain);
      assert.equal(out.policy?.mode, 'enforce');
      assert.equal(out.fresh, true);
      assert.ok(logger.entries.some((e) => e.level === 'error' && e.obj.domain === domain));
    });
  });
}

describe('module API (Go names) on the default database', () => {
  test('init, get(resolver, domain), upsert, policyRecords, lookup, ErrNotFound/ErrBackoff, close', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mtastsdb-module-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const clock = new ManualClock();
    // `path` rather than `dataDir`, so an MTASTSDB_STORE in the environment cannot redirect it.
    await mtastsdb.init({
      refresher: false,
      path: path.join(dir, 'mtasts.db'),
      clock,
      fetchOptions: net.fetchOptions,
      resolver: net.resolver,
    });
    t.after(() => mtastsdb.close());
    const domain = uniqueDomain();
    publish(net, domain, 'm1', ENFORCE(domain));
    const { policy, report, fresh } = await mtastsdb.get(net.resolver, domain);
    assert.equal(policy?.mode, 'enforce');
    assert.equal(fresh, true);
    assert.equal(report.policy.type, 'sts');

    const other = uniqueDomain();
    await mtastsdb.upsert(other, 'o1', null);
    try {
      await mtastsdb.lookup(other);
      assert.fail('expected ErrBackoff');
    } catch (err) {
      assert.equal((err as MtaStsError).code, mtastsdb.ErrBackoff);
      assert.ok(isMtaStsError(err, mtastsdb.ErrBackoff));
    }
    try {
      await mtastsdb.lookup(uniqueDomain());
      assert.fail('expected ErrNotFound');
    } catch (err) {
      assert.equal((err as MtaStsError).code, mtastsdb.ErrNotFound);
    }
    const recs = await mtastsdb.policyRecords();
    assert.deepEqual(recs.map((r) => r.domain).sort(), [domain, other].sort());
    await mtastsdb.close();
    await mtastsdb.close();
    // The database file survived the close.
    const store = await openStore({ path: path.join(dir, 'mtasts.db') });
    try {
      assert.equal((await store.get(domain))?.recordId, 'm1');
    } finally {
      await store.close();
    }
  });
});

describe('discovery limits (SQLite)', () => {
  const sqlite = storeKinds.find((k) => k.kind === 'sqlite') as StoreKind;
  // 4 in flight, 2 of them reserved, one registrable domain may hold all 4.
  const discoveryLimits = { maxInFlight: 4, reservePercent: 50, domainSharePercent: 100 };

  /** A domain whose TXT record answers and whose policy host never sends a body (until the fetch deadline). */
  const hanging = (d: string, id = 'h1'): void => {
    net.dns.mtaSts(d, { id });
    net.https.behave(d, { body: { kind: 'hang' } });
  };

  test('over a cap: nothing cached → ERR_MTASTSDB_DISCOVERY_LIMIT at once; cached → the cached policy', async (t) => {
    const limited: string[] = [];
    const inFlight: number[] = [];
    const metrics = {
      ...recordingMetrics(),
      discoveryLimited: (r: string) => void limited.push(r),
      discoveriesInFlight: (n: number) => void inFlight.push(n),
    };
    const s = await setup(t, sqlite, { discoveryLimits, metrics });
    if (s === undefined) return;
    const cachedA = uniqueDomain('capa');
    const cachedB = uniqueDomain('capb');
    const cachedC = uniqueDomain('capc');
    for (const d of [cachedA, cachedB, cachedC]) publish(net, d, 'c1', ENFORCE(d));
    for (const d of [cachedA, cachedB, cachedC]) assert.ok((await s.db.get(d)).policy !== null);
    assert.deepEqual(inFlight.slice(-2), [1, 0], 'counted up and down');

    // Two new domains hang in their fetch: the unreserved slots are taken.
    const h1 = uniqueDomain('hang');
    const h2 = uniqueDomain('hang');
    hanging(h1);
    hanging(h2);
    const slow = [s.db.get(h1), s.db.get(h2)];
    for (const p of slow) p.catch(() => {});
    await until(() => fetches(net, h1) + fetches(net, h2) === 2, 5000, 'both fetches started');

    const refused = uniqueDomain('refused');
    publish(net, refused, 'r1', ENFORCE(refused));
    const t0 = performance.now();
    const err = await rejectsWith(s.db.get(refused), 'ERR_MTASTSDB_DISCOVERY_LIMIT');
    assert.ok(performance.now() - t0 < 500, 'at once, without waiting for a slot');
    assert.equal(err.details.reason, 'reserved');
    assert.ok(err.details.report !== undefined, 'carries the TLSRPT result');
    assert.equal(txtQueries(net, refused), 0, 'no DNS');
    assert.equal(await s.store.get(refused), undefined, 'nothing stored');
    const state = await s.db.stsState(refused, { timeoutMs: 2000 });
    assert.deepEqual(state, { kind: 'temp', reason: 'MTA-STS discovery limit reached', storeUnreadable: false });

    // Cached domains use the reserve: two TXT checks announcing a new id whose fetch hangs.
    hanging(cachedA, 'c2');
    hanging(cachedB, 'c2');
    const rechecks = [s.db.get(cachedA), s.db.get(cachedB)];
    await until(() => fetches(net, cachedA) + fetches(net, cachedB) === 4, 5000, 'both refetches started');
    // Every slot taken: a third cached domain answers its cached policy without DNS.
    const txtBefore = txtQueries(net, cachedC);
    const fallback = await s.db.get(cachedC);
    assert.equal(fallback.fresh, false);
    assert.deepEqual(fallback.policy, parsePolicy(ENFORCE(cachedC)));
    assert.equal(txtQueries(net, cachedC), txtBefore, 'no DNS');
    assert.deepEqual(limited, ['reserved', 'reserved', 'in_flight']);

    // The hanging fetches end at their deadline; the slots come back.
    await Promise.allSettled([...slow, ...rechecks]);
    assert.equal(inFlight.at(-1), 0);
    assert.ok((await s.db.get(refused)).policy !== null, 'admitted once the slots are free');
  });

  test('the refresher refreshing by name uses the reserve', async (t) => {
    const s = await setup(t, sqlite, { discoveryLimits });
    if (s === undefined) return;
    const h1 = uniqueDomain('rhang');
    const h2 = uniqueDomain('rhang');
    hanging(h1);
    hanging(h2);
    const slow = [s.db.get(h1), s.db.get(h2)];
    for (const p of slow) p.catch(() => {});
    await until(() => fetches(net, h1) + fetches(net, h2) === 2, 5000, 'both fetches started');
    const d = uniqueDomain('rnew');
    publish(net, d, 'n1', ENFORCE(d));
    await rejectsWith(s.db.get(d), 'ERR_MTASTSDB_DISCOVERY_LIMIT');
    const summary = await s.db.refresh([d]);
    assert.equal(summary.updated, 1, JSON.stringify(summary));
    assert.ok((await s.store.get(d)) !== undefined, 'discovered and stored by the refresher');
    await Promise.allSettled(slow);
  });
});
