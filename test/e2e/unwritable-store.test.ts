/**
 * A store that cannot take writes under a running daemon (`mtastsdb serve` as a process): its
 * SQLite file lives on a small tmpfs that the test fills up (ENOSPC, SQLITE_FULL). A policy
 * discovered then is answered from memory until its validEnd; the per-domain rate limit never
 * turns it into NOTFOUND; the logs name the full store and the rate limit, not a DNS failure; and
 * once space is back the policy reaches the file (offered again at most every 30 s).
 *
 * Needs root to mount the tmpfs (CI runs as root); elsewhere it skips with the reason.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { openStore } from '../../src/store/open-store.js';
import { policyText, publish, startNet, uniqueDomain } from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { requireOrSkip } from '../helpers/ci.js';
import { spawnServe, writeServeConfig, type ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

function tryMount(dir: string): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Fills the file system of `dir` with one file until it refuses; returns the file. */
function fill(dir: string): string {
  const file = join(dir, 'filler');
  const fd = openSync(file, 'w');
  const chunk = Buffer.alloc(64 * 1024, 0x61);
  try {
    for (let i = 0; i < 1024; i++) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
    // Whatever a partial chunk left: fill it byte-size chunks down to nothing.
    for (let size = 32 * 1024; size >= 1; size = Math.floor(size / 2)) {
      try {
        for (let j = 0; j < 64; j++) writeSync(fd, chunk.subarray(0, size));
      } catch {
        // this size no longer fits; try a smaller one
      }
    }
  } finally {
    closeSync(fd);
  }
  return file;
}

describe('daemon on a full disk', { timeout: 120_000 }, () => {
  let net: Net;
  let dir: string;
  let mnt: string;
  let mounted = false;

  before(async () => {
    net = await startNet({ dnsTimeoutMs: 800, fetchTimeoutMs: 2000 });
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-full-'));
    mnt = join(dir, 'mnt');
    mkdirSync(mnt);
    mounted = tryMount(mnt);
  });
  after(async () => {
    if (mounted) execFileSync('umount', ['-l', mnt]);
    await net?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  it('a policy the store refuses is answered until its validEnd; the rate limit never makes it NOTFOUND', async (t) => {
    if (!requireOrSkip(t, mounted, 'mounting a tmpfs needs root')) return;
    const store = join(mnt, 'mtasts.db');
    const config = await writeServeConfig(join(dir, 'full.yml'), store, [
      // Every answer checks the TXT id: the rate limit is met after a few queries.
      'cache_grace: 0',
      'memory_cache:\n  ttl: 0',
      'proactive_policy_fetching:\n  enabled: false',
      'limits:\n  fetch_rate_per_domain:\n    rate: 0.01\n    burst: 3',
      'default_zone:\n  timeout: 3',
    ]);
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, net.ca.certPem);
    let serve: ServeProcess | undefined;
    let client: SocketmapClient | undefined;
    try {
      serve = await spawnServe(
        ['-c', config, '--dns-server', net.dns.address, '--policy-port', String(net.https.port), '--ca', caFile],
        { MTASTSDB_LOG_LEVEL: 'debug', MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
      );
      client = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
      const c = client;
      // The store exists and works: a first domain is stored.
      const stored = uniqueDomain('stored');
      publish(net, stored, 'id1', policyText('enforce', [`mx.${stored}`], 86400));
      assert.equal(await c.query('postfix', stored), `OK secure match=mx.${stored} servername=hostname`);

      const filler = fill(mnt);
      const d = uniqueDomain('full');
      publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
      const ok = `OK secure match=mx.${d} servername=hostname`;
      const replies: string[] = [];
      for (let i = 0; i < 25; i++) replies.push(await c.query('postfix', d));
      assert.deepEqual(
        replies.filter((r) => r !== ok),
        [],
        'every answer is the policy, through the full store and the rate limit',
      );
      assert.equal(net.https.requests(d), 1, 'fetched once, then answered from memory');
      // The warm domain stays answered as well under the rate limit.
      for (let i = 0; i < 10; i++) {
        assert.equal(await c.query('postfix', stored), `OK secure match=mx.${stored} servername=hostname`);
      }
      await serve.waitFor(/storing the MTA-STS policy failed; keeping it in memory/);
      const rateLogged = serve.lines.some(
        (l) => /held back by the per-domain rate limit \(not a DNS failure\)/.test(l) && l.includes(d),
      );
      assert.ok(rateLogged, 'the held-back TXT lookups are logged as the rate limit');

      // More new domains, each refused by the full disk: the failure is one line, not one per lookup.
      for (let i = 0; i < 5; i++) {
        const n = uniqueDomain('fullnew');
        publish(net, n, 'id1', policyText('enforce', [`mx.${n}`], 86400));
        assert.equal(await c.query('postfix', n), `OK secure match=mx.${n} servername=hostname`);
      }
      const refused = serve.lines.filter((l) => l.includes('storing the MTA-STS policy failed'));
      assert.equal(refused.length, 1, `one line for six refused policies within a minute: ${refused.join('\n')}`);
      assert.doesNotMatch(refused[0] ?? '', /"stack"/, 'a coded store error is logged without a stack');
      assert.match(refused[0] ?? '', /"code":"ERR_MTASTSDB_STORE/);

      // Space again: the kept policy reaches the file at the next offer (at most every 30 s).
      unlinkSync(filler);
      const deadline = Date.now() + 45_000;
      let inFile = false;
      while (!inFile && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 2000));
        assert.equal(await c.query('postfix', d), ok);
        const s = await openStore({ path: store });
        try {
          inFile = (await s.get(d))?.recordId === 'id1';
        } finally {
          await s.close();
        }
      }
      assert.ok(inFile, 'the policy kept in memory was written once the disk had space');
    } finally {
      client?.destroy();
      serve?.child.kill('SIGKILL');
      if (serve !== undefined) await serve.exited;
    }
  });
});
