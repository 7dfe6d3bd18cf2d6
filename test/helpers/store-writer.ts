/**
 * A child process for store tests that need a second process: run it with {@link spawnStoreWriter}.
 *
 *   write <sqlite-path> <prefix> [max]      put records `<prefix>-<i>.crash.test` in a loop; print each
 *                                           domain on its own line once put() resolved (acknowledged)
 *   upsert-one <url> <schema> <domain> <writer> <writers> <count>
 *                                           put one domain `count` times with distinct lastUpdates
 *                                           (writer k owns times ≡ k mod writers); print a JSON summary
 *   touch <sqlite-path> <prefix> <count>    until a line (or EOF) arrives on stdin: touch every record
 *                                           `<prefix>-<i>.crash.test` (i < count) forward in chunks, and
 *                                           put a newer version of one in 25; print `round <k>` after each
 *                                           round and `stopped <k>` at the end
 *   lock <sqlite-path> <immediate|exclusive> hold a write transaction (exclusive: also lock out
 *                                           readers) until a line arrives on stdin; print `locked`
 *                                           when held and `released` after
 *   hold <sqlite-path> <prefix> <n>         open a store (creating the file), put n records `write`
 *                                           would, print `held`, keep it open until a line arrives on
 *                                           stdin, then print `count <records>` and close
 *
 * Works from source (`node --import tsx …/store-writer.ts`) and compiled (`node build/…/store-writer.js`).
 */
