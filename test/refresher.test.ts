/**
 * The refresher on a manual clock, against the loopback DNS/HTTPS fixtures and both real stores:
 * the first refresh at once, the rest spread over 3 h with jitter (sleeps asserted), deletions of
 * unused and phased-out records, extension, refetch on a new id, failures kept, leases, paging,
 * and a prompt close().
 */
import assert from 'node:assert/strict';
import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, test, type TestContext } from 'node:test';
import { MtaStsDb } from '../src/cache/mtastsdb.js';
import type { MtaStsDbOptions } from '../src/cache/types.js';
import { createNodeResolver } from '../src/discovery/node-resolver.js';
import { parsePolicy } from '../src/rfc8461/policy.js';
import type { PolicyStore } from '../src/store/policy-store.js';
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
  type StoreKind,
} from './helpers/cache-fixture.js';
import { ManualClock } from './helpers/manual-clock.js';
import { prng } from './helpers/prng.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

let net: Net;
before(async () => {
  net = await startNet({ dnsTimeoutMs: 600, fetchTimeoutMs: 2000 });
});
after(async () => {
  await net.close();
});

const ENFORCE = (d: string, maxAge = 7 * 86400): string => policyText('enforce', [`mx.${d}`], maxAge);

interface World {
  readonly store: PolicyStore;
  readonly clock: ManualClock;
  /** A database without refresher, for seeding. */
  readonly seedDb: MtaStsDb;
  open(options?: MtaStsDbOptions): Promise<MtaStsDb>;
}

async function world(t: TestContext, kind: StoreKind): Promise<World | undefined> {
  if (!(await kind.available(t))) return undefined;
  const handle = await kind.create();
  const store = await handle.open();
  const clock = new ManualClock();
  const opened: MtaStsDb[] = [];
  const open = async (options: MtaStsDbOptions = {}): Promise<MtaStsDb> => {
    const db = await MtaStsDb.open({
      store,
      clock,
      resolver: net.resolver,
      fetchOptions: net.fetchOptions,
      ...options,
    });
    opened.push(db);
    return db;
  };
  const seedDb = await open();
  t.after(async () => {
    for (const db of opened) await db.close();
    await store.close();
    await handle.cleanup();
  });
  return { store, clock, seedDb, open };
}

/** Publishes and caches `domain` (without network) with `id` and an enforce policy. */
async function seed(w: World, domain: string, id: string, text = ENFORCE(domain)): Promise<void> {
  publish(net, domain, id, text);
  await w.seedDb.upsert(domain, id, parsePolicy(text), text);
}

async function refreshedAt(store: PolicyStore, domains: readonly string[], t: number): Promise<number> {
  let n = 0;
  for (const d of domains) if ((await store.get(d))?.lastUpdate.getTime() === t) n++;
  return n;
}

