/**
 * The one behavioural suite every PolicyStore passes (STYLE.md §8). Backend tests call
 * `storeContract` with a factory for a fresh, empty store on a real database and add their own
 * backend-only tests next to it; they never replace it.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { isMtaStsError } from '../../src/errors.js';
import type { ErrorCode } from '../../src/errors.js';
import { formatPolicy, parsePolicy } from '../../src/rfc8461/policy.js';
import type { Policy } from '../../src/rfc8461/policy.js';
import type { ListOrder, PolicyRecord, PolicyStore } from '../../src/store/policy-store.js';

/** What a factory hands the suite. */
export interface StoreUnderTest {
  readonly store: PolicyStore;
  /** Removes what the factory created (files, schema). Called after the store is closed. */
  cleanup(): Promise<void>;
  /** Opens another handle on the same database (another connection or pool), when the backend has one. */
  another?: () => Promise<PolicyStore>;
}

/** 2026-01-01T00:00:00Z, the suite's time origin. */
export const T0 = Date.UTC(2026, 0, 1);

/** Policy texts the suite round-trips byte for byte. */
const POLICY_TEXTS: Readonly<Record<string, string>> = {
  enforceLf: 'version: STSv1\nmode: enforce\nmx: mx1.example.test\nmx: *.mx.example.test\nmax_age: 86400\n',
  enforceCrlf: 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmax_age: 604800\r\n',
  mixedTerminators:
    'version: STSv1\r\nmode: testing\nmx: mx.example.test  \r\n\r\n   \nmax_age: 604800\nfoo-ext: hé ✓ 😀\nbar: 1',
  noFinalNewline: 'version: STSv1\nmode: enforce\nmx: a.example.test\nmax_age: 1',
  duplicatesAndExtensions:
    'version: STSv1\nmode: enforce\nmode: none\nmx: b.example.test\nmx: b.example.test\nmax_age: 9999999999\nmax_age: 5\nx.y_z-1: v1\nx.y_z-1: v2\n',
  none: 'version: STSv1\nmode: none\nmax_age: 86400\n',
  fourMx:
    'version: STSv1\nmode: enforce\nmx: mx1.mail.example.test\nmx: mx2.mail.example.test\nmx: *.backup.example.test\nmx: mx4.example.test\nmax_age: 1209600\n',
};

/** The policy a failed fetch is stored as (mode none, max_age 300). */
const BACKOFF_POLICY: Policy = { version: 'STSv1', mode: 'none', mx: [], maxAgeSeconds: 300, extensions: [] };

/** A record with sensible defaults; `text` is parsed into `policy`. */
export function makeRecord(
  domain: string,
  over: Partial<Omit<PolicyRecord, 'policy' | 'policyText'>> & { text?: string } = {},
): PolicyRecord {
  const text = over.text ?? POLICY_TEXTS.enforceLf!;
  const policy = parsePolicy(text);
  return {
    domain,
    inserted: over.inserted ?? new Date(T0),
    validEnd: over.validEnd ?? new Date(T0 + policy.maxAgeSeconds * 1000),
    lastUpdate: over.lastUpdate ?? new Date(T0),
    lastUse: over.lastUse ?? new Date(T0),
    backoff: over.backoff ?? false,
    recordId: over.recordId ?? 'id20260101',
    policy,
    policyText: text,
  };
}

/**
 * `store` with its `get` counted (every other method its own): for tests that must show a read
 * did or did not reach the store. `reads()` counts since the start or the last `resetReads()`.
 */
export function countingGets(store: PolicyStore): { store: PolicyStore; reads(): number; resetReads(): void } {
  let reads = 0;
  const counting: PolicyStore = Object.assign(Object.create(store) as PolicyStore, {
    get: (d: string) => {
      reads++;
      return store.get(d);
    },
  });
  return { store: counting, reads: () => reads, resetReads: () => void (reads = 0) };
}

