/**
 * The SQLite store: the shared contract on a real file and on `:memory:`, then what only SQLite
 * has: file modes, migrations, damaged files, and the storage faults (read-only file and
 * file system, full disk, a lock held by another process, a second process reading while one
 * writes). Faults are real: an immutable file (`chattr +i`, which stops root too), tmpfs mounts
 * remounted read-only or filled up, and child processes holding SQLite locks.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { systemClock } from '../clock.js';
import { isMtaStsError } from '../errors.js';
import { requireOrSkip } from '../../test/helpers/ci.js';
import {
  T0,
  assertSameRecord,
  collect,
  makeRecord,
  rejectsWith,
  storeContract,
} from '../../test/helpers/store-contract.js';
import { spawnStoreWriter, writerRecord } from '../../test/helpers/store-writer.js';
import type { PolicyRecord } from './policy-store.js';
import { SQLITE_MIGRATIONS, SQLITE_SCHEMA_VERSION } from './sqlite-schema.js';
import { migrateSqlite, openSqliteStore } from './sqlite-store.js';
import type { SqliteStore } from './sqlite-store.js';
import { scratchDirs } from '../../test/helpers/scratch-dirs.js';

const tempDir = scratchDirs('mtastsdb-sqlite-');

storeContract('sqlite file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-sqlite-'));
  const path = join(dir, 'data', 'mtasts.db');
  const store = await openSqliteStore({ path });
  return {
    store,
    cleanup: () => rm(dir, { recursive: true, force: true }),
    another: () => openSqliteStore({ path }),
  };
});

storeContract(':memory:', async () => ({
  store: await openSqliteStore({ path: ':memory:' }),
  cleanup: async () => {},
}));

function mode(s: { mode: number }): number {
  return s.mode & 0o777;
}

function records(n: number, prefix = 'r'): PolicyRecord[] {
  return Array.from({ length: n }, (_, i) =>
    makeRecord(`${prefix}${i}.example.test`, { lastUse: new Date(T0 + i), recordId: `id${i}` }),
  );
}

function sh(cmd: string, args: readonly string[]): void {
  execFileSync(cmd, args, { stdio: 'pipe' });
}

/** Whether this machine lets us mount tmpfs (root with CAP_SYS_ADMIN). */
async function canMount(): Promise<boolean> {
  const dir = await tempDir();
  try {
    sh('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', dir]);
    sh('umount', [dir]);
    return true;
  } catch {
    return false;
  }
}

/** Whether `chattr +i` works here (root, a file system with the immutable flag). */
async function canChattr(): Promise<boolean> {
  const f = join(await tempDir(), 'probe');
  await writeFile(f, 'x');
  try {
    sh('chattr', ['+i', f]);
    sh('chattr', ['-i', f]);
    return true;
  } catch {
    return false;
  }
}

