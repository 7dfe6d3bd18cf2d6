/**
 * The real client: Postfix's own `postmap -q <key> socketmap:…:postfix` against the daemon.
 * postmap needs a main.cf; an empty one in a temporary config directory (`postmap -c DIR`) works.
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { parseConfigText } from '../../src/config/load-config.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import type { Daemon } from '../../src/daemon/daemon.js';
import { captureLogger, policyText, publish, startNet, uniqueDomain } from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { requireOrSkip } from '../helpers/ci.js';

function findPostmap(): string | undefined {
  for (const p of ['/usr/sbin/postmap', '/usr/local/sbin/postmap']) {
    if (spawnSync(p, ['-c', '/nonexistent', '-q', 'x', 'static:y']).error === undefined) return p;
  }
  return undefined;
}
const postmap = findPostmap();

interface PostmapResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let net: Net;
let dir: string;
before(async () => {
  net = await startNet();
  dir = await mkdtemp(join(tmpdir(), 'mtastsdb-postmap-'));
  await writeFile(join(dir, 'main.cf'), '# empty: postmap only needs the file to exist\n');
});
after(async () => {
  await net.close();
  await rm(dir, { recursive: true, force: true });
});

function query(key: string, map: string): Promise<PostmapResult> {
  return new Promise((resolve) => {
    execFile(postmap as string, ['-c', dir, '-q', key, map], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

for (const transport of ['inet', 'unix'] as const) {
  describe(`postmap -q against mtastsdb serve (socketmap:${transport})`, () => {
    let daemon: Daemon;
    let map: (name: string) => string;

    before(async () => {
      const listen =
        transport === 'inet' ? 'host: 127.0.0.1\nport: 0\n' : `path: ${join(dir, 'pm.sock')}\nmode: 0666\n`;
      daemon = await startDaemon({
        config: parseConfigText(
          `${listen}store: ":memory:"\nproactive_policy_fetching:\n  enabled: false\n` +
            'zones:\n  strict:\n    strict_testing: true\n  temp:\n    temp_on_error: true\n  rpt:\n    tlsrpt: true\n',
        ),
        logger: captureLogger(),
        resolver: net.resolver,
        fetchOptions: net.fetchOptions,
      });
      const a = daemon.address;
      map = (name) => ('path' in a ? `socketmap:unix:${a.path}:${name}` : `socketmap:inet:127.0.0.1:${a.port}:${name}`);
    });
    after(() => daemon.close());

    it('enforce: prints the TLS policy', async (t) => {
      if (!requireOrSkip(t, postmap !== undefined, 'postmap (Debian package postfix) is not installed')) return;
      const d = uniqueDomain('pm');
      publish(net, d, 'id1', policyText('enforce', [`mx.${d}`, `*.relay.${d}`], 86400));
      const r = await query(d, map('postfix'));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `secure match=mx.${d}:.relay.${d} servername=hostname\n`);
    });

    it('[host]:port key and strict testing', async (t) => {
      if (!requireOrSkip(t, postmap !== undefined, 'postmap (Debian package postfix) is not installed')) return;
      const d = uniqueDomain('pmt');
      publish(net, d, 'id1', policyText('testing', [`mx.${d}`], 86400));
      assert.equal((await query(d, map('postfix'))).code, 1, 'testing → NOTFOUND → not found');
      const r = await query(`[${d}]:25`, map('strict'));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `secure match=mx.${d} servername=hostname\n`);
    });

    it('no policy: not found (exit 1, nothing printed)', async (t) => {
      if (!requireOrSkip(t, postmap !== undefined, 'postmap (Debian package postfix) is not installed')) return;
      const r = await query(uniqueDomain('pmnone'), map('postfix'));
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.equal(r.stderr, '');
    });

    it('TEMP: Postfix reports a lookup error', async (t) => {
      if (!requireOrSkip(t, postmap !== undefined, 'postmap (Debian package postfix) is not installed')) return;
      const d = uniqueDomain('pmtemp');
      net.dns.servfail(`_mta-sts.${d}`);
      const r = await query(d, map('temp'));
      assert.notEqual(r.code, 0);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /MTA-STS DNS lookup failed/);
    });

    it('tlsrpt attributes are accepted by postmap', async (t) => {
      if (!requireOrSkip(t, postmap !== undefined, 'postmap (Debian package postfix) is not installed')) return;
      const d = uniqueDomain('pmrpt');
      publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
      const r = await query(d, map('rpt'));
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        new RegExp(
          `^secure match=mx\\.${d.replace(/\./g, '\\.')} servername=hostname policy_type=sts policy_domain=${d.replace(/\./g, '\\.')} mx_host_pattern=mx\\.`,
        ),
      );
      assert.match(r.stdout, /\{ policy_string = mode: enforce \}/);
    });
  });
}