/** A backoff record as the cache stores one. */
function backoffRecord(domain: string, at: number): PolicyRecord {
  return {
    domain,
    inserted: new Date(at),
    validEnd: new Date(at + 300_000),
    lastUpdate: new Date(at),
    lastUse: new Date(at),
    backoff: true,
    recordId: 'failedid',
    policy: BACKOFF_POLICY,
    policyText: formatPolicy(BACKOFF_POLICY),
  };
}

/** Code point order, as both databases compare text (SQLite BINARY, PostgreSQL COLLATE "C"). */
function compareDomains(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

/** The order `list()` promises by default: newest `lastUse` first, then domain. */
function listOrder(a: PolicyRecord, b: PolicyRecord): number {
  return b.lastUse.getTime() - a.lastUse.getTime() || compareDomains(a.domain, b.domain);
}

export async function collect(it: AsyncIterable<PolicyRecord>): Promise<PolicyRecord[]> {
  const out: PolicyRecord[] = [];
  for await (const r of it) out.push(r);
  return out;
}

/** Asserts that `p` rejects with an MtaStsError of `code`. */
export async function rejectsWith(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(isMtaStsError(err), `expected MtaStsError ${code}, got ${String(err)}`);
    assert.equal(err.code, code, err.message);
    return true;
  });
}

/** Asserts two records are equal field by field (Dates by time, policy deeply). */
export function assertSameRecord(actual: PolicyRecord | undefined, expected: PolicyRecord): void {
  assert.ok(actual, `record ${expected.domain} missing`);
  assert.equal(actual.domain, expected.domain);
  for (const k of ['inserted', 'validEnd', 'lastUpdate', 'lastUse'] as const) {
    assert.equal(actual[k].getTime(), expected[k].getTime(), `${expected.domain}: ${k}`);
  }
  assert.equal(actual.backoff, expected.backoff);
  assert.equal(actual.recordId, expected.recordId);
  assert.equal(actual.policyText, expected.policyText);
  assert.deepEqual(actual.policy, expected.policy);
}

async function putAll(store: PolicyStore, records: readonly PolicyRecord[], parallel = 50): Promise<void> {
  for (let i = 0; i < records.length; i += parallel) {
    const results = await Promise.all(records.slice(i, i + parallel).map((r) => store.put(r)));
    assert.ok(results.every(Boolean));
  }
}

/**
 * Registers the shared suite. `makeStore` must return a fresh, empty store each time.
 * `options.skip` skips the whole suite with a reason (a backend that is unavailable here).
 */