/** A tmpfs of `size` mounted for one test; always unmounted afterwards. */
async function withTmpfs(size: string, fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir();
  sh('mount', ['-t', 'tmpfs', '-o', `size=${size},mode=0755`, 'tmpfs', dir]);
  try {
    await fn(dir);
  } finally {
    for (let i = 0; i < 3; i++) {
      try {
        sh('umount', [dir]);
        break;
      } catch {
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }
}

let mountOk = false;
let chattrOk = false;
before(async () => {
  mountOk = await canMount();
  chattrOk = await canChattr();
});

describe('sqlite store: files and modes', () => {
  test('creates missing directories 0770 and the file 0660 (WAL and shm too), even under umask 077', async () => {
    const dir = await tempDir();
    const before = mode(await stat(dir));
    const old = process.umask(0o077);
    let store: SqliteStore;
    try {
      store = await openSqliteStore({ path: join(dir, 'a', 'b', 'mtasts.db') });
    } finally {
      process.umask(old);
    }
    try {
      await store.put(makeRecord('example.test'));
      assert.equal(mode(await stat(join(dir, 'a'))), 0o770);
      assert.equal(mode(await stat(join(dir, 'a', 'b'))), 0o770);
      assert.equal(mode(await stat(join(dir, 'a', 'b', 'mtasts.db'))), 0o660);
      // SQLite gives its side files the database file's mode.
      assert.equal(mode(await stat(join(dir, 'a', 'b', 'mtasts.db-wal'))), 0o660);
      assert.equal(mode(await stat(join(dir, 'a', 'b', 'mtasts.db-shm'))), 0o660);
      assert.equal(mode(await stat(dir)), before, 'an existing directory keeps its mode');
      assert.equal(store.path, join(dir, 'a', 'b', 'mtasts.db'));
    } finally {
      await store.close();
    }
  });

  test('an existing file keeps its mode', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    await writeFile(path, '', { mode: 0o600 });
    const store = await openSqliteStore({ path });
    await store.close();
    assert.equal(mode(await stat(path)), 0o600);
  });

  test('WAL while open; a clean close leaves one rollback-journal file (readable from read-only media)', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path });
    await store.put(makeRecord('example.test'));
    const header = await readFile(path);
    assert.equal(header[18], 2, 'WAL mode in the header while open');
    await store.close();
    assert.equal(existsSync(`${path}-wal`), false);
    assert.equal(existsSync(`${path}-shm`), false);
    assert.equal((await readFile(path))[18], 1, 'rollback journal after close');
    const again = await openSqliteStore({ path });
    assert.equal((await readFile(path))[18], 2, 'WAL again when reopened');
    assert.equal((await again.get('example.test'))?.domain, 'example.test');
    await again.close();
  });

  test('closing one of two handles is immediate and leaves the other working', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const a = await openSqliteStore({ path });
    const b = await openSqliteStore({ path });
    await a.put(makeRecord('one.test'));
    const t = process.hrtime.bigint();
    await a.close();
    assert.ok(process.hrtime.bigint() - t < 1_000_000_000n, 'close did not wait for the busy timeout');
    assert.equal(await b.put(makeRecord('two.test')), true);
    assert.equal(await b.count(), 2);
    await b.close();
  });

  test('bad options are ERR_MTASTS_USAGE', async () => {
    await rejectsWith(openSqliteStore({ path: '' }), 'ERR_MTASTS_USAGE');
    await rejectsWith(openSqliteStore({ path: ':memory:', busyTimeoutMs: -1 }), 'ERR_MTASTS_USAGE');
    await rejectsWith(openSqliteStore({ path: ':memory:', readonly: true }), 'ERR_MTASTS_USAGE');
    for (const cacheSizeKiB of [0, 63, 1.5, -4096, Number.NaN]) {
      await rejectsWith(openSqliteStore({ path: ':memory:', cacheSizeKiB }), 'ERR_MTASTS_USAGE');
    }
  });

  test('a small page cache still holds a store larger than it', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path, cacheSizeKiB: 64 });
    assert.equal(await store.putMany(records(2000)), 2000);
    assert.equal((await store.get('r1999.example.test'))?.recordId, 'id1999');
    assert.equal(await store.count(), 2000);
    await store.close();
  });

  test('putMany writes in one transaction with the newest-wins rule', async () => {
    const store = await openSqliteStore({ path: ':memory:' });
    assert.equal(await store.putMany(records(500)), 500);
    const stale = makeRecord('r1.example.test', { lastUpdate: new Date(T0 - 1), recordId: 'stale' });
    assert.equal(await store.putMany([stale, makeRecord('new.example.test')]), 1);
    assert.equal((await store.get('r1.example.test'))?.recordId, 'id1');
    assert.equal(await store.count(), 501);
    await store.close();
  });
});

