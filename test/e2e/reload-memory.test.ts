/**
 * Reloads must not leak: the real daemon (`mtastsdb serve`) with 4,000 hot cached domains gets
 * 1,000 SIGHUPs, each followed by answers from two zones (every reload makes new zone objects, and
 * the handler memoises replies per zone and policy). The heap, measured after a forced collection
 * in the daemon's own process, must be as large after the 1,000th reload as after the 100th.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fillInChild, storeDomain, storeReply } from '../../bench/helpers/socketmap-load.js';
import { DEAD_DNS_FLAGS, spawnServe, writeServeConfig } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

const DOMAINS = 4_000;
const RELOADS = 1_000;
/** Reloads before the first measurement: the heap has settled by then. */
const SETTLE_RELOADS = 100;
/** Domains answered (in each of two zones) after each reload, a sliding window over all of them. */
const PER_RELOAD = 200;
/** Heap growth allowed between the two measurements: noise, not a leak. */
const FLAT_BYTES = 8 * 1024 * 1024;

/** A module for `node --import`: on SIGUSR2, collect garbage and print the heap on stdout. */
const HEAP_PROBE = `
let n = 0;
process.on('SIGUSR2', () => {
  globalThis.gc();
  globalThis.gc();
  const m = process.memoryUsage();
  process.stdout.write(JSON.stringify({ heapProbe: ++n, heapUsed: m.heapUsed, rss: m.rss }) + '\\n');
});
`;

interface HeapReading {
  readonly heapProbe: number;
  readonly heapUsed: number;
  readonly rss: number;
}

describe('1,000 SIGHUP reloads with 4,000 hot domains (the real daemon)', () => {
  let dir: string;
  let serve: ServeProcess | undefined;
  let client: SocketmapClient | undefined;
  let probes = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-reload-'));
    const store = join(dir, 'reload.db');
    const probe = join(dir, 'heap-probe.mjs');
    await writeFile(probe, HEAP_PROBE);
    await fillInChild({ path: store, count: DOMAINS, now: Date.now() }, 60_000);
    const config = await writeServeConfig(join(dir, 'reload.yml'), store, [
      'cache_grace: 86400',
      'zones:',
      '  postfix: {}',
      '  strict:',
      '    strict_testing: true',
    ]);
    serve = await spawnServe(['-c', config, ...DEAD_DNS_FLAGS], { MTASTSDB_LOG_LEVEL: 'info' }, [
      '--expose-gc',
      '--import',
      probe,
    ]);
    client = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
    client.keepReplies = false;
  });
  after(async () => {
    client?.close();
    serve?.child.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  /** Answers domains [from, from + count) in both zones, pipelined, and checks every reply. */
  async function answer(from: number, count: number): Promise<void> {
    const c = client!;
    const asked: Array<Promise<[number, string]>> = [];
    for (let j = 0; j < count; j++) {
      const i = (from + j) % DOMAINS;
      for (const zone of ['postfix', 'strict']) asked.push(c.query(zone, storeDomain(i)).then((r) => [i, r]));
    }
    for (const [i, reply] of await Promise.all(asked)) assert.equal(reply, storeReply(i), storeDomain(i));
  }

  const reloaded = (): number => serve!.lines.filter((l) => l.includes('"configuration reloaded"')).length;

  async function reloadAndAnswer(n: number): Promise<void> {
    const s = serve!;
    const before = reloaded();
    s.child.kill('SIGHUP');
    for (let waited = 0; reloaded() === before; waited++) {
      assert.ok(waited < 5_000, 'the reload was logged within 5 s');
      await new Promise((r) => setTimeout(r, 1));
    }
    await answer(n * PER_RELOAD, PER_RELOAD);
  }

  async function heap(): Promise<HeapReading> {
    const s = serve!;
    const n = ++probes;
    s.child.kill('SIGUSR2');
    const line = await s.waitFor(new RegExp(`"heapProbe":${n},`), 15_000);
    return JSON.parse(line) as HeapReading;
  }

  it('every domain answers from the cache, and the heap stays flat across the reloads', async () => {
    await answer(0, DOMAINS);
    for (let n = 1; n <= SETTLE_RELOADS; n++) await reloadAndAnswer(n);
    const settled = await heap();
    for (let n = SETTLE_RELOADS + 1; n <= RELOADS; n++) await reloadAndAnswer(n);
    const last = await heap();
    assert.equal(reloaded(), RELOADS, 'every SIGHUP reloaded the configuration');
    const mib = (b: number): string => `${(b / 1048576).toFixed(1)} MiB`;
    console.log(
      `heap after ${SETTLE_RELOADS} reloads ${mib(settled.heapUsed)}, after ${RELOADS} ${mib(last.heapUsed)}; ` +
        `rss ${mib(settled.rss)} → ${mib(last.rss)}`,
    );
    assert.ok(
      last.heapUsed - settled.heapUsed < FLAT_BYTES,
      `heap grew ${mib(last.heapUsed - settled.heapUsed)} over ${RELOADS - SETTLE_RELOADS} reloads`,
    );
  });
});
