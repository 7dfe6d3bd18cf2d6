// The peer-daemon helper against the real postfix-mta-sts-resolver: in a network namespace of its
// own, with the loopback fixtures on the host side of the veth pair (DNS on 53, HTTPS on 443), it
// discovers policies, answers over socketmap, writes its SQLite cache file, and stops with nothing
// left running. Skips (fails in CI) without root or without the package (.ci/run installs it).
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { requireOrSkip } from '../helpers/ci.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { startHttpsHost } from '../helpers/https-host.js';
import { createNetns, netnsAvailable } from '../helpers/netns.js';
import { peerDaemonInstalled, startPeerDaemon } from '../helpers/peer-daemon.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { getTestCa } from '../helpers/test-ca.js';

describe('postfix-mta-sts-resolver through test/helpers/peer-daemon.ts', () => {
  it('discovers, answers, writes its cache file and stops', async (t) => {
    if (!requireOrSkip(t, netnsAvailable(), 'network namespaces need root and iproute2')) return;
    if (!requireOrSkip(t, peerDaemonInstalled(), 'postfix-mta-sts-resolver is not installed')) return;
    const ns = await createNetns();
    const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-peer-'));
    const dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
    const ca = await getTestCa();
    const https = await startHttpsHost({ ca, host: ns.hostAddress, port: 443 });
    let peer: Awaited<ReturnType<typeof startPeerDaemon>> | undefined;
    try {
      const caFile = join(dir, 'ca.pem');
      await writeFile(caFile, ca.certPem);
      for (const [d, mode] of [
        ['enforce.peer.test', 'enforce'],
        ['testing.peer.test', 'testing'],
      ] as const) {
        dns.mtaSts(d, { id: 'p1', address: ns.hostAddress });
        https.policy(d, `version: STSv1\r\nmode: ${mode}\r\nmx: mail.${d}\r\nmax_age: 86400\r\n`);
      }
      const cachePath = join(dir, 'peer-cache.db');
      peer = await startPeerDaemon({ netns: ns, cachePath, caFile, timeoutSeconds: 5 });
      const c = await SocketmapClient.open({ host: peer.host, port: peer.port });
      assert.equal(
        await c.query('postfix', 'enforce.peer.test'),
        'OK secure match=mail.enforce.peer.test servername=hostname',
      );
      assert.equal(await c.query('postfix', 'testing.peer.test'), 'NOTFOUND ');
      assert.equal(await c.query('postfix', 'absent.peer.test'), 'NOTFOUND ');
      c.destroy();
      assert.equal(dns.queries('_mta-sts.enforce.peer.test', 'TXT'), 1);
      assert.equal(https.requests('enforce.peer.test'), 1);

      const pid = peer.pid;
      await peer.stop();
      assert.equal(existsSync(`/proc/${pid}`), false, 'the daemon process is gone');
      const db = new Database(cachePath, { readonly: true });
      try {
        const rows = db.prepare('select domain, pol_id, pol_body from sts_policy_cache order by domain').all() as {
          domain: string;
          pol_id: string;
          pol_body: string;
        }[];
        assert.deepEqual(
          rows.map((r) => [r.domain, r.pol_id, (JSON.parse(r.pol_body) as { mode: string }).mode]),
          [
            ['enforce.peer.test', 'p1', 'enforce'],
            ['testing.peer.test', 'p1', 'testing'],
          ],
        );
      } finally {
        db.close();
      }
    } finally {
      await peer?.stop();
      await https.close();
      await dns.close();
      await ns.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