describe('sqlite store: migrations', () => {
  function v1Database(path: string): void {
    const db = new Database(path);
    db.pragma('journal_mode = WAL');
    migrateSqlite(db, path, systemClock, SQLITE_MIGRATIONS.slice(0, 1));
    db.prepare(
      `INSERT INTO policies (domain, inserted, valid_end, last_update, last_use, backoff, record_id, mode, max_age, policy_text)
       VALUES (?, ?, ?, ?, ?, 0, 'v1id', 'enforce', 86400, ?)`,
    ).run(
      'old.example.test',
      T0,
      T0 + 86_400_000,
      T0,
      T0,
      'version: STSv1\nmode: enforce\nmx: mx.old.test\nmax_age: 86400\n',
    );
    db.close();
  }

  function versions(path: string): Array<{ version: number; applied: number }> {
    const db = new Database(path, { readonly: true });
    try {
      return db.prepare('SELECT version, applied FROM mtastsdb_schema ORDER BY version').all() as Array<{
        version: number;
        applied: number;
      }>;
    } finally {
      db.close();
    }
  }

  test('a v1 database is migrated forward on open, keeping its rows; reopening changes nothing', async () => {
    assert.ok(SQLITE_SCHEMA_VERSION >= 2);
    const path = join(await tempDir(), 'mtasts.db');
    v1Database(path);
    assert.deepEqual(
      versions(path).map((v) => v.version),
      [1],
    );
    const store = await openSqliteStore({ path });
    const old = await store.get('old.example.test');
    assert.equal(old?.recordId, 'v1id');
    assert.equal(old?.policy.mx[0]?.domain.ascii, 'mx.old.test');
    // v2 added the lease columns: claiming works on the migrated row.
    const claim = {
      owner: 'n1',
      now: new Date(T0 + 1),
      leaseUntil: new Date(T0 + 60_000),
      updatedBefore: new Date(T0 + 1),
    };
    assert.equal(await store.claimRefresh('old.example.test', claim), true);
    await store.close();
    const after1 = versions(path);
    assert.deepEqual(
      after1.map((v) => v.version),
      SQLITE_MIGRATIONS.map((m) => m.version),
    );
    const again = await openSqliteStore({ path });
    await again.close();
    assert.deepEqual(versions(path), after1, 'no migration ran twice');
  });

  test('a read-only open of an old database refuses with ERR_MTASTSDB_STORE_READONLY', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    v1Database(path);
    await rejectsWith(openSqliteStore({ path, readonly: true }), 'ERR_MTASTSDB_STORE_READONLY');
  });

  test('a database from a newer mtastsdb is refused with a clear error', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    (await openSqliteStore({ path })).close();
    const db = new Database(path);
    db.prepare("INSERT INTO mtastsdb_schema VALUES (99, 'future', 0)").run();
    db.close();
    await assert.rejects(openSqliteStore({ path }), (err: unknown) => {
      assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE'));
      assert.match(err.message, /newer/);
      assert.ok(err.message.includes(path));
      return true;
    });
  });
});

describe('sqlite store: damaged files', () => {
  async function filledFile(n: number): Promise<string> {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path });
    await store.putMany(records(n));
    await store.close();
    return path;
  }

  async function assertCorruptAtOpen(path: string, why: string): Promise<void> {
    await assert.rejects(openSqliteStore({ path }), (err: unknown) => {
      assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE_CORRUPT'), `${why}: ${String(err)}`);
      assert.ok(err.message.includes(path), `${why}: the message names the file: ${err.message}`);
      return true;
    });
  }

  const garbage: Array<[string, (path: string) => Promise<void>]> = [
    ['random bytes', (p) => writeFile(p, Buffer.from(Array.from({ length: 8192 }, (_, i) => (i * 7919 + 13) & 0xff)))],
    ['a text file', (p) => writeFile(p, 'this is not a database\n'.repeat(100))],
    ['a 50-byte stub', (p) => writeFile(p, 'SQLite format 3\0'.padEnd(50, 'x'))],
    [
      'the magic with an invalid page size',
      async (p) => {
        const h = Buffer.alloc(4096);
        h.write('SQLite format 3\0', 0, 'latin1');
        h.writeUInt16BE(1000, 16);
        await writeFile(p, h);
      },
    ],
  ];
  for (const [why, write] of garbage) {
    test(`garbage at open (${why}) is ERR_MTASTSDB_STORE_CORRUPT naming the file`, async () => {
      const path = join(await tempDir(), 'mtasts.db');
      await write(path);
      await assertCorruptAtOpen(path, why);
    });
  }

  test('a truncated file (half of it, or cut mid-page) is ERR_MTASTSDB_STORE_CORRUPT at open', async () => {
    const path = await filledFile(3000);
    const { size } = await stat(path);
    await truncate(path, Math.floor(size / 2 / 4096) * 4096);
    await assertCorruptAtOpen(path, 'half');
    await truncate(path, 4096 + 100);
    await assertCorruptAtOpen(path, 'mid-page');
  });

  test('pages overwritten with garbage: open or the first read fails ERR_MTASTSDB_STORE_CORRUPT', async () => {
    const path = await filledFile(3000);
    const { size } = await stat(path);
    const fd = openSync(path, 'r+');
    const junk = Buffer.alloc(4096, 0xa5);
    for (let off = 4096; off < size; off += 4096) writeSync(fd, junk, 0, junk.length, off);
    closeSync(fd);
    let err: unknown;
    try {
      const store = await openSqliteStore({ path });
      try {
        await store.get('r1500.example.test');
        await collect(store.list());
      } finally {
        await store.close();
      }
    } catch (e) {
      err = e;
    }
    assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE_CORRUPT'), String(err));
    assert.ok(err.message.includes(path));
  });
});