import { spawn } from 'node:child_process';
import type { ChildProcessWithoutNullStreams } from 'node:child_process';
import { createInterface } from 'node:readline';
import { dirname, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { parsePolicy } from '../../src/rfc8461/policy.js';
import type { PolicyRecord, PolicyStore } from '../../src/store/policy-store.js';

const T0 = Date.UTC(2026, 0, 1);

/** The record `write` puts for index `i` (so a test can check what it reads back, field by field). */
export function writerRecord(prefix: string, i: number): PolicyRecord {
  const text = `version: STSv1\r\nmode: enforce\r\nmx: mx${i % 7}.crash.test\r\nmx: *.w${i}.crash.test\r\nmax_age: ${86400 + i}\r\n`;
  return {
    domain: `${prefix}-${i}.crash.test`,
    inserted: new Date(T0 + i),
    validEnd: new Date(T0 + i + (86400 + i) * 1000),
    lastUpdate: new Date(T0 + i),
    lastUse: new Date(T0 + 2 * i),
    backoff: false,
    recordId: `id${i}`,
    policy: parsePolicy(text),
    policyText: text,
  };
}

/** The record writer `w` puts in round `k` of `upsert-one`. */
export function upsertRecord(domain: string, writer: number, writers: number, k: number): PolicyRecord {
  const at = T0 + (k * writers + writer) * 1000;
  const text = `version: STSv1\nmode: enforce\nmx: mx.w${writer}.k${k}.test\nmax_age: 86400\n`;
  return {
    domain,
    inserted: new Date(at),
    validEnd: new Date(at + 86_400_000),
    lastUpdate: new Date(at),
    lastUse: new Date(at),
    backoff: false,
    recordId: `w${writer}k${k}`,
    policy: parsePolicy(text),
    policyText: text,
  };
}

/**
 * Starts this helper as a child process. From source it runs through tsx (resolved from the
 * repository root); compiled, it runs the `.js` next to this file.
 */
export function spawnStoreWriter(args: readonly string[]): ChildProcessWithoutNullStreams {
  const self = fileURLToPath(import.meta.url);
  const fromSource = self.endsWith('.ts');
  // <root>/test/helpers from source, <root>/build/test/helpers compiled.
  const root = resolve(dirname(self), fromSource ? '../..' : '../../..');
  const nodeArgs = fromSource ? ['--import', 'tsx', self, ...args] : [self, ...args];
  return spawn(process.execPath, nodeArgs, { cwd: root, stdio: ['pipe', 'pipe', 'pipe'] });
}

async function writeLoop(path: string, prefix: string, max: number): Promise<void> {
  const { openSqliteStore } = await import('../../src/store/sqlite-store.js');
  const store = await openSqliteStore({ path });
  for (let i = 0; i < max; i++) {
    await store.put(writerRecord(prefix, i));
    // Acknowledged only now, after put() resolved: a test may count on every printed domain.
    process.stdout.write(`${prefix}-${i}.crash.test\n`);
  }
  await store.close();
}

async function upsertOne(url: string, schema: string, domain: string, writer: number, writers: number, count: number) {
  const { openPostgresStore } = await import('../../src/store/postgres-store.js');
  const store: PolicyStore = await openPostgresStore({ url, schema, poolSize: 4 });
  let written = 0;
  // Interleave rounds in parallel batches so writers really race on the row.
  for (let k = 0; k < count; k += 4) {
    const batch = [];
    for (let j = k; j < Math.min(count, k + 4); j++) batch.push(store.put(upsertRecord(domain, writer, writers, j)));
    for (const ok of await Promise.all(batch)) if (ok) written++;
  }
  await store.close();
  process.stdout.write(`${JSON.stringify({ writer, written, count })}\n`);
}

async function touchLoop(path: string, prefix: string, count: number): Promise<void> {
  const { openSqliteStore } = await import('../../src/store/sqlite-store.js');
  const store = await openSqliteStore({ path });
  let stop = false;
  const lines = createInterface({ input: process.stdin });
  lines.once('line', () => (stop = true));
  lines.once('close', () => (stop = true));
  // Later than anything writerRecord stores, and rising: every touch moves a record to the front
  // of the lastUse order.
  let t = Date.UTC(2027, 0, 1);
  let round = 0;
  while (!stop) {
    for (let i = 0; i < count && !stop; i += 250) {
      const uses = [];
      for (let j = i; j < Math.min(count, i + 250); j++)
        uses.push({ domain: `${prefix}-${j}.crash.test`, lastUse: new Date(++t) });
      await store.touch(uses);
      for (let j = i; j < Math.min(count, i + 250); j += 25) {
        await store.put({
          ...writerRecord(prefix, j),
          lastUpdate: new Date(t),
          lastUse: new Date(t),
          recordId: `r${round}`,
        });
      }
    }
    process.stdout.write(`round ${++round}\n`);
  }
  lines.close();
  await store.close();
  process.stdout.write(`stopped ${round}\n`);
}

async function holdLock(path: string, how: string): Promise<void> {
  const { default: Database } = await import('better-sqlite3');
  const db = new Database(path, { timeout: 0 });
  if (how === 'exclusive') db.pragma('locking_mode = EXCLUSIVE');
  db.exec('BEGIN EXCLUSIVE');
  // Write something so the lock is a real write lock in WAL mode too.
  db.exec('CREATE TABLE IF NOT EXISTS lock_probe (x INTEGER) STRICT; INSERT INTO lock_probe VALUES (1)');
  process.stdout.write('locked\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((done) => lines.once('line', () => done()));
  lines.close();
  db.exec('COMMIT');
  db.close();
  process.stdout.write('released\n');
}

async function holdOpen(path: string, prefix: string, n: number): Promise<void> {
  const { openSqliteStore } = await import('../../src/store/sqlite-store.js');
  const store = await openSqliteStore({ path });
  for (let i = 0; i < n; i++) await store.put(writerRecord(prefix, i));
  process.stdout.write('held\n');
  const lines = createInterface({ input: process.stdin });
  await new Promise<void>((done) => lines.once('line', () => done()));
  lines.close();
  process.stdout.write(`count ${await store.count()}\n`);
  await store.close();
}

async function main(argv: readonly string[]): Promise<void> {
  const [mode, ...rest] = argv;
  switch (mode) {
    case 'write':
      return writeLoop(rest[0]!, rest[1]!, rest[2] === undefined ? Number.MAX_SAFE_INTEGER : Number(rest[2]));
    case 'upsert-one':
      return upsertOne(rest[0]!, rest[1]!, rest[2]!, Number(rest[3]), Number(rest[4]), Number(rest[5]));
    case 'touch':
      return touchLoop(rest[0]!, rest[1]!, Number(rest[2]));
    case 'hold':
      return holdOpen(rest[0]!, rest[1]!, Number(rest[2]));
    case 'lock':
      return holdLock(rest[0]!, rest[1] ?? 'immediate');
    default:
      throw new Error(`store-writer: unknown mode ${String(mode)}`);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    process.stderr.write(`store-writer: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exitCode = 1;
  });
}