export function storeContract(
  name: string,
  makeStore: () => Promise<StoreUnderTest>,
  options: { readonly skip?: string } = {},
): void {
  describe(`PolicyStore contract: ${name}`, options.skip === undefined ? {} : { skip: options.skip }, () => {
    let sut: StoreUnderTest;
    let store: PolicyStore;
    const extra: PolicyStore[] = [];

    beforeEach(async () => {
      sut = await makeStore();
      store = sut.store;
    });
    afterEach(async () => {
      for (const s of extra.splice(0)) await s.close();
      await store.close();
      await sut.cleanup();
    });

    test('get of an unknown domain is undefined; count of an empty store is 0', async () => {
      assert.equal(await store.get('nothing.example.test'), undefined);
      assert.equal(await store.count(), 0);
      assert.deepEqual(await collect(store.list()), []);
    });

    test('put then get returns every field exactly', async () => {
      const r = makeRecord('example.test', {
        inserted: new Date(T0 - 5000),
        validEnd: new Date(T0 + 86_400_000),
        lastUpdate: new Date(T0 + 1),
        lastUse: new Date(T0 + 2),
        recordId: 'abcDEF123',
      });
      assert.equal(await store.put(r), true);
      assertSameRecord(await store.get('example.test'), r);
      assert.equal(await store.count(), 1);
    });

    test('300 concurrent gets (duplicates and unknown keys among them) each answer their own key', async () => {
      const records = Array.from({ length: 100 }, (_, i) => makeRecord(`g${i}.test`, { recordId: `id${i}` }));
      await putAll(store, records);
      const keys = Array.from({ length: 300 }, (_, i) => (i % 3 === 2 ? `unknown${i}.test` : `g${(i * 7) % 100}.test`));
      const got = await Promise.all(keys.map((k) => store.get(k)));
      keys.forEach((k, i) => {
        if (k.startsWith('unknown')) assert.equal(got[i], undefined, k);
        else assert.equal(got[i]?.recordId, `id${k.slice(1, -5)}`, k);
      });
    });

    test('a newer put overwrites every field', async () => {
      await store.put(makeRecord('example.test', { recordId: 'old' }));
      const newer = makeRecord('example.test', {
        text: POLICY_TEXTS.enforceCrlf!,
        lastUpdate: new Date(T0 + 60_000),
        lastUse: new Date(T0 + 60_000),
        validEnd: new Date(T0 + 999_000),
        inserted: new Date(T0 + 60_000),
        recordId: 'new',
      });
      assert.equal(await store.put(newer), true);
      assertSameRecord(await store.get('example.test'), newer);
      assert.equal(await store.count(), 1);
    });

    test('newest wins: a put with an older lastUpdate is rejected and changes nothing', async () => {
      const current = makeRecord('example.test', { lastUpdate: new Date(T0 + 10_000), recordId: 'current' });
      await store.put(current);
      const stale = makeRecord('example.test', {
        lastUpdate: new Date(T0 + 9_999),
        recordId: 'stale',
        text: POLICY_TEXTS.none!,
      });
      assert.equal(await store.put(stale), false);
      assertSameRecord(await store.get('example.test'), current);
    });

    test('a put with the same lastUpdate overwrites (an upsert repeated is not lost)', async () => {
      await store.put(makeRecord('example.test', { recordId: 'first' }));
      assert.equal(await store.put(makeRecord('example.test', { recordId: 'second' })), true);
      assert.equal((await store.get('example.test'))?.recordId, 'second');
    });

    test('put never moves lastUse backwards (a use recorded meanwhile survives a refresh)', async () => {
      await store.put(makeRecord('example.test', { lastUse: new Date(T0 + 50_000) }));
      await store.put(makeRecord('example.test', { lastUpdate: new Date(T0 + 1), lastUse: new Date(T0 + 10) }));
      const got = await store.get('example.test');
      assert.equal(got?.lastUpdate.getTime(), T0 + 1);
      assert.equal(got?.lastUse.getTime(), T0 + 50_000);
    });

    test('put with an empty policyText stores formatPolicy(policy)', async () => {
      const r = { ...makeRecord('example.test'), policyText: '' };
      await store.put(r);
      const got = await store.get('example.test');
      assert.equal(got?.policyText, formatPolicy(r.policy));
      assert.deepEqual(got?.policy, r.policy);
    });

    test('put rejects malformed records with coded errors', async () => {
      const good = makeRecord('example.test');
      const cases: Array<[string, PolicyRecord, ErrorCode]> = [
        ['text disagrees with policy', { ...good, policy: parsePolicy(POLICY_TEXTS.none!) }, 'ERR_MTASTS_USAGE'],
        ['text does not parse', { ...good, policyText: 'version: STSv1\nmode: bogus\n' }, 'ERR_MTASTS_POLICY_SYNTAX'],
        ['invalid date', { ...good, lastUpdate: new Date(Number.NaN) }, 'ERR_MTASTS_USAGE'],
        ['empty domain', { ...good, domain: '' }, 'ERR_MTASTS_USAGE'],
        ['domain with NUL', { ...good, domain: 'a\0b.test' }, 'ERR_MTASTS_USAGE'],
      ];
      for (const [why, record, code] of cases) {
        await rejectsWith(store.put(record), code).catch((err: unknown) => {
          throw new Error(`${why}: ${String(err)}`);
        });
      }
      assert.equal(await store.count(), 0);
    });

    test('policy text round-trips byte for byte (LF, CRLF, mixed, blank lines, extensions, UTF-8)', async () => {
      const entries = Object.entries(POLICY_TEXTS);
      for (const [key, text] of entries) await store.put(makeRecord(`${key.toLowerCase()}.example.test`, { text }));
      for (const [key, text] of entries) {
        const got = await store.get(`${key.toLowerCase()}.example.test`);
        assert.equal(got?.policyText, text, key);
        assert.deepEqual(got?.policy, parsePolicy(text), key);
      }
      const dup = await store.get('duplicatesandextensions.example.test');
      assert.equal(dup?.policy.maxAgeSeconds, 9999999999, 'max_age above the cap is stored as published');
      assert.deepEqual(dup?.policy.extensions, [{ key: 'x.y_z-1', value: 'v1' }]);
      const big = `version: STSv1\nmode: enforce\n${Array.from({ length: 500 }, (_, i) => `mx: mx${i}.big.example.test\n`).join('')}max_age: 86400\n`;
      await store.put(makeRecord('big.example.test', { text: big }));
      assert.equal((await store.get('big.example.test'))?.policyText, big);
    });

    test('backoff records round-trip (mode none, max_age 300, backoff true)', async () => {
      const r = backoffRecord('broken.example.test', T0);
      await store.put(r);
      const got = await store.get('broken.example.test');
      assertSameRecord(got, r);
      assert.equal(got?.backoff, true);
      assert.equal(got?.policy.mode, 'none');
      assert.equal(got?.policy.maxAgeSeconds, 300);
      // A later successful fetch replaces the backoff record.
      const fixed = makeRecord('broken.example.test', { lastUpdate: new Date(T0 + 300_001) });
      assert.equal(await store.put(fixed), true);
      assert.equal((await store.get('broken.example.test'))?.backoff, false);
    });

    test('unicode domain keys are distinct, exact and ordered by code point', async () => {
      const domains = [
        'bücher.example',
        'xn--bcher-kva.example',
        '例え.テスト',
        'ελληνικά.δοκιμή',
        'emoji-😀.test',
        'ｅ.test',
        'zz.test',
      ];
      for (const d of domains) await store.put(makeRecord(d, { recordId: `id${domains.indexOf(d)}` }));
      for (const d of domains) assert.equal((await store.get(d))?.recordId, `id${domains.indexOf(d)}`, d);
      assert.equal(await store.get('BÜCHER.example'), undefined, 'keys are exact, not case-folded');
      const listed = (await collect(store.list({ pageSize: 2 }))).map((r) => r.domain);
      assert.deepEqual(listed, [...domains].sort(compareDomains));
      await store.touch([{ domain: '例え.テスト', lastUse: new Date(T0 + 5) }]);
      assert.equal((await collect(store.list()))[0]?.domain, '例え.テスト');
      assert.equal(await store.delete('bücher.example'), true);
      assert.equal((await store.get('xn--bcher-kva.example'))?.recordId, 'id1');
    });

    test('touch moves lastUse forward only, ignores unknown domains, takes the latest of duplicates', async () => {
      await store.put(makeRecord('a.test', { lastUse: new Date(T0 + 100) }));
      await store.put(makeRecord('b.test', { lastUse: new Date(T0 + 100) }));
      await store.touch([
        { domain: 'a.test', lastUse: new Date(T0 + 50) }, // backwards: ignored
        { domain: 'b.test', lastUse: new Date(T0 + 200) },
        { domain: 'b.test', lastUse: new Date(T0 + 300) },
        { domain: 'b.test', lastUse: new Date(T0 + 250) },
        { domain: 'unknown.test', lastUse: new Date(T0 + 999) },
      ]);
      assert.equal((await store.get('a.test'))?.lastUse.getTime(), T0 + 100);
      assert.equal((await store.get('b.test'))?.lastUse.getTime(), T0 + 300);
      assert.equal(await store.get('unknown.test'), undefined, 'touch never creates records');
      await store.touch([]);
      assert.equal(await store.count(), 2);
    });

    test('touch of 2,000 uses in one call updates every known record', async () => {
      const records = Array.from({ length: 1000 }, (_, i) => makeRecord(`t${i}.test`, { lastUse: new Date(T0) }));
      await putAll(store, records);
      const uses = [
        ...records.map((r, i) => ({ domain: r.domain, lastUse: new Date(T0 + 1000 + i) })),
        ...Array.from({ length: 1000 }, (_, i) => ({ domain: `missing${i}.test`, lastUse: new Date(T0 + 5) })),
      ];
      await store.touch(uses);
      const all = await collect(store.list({ pageSize: 300 }));
      assert.equal(all.length, 1000);
      for (const r of all) assert.equal(r.lastUse.getTime(), T0 + 1000 + Number(r.domain.slice(1, -5)), r.domain);
    });

    test('delete reports whether a record was there; count follows', async () => {
      await putAll(store, [makeRecord('a.test'), makeRecord('b.test'), makeRecord('c.test')]);
      assert.equal(await store.count(), 3);
      assert.equal(await store.delete('b.test'), true);
      assert.equal(await store.delete('b.test'), false);
      assert.equal(await store.delete('never.test'), false);
      assert.equal(await store.get('b.test'), undefined);
      assert.equal(await store.count(), 2);
    });

    test('list: newest lastUse first, then domain, across page boundaries inside ties', async () => {
      const records = Array.from({ length: 97 }, (_, i) =>
        makeRecord(`d${(i * 37) % 97}.test`, { lastUse: new Date(T0 + (i % 5) * 1000) }),
      );
      await putAll(store, records);
      const expected = [...records].sort(listOrder).map((r) => r.domain);
      const byDomain = records.map((r) => r.domain).sort(compareDomains);
      for (const pageSize of [1, 7, 19, 96, 97, 98, 1000]) {
        const got = (await collect(store.list({ pageSize }))).map((r) => r.domain);
        assert.deepEqual(got, expected, `pageSize ${pageSize}`);
        const explicit = (await collect(store.list({ pageSize, order: 'lastUse' }))).map((r) => r.domain);
        assert.deepEqual(explicit, expected, `order lastUse, pageSize ${pageSize}`);
        const got2 = (await collect(store.list({ pageSize, order: 'domain' }))).map((r) => r.domain);
        assert.deepEqual(got2, byDomain, `order domain, pageSize ${pageSize}`);
      }
    });

    test('list filters: updatedBefore, usedBefore, validEndBefore and combinations', async () => {
      const records: PolicyRecord[] = [];
      for (let i = 0; i < 40; i++) {
        records.push(
          makeRecord(`f${i}.test`, {
            lastUpdate: new Date(T0 + (i % 4) * 3600_000),
            lastUse: new Date(T0 + (i % 5) * 86_400_000),
            validEnd: new Date(T0 + (i % 3) * 1000),
          }),
        );
      }
      await putAll(store, records);
      const cases: Array<[string, { updatedBefore?: Date; usedBefore?: Date; validEndBefore?: Date }]> = [
        ['updatedBefore', { updatedBefore: new Date(T0 + 2 * 3600_000) }],
        ['usedBefore', { usedBefore: new Date(T0 + 2 * 86_400_000) }],
        ['validEndBefore', { validEndBefore: new Date(T0 + 1000) }],
        ['updated+used', { updatedBefore: new Date(T0 + 3600_000), usedBefore: new Date(T0 + 4 * 86_400_000) }],
        [
          'all three',
          {
            updatedBefore: new Date(T0 + 4 * 3600_000),
            usedBefore: new Date(T0 + 3 * 86_400_000),
            validEndBefore: new Date(T0 + 2000),
          },
        ],
        ['nothing matches', { updatedBefore: new Date(T0) }],
      ];
      for (const [why, f] of cases) {
        const expected = records
          .filter(
            (r) =>
              (f.updatedBefore === undefined || r.lastUpdate < f.updatedBefore) &&
              (f.usedBefore === undefined || r.lastUse < f.usedBefore) &&
              (f.validEndBefore === undefined || r.validEnd < f.validEndBefore),
          )
          .sort(listOrder)
          .map((r) => r.domain);
        const got = (await collect(store.list({ ...f, pageSize: 3 }))).map((r) => r.domain);
        assert.deepEqual(got, expected, why);
        const byDomain = (await collect(store.list({ ...f, pageSize: 3, order: 'domain' }))).map((r) => r.domain);
        assert.deepEqual(byDomain, [...expected].sort(compareDomains), `${why}, order domain`);
      }
    });

    test('list rejects a bad pageSize', async () => {
      for (const pageSize of [0, -1, 1.5, 10_001, Number.NaN]) {
        await rejectsWith(collect(store.list({ pageSize })), 'ERR_MTASTS_USAGE');
      }
      for (const order of ['domain ', 'lastuse', ''] as unknown as ListOrder[]) {
        await rejectsWith(collect(store.list({ order })), 'ERR_MTASTS_USAGE');
      }
    });

    test('list streams 2,500 records page by page (pageSize 100): lastUse order from one snapshot, domain order lazily', async () => {
      const records = Array.from({ length: 2500 }, (_, i) =>
        makeRecord(`s${String(i).padStart(4, '0')}.test`, { lastUse: new Date(T0 + (i % 60) * 1000) }),
      );
      await putAll(store, records, 100);
      const expected = [...records].sort(listOrder).map((r) => r.domain);
      const got: string[] = [];
      let first = true;
      for await (const r of store.list({ pageSize: 100 })) {
        got.push(r.domain);
        if (first) {
          first = false;
          // Written after the walk began, one sorting after everything and one before the first
          // row: the snapshot sees neither.
          await store.put(makeRecord('zz-late.test', { lastUse: new Date(T0 - 1) }));
          await store.put(makeRecord('aa-early.test', { lastUse: new Date(T0 + 3600_000) }));
        }
      }
      assert.deepEqual(got, expected);
      // Domain order reads each page when the walk reaches it: of two records written after the
      // walk began, the one sorting after everything is seen, the one before the first row is not.
      // A list that loaded every row up front would see neither.
      const byDomain: string[] = [];
      first = true;
      for await (const r of store.list({ pageSize: 100, order: 'domain' })) {
        byDomain.push(r.domain);
        if (first) {
          first = false;
          await store.put(makeRecord('zzz-late.test'));
          await store.put(makeRecord('a-early.test'));
        }
      }
      const before = [...records.map((r) => r.domain), 'aa-early.test', 'zz-late.test'].sort(compareDomains);
      assert.deepEqual(byDomain, [...before, 'zzz-late.test']);
      assert.equal(new Set(byDomain).size, byDomain.length, 'no record twice');
    });

    for (const order of ['lastUse', 'domain'] as const) {
      test(`list (${order} order) returns each of 5,000 records exactly once while writers touch and put them`, async () => {
        const N = 5000;
        const records = Array.from({ length: N }, (_, i) =>
          makeRecord(`x${String(i).padStart(4, '0')}.test`, { lastUse: new Date(T0 + i * 10) }),
        );
        await putAll(store, records, 250);
        // Another connection when the backend has one (a daemon next to the reader), else the same.
        const writer = sut.another ? await sut.another() : store;
        if (writer !== store) extra.push(writer);
        let reading = true;
        let writes = 0;
        let t = T0 + N * 10;
        // Every round moves every record to the front of the lastUse order (where a keyset walk on
        // lastUse has already been), one in 25 also as a newer version.
        const writing = (async () => {
          for (let round = 0; reading; round++) {
            for (let i = 0; i < N && reading; i += 250) {
              const chunk = records.slice(i, i + 250);
              t += 1000;
              await writer.touch(chunk.map((r, k) => ({ domain: r.domain, lastUse: new Date(t + k) })));
              for (let k = 0; k < chunk.length; k += 25) {
                const d = chunk[k]!.domain;
                await writer.put(
                  makeRecord(d, { lastUpdate: new Date(t), lastUse: new Date(t), recordId: `r${round}` }),
                );
              }
              writes++;
            }
          }
        })();
        const got: PolicyRecord[] = [];
        try {
          for await (const r of store.list({ order, pageSize: 250 })) {
            got.push(r);
            // A slow reader: every 50 records it waits for the writers to finish another batch (up
            // to 2 s), so they run between its records, not only between its pages, however fast
            // each side is on this machine.
            if (got.length % 50 === 0) {
              const target = writes + 1;
              for (let waited = 0; writes < target && waited < 2000; waited += 2) await sleep(2);
            }
          }
        } finally {
          reading = false;
          await writing;
        }
        const times = new Map<string, number>();
        for (const r of got) times.set(r.domain, (times.get(r.domain) ?? 0) + 1);
        const missing = records.filter((r) => !times.has(r.domain)).length;
        const twice = [...times.values()].filter((n) => n > 1).length;
        assert.equal(missing, 0, `${missing} of ${N} records missing (${((100 * missing) / N).toFixed(1)} %)`);
        assert.equal(twice, 0, `${twice} records listed more than once`);
        assert.equal(got.length, N);
        assert.ok(writes >= 50, `the writers ran during the walk (${writes} batches)`);
        const sorted = [...got].sort(order === 'lastUse' ? listOrder : (a, b) => compareDomains(a.domain, b.domain));
        assert.deepEqual(
          got.map((r) => r.domain),
          sorted.map((r) => r.domain),
          `listed in ${order} order`,
        );
      });
    }

    for (const order of ['lastUse', 'domain'] as const) {
      test(`leaving a list (${order} order) by break or throw ends its walk: the next sees new writes`, async () => {
        await putAll(
          store,
          Array.from({ length: 30 }, (_, i) => makeRecord(`e${String(i).padStart(2, '0')}.test`)),
        );
        for await (const _ of store.list({ order, pageSize: 4 })) break;
        await assert.rejects(
          (async () => {
            for await (const _ of store.list({ order, pageSize: 4 })) throw new Error('consumer failed');
          })(),
          /consumer failed/,
        );
        assert.equal(await store.put(makeRecord('e99.test', { lastUse: new Date(T0 + 1) })), true);
        assert.equal(await store.delete('e00.test'), true);
        const all = (await collect(store.list({ order }))).map((r) => r.domain);
        assert.equal(all.length, 30);
        assert.ok(all.includes('e99.test') && !all.includes('e00.test'), 'a fresh walk, not an old snapshot');
      });
    }

    test('breaking out of a list early leaves the store usable', async () => {
      await putAll(
        store,
        Array.from({ length: 30 }, (_, i) => makeRecord(`b${i}.test`)),
      );
      let n = 0;
      for await (const _ of store.list({ pageSize: 4 })) if (++n === 6) break;
      assert.equal(n, 6);
      assert.equal(await store.put(makeRecord('after.test')), true);
      assert.equal(await store.delete('b1.test'), true);
      assert.equal(await store.count(), 30);
    });

    test('claimRefresh: due records only, one lease holder, renewal, expiry', async () => {
      await store.put(makeRecord('due.test', { lastUpdate: new Date(T0) }));
      await store.put(makeRecord('fresh.test', { lastUpdate: new Date(T0 + 13 * 3600_000) }));
      const now = T0 + 13 * 3600_000;
      const claim = (domain: string, owner: string, at: number) =>
        store.claimRefresh(domain, {
          owner,
          now: new Date(at),
          leaseUntil: new Date(at + 60_000),
          updatedBefore: new Date(at - 12 * 3600_000),
        });
      assert.equal(await claim('fresh.test', 'a', now), false, 'not due');
      assert.equal(await claim('missing.test', 'a', now), false, 'no record');
      assert.equal(await claim('due.test', 'a', now), true);
      assert.equal(await claim('due.test', 'b', now + 1000), false, 'lease held by a');
      assert.equal(await claim('due.test', 'a', now + 2000), true, 'the holder may renew');
      assert.equal(await claim('due.test', 'b', now + 61_000), false, 'renewed lease still held');
      assert.equal(await claim('due.test', 'b', now + 62_001), true, 'lease expired: b takes over');
      assert.equal(await claim('due.test', 'a', now + 63_000), false, 'now b holds it');
      // The refresh writes a new lastUpdate: the record is no longer due for anyone.
      await store.put(makeRecord('due.test', { lastUpdate: new Date(now + 64_000) }));
      assert.equal(await claim('due.test', 'a', now + 200_000), false);
      assert.equal(await claim('due.test', 'b', now + 200_000), false);
      // The lease never changes the record itself.
      assert.equal((await store.get('due.test'))?.lastUpdate.getTime(), now + 64_000);
    });

    test('releaseRefresh: only the holder ends its lease; then another owner may claim at once', async () => {
      await store.put(makeRecord('rel.test', { lastUpdate: new Date(T0) }));
      const now = T0 + 13 * 3600_000;
      const claim = (owner: string, at: number) =>
        store.claimRefresh('rel.test', {
          owner,
          now: new Date(at),
          leaseUntil: new Date(at + 600_000),
          updatedBefore: new Date(at - 12 * 3600_000),
        });
      assert.equal(await claim('a', now), true);
      await store.releaseRefresh('rel.test', 'b');
      assert.equal(await claim('b', now + 1000), false, 'b cannot end the lease of a');
      await store.releaseRefresh('rel.test', 'a');
      assert.equal(await claim('b', now + 2000), true, 'released: b claims long before the lease would expire');
      await store.releaseRefresh('missing.test', 'a');
      // Releasing never changes the record.
      assert.equal((await store.get('rel.test'))?.lastUpdate.getTime(), T0);
    });

    test('claimRefresh: among concurrent claims exactly one owner wins', async () => {
      const domains = Array.from({ length: 20 }, (_, i) => `c${i}.test`);
      await putAll(
        store,
        domains.map((d) => makeRecord(d)),
      );
      const handles: PolicyStore[] = [store];
      if (sut.another) {
        for (let i = 0; i < 2; i++) {
          const h = await sut.another();
          extra.push(h);
          handles.push(h);
        }
      }
      const at = T0 + 86_400_000;
      const claims = domains.flatMap((d) =>
        Array.from({ length: 6 }, (_, k) =>
          handles[k % handles.length]!.claimRefresh(d, {
            owner: `node-${k}`,
            now: new Date(at),
            leaseUntil: new Date(at + 60_000),
            updatedBefore: new Date(at - 1000),
          }).then((won) => ({ d, won })),
        ),
      );
      const results = await Promise.all(claims);
      for (const d of domains) {
        assert.equal(results.filter((r) => r.d === d && r.won).length, 1, `${d}: exactly one winner`);
      }
    });

    test('close is idempotent; every call after close fails with ERR_MTASTSDB_CLOSED', async () => {
      await store.put(makeRecord('a.test'));
      await Promise.all([store.close(), store.close()]);
      await store.close();
      const now = new Date(T0);
      await rejectsWith(store.get('a.test'), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(store.put(makeRecord('b.test')), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(store.touch([{ domain: 'a.test', lastUse: now }]), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(store.delete('a.test'), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(store.count(), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(collect(store.list()), 'ERR_MTASTSDB_CLOSED');
      await rejectsWith(
        store.claimRefresh('a.test', { owner: 'x', now, leaseUntil: now, updatedBefore: now }),
        'ERR_MTASTSDB_CLOSED',
      );
    });

    test('closing during a list fails the walk with ERR_MTASTSDB_CLOSED at the next page', async () => {
      await putAll(
        store,
        Array.from({ length: 10 }, (_, i) => makeRecord(`w${i}.test`)),
      );
      const it = store.list({ pageSize: 2 })[Symbol.asyncIterator]();
      assert.equal((await it.next()).done, false);
      await store.close();
      await rejectsWith(
        (async () => {
          for (let r = await it.next(); r.done !== true; r = await it.next());
        })(),
        'ERR_MTASTSDB_CLOSED',
      );
    });
  });
}
