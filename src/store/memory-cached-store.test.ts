/**
 * The memory cache in front of a store: the shared store contract through it (on a SQLite file,
 * `:memory:` and PostgreSQL), then what it adds: `recent()` answers from memory within its time to
 * live while another handle changes the file, its own writes show at once, memory stays bounded,
 * and a read that overlaps a write keeps no copy.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { postgresSuite, postgresTestUrl, testSchema } from '../../test/helpers/postgres.js';
import { T0, countingGets, makeRecord, rejectsWith, storeContract } from '../../test/helpers/store-contract.js';
import { MemoryCachedStore } from './memory-cached-store.js';
import type { PolicyRecord, PolicyStore } from './policy-store.js';
import { openPostgresStore } from './postgres-store.js';
import { openSqliteStore } from './sqlite-store.js';
import { scratchDirs } from '../../test/helpers/scratch-dirs.js';

const tempDir = scratchDirs('mtastsdb-memcache-');

const cached = (inner: PolicyStore, clock = new ManualClock(T0), entries = 100, seconds = 5): MemoryCachedStore =>
  new MemoryCachedStore(inner, { entries, seconds, now: () => clock.now() });

storeContract('memory cache over a sqlite file', async () => {
  const dir = await tempDir();
  const path = join(dir, 'mtasts.db');
  return {
    store: cached(await openSqliteStore({ path })),
    cleanup: async () => {},
    another: () => openSqliteStore({ path }),
  };
});

storeContract(':memory: behind the memory cache', async () => ({
  store: cached(await openSqliteStore({ path: ':memory:' })),
  cleanup: async () => {},
}));

const skip = await postgresSuite();
storeContract(
  'memory cache over postgres',
  async () => {
    const { schema, drop } = testSchema();
    const store = await openPostgresStore({ url: postgresTestUrl, schema });
    return { store: cached(store), cleanup: drop, another: () => openPostgresStore({ url: postgresTestUrl, schema }) };
  },
  skip,
);

/** A SQLite file with the cache on one handle and a second, plain handle: "another process". */
async function twoHandles(entries = 100, seconds = 5) {
  const path = join(await tempDir(), 'mtasts.db');
  const clock = new ManualClock(T0);
  const inner = await openSqliteStore({ path });
  const counting = countingGets(inner);
  const store = cached(counting.store, clock, entries, seconds);
  const other = await openSqliteStore({ path });
  return {
    clock,
    store,
    other,
    reads: counting.reads,
    resetReads: counting.resetReads,
    /** Reads `domain` twice through `recent()`, so a copy is kept. */
    warm: async (domain: string) => {
      await store.recent(domain);
      return store.recent(domain);
    },
    close: async () => {
      await store.close();
      await other.close();
    },
  };
}

