/**
 * The SQLite store when the database changes under it: a table dropped by hand (closed and
 * open), the file deleted, the file replaced by another SQLite file (rename over), and the file
 * deleted and recreated by another process that holds it open, whose WAL must survive. Real files,
 * real child processes; the store's clock is a manual one so the rate limits are driven exactly.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { existsSync, renameSync, statSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import Database from 'better-sqlite3';
import { captureLogger } from '../../test/helpers/cache-fixture.js';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { makeRecord, rejectsWith } from '../../test/helpers/store-contract.js';
import { spawnStoreWriter } from '../../test/helpers/store-writer.js';
import { SQLITE_CURRENT_OBJECTS, SQLITE_VERSION_TABLE_SQL } from './sqlite-schema.js';
import { openSqliteStore } from './sqlite-store.js';
import { FILE_CHECK_INTERVAL_MS, STORE_PROBLEM_REPORT_MS, TABLE_REPAIR_INTERVAL_MS } from './store-drift.js';
import { scratchDirs } from '../../test/helpers/scratch-dirs.js';

const tempDir = scratchDirs('mtastsdb-drift-');

/** The domains in the file at `path`, read by a connection of its own. */
function domainsIn(path: string): string[] {
  const db = new Database(path, { readonly: true, fileMustExist: true });
  try {
    return (db.prepare('SELECT domain FROM policies ORDER BY domain').pluck().all() as string[]).sort();
  } finally {
    db.close();
  }
}

function dropPolicies(path: string): void {
  const db = new Database(path);
  try {
    db.exec('DROP TABLE policies');
  } finally {
    db.close();
  }
}

/** What the schema looks like, table by table and index by index, as SQLite reports it. */
function shape(db: Database.Database): unknown {
  const tables = db.prepare("SELECT name, strict, wr FROM pragma_table_list WHERE name = 'policies'").all();
  const columns = db.prepare("SELECT * FROM pragma_table_xinfo('policies')").all();
  const indexes = (
    db.prepare('SELECT name, "unique", origin, partial FROM pragma_index_list(\'policies\')').all() as Array<{
      name: string;
    }>
  )
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((ix) => ({ ...ix, cols: db.prepare('SELECT * FROM pragma_index_xinfo(?)').all(ix.name) }));
  const checks = (db.prepare("SELECT sql FROM sqlite_schema WHERE name = 'policies'").pluck().get() as string)
    .match(/CHECK \([^)]*\)\)?/g)
    ?.sort();
  return { tables, columns, indexes, checks };
}