describe('sqlite store: read-only', () => {
  test('readonly: true reads and refuses every write with ERR_MTASTSDB_STORE_READONLY', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const rw = await openSqliteStore({ path });
    await rw.putMany(records(10));
    await rw.close();
    const ro = await openSqliteStore({ path, readonly: true });
    try {
      assert.equal(await ro.count(), 10);
      assert.equal((await ro.get('r3.example.test'))?.recordId, 'id3');
      assert.equal((await collect(ro.list())).length, 10);
      const now = new Date(T0 + 999_999);
      await rejectsWith(ro.put(makeRecord('new.test')), 'ERR_MTASTSDB_STORE_READONLY');
      await rejectsWith(ro.touch([{ domain: 'r1.example.test', lastUse: now }]), 'ERR_MTASTSDB_STORE_READONLY');
      await rejectsWith(ro.delete('r1.example.test'), 'ERR_MTASTSDB_STORE_READONLY');
      await rejectsWith(
        ro.claimRefresh('r1.example.test', { owner: 'x', now, leaseUntil: now, updatedBefore: now }),
        'ERR_MTASTSDB_STORE_READONLY',
      );
      assert.equal(await ro.count(), 10);
    } finally {
      await ro.close();
    }
    await rejectsWith(openSqliteStore({ path: join(path, '..', 'missing.db'), readonly: true }), 'ERR_MTASTSDB_STORE');
  });

  test('an immutable file (chattr +i, which stops root): reads work, writes fail, writes resume after chattr -i', async (t: TestContext) => {
    if (!requireOrSkip(t, chattrOk, 'chattr +i is not available here (needs root and a file system with the flag)'))
      return;
    const path = join(await tempDir(), 'mtasts.db');
    const first = await openSqliteStore({ path });
    await first.putMany(records(20));
    await first.close();
    sh('chattr', ['+i', path]);
    let store: SqliteStore | undefined;
    try {
      store = await openSqliteStore({ path });
      assert.equal(await store.count(), 20);
      assertSameRecord(await store.get('r7.example.test'), records(20)[7]!);
      await rejectsWith(store.put(makeRecord('new.test')), 'ERR_MTASTSDB_STORE_READONLY');
      await rejectsWith(store.delete('r1.example.test'), 'ERR_MTASTSDB_STORE_READONLY');
      assert.equal(await store.count(), 20, 'reads keep working after failed writes');
    } finally {
      sh('chattr', ['-i', path]);
    }
    // The fault cleared: the next write reopens the connection read-write.
    assert.equal(await store.put(makeRecord('new.test')), true);
    assert.equal(await store.count(), 21);
    await store.close();
  });

  test('a read-only file system: reads work, writes fail, writes resume after remount rw', async (t: TestContext) => {
    if (!requireOrSkip(t, mountOk, 'cannot mount tmpfs here (needs root with CAP_SYS_ADMIN)')) return;
    await withTmpfs('4m', async (dir) => {
      const path = join(dir, 'mtasts.db');
      const first = await openSqliteStore({ path });
      await first.putMany(records(50));
      await first.close();
      sh('mount', ['-o', 'remount,ro', dir]);
      const store = await openSqliteStore({ path });
      try {
        assert.equal(await store.count(), 50);
        assertSameRecord(await store.get('r42.example.test'), records(50)[42]!);
        await rejectsWith(store.put(makeRecord('new.test')), 'ERR_MTASTSDB_STORE_READONLY');
        await rejectsWith(
          store.touch([{ domain: 'r1.example.test', lastUse: new Date(T0 + 1e9) }]),
          'ERR_MTASTSDB_STORE_READONLY',
        );
        assert.equal((await collect(store.list({ pageSize: 7 }))).length, 50);
        sh('mount', ['-o', 'remount,rw', dir]);
        assert.equal(await store.put(makeRecord('new.test')), true);
        assert.equal(await store.count(), 51);
      } finally {
        await store.close();
      }
    });
  });

  test("a read-only view of a live WAL database: a reader there sees the writer's commits", async (t: TestContext) => {
    if (!requireOrSkip(t, mountOk, 'cannot mount here (needs root with CAP_SYS_ADMIN)')) return;
    await withTmpfs('4m', async (dir) => {
      const rw = join(dir, 'rw');
      await mkdir(rw);
      const view = await tempDir();
      const writer = await openSqliteStore({ path: join(rw, 'mtasts.db') });
      await writer.putMany(records(10));
      sh('mount', ['--bind', rw, view]);
      try {
        sh('mount', ['-o', 'remount,bind,ro', view]);
        const reader = await openSqliteStore({ path: join(view, 'mtasts.db') });
        try {
          assert.equal(await reader.count(), 10);
          await writer.put(makeRecord('later.test'));
          assert.equal((await reader.get('later.test'))?.domain, 'later.test');
          await rejectsWith(reader.put(makeRecord('x.test')), 'ERR_MTASTSDB_STORE_READONLY');
        } finally {
          await reader.close();
        }
      } finally {
        await writer.close();
        sh('umount', [view]);
      }
    });
  });
});

