/**
 * What an operator reads in the daemon's log (a real `mtastsdb serve`, pino JSON on stdout): a
 * routine back-off is one line without a stack; a policy change and a suspected downgrade are audit
 * lines with what changed; a downgrade that recurs on every lookup is logged once and counted each
 * time in /metrics.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { policyText, publish, startNet, uniqueDomain } from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { spawnServe, writeServeConfig } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

interface Entry {
  readonly level: number;
  readonly msg: string;
  readonly domain?: string;
  readonly [k: string]: unknown;
}

describe('operator logs of mtastsdb serve', () => {
  let net: Net;
  let dir: string;
  let serve: ServeProcess;
  let client: SocketmapClient;
  let metricsPort = 0;

  before(async () => {
    net = await startNet();
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-logs-'));
    const config = await writeServeConfig(join(dir, 'logs.yml'), join(dir, 'logs.db'), [
      // Every lookup checks the TXT id: a changed or vanished record is seen at once.
      'cache_grace: 0',
      'memory_cache:\n  ttl: 0',
      'proactive_policy_fetching:\n  enabled: false',
      'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
    ]);
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, net.ca.certPem);
    serve = await spawnServe(
      ['-c', config, '--dns-server', net.dns.address, '--policy-port', String(net.https.port), '--ca', caFile],
      { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
    );
    const line = await serve.waitFor(/metrics endpoint listening/);
    metricsPort = (JSON.parse(line) as { address: { port: number } }).address.port;
    client = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
  });
  after(async () => {
    client?.close();
    serve?.child.kill('SIGKILL');
    await net?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const entries = (): Entry[] =>
    serve.lines.flatMap((l) => {
      try {
        return [JSON.parse(l) as Entry];
      } catch {
        return [];
      }
    });
  const metric = async (series: string): Promise<number> => {
    const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
    const line = text.split('\n').find((l) => l.startsWith(`${series} `));
    return line === undefined ? NaN : Number(line.slice(series.length + 1));
  };

  it('a routine back-off (HTTP 404) is one info line with the error code, no stack', async () => {
    const d = uniqueDomain('nopolicy');
    net.dns.mtaSts(d, { id: 'x1' });
    assert.equal(await client.query('postfix', d), 'NOTFOUND ');
    const raw = serve.lines.filter((l) => l.includes(d) && l.includes('backing off'));
    assert.equal(raw.length, 1, raw.join('\n'));
    assert.doesNotMatch(raw[0] ?? '', /"stack"|\\n\s+at /);
    const e = JSON.parse(raw[0] ?? '{}') as Entry & { err?: { code?: string; message?: string } };
    assert.equal(e.level, 30);
    assert.equal(e.err?.code, 'ERR_MTASTS_NO_POLICY');
    assert.match(e.err?.message ?? '', /404/);
  });

  it('a new id with another mode and mx: one audit line naming the changes, counted', async () => {
    const d = uniqueDomain('changes');
    publish(net, d, 'v1', policyText('enforce', [`mx1.${d}`], 86400));
    assert.equal(await client.query('postfix', d), `OK secure match=mx1.${d} servername=hostname`);
    const modeBefore = await metric('mtastsdb_policy_changes_total{change="mode"}');
    publish(net, d, 'v2', policyText('testing', [`mx2.${d}`], 86400));
    assert.equal(await client.query('postfix', d), 'NOTFOUND ');
    const changed = entries().filter((e) => e.msg === 'MTA-STS policy changed' && e.domain === d);
    assert.equal(changed.length, 1);
    assert.equal(changed[0]?.level, 30);
    assert.deepEqual(changed[0]?.changes, ['id', 'mode', 'mx']);
    assert.deepEqual(changed[0]?.mode, { from: 'enforce', to: 'testing' });
    assert.deepEqual([changed[0]?.mxAdded, changed[0]?.mxRemoved], [[`mx2.${d}`], [`mx1.${d}`]]);
    assert.equal(await metric('mtastsdb_policy_changes_total{change="mode"}'), modeBefore + 1);
  });

  it('the TXT record vanishes under enforce: the policy holds, one warn line, every lookup counted', async () => {
    const d = uniqueDomain('vanish');
    publish(net, d, 'v1', policyText('enforce', [`mx.${d}`], 86400));
    const ok = `OK secure match=mx.${d} servername=hostname`;
    assert.equal(await client.query('postfix', d), ok);
    const counted = await metric('mtastsdb_downgrades_suspected_total{reason="txt_vanished"}');
    net.dns.nxdomain(`_mta-sts.${d}`);
    for (let i = 0; i < 5; i++) assert.equal(await client.query('postfix', d), ok);
    const lines = entries().filter((e) => e.event === 'downgrade-suspected' && e.domain === d);
    assert.equal(lines.length, 1, 'logged once per domain per interval');
    assert.equal(lines[0]?.level, 40);
    assert.equal(lines[0]?.sign, 'txt_vanished');
    assert.equal(await metric('mtastsdb_downgrades_suspected_total{reason="txt_vanished"}'), counted + 5);
  });
});