describe('sqlite store: drift', () => {
  test('the current definitions build exactly what the migrations build', async () => {
    const dir = await tempDir();
    const migrated = join(dir, 'migrated.db');
    await (await openSqliteStore({ path: migrated })).close();
    const built = new Database(join(dir, 'built.db'));
    const a = new Database(migrated, { readonly: true });
    try {
      built.exec(SQLITE_VERSION_TABLE_SQL);
      for (const o of SQLITE_CURRENT_OBJECTS) built.exec(o.sql);
      assert.deepEqual(shape(built), shape(a));
      // And a second run changes nothing (idempotent).
      for (const o of SQLITE_CURRENT_OBJECTS) built.exec(o.sql);
      assert.deepEqual(shape(built), shape(a));
    } finally {
      built.close();
      a.close();
    }
  });

  test('policies dropped in a closed file: recreated at open, a warning names it, get and put work', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const first = await openSqliteStore({ path });
    await first.put(makeRecord('gone.test'));
    await first.close();
    dropPolicies(path);
    const logger = captureLogger();
    const store = await openSqliteStore({ path, logger });
    try {
      const warn = logger.entries.find((e) => e.level === 'warn' && e.msg.includes('recreated'));
      assert.ok(warn !== undefined, 'a warning at open');
      assert.match(warn.msg, /table policies \(empty\)/);
      assert.match(warn.msg, new RegExp(path.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')));
      assert.match(store.problem() ?? '', /recreated the missing table policies/);
      assert.equal(await store.get('gone.test'), undefined);
      assert.equal(await store.put(makeRecord('back.test')), true);
      assert.equal((await store.get('back.test'))?.domain, 'back.test');
    } finally {
      await store.close();
    }
    assert.deepEqual(domainsIn(path), ['back.test']);
    // Recreated as the migrations build it.
    const fresh = join(dir, 'fresh.db');
    await (await openSqliteStore({ path: fresh })).close();
    const [x, y] = [new Database(path, { readonly: true }), new Database(fresh, { readonly: true })];
    try {
      assert.deepEqual(shape(x), shape(y));
    } finally {
      x.close();
      y.close();
    }
  });

  test('a read-only open of a file without its table refuses with a clear error', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    await (await openSqliteStore({ path })).close();
    dropPolicies(path);
    await assert.rejects(openSqliteStore({ path, readonly: true }), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'ERR_MTASTSDB_STORE_READONLY');
      assert.match(
        err.message,
        /: policies, policies_last_use, policies_last_update missing, though the schema version says 2/,
      );
      return true;
    });
  });

  test('policies dropped while open: the next call recreates it; again within 10 s fails, later works', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const clock = new ManualClock(Date.now());
    const logger = captureLogger();
    const store = await openSqliteStore({ path, logger, clock });
    try {
      await store.put(makeRecord('a.test'));
      assert.equal(store.problem(), null);
      dropPolicies(path);
      assert.equal(await store.get('a.test'), undefined, 'a read after the drop answers from the new table');
      assert.match(store.problem() ?? '', /recreated the missing table policies \(empty\)/);
      assert.equal(await store.put(makeRecord('b.test')), true);
      assert.deepEqual(domainsIn(path), ['b.test']);

      // Dropped again at once: one repair per TABLE_REPAIR_INTERVAL_MS, so this call fails…
      dropPolicies(path);
      await rejectsWith(store.put(makeRecord('c.test')), 'ERR_MTASTSDB_STORE');
      // …and once the interval has passed the next one repairs and works.
      await clock.advance(TABLE_REPAIR_INTERVAL_MS);
      assert.equal(await store.put(makeRecord('c.test')), true);
      assert.deepEqual(domainsIn(path), ['c.test']);
      assert.equal(logger.entries.filter((e) => e.level === 'warn' && e.msg.includes('recreated')).length, 2);
      // The report lasts STORE_PROBLEM_REPORT_MS.
      await clock.advance(STORE_PROBLEM_REPORT_MS);
      assert.equal(store.problem(), null);
    } finally {
      await store.close();
    }
  });

  test('file deleted under an open store: the next write notices, reopens a new file, and lands there', async () => {
    const dir = await tempDir();
    const path = join(dir, 'data', 'mtasts.db');
    const clock = new ManualClock(Date.now());
    const logger = captureLogger();
    const store = await openSqliteStore({ path, logger, clock });
    try {
      await store.put(makeRecord('old.test'));
      for (const s of ['', '-wal', '-shm']) if (existsSync(path + s)) unlinkSync(path + s);
      assert.equal(await store.put(makeRecord('new.test')), true);
      const err = logger.entries.find((e) => e.level === 'error');
      assert.ok(err !== undefined, 'an error is logged');
      assert.ok(err.msg.includes(path) && err.msg.includes('deleted'), err.msg);
      assert.match(store.problem() ?? '', /the database file was deleted under the running store and reopened at /);
      // The write after detection is in the new file, read by a connection of its own.
      assert.equal(statSync(path).mode & 0o777, 0o660, 'created as at open');
      assert.deepEqual(domainsIn(path), ['new.test']);
      assert.equal((await store.get('new.test'))?.domain, 'new.test');
      assert.equal(await store.get('old.test'), undefined);
    } finally {
      await store.close();
    }
    // Closed cleanly: the new file has everything, with no WAL left behind.
    assert.deepEqual(domainsIn(path), ['new.test']);
    assert.equal(existsSync(`${path}-wal`), false);
  });

  test('file replaced by another SQLite file (rename over): a read notices within a second, then uses it', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const other = join(dir, 'other.db');
    const clock = new ManualClock(Date.now());
    const logger = captureLogger();
    const store = await openSqliteStore({ path, logger, clock });
    try {
      await store.put(makeRecord('mine.test'));
      const o = await openSqliteStore({ path: other });
      await o.put(makeRecord('theirs.test'));
      await o.close();
      renameSync(other, path);
      // Reads compare at most once per FILE_CHECK_INTERVAL_MS (none has passed on the manual clock).
      assert.equal((await store.get('mine.test'))?.domain, 'mine.test');
      await clock.advance(FILE_CHECK_INTERVAL_MS);
      assert.equal((await store.get('theirs.test'))?.domain, 'theirs.test', 'reads the file now at the path');
      assert.equal(await store.get('mine.test'), undefined);
      assert.ok(logger.entries.some((e) => e.level === 'error' && e.msg.includes('replaced')));
      assert.match(store.problem() ?? '', /replaced/);
      assert.equal(await store.put(makeRecord('after.test')), true);
      assert.deepEqual(domainsIn(path), ['after.test', 'theirs.test']);
    } finally {
      await store.close();
    }
  });

  test('file recreated by another process that holds it open: its WAL survives our reopen', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const clock = new ManualClock(Date.now());
    const store = await openSqliteStore({ path, clock, logger: captureLogger() });
    await store.put(makeRecord('old.test'));
    for (const s of ['', '-wal', '-shm']) unlinkSync(path + s);
    // Another process creates the file anew and keeps it open.
    const child = spawnStoreWriter(['hold', path, 'other', '20']);
    let out = '';
    let err = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    const exited = once(child, 'exit');
    try {
      const deadline = Date.now() + 20_000;
      while (!out.includes('held\n')) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`the holder did not start: ${err}`);
        await new Promise((r) => setTimeout(r, 20));
      }
      // The child's 20 records sit in its WAL (not yet checkpointed into the main file).
      assert.ok(existsSync(`${path}-wal`));
      assert.equal(await store.put(makeRecord('mine.test')), true);
      // Our store closed the old connection (whose close deletes `path-wal` by name) and opened the
      // child's file as it is: it sees the child's records, so the child's WAL is still there.
      assert.equal(await store.count(), 21);
      child.stdin.write('go\n');
      await exited;
      assert.match(out, /count 21\n/, 'the child sees our write in its file');
    } finally {
      if (child.exitCode === null) child.kill();
      await store.close();
    }
    assert.equal(domainsIn(path).length, 21);
  });

  test('a store closed after its file was deleted leaves the new file alone', async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const store = await openSqliteStore({ path, logger: captureLogger() });
    await store.put(makeRecord('a.test'));
    for (const s of ['', '-wal', '-shm']) unlinkSync(path + s);
    const other = await openSqliteStore({ path });
    await other.put(makeRecord('b.test'));
    // `store` has not noticed yet; closing it must not switch the new file's journal or drop its WAL.
    await store.close();
    assert.equal((await other.get('b.test'))?.domain, 'b.test');
    await other.close();
    assert.deepEqual(domainsIn(path), ['b.test']);
  });
});