describe('memory cache', () => {
  test('recent() keeps a copy from the second read on, then answers from memory until the time to live passes', async () => {
    const h = await twoHandles();
    try {
      await h.other.put(makeRecord('a.example.test', { recordId: 'one' }));
      assert.equal((await h.store.recent('a.example.test'))?.recordId, 'one');
      assert.equal(h.store.size, 0, 'a domain read once is not kept');
      assert.equal((await h.store.recent('a.example.test'))?.recordId, 'one');
      assert.equal(h.store.size, 1);
      assert.equal(h.reads(), 2);
      h.resetReads();
      // Another process replaces the record: within the TTL the copy answers, after it the store.
      await h.other.put(makeRecord('a.example.test', { recordId: 'two', lastUpdate: new Date(T0 + 1) }));
      await h.clock.advance(4999);
      assert.equal((await h.store.recent('a.example.test'))?.recordId, 'one');
      assert.equal(h.reads(), 0);
      await h.clock.advance(1);
      assert.equal((await h.store.recent('a.example.test'))?.recordId, 'two');
      assert.equal(h.reads(), 1);
      // get() always reads the store, and refreshes the copy.
      await h.other.delete('a.example.test');
      assert.equal(await h.store.get('a.example.test'), undefined);
      assert.equal(h.reads(), 2);
      assert.equal(h.store.size, 0, 'a record gone from the store is dropped from memory');
    } finally {
      await h.close();
    }
  });

  test('writes through it show at once: put, delete, and the lastUse of touch', async () => {
    const h = await twoHandles();
    try {
      await h.store.put(makeRecord('b.example.test', { recordId: 'one' }));
      assert.equal((await h.warm('b.example.test'))?.recordId, 'one');
      assert.equal(h.store.size, 1);
      await h.store.put(makeRecord('b.example.test', { recordId: 'two', lastUpdate: new Date(T0 + 5) }));
      assert.equal((await h.warm('b.example.test'))?.recordId, 'two');
      // A write the store refuses (an older record) leaves the newer one visible.
      assert.equal(await h.store.put(makeRecord('b.example.test', { recordId: 'old' })), false);
      assert.equal((await h.warm('b.example.test'))?.recordId, 'two');
      assert.equal(h.store.size, 1);
      const reads = h.reads();
      await h.store.touch([{ domain: 'b.example.test', lastUse: new Date(T0 + 60_000) }]);
      const touched = await h.store.recent('b.example.test');
      assert.equal(touched?.lastUse.getTime(), T0 + 60_000);
      assert.equal(h.reads(), reads, 'touch updates the copy without a read');
      assert.equal(await h.store.delete('b.example.test'), true);
      assert.equal(await h.store.recent('b.example.test'), undefined);
      assert.equal(h.store.size, 0);
    } finally {
      await h.close();
    }
  });

  test('no copy when off (0 entries or 0 seconds); entries bound the copies, oldest first', async () => {
    for (const [entries, seconds] of [
      [0, 5],
      [100, 0],
    ] as const) {
      const h = await twoHandles(entries, seconds);
      try {
        await h.other.put(makeRecord('c.example.test'));
        for (let i = 0; i < 3; i++) await h.store.recent('c.example.test');
        assert.equal(h.reads(), 3, `entries ${entries}, seconds ${seconds}`);
        assert.equal(h.store.size, 0);
      } finally {
        await h.close();
      }
    }
    const h = await twoHandles(3);
    try {
      for (let i = 0; i < 5; i++) await h.other.put(makeRecord(`d${i}.example.test`));
      for (let i = 0; i < 5; i++) await h.warm(`d${i}.example.test`);
      assert.equal(h.store.size, 3);
      const reads = h.reads();
      await h.store.recent('d4.example.test');
      assert.equal(h.reads(), reads, 'the newest copy is kept');
      await h.store.recent('d0.example.test');
      assert.equal(h.reads(), reads + 1, 'the oldest copy was dropped');
    } finally {
      await h.close();
    }
  });

  test('an estimate of bytes bounds the copies: big policies push out old ones, a huge one is not kept', async () => {
    const clock = new ManualClock(T0);
    const inner = await openSqliteStore({ path: ':memory:' });
    const store = new MemoryCachedStore(inner, { entries: 1000, seconds: 5, bytes: 64 * 1024, now: () => clock.now() });
    try {
      const mx = Array.from({ length: 40 }, (_, i) => `mx: mx${i}.example.test\n`).join('');
      const text = `version: STSv1\nmode: enforce\n${mx}max_age: 86400\n`;
      for (let i = 0; i < 50; i++) await store.put(makeRecord(`e${i}.example.test`, { text }));
      for (let i = 0; i < 50; i++) {
        await store.recent(`e${i}.example.test`);
        await store.recent(`e${i}.example.test`);
      }
      assert.ok(store.size > 0 && store.size < 50, `kept ${store.size} of 50`);
      const huge = `version: STSv1\nmode: enforce\n${'mx: x.example.test\n'.repeat(3000)}max_age: 86400\n`;
      await store.put(makeRecord('huge.example.test', { text: huge }));
      const before = store.size;
      await store.recent('huge.example.test');
      assert.equal((await store.recent('huge.example.test'))?.domain, 'huge.example.test');
      assert.equal(store.size, before, 'a record bigger than the bound is answered, not kept');
    } finally {
      await store.close();
    }
  });

  test('a read that overlaps a write keeps no copy (it may hold the older record)', async () => {
    const clock = new ManualClock(T0);
    const inner = await openSqliteStore({ path: ':memory:' });
    await inner.put(makeRecord('f.example.test', { recordId: 'old' }));
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    let calls = 0;
    const slow: PolicyStore = Object.assign(Object.create(inner) as PolicyStore, {
      get: async (d: string): Promise<PolicyRecord | undefined> => {
        const r = await inner.get(d);
        // The second read (the one that would keep a copy) is held until the write is done.
        if (++calls === 2) await gate;
        return r;
      },
    });
    const store = cached(slow, clock);
    try {
      await store.recent('f.example.test');
      const reading = store.recent('f.example.test');
      await store.put(makeRecord('f.example.test', { recordId: 'new', lastUpdate: new Date(T0 + 1) }));
      release();
      assert.equal((await reading)?.recordId, 'old');
      assert.equal(store.size, 0, 'the overlapping read kept nothing');
      assert.equal((await store.recent('f.example.test'))?.recordId, 'new');
    } finally {
      await store.close();
    }
  });

  test('a failing store read keeps nothing and reports the store error', async () => {
    const clock = new ManualClock(T0);
    const inner = await openSqliteStore({ path: ':memory:' });
    const store = cached(inner, clock);
    await inner.close();
    await rejectsWith(store.recent('g.example.test'), 'ERR_MTASTSDB_CLOSED');
    assert.equal(store.size, 0);
  });

  test('rejects a negative or non-numeric size or time', async () => {
    const inner = await openSqliteStore({ path: ':memory:' });
    try {
      for (const bad of [
        { entries: -1, seconds: 5 },
        { entries: 10, seconds: -1 },
        { entries: Number.NaN, seconds: 5 },
      ]) {
        assert.throws(
          () => new MemoryCachedStore(inner, { ...bad, now: () => T0 }),
          (err: unknown) => (err as { code?: string }).code === 'ERR_MTASTS_USAGE',
        );
      }
    } finally {
      await inner.close();
    }
  });
});