describe('sqlite store: full disk', () => {
  test('writes fail with ERR_MTASTSDB_STORE, reads keep working, writes resume after space is freed', async (t: TestContext) => {
    if (!requireOrSkip(t, mountOk, 'cannot mount tmpfs here (needs root with CAP_SYS_ADMIN)')) return;
    await withTmpfs('2m', async (dir) => {
      const path = join(dir, 'mtasts.db');
      const store = await openSqliteStore({ path });
      try {
        const initial = records(50);
        await store.putMany(initial);
        // Fill the file system.
        const filler = join(dir, 'filler');
        const fd = openSync(filler, 'w');
        const block = Buffer.alloc(4096, 1);
        try {
          for (;;) writeSync(fd, block);
        } catch (err) {
          assert.equal((err as NodeJS.ErrnoException).code, 'ENOSPC');
        } finally {
          closeSync(fd);
        }
        const bigText = `version: STSv1\nmode: enforce\n${Array.from({ length: 60 }, (_, i) => `mx: mx${i}.full.example.test\n`).join('')}max_age: 86400\n`;
        let failure: unknown;
        let written = 0;
        for (let i = 0; i < 400 && failure === undefined; i++) {
          try {
            await store.put(makeRecord(`full${i}.test`, { text: bigText }));
            written++;
          } catch (err) {
            failure = err;
          }
        }
        assert.ok(
          isMtaStsError(failure, 'ERR_MTASTSDB_STORE'),
          `a write failed with ERR_MTASTSDB_STORE: ${String(failure)}`,
        );
        const cause = (failure as { cause?: { code?: string } }).cause?.code;
        console.log(
          `# full disk: write ${written + 1} failed with ${failure.code} (${String(cause)}); reads continued`,
        );
        // Reads carry on while the disk is full.
        assert.equal(await store.count(), 50 + written);
        assertSameRecord(await store.get('r10.example.test'), initial[10]!);
        assert.equal((await collect(store.list({ pageSize: 16 }))).length, 50 + written);
        await unlink(filler);
        assert.equal(await store.put(makeRecord('after.test', { text: bigText })), true);
        assert.equal(await store.count(), 51 + written);
        for (const r of initial) assertSameRecord(await store.get(r.domain), r);
      } finally {
        await store.close();
      }
      const db = new Database(path, { readonly: true });
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      db.close();
    });
  });
});

