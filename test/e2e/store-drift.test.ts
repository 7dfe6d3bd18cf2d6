/**
 * The store changing under the real daemon (`mtastsdb serve`, a process): the SQLite file deleted
 * while it serves. The daemon must notice, log it, say `degraded` in `/healthz`, and store what it
 * discovers afterwards in the new file, so that a restart still has it. Loopback DNS and HTTPS only.
 */
import assert from 'node:assert/strict';
import { existsSync, unlinkSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import Database from 'better-sqlite3';
import { policyText, publish, startNet, uniqueDomain, until } from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { DEAD_DNS_FLAGS, spawnServe, writeServeConfig } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

describe('mtastsdb serve: the SQLite file deleted while serving', () => {
  let net: Net;
  let dir: string;
  let store: string;
  let args: string[];
  let deadArgs: string[];
  let serve: ServeProcess | undefined;

  before(async () => {
    net = await startNet();
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-drift-e2e-'));
    store = join(dir, 'drift.db');
    const config = await writeServeConfig(join(dir, 'drift.yml'), store, [
      'proactive_policy_fetching:\n  enabled: false',
      'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
    ]);
    const caFile = join(dir, 'ca.pem');
    await writeFile(caFile, net.ca.certPem);
    args = ['-c', config, '--dns-server', net.dns.address, '--policy-port', String(net.https.port), '--ca', caFile];
    deadArgs = ['-c', config, ...DEAD_DNS_FLAGS];
  });
  after(async () => {
    serve?.child.kill('SIGKILL');
    await net?.close();
    if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  });

  const start = async (
    argv: readonly string[],
  ): Promise<{ client: SocketmapClient; healthz: () => Promise<string> }> => {
    serve = await spawnServe(argv, { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' });
    const line = await serve.waitFor(/metrics endpoint listening/);
    const port = (JSON.parse(line) as { address: { port: number } }).address.port;
    const client = await SocketmapClient.open({ host: '127.0.0.1', port: serve.port });
    return { client, healthz: async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).text() };
  };
  const stop = async (): Promise<void> => {
    serve?.child.kill('SIGTERM');
    assert.equal(await serve?.exited, 0);
    serve = undefined;
  };
  const enforced = (prefix: string): string => {
    const d = uniqueDomain(prefix);
    publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
    return d;
  };
  const okFor = (d: string): string => `OK secure match=mx.${d} servername=hostname`;

  it('detected, degraded in /healthz, logged; a record written afterwards survives a restart', async () => {
    const before = enforced('before');
    const after = enforced('after');
    let { client, healthz } = await start(args);
    try {
      // The endpoint listens before the store is open: wait for the first ok.
      await until(async () => (await healthz()) === 'ok\n', 10_000, 'the daemon reports ok');
      assert.equal(await client.query('postfix', before), okFor(before));
      for (const s of ['', '-wal', '-shm']) if (existsSync(store + s)) unlinkSync(store + s);
      // The next lookup of a new domain discovers and writes it: the write checks the file first.
      assert.equal(await client.query('postfix', after), okFor(after));
      const logged = await serve!.waitFor(/the database file was deleted while the store had it open/);
      assert.equal((JSON.parse(logged) as { level: number }).level, 50, 'logged as an error');
      assert.ok(logged.includes(store), 'the log names the file');
      const health = await healthz();
      assert.match(health, /^degraded: sqlite store .*drift\.db: the database file was deleted under the running/);
      assert.ok(existsSync(store), 'a new file at the path');
    } finally {
      client.close();
    }
    await stop();

    // The record written after the deletion is in the file at the path, read on its own…
    const db = new Database(store, { readonly: true });
    try {
      const domains = db.prepare('SELECT domain FROM policies').pluck().all();
      assert.deepEqual(domains, [after]);
    } finally {
      db.close();
    }
    // …and a restarted daemon answers it with DNS dead (from the store alone).
    ({ client, healthz } = await start(deadArgs));
    try {
      await until(async () => (await healthz()) === 'ok\n', 10_000, 'a fresh start reports ok');
      assert.equal(await client.query('postfix', after), okFor(after));
    } finally {
      client.close();
    }
    await stop();
  });
});