for (const kind of storeKinds) {
  describe(`refresher on ${kind.kind}`, () => {
    test('first refresh at once, the rest spread over 3 h with jitter, then the next pass 24 h after the start', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domains = Array.from({ length: 7 }, () => uniqueDomain('sp'));
      for (const d of domains) await seed(w, d, 's1');
      await w.clock.advance(13 * HOUR);
      const start = w.clock.now();
      const metrics = recordingMetrics();
      const db = await w.open({ refresher: true, metrics, refresherOptions: { random: prng(7) } });

      const interval = (3 * HOUR) / (domains.length - 1);
      const dueTimes: number[] = [0];
      // The first runs at once, before any sleep ends.
      await until(async () => (await refreshedAt(w.store, domains, start)) === 1, 5000, 'first refresh');
      for (let k = 1; k < domains.length; k++) {
        await until(() => w.clock.sleeps.length === k, 5000, `sleep ${k}`);
        const ms = w.clock.sleeps[k - 1]!;
        await w.clock.advance(ms);
        dueTimes.push(w.clock.now() - start);
        const at = w.clock.now();
        await until(async () => (await refreshedAt(w.store, domains, at)) === 1, 5000, `refresh ${k}`);
      }
      for (let k = 1; k < dueTimes.length; k++) {
        // Slot k is due at k·interval ± interval/2.
        assert.ok(
          Math.abs(dueTimes[k]! - k * interval) <= interval / 2 + 1,
          `slot ${k}: ${dueTimes[k]} vs ${k * interval}`,
        );
      }
      assert.ok(
        dueTimes.some((d, k) => k > 0 && Math.abs(d - k * interval) > 1000),
        'jitter applied',
      );
      assert.ok(dueTimes.at(-1)! <= 3 * HOUR + interval / 2);
      // Each refreshed once: the TXT id unchanged → extended, nothing fetched.
      for (const d of domains) {
        assert.equal(txtQueries(net, d), 1, d);
        assert.equal(fetches(net, d), 0, d);
        const rec = await w.store.get(d);
        assert.equal(rec?.validEnd.getTime(), rec!.lastUpdate.getTime() + 7 * DAY, 'validity extended by max_age');
        assert.ok(rec!.lastUpdate.getTime() >= start);
      }
      // Then one sleep until 24 h after the pass started.
      await until(() => w.clock.sleeps.length === domains.length, 5000, 'the 24 h sleep');
      assert.equal(w.clock.now() + w.clock.sleeps.at(-1)!, start + DAY);
      assert.equal(metrics.refreshes.unchanged, domains.length);

      // The next pass: nothing due (refreshed < 12 h before it? no: 24 h later all are due again).
      await w.clock.advance(w.clock.sleeps.at(-1)!);
      await until(async () => (await refreshedAt(w.store, domains, start + DAY)) === 1, 5000, 'second pass');
      await db.close();
      assert.equal(w.clock.pending(), 0, 'close() ended the sleep');
    });

    test('a pass deletes unused and phased-out records, extends, refetches, keeps failures', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const d = {
        unused: uniqueDomain('unused'),
        noneGone: uniqueDomain('nonegone'),
        noneSame: uniqueDomain('nonesame'),
        same: uniqueDomain('same'),
        newId: uniqueDomain('newid'),
        newIdFails: uniqueDomain('newidfail'),
        backoff: uniqueDomain('backoff'),
        txtGoneSame: uniqueDomain('txtgone'),
        txtGoneWeaker: uniqueDomain('txtweak'),
        recent: uniqueDomain('recent'),
      };
      for (const name of [d.unused, d.same, d.newId, d.newIdFails, d.txtGoneSame, d.txtGoneWeaker]) {
        await seed(w, name, 'old');
      }
      await seed(w, d.noneGone, 'n', policyText('none', [], 7 * 86400));
      await seed(w, d.noneSame, 'n', policyText('none', [], 7 * 86400));
      net.dns.mtaSts(d.backoff, { id: 'bk' });
      await w.seedDb.upsert(d.backoff, 'bk', null);

      await w.clock.advance(181 * DAY);
      const now0 = w.clock.now();
      // Everything but `unused` was used recently.
      await w.store.touch(
        Object.values(d)
          .filter((x) => x !== d.unused)
          .map((domain) => ({ domain, lastUse: new Date(now0 - HOUR) })),
      );
      await seed(w, d.recent, 'r'); // updated now: not due

      net.dns.nxdomain(`_mta-sts.${d.noneGone}`);
      net.https.policy(d.noneGone, policyText('none', [], 7 * 86400));
      publish(net, d.newId, 'new', ENFORCE(d.newId, 1234));
      net.dns.mtaSts(d.newIdFails, { id: 'new' });
      net.https.behave(d.newIdFails, { status: 500 });
      net.https.policy(d.backoff, ENFORCE(d.backoff));
      net.dns.nxdomain(`_mta-sts.${d.txtGoneSame}`);
      net.https.policy(d.txtGoneSame, ENFORCE(d.txtGoneSame, 4321));
      net.dns.nxdomain(`_mta-sts.${d.txtGoneWeaker}`);
      net.https.policy(d.txtGoneWeaker, policyText('none', [], 86400));

      const logger = captureLogger();
      const metrics = recordingMetrics();
      const db = await w.open({ logger, metrics });
      const before = new Map<string, Awaited<ReturnType<PolicyStore['get']>>>();
      for (const name of Object.values(d)) before.set(name, await w.store.get(name));
      const sum = await db.refresh();
      const now = w.clock.now();

      assert.deepEqual(sum, { checked: 8, unchanged: 2, updated: 3, failed: 2, deleted: 2 });
      assert.equal(await w.store.get(d.unused), undefined, 'unused 181 days: deleted');
      assert.equal(await w.store.get(d.noneGone), undefined, 'none policy, TXT gone: deleted');
      for (const name of [d.noneSame, d.same]) {
        const r = await w.store.get(name);
        assert.equal(r?.lastUpdate.getTime(), now, `${name} extended`);
        assert.equal(r?.validEnd.getTime(), now + 7 * DAY);
      }
      const n = await w.store.get(d.newId);
      assert.equal(n?.recordId, 'new');
      assert.equal(n?.policy.maxAgeSeconds, 1234);
      assert.equal(n?.policyText, ENFORCE(d.newId, 1234));
      assert.deepEqual(await w.store.get(d.newIdFails), before.get(d.newIdFails), 'failed refresh keeps the record');
      const b = await w.store.get(d.backoff);
      assert.equal(b?.backoff, false, 'a back-off record is replaced by the fetched policy');
      assert.equal(b?.policy.mode, 'enforce');
      const g = await w.store.get(d.txtGoneSame);
      assert.equal(g?.policy.maxAgeSeconds, 4321, 'TXT lookup failed: policy fetched anyway');
      assert.equal(g?.recordId, 'old');
      assert.deepEqual(await w.store.get(d.txtGoneWeaker), before.get(d.txtGoneWeaker), 'weaker policy refused');
      assert.deepEqual(await w.store.get(d.recent), before.get(d.recent), 'not due: untouched');
      assert.equal(txtQueries(net, d.recent), 0);

      const errors = logger.entries.filter((e) => e.level === 'error').map((e) => e.obj.domain);
      assert.ok(errors.includes(d.newIdFails), 'failure logged');
      assert.ok(!errors.includes(d.noneGone));
      // Audit lines: a new id with a new max_age is not a change of what is enforced (id only);
      // a weaker policy without a TXT record is a suspected downgrade.
      const changed = logger.entries.filter((e) => e.msg === 'MTA-STS policy changed');
      assert.deepEqual(
        changed.map((e) => [e.obj.domain, e.obj.changes]),
        [[d.newId, ['id']]],
      );
      const downgrades = logger.entries.filter((e) => e.obj.event === 'downgrade-suspected');
      assert.deepEqual(
        downgrades.map((e) => [e.level, e.obj.domain, e.obj.sign, e.obj.mode, e.obj.served]),
        [['warn', d.txtGoneWeaker, 'mode_weakened', 'enforce', 'none']],
      );
      assert.deepEqual({ ...metrics.refreshes }, { unchanged: 2, updated: 3, failed: 2, deleted: 2, skipped: 0 });
      assert.ok(metrics.sizes.length >= 2, 'cache size reported at open and after the pass');
    });

    test('a wrong clock deletes nothing as unused: a wall-clock step between passes, or most of the store at once', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domains = Array.from({ length: 10 }, () => uniqueDomain('clock'));
      for (const d of domains) await seed(w, d, 'c1');
      const refused: string[] = [];
      const logger = captureLogger();
      const metrics = { ...recordingMetrics(), unusedDeleteRefused: (r: string) => void refused.push(r) };
      const db = await w.open({ logger, metrics });
      const present = async (): Promise<number> => {
        let n = 0;
        for (const d of domains) if ((await w.store.get(d)) !== undefined) n++;
        return n;
      };
      assert.equal((await db.refresh()).deleted, 0, 'a first pass: nothing unused');

      // The wall clock jumps 181 days ahead (monotonic time does not): the pass deletes nothing.
      w.clock.stepWall(181 * DAY);
      assert.equal((await db.refresh()).deleted, 0);
      assert.deepEqual(refused, ['clock_step']);
      assert.ok(logger.entries.some((e) => e.level === 'warn' && /wall clock stepped/.test(e.msg)));
      // Still wrong at the next pass: the step is the new normal, but most of the store would go.
      assert.equal((await db.refresh()).deleted, 0);
      assert.deepEqual(refused, ['clock_step', 'implausible_share']);
      assert.equal(await present(), 10);
      // The clock is corrected: every record is still there and answers.
      w.clock.stepWall(-181 * DAY);
      assert.equal((await db.refresh()).deleted, 0);
      assert.equal(await present(), 10);
      assert.equal((await db.get(domains[0] as string)).policy?.mode, 'enforce');

      // Real time passes (both clocks): 3 of 10 unused for 180 days are deleted, a share that is plausible.
      await w.clock.advance(181 * DAY);
      await w.store.touch(domains.slice(3).map((domain) => ({ domain, lastUse: new Date(w.clock.now() - HOUR) })));
      const refusedBefore = refused.length;
      assert.equal((await db.refresh()).deleted, 3);
      assert.equal(await present(), 7);
      assert.equal(refused.length, refusedBefore);
    });

    test('a failed none-policy refresh is not logged as an error and keeps the record', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domain = uniqueDomain('nonefail');
      await seed(w, domain, 'n1', policyText('none', [], 86400));
      net.dns.servfail(`_mta-sts.${domain}`);
      await w.clock.advance(13 * HOUR);
      const logger = captureLogger();
      const db = await w.open({ logger });
      const before = await w.store.get(domain);
      const sum = await db.refresh();
      assert.equal(sum.failed, 1);
      assert.deepEqual(await w.store.get(domain), before);
      assert.equal(logger.entries.filter((e) => e.level === 'error').length, 0);
      assert.equal(fetches(net, domain), 0, 'DNS failing for a none policy: no fetch');
    });

    test('leases: a record claimed by another node is skipped until its lease expires', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domain = uniqueDomain('lease');
      await seed(w, domain, 'l1');
      publish(net, domain, 'l2', ENFORCE(domain, 999));
      await w.clock.advance(13 * HOUR);
      const now = w.clock.now();
      assert.equal(
        await w.store.claimRefresh(domain, {
          owner: 'dead-node',
          now: new Date(now),
          leaseUntil: new Date(now + 10 * MIN),
          updatedBefore: new Date(now - 12 * HOUR),
        }),
        true,
      );
      const metrics = recordingMetrics();
      const db = await w.open({ metrics });
      const s1 = await db.refresh();
      assert.equal(s1.updated, 0);
      assert.equal(metrics.refreshes.skipped, 1);
      assert.equal(fetches(net, domain), 0);
      await w.clock.advance(10 * MIN + 1);
      const s2 = await db.refresh();
      assert.equal(s2.updated, 1, 'lease expired: taken over');
      assert.equal((await w.store.get(domain))?.recordId, 'l2');
      assert.equal(fetches(net, domain), 1);
    });

    test('two nodes on one store refresh each record once; paging in small batches', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domains = Array.from({ length: 12 }, () => uniqueDomain('two'));
      for (const d of domains) {
        await seed(w, d, 'a');
        publish(net, d, 'b', ENFORCE(d, 777));
      }
      await w.clock.advance(13 * HOUR);
      const a = await w.open({ refresherOptions: { owner: 'node-a', batchSize: 5, random: prng(1) } });
      const b = await w.open({ refresherOptions: { owner: 'node-b', batchSize: 3, random: prng(2) } });
      const progress: number[] = [];
      const [sa, sb] = await Promise.all([
        a.refresh(undefined, { onProgress: (done) => progress.push(done) }),
        b.refresh(),
      ]);
      assert.equal(sa.updated + sb.updated, domains.length);
      for (const d of domains) {
        assert.equal(fetches(net, d), 1, `${d} fetched once`);
        assert.equal((await w.store.get(d))?.recordId, 'b');
      }
      assert.ok(progress.length > 0 && progress.at(-1) === sa.checked);
    });

    test('a pass while lookups touch every record checks each due record exactly once', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domains = Array.from({ length: 60 }, () => uniqueDomain('tch'));
      for (const d of domains) await seed(w, d, 'a');
      await w.clock.advance(13 * HOUR);
      const db = await w.open({ refresherOptions: { batchSize: 5, random: prng(3) } });
      let refreshing = true;
      let touches = 0;
      // Lookups move every record to the front of the lastUse order, again and again.
      const touching = (async () => {
        for (let at = w.clock.now(); refreshing;) {
          await w.store.touch(domains.map((d) => ({ domain: d, lastUse: new Date(++at) })));
          touches++;
          await new Promise((r) => setTimeout(r, 1));
        }
      })();
      let summary;
      try {
        summary = await db.refresh();
      } finally {
        refreshing = false;
        await touching;
      }
      assert.ok(touches >= 2, `lookups touched the records during the pass (${touches} rounds)`);
      assert.equal(summary.checked, domains.length, 'every due record checked');
      assert.equal(summary.unchanged, domains.length);
      for (const d of domains) assert.equal(txtQueries(net, d), 1, `${d} checked once`);
    });

    test('close() is prompt: during the 3 h spread and during a network step; nothing half-written', async (t) => {
      const w = await world(t, kind);
      if (!w) return;
      const domains = Array.from({ length: 3 }, () => uniqueDomain('cl'));
      for (const d of domains) await seed(w, d, 'c1');
      await w.clock.advance(13 * HOUR);
      const start = w.clock.now();
      const db = await w.open({ refresher: true, refresherOptions: { random: prng(3) } });
      await until(() => w.clock.sleeps.length === 1, 5000, 'the first spread sleep');
      // The first record's refresh runs beside that sleep (the pass starts it, then waits for the
      // next slot): it finishes without the clock moving.
      await until(async () => (await refreshedAt(w.store, domains, start)) === 1, 5000, 'the first refresh');
      const t0 = Date.now();
      await db.close();
      assert.ok(Date.now() - t0 < 1000, 'close during a 1.5 h sleep is prompt');
      assert.equal(w.clock.pending(), 0);
      await w.clock.advance(DAY);
      assert.equal(await refreshedAt(w.store, domains, start), 1, 'nothing ran after close');

      // A step stuck in DNS: a slow TXT answer (5 s) on a resolver that would wait for it. Only
      // that record is due, so it is the one the next pass starts with.
      for (const d of domains) await w.store.delete(d);
      const slow = uniqueDomain('slow');
      await seed(w, slow, 's1');
      publish(net, slow, 's2', ENFORCE(slow, 555));
      net.dns.delay(`_mta-sts.${slow}`, 5000);
      await w.clock.advance(13 * HOUR);
      const before = await w.store.get(slow);
      const patient = createNodeResolver({ servers: [net.dns.address], timeoutMs: 10_000 });
      const db2 = await w.open({ refresher: true, resolver: patient });
      await until(() => txtQueries(net, slow) >= 1, 5000, 'the slow TXT query');
      const t1 = Date.now();
      await db2.close();
      assert.ok(Date.now() - t1 < 1000, 'close aborts the step in progress');
      assert.deepEqual(await w.store.get(slow), before, 'nothing half-written');
      net.dns.delay(`_mta-sts.${slow}`, 0);
    });
  });
}