/** Starts a child holding a SQLite lock; resolves once it is held. */
async function lockHolder(path: string, how: 'immediate' | 'exclusive') {
  const child = spawnStoreWriter(['lock', path, how]);
  let out = '';
  let err = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
  const exited = once(child, 'exit');
  await new Promise<void>((resolveLocked, reject) => {
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      out += d;
      if (out.includes('locked\n')) resolveLocked();
    });
    void exited.then(() => reject(new Error(`lock holder exited: ${err}`)));
  });
  return {
    async release(): Promise<void> {
      child.stdin.write('release\n');
      await exited;
      assert.match(out, /released/);
    },
  };
}

describe('sqlite store: locks held by another process', () => {
  test('a write lock elsewhere: writes fail ERR_MTASTSDB_STORE_BUSY after the busy timeout, reads continue, writes resume', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path, busyTimeoutMs: 300 });
    try {
      await store.putMany(records(5));
      const holder = await lockHolder(path, 'immediate');
      try {
        const t = process.hrtime.bigint();
        await rejectsWith(store.put(makeRecord('blocked.test')), 'ERR_MTASTSDB_STORE_BUSY');
        const waited = Number(process.hrtime.bigint() - t) / 1e6;
        assert.ok(waited >= 250, `waited the busy timeout (${waited} ms)`);
        // WAL: readers do not wait for a writer.
        assert.equal(await store.count(), 5);
        assert.equal((await store.get('r2.example.test'))?.recordId, 'id2');
      } finally {
        await holder.release();
      }
      assert.equal(await store.put(makeRecord('unblocked.test')), true);
      assert.equal(await store.count(), 6);
    } finally {
      await store.close();
    }
  });

  test('an exclusive lock elsewhere at start: open fails ERR_MTASTSDB_STORE_BUSY, works after release', async () => {
    // In WAL mode no process can take an exclusive lock while another has the file open, so
    // readers can only be locked out by a process that got there first.
    const path = join(await tempDir(), 'mtasts.db');
    const first = await openSqliteStore({ path });
    await first.putMany(records(5));
    await first.close();
    const holder = await lockHolder(path, 'exclusive');
    try {
      await assert.rejects(openSqliteStore({ path, busyTimeoutMs: 200 }), (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE_BUSY'), String(err));
        assert.ok(err.message.includes(path));
        return true;
      });
    } finally {
      await holder.release();
    }
    const store = await openSqliteStore({ path, busyTimeoutMs: 200 });
    try {
      assert.equal((await store.get('r1.example.test'))?.recordId, 'id1');
      assert.equal(await store.put(makeRecord('unblocked.test')), true);
    } finally {
      await store.close();
    }
  });
});

describe('sqlite store: two processes', () => {
  test('one process writes while this one reads (and writes) the same file', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path });
    const N = 2000;
    try {
      const child = spawnStoreWriter(['write', path, 'child', String(N)]);
      let err = '';
      child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
      let acked = 0;
      child.stdout.setEncoding('utf8').on('data', (d: string) => (acked += d.split('\n').length - 1));
      const exited = once(child, 'exit');
      let done = false;
      void exited.then(() => (done = true));
      let last = 0;
      let reads = 0;
      let ownWrites = 0;
      while (!done) {
        const n = await store.count();
        assert.ok(n >= last, 'the count never goes back');
        last = n;
        const seen = acked;
        if (seen > 0) assert.ok(await store.get(`child-${seen - 1}.crash.test`), 'an acknowledged record is visible');
        await store.put(makeRecord(`parent${ownWrites}.test`));
        ownWrites++;
        reads++;
        await new Promise((r) => setImmediate(r));
      }
      const [code] = (await exited) as [number | null];
      assert.equal(code, 0, err);
      assert.ok(reads > 5, `read ${reads} times while the writer ran`);
      assert.equal(await store.count(), N + ownWrites);
      for (let i = 0; i < N; i += 97)
        assertSameRecord(await store.get(`child-${i}.crash.test`), writerRecord('child', i));
    } finally {
      await store.close();
    }
  });
});

