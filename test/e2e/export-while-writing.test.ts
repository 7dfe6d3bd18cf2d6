/**
 * `mtastsdb export` as a process on a SQLite file that another process writes the whole time, as a
 * serving daemon does: every lookup moves a record's `lastUse` to the front of the export's order
 * and a refresh writes a newer version. Read through a slow consumer (the test pauses the pipe),
 * the export must still write every record exactly once.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import { spawnStoreWriter, writerRecord } from '../helpers/store-writer.js';
import { scratchDirs } from '../helpers/scratch-dirs.js';

const here = fileURLToPath(import.meta.url);
const fromSource = here.endsWith('.ts');
const repo = resolve(dirname(here), fromSource ? '../..' : '../../..');
const entry = resolve(dirname(here), fromSource ? '../../src/cli/main.ts' : '../../src/cli/main.js');
const nodeArgs = fromSource ? ['--import', 'tsx', entry] : [entry];

const tempDir = scratchDirs('mtastsdb-export-');

/** Records in the store. */
const RECORDS = 5000;
/** How long the consumer stops reading after each chunk, ms: a slow pipe. */
const PAUSE_MS = 15;

describe('mtastsdb export while another process writes the store', () => {
  it(`writes each of ${RECORDS} records exactly once while every record is touched and some replaced`, async () => {
    const dir = await tempDir();
    const path = join(dir, 'mtasts.db');
    const seed = await openSqliteStore({ path });
    await seed.putMany(Array.from({ length: RECORDS }, (_, i) => writerRecord('e', i)));
    await seed.close();

    const writer = spawnStoreWriter(['touch', path, 'e', String(RECORDS)]);
    const writerErr: string[] = [];
    writer.stderr.setEncoding('utf8').on('data', (s: string) => writerErr.push(s));
    const rounds: number[] = [];
    let roundSeen: () => void = () => {};
    const firstRound = new Promise<void>((r) => (roundSeen = r));
    createInterface({ input: writer.stdout }).on('line', (l) => {
      const m = /^round (\d+)$/.exec(l);
      if (m !== null) {
        rounds.push(Number(m[1]));
        roundSeen();
      }
    });
    try {
      await firstRound;
      const roundsBefore = rounds.length;
      const child = spawn(process.execPath, [...nodeArgs, '--data-dir', dir, 'export'], {
        cwd: repo,
        env: Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('MTASTSDB_'))),
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 120_000,
      });
      let stdout = '';
      let stderr = '';
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.stdout.setEncoding('utf8').on('data', (s: string) => {
        stdout += s;
        // A slow consumer: the export blocks on the full pipe while the writer runs.
        child.stdout.pause();
        setTimeout(() => child.stdout.resume(), PAUSE_MS);
      });
      const [status] = (await once(child, 'close')) as [number | null];
      const roundsDuring = rounds.length - roundsBefore;
      assert.equal(status, 0, stderr);
      assert.equal(stderr, '');
      const domains = stdout
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => (JSON.parse(l) as { domain: string }).domain);
      const distinct = new Set(domains);
      const missing = RECORDS - [...distinct].filter((d) => /^e-\d+\.crash\.test$/.test(d)).length;
      assert.equal(
        missing,
        0,
        `${missing} of ${RECORDS} records missing (${((100 * missing) / RECORDS).toFixed(1)} %)`,
      );
      assert.equal(domains.length, RECORDS, `${domains.length - distinct.size} lines repeat a record`);
      assert.equal(distinct.size, RECORDS);
      assert.ok(roundsDuring >= 1, `the writer touched every record during the export (${roundsDuring} rounds)`);
    } finally {
      writer.stdin.end('stop\n');
      const [code] = (await once(writer, 'exit')) as [number | null];
      assert.equal(code, 0, writerErr.join(''));
    }
  });
});