describe('refresher process behaviour', () => {
  test('a running refresher (system clock) keeps no timer that holds the process open', async (t) => {
    const dir = await mkdtemp(path.join(tmpdir(), 'mtastsdb-idle-'));
    t.after(() => rm(dir, { recursive: true, force: true }));
    const here = fileURLToPath(import.meta.url);
    const ts = here.endsWith('.ts');
    const child = fork(path.join(path.dirname(here), 'helpers', `fleet-node.${ts ? 'ts' : 'js'}`), ['idle', dir], {
      execArgv: ts ? process.execArgv.filter((a) => !a.startsWith('--test')) : [],
      stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
    });
    let out = '';
    child.stdout?.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr?.on('data', (b: Buffer) => (out += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
    const [code, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    assert.equal(signal, null, `the child had to be killed: it stayed alive. Output: ${out}`);
    assert.equal(code, 0, out);
    assert.match(out, /refresher started/);
  });
});

describe('refresher under the discovery limits (SQLite)', () => {
  const sqlite = storeKinds.find((k) => k.kind === 'sqlite') as StoreKind;

  test('every slot taken: the refresh is held back without network and the record kept; then it runs', async (t) => {
    const w = await world(t, sqlite);
    if (!w) return;
    const d = uniqueDomain('held');
    await seed(w, d, 'h1');
    const before = await w.store.get(d);
    const logger = captureLogger();
    // Two slots, no reserve: two hanging discoveries of new domains take both.
    const db = await w.open({
      logger,
      discoveryLimits: { maxInFlight: 2, reservePercent: 0, domainSharePercent: 100 },
    });
    const hangs = [uniqueDomain('hang'), uniqueDomain('hang')];
    for (const h of hangs) {
      net.dns.mtaSts(h, { id: 'x' });
      net.https.behave(h, { body: { kind: 'hang' } });
    }
    const slow = hangs.map((h) => db.get(h));
    for (const p of slow) p.catch(() => {});
    await until(() => hangs.every((h) => fetches(net, h) === 1), 5000, 'both fetches started');

    const txt = txtQueries(net, d);
    const held = await db.refresh([d]);
    assert.equal(held.failed, 1, JSON.stringify(held));
    assert.equal(txtQueries(net, d), txt, 'no DNS');
    assert.deepEqual(await w.store.get(d), before, 'the record is kept as it was');
    assert.ok(logger.entries.some((e) => e.level === 'warn' && /held back by the discovery limits/.test(e.msg)));

    await Promise.allSettled(slow);
    const ran = await db.refresh([d]);
    assert.equal(ran.unchanged, 1, JSON.stringify(ran));
    assert.equal(txtQueries(net, d), txt + 1);
  });
});