describe('sqlite store: list snapshots', () => {
  /** A TRUNCATE checkpoint from another connection without waiting: busy 1 while a reader holds an older snapshot. */
  function checkpointBusy(path: string): number {
    const db = new Database(path, { timeout: 0 });
    try {
      const row = db.pragma('wal_checkpoint(TRUNCATE)') as Array<{ busy: number }>;
      return row[0]?.busy ?? -1;
    } finally {
      db.close();
    }
  }

  test('a walk in lastUse order holds a read snapshot until it ends, is left by break or throw, or the store closes', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path });
    try {
      await store.putMany(records(50));
      const walks: Array<[string, (s: SqliteStore) => Promise<void>]> = [
        [
          'break',
          async (s) => {
            for await (const _ of s.list({ pageSize: 10 })) break;
          },
        ],
        [
          'throw',
          async (s) => {
            await assert.rejects(async () => {
              for await (const _ of s.list({ pageSize: 10 })) throw new Error('consumer failed');
            }, /consumer failed/);
          },
        ],
        ['end', async (s) => void (await collect(s.list({ pageSize: 10 })))],
      ];
      let k = 0;
      for (const [how, walk] of walks) {
        // Held: the checkpoint cannot pass the walk's snapshot once newer commits exist.
        const it = store.list({ pageSize: 10 })[Symbol.asyncIterator]();
        assert.equal((await it.next()).done, false);
        await store.put(makeRecord(`held-${k++}.test`));
        assert.equal(checkpointBusy(path), 1, 'a walk in progress holds its snapshot');
        await it.return?.();
        assert.equal(checkpointBusy(path), 0, 'return() ended it');
        await walk(store);
        await store.put(makeRecord(`after-${how}.test`));
        assert.equal(checkpointBusy(path), 0, `after ${how} no snapshot is held`);
      }
      // Domain order holds none, even half-way.
      const it = store.list({ pageSize: 10, order: 'domain' })[Symbol.asyncIterator]();
      assert.equal((await it.next()).done, false);
      await store.put(makeRecord('domain-walk.test'));
      assert.equal(checkpointBusy(path), 0, 'a domain-order walk holds no snapshot');
      await it.return?.();
      // A walk abandoned half-way is ended by close, which still leaves a rollback-journal file.
      const abandoned = store.list({ pageSize: 10 })[Symbol.asyncIterator]();
      assert.equal((await abandoned.next()).done, false);
      await store.close();
      assert.equal(existsSync(`${path}-wal`), false, 'close switched the file back to a rollback journal');
      await rejectsWith(
        (async () => {
          for (let r = await abandoned.next(); r.done !== true; r = await abandoned.next());
        })(),
        'ERR_MTASTSDB_CLOSED',
      );
    } finally {
      await store.close();
    }
  });

  test('another process writing while this one walks: every record once, in lastUse order', async () => {
    const path = join(await tempDir(), 'mtasts.db');
    const store = await openSqliteStore({ path });
    try {
      await store.putMany(records(2000, 'p'));
      const it = store.list({ pageSize: 100 })[Symbol.asyncIterator]();
      const first = await it.next();
      assert.equal(first.done, false);
      // A writer process appends records while the walk is paused after its first row.
      const child = spawnStoreWriter(['write', path, 'late', '200']);
      let acked = 0;
      child.stdout.setEncoding('utf8').on('data', (s: string) => (acked += s.split('\n').length - 1));
      const [code] = (await once(child, 'exit')) as [number | null];
      assert.equal(code, 0);
      assert.equal(acked, 200);
      const got = [first.value!.domain];
      for (let r = await it.next(); r.done !== true; r = await it.next()) got.push(r.value.domain);
      assert.equal(got.length, 2000, 'the snapshot: none of the later records');
      assert.equal(new Set(got).size, 2000);
      assert.equal(await store.count(), 2200);
    } finally {
      await store.close();
    }
  });
});
