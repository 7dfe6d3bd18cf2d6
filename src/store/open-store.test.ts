import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { TestContext } from 'node:test';
import { requireOrSkip } from '../../test/helpers/ci.js';
import { postgresReachable, postgresTestUrl, withSchema } from '../../test/helpers/postgres.js';
import { makeRecord, rejectsWith } from '../../test/helpers/store-contract.js';
import { isMtaStsError } from '../errors.js';
import { openStore, parseStoreSpec, resolveStoreTarget } from './open-store.js';
import type { OpenStoreSpec, StoreTarget } from './open-store.js';

const resolveCases: Array<[string, string | OpenStoreSpec, Record<string, string>, StoreTarget]> = [
  ['postgres URL', 'postgres://u@h:5432/db', {}, { kind: 'postgres', url: 'postgres://u@h:5432/db' }],
  ['postgresql URL', 'postgresql://h/db?schema=s', {}, { kind: 'postgres', url: 'postgresql://h/db?schema=s' }],
  ['sqlite:/abs', 'sqlite:/var/lib/x.db', {}, { kind: 'sqlite', path: '/var/lib/x.db' }],
  ['sqlite:///abs', 'sqlite:///var/lib/x.db', {}, { kind: 'sqlite', path: '/var/lib/x.db' }],
  ['sqlite:relative', 'sqlite:data/x.db', {}, { kind: 'sqlite', path: 'data/x.db' }],
  ['sqlite::memory:', 'sqlite::memory:', {}, { kind: 'sqlite', path: ':memory:' }],
  ['plain path', '/tmp/x.db', {}, { kind: 'sqlite', path: '/tmp/x.db' }],
  [':memory:', ':memory:', {}, { kind: 'sqlite', path: ':memory:' }],
  ['object url', { url: 'postgres://h/db' }, {}, { kind: 'postgres', url: 'postgres://h/db' }],
  ['object store', { store: 'sqlite:/a.db', path: '/b.db' }, {}, { kind: 'sqlite', path: '/a.db' }],
  [
    'object path',
    { path: '/b.db', dataDir: '/d' },
    { MTASTSDB_STORE: 'postgres://h/db' },
    { kind: 'sqlite', path: '/b.db' },
  ],
  [
    'env store when nothing given',
    {},
    { MTASTSDB_STORE: 'postgres://h/db' },
    { kind: 'postgres', url: 'postgres://h/db' },
  ],
  ['env store over dataDir', { dataDir: '/d' }, { MTASTSDB_STORE: '/e.db' }, { kind: 'sqlite', path: '/e.db' }],
  ['dataDir argument', { dataDir: '/d' }, { MTASTSDB_DATA_DIR: '/env' }, { kind: 'sqlite', path: '/d/mtasts.db' }],
  ['env data dir', {}, { MTASTSDB_DATA_DIR: '/env' }, { kind: 'sqlite', path: '/env/mtasts.db' }],
  ['default ./data', {}, {}, { kind: 'sqlite', path: 'data/mtasts.db' }],
  ['empty env ignored', {}, { MTASTSDB_STORE: '', MTASTSDB_DATA_DIR: '' }, { kind: 'sqlite', path: 'data/mtasts.db' }],
];

for (const [why, spec, env, expected] of resolveCases) {
  test(`resolveStoreTarget: ${why}`, () => {
    assert.deepEqual(resolveStoreTarget(spec, env), expected);
  });
}

const badSpecs: Array<[string, string]> = [
  ['empty', ''],
  ['blank', '   '],
  ['postgres without host', 'postgres:///db'],
  ['postgres without database', 'postgres://host'],
  ['postgres garbage', 'postgres://[::1'],
  ['sqlite without path', 'sqlite:'],
  ['unknown scheme', 'mysql://root@localhost/db'],
  ['redis', 'redis://127.0.0.1:6379'],
];
for (const [why, spec] of badSpecs) {
  test(`parseStoreSpec rejects ${why} with ERR_MTASTS_CONFIG`, () => {
    assert.throws(
      () => parseStoreSpec(spec),
      (err: unknown) => isMtaStsError(err, 'ERR_MTASTS_CONFIG') && err.details.key === 'store',
    );
  });
}

test('a bad MTASTSDB_STORE names the variable', () => {
  assert.throws(
    () => resolveStoreTarget({}, { MTASTSDB_STORE: 'ftp://x' }),
    (err: unknown) => isMtaStsError(err, 'ERR_MTASTS_CONFIG') && err.details.key === 'MTASTSDB_STORE',
  );
});

test('an unknown scheme does not leak credentials into the message', () => {
  assert.throws(
    () => parseStoreSpec('mysql://root:hunter2@localhost/db'),
    (err: unknown) => isMtaStsError(err) && !err.message.includes('hunter2'),
  );
});

test('openStore opens SQLite at <dataDir>/mtasts.db and :memory:', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-open-'));
  try {
    const store = await openStore({ dataDir: join(dir, 'd') }, {});
    assert.equal(store.kind, 'sqlite');
    await store.put(makeRecord('x.test'));
    await store.close();
    assert.ok(existsSync(join(dir, 'd', 'mtasts.db')));
    const mem = await openStore(':memory:');
    assert.equal(await mem.count(), 0);
    await mem.close();
    const viaEnv = await openStore({}, { MTASTSDB_STORE: `sqlite:${join(dir, 'env.db')}` });
    await viaEnv.close();
    assert.ok(existsSync(join(dir, 'env.db')));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('openStore rejects a bad URL with ERR_MTASTS_CONFIG before touching anything', async () => {
  await rejectsWith(openStore('postgres://'), 'ERR_MTASTS_CONFIG');
});

test('openStore opens PostgreSQL from a URL (schema from ?schema=)', async (t: TestContext) => {
  const reach = await postgresReachable();
  if (!requireOrSkip(t, reach.ok, reach.why)) return;
  await withSchema(async (schema) => {
    const store = await openStore(`${postgresTestUrl}?schema=${schema}`);
    try {
      assert.equal(store.kind, 'postgres');
      assert.equal(await store.put(makeRecord('pg.test')), true);
      assert.equal((await store.get('pg.test'))?.domain, 'pg.test');
    } finally {
      await store.close();
    }
  });
});
