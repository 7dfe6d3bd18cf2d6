/**
 * A wall clock 181 days ahead must not wipe the cache: the real daemon (`mtastsdb serve`, its
 * refresher on) starts with `Date` shifted forward in its process, over a store whose records were
 * all used just now. Its first pass would find every record "unused for 180 days"; it must delete
 * none, say so, and count it. Then the clock is corrected (the daemon restarted without the shift)
 * and the cached policies answer, with DNS dead, as before.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fillInChild, storeDomain, storeReply } from '../../bench/helpers/socketmap-load.js';
import { openStore } from '../../src/store/open-store.js';
import { DEAD_DNS_FLAGS, spawnServe, writeServeConfig } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

const RECORDS = 500;
const DAY_MS = 86_400_000;

/** A module for `node --import` that shifts `Date` (not the monotonic clock) by MTASTSDB_TEST_CLOCK_OFFSET_MS. */
const SHIFT_DATE = `
const offset = Number(process.env.MTASTSDB_TEST_CLOCK_OFFSET_MS ?? 0);
const RealDate = Date;
class ShiftedDate extends RealDate {
  constructor(...args) {
    if (args.length === 0) super(RealDate.now() + offset);
    else super(...args);
  }
  static now() {
    return RealDate.now() + offset;
  }
}
globalThis.Date = ShiftedDate;
`;

describe('a forward clock step of 181 days, then a correction (the real daemon and refresher)', () => {
  let dir: string;
  let store: string;
  let config: string;
  let shift: string;
  let serve: ServeProcess | undefined;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-clock-'));
    store = join(dir, 'clock.db');
    shift = join(dir, 'shift-date.mjs');
    await writeFile(shift, SHIFT_DATE);
    await fillInChild({ path: store, count: RECORDS, now: Date.now() }, 60_000);
    // Records used just now: fillInChild stamps lastUse a day before `now`.
    const s = await openStore({ path: store });
    try {
      const now = new Date();
      const uses = Array.from({ length: RECORDS }, (_, i) => ({ domain: storeDomain(i), lastUse: now }));
      await s.touch(uses);
    } finally {
      await s.close();
    }
    config = await writeServeConfig(join(dir, 'clock.yml'), store, [
      'cache_grace: 86400',
      'proactive_policy_fetching:\n  enabled: true',
      'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
    ]);
  });
  after(async () => {
    serve?.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  async function count(): Promise<number> {
    const s = await openStore({ path: store });
    try {
      return await s.count();
    } finally {
      await s.close();
    }
  }

  it('the stepped daemon deletes nothing as unused, logs why and counts it', async () => {
    serve = await spawnServe(
      ['-c', config, ...DEAD_DNS_FLAGS],
      { MTASTSDB_TEST_CLOCK_OFFSET_MS: String(181 * DAY_MS) },
      ['--import', shift],
    );
    const line = await serve.waitFor(/look unused for 180 days: the clock may be wrong; deleting none/, 30_000);
    const entry = JSON.parse(line) as { unused: number; records: number; level: number };
    assert.deepEqual([entry.unused, entry.records, entry.level], [RECORDS, RECORDS, 40]);
    const metricsLine = await serve.waitFor(/metrics endpoint listening/);
    const port = (JSON.parse(metricsLine) as { address: { port: number } }).address.port;
    const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    assert.match(text, /^mtastsdb_unused_deletes_refused_total\{reason="implausible_share"\} 1$/m);
    assert.ok(!serve.lines.some((l) => /deleted mta-sts policies unused/.test(l)), 'no deletion logged');
    serve.child.kill('SIGTERM');
    assert.equal(await serve.exited, 0);
    serve = undefined;
    assert.equal(await count(), RECORDS, 'every record is still in the store');
  });

  it('after the correction, the cached enforce policies still answer with DNS dead', async () => {
    serve = await spawnServe(['-c', config, ...DEAD_DNS_FLAGS]);
    const client = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
    try {
      for (const i of [0, 1, RECORDS - 1]) assert.equal(await client.query('postfix', storeDomain(i)), storeReply(i));
    } finally {
      client.close();
    }
    assert.equal(await count(), RECORDS);
  });
});
