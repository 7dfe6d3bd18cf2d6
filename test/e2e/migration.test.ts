// Migration from postfix-mta-sts-resolver, against a cache file written by the real daemon (Debian's
// mta-sts-daemon, run through test/helpers/peer-daemon.ts in a network namespace with the DNS and
// HTTPS fixtures on the host side): `mtastsdb import --from-postfix-mta-sts-resolver` brings its
// policies over with their validity, and mtastsdb then answers Postfix from them with DNS down;
// `serve -c` on a configuration whose cache file holds the peer's table logs the import command
// until the policies are imported. Skips (fails in CI) without root or without the package.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import { requireOrSkip } from '../helpers/ci.js';
import { startDnsServer } from '../helpers/dns-server.js';
import { startHttpsHost } from '../helpers/https-host.js';
import { createNetns, netnsAvailable } from '../helpers/netns.js';
import { peerDaemonInstalled, startPeerDaemon } from '../helpers/peer-daemon.js';
import { spawnServe } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { getTestCa } from '../helpers/test-ca.js';

const here = fileURLToPath(import.meta.url);
const fromSource = here.endsWith('.ts');
const repo = resolve(dirname(here), fromSource ? '../..' : '../../..');
const entry = resolve(dirname(here), fromSource ? '../../src/cli/main.ts' : '../../src/cli/main.js');

interface Run {
  readonly status: number;
  readonly stdout: string;
  readonly stderr: string;
}

function mtastsdb(args: readonly string[]): Promise<Run> {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MTASTSDB_')) env[k] = v;
  return new Promise((res) => {
    execFile(
      process.execPath,
      [...(fromSource ? ['--import', 'tsx'] : []), entry, ...args],
      { cwd: repo, env, timeout: 60_000 },
      (err, stdout, stderr) => res({ status: err === null ? 0 : Number(err.code ?? 1), stdout, stderr }),
    );
  });
}

const DAY_S = 86_400;

describe('migrating from postfix-mta-sts-resolver', () => {
  it("imports the real daemon's cache file and answers from it with DNS down", async (t) => {
    if (!requireOrSkip(t, netnsAvailable(), 'network namespaces need root and iproute2')) return;
    if (!requireOrSkip(t, peerDaemonInstalled(), 'postfix-mta-sts-resolver is not installed (.ci/run installs it)'))
      return;
    const ns = await createNetns();
    const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-migrate-'));
    const dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
    const ca = await getTestCa();
    const https = await startHttpsHost({ ca, host: ns.hostAddress, port: 443 });
    let peer: Awaited<ReturnType<typeof startPeerDaemon>> | undefined;
    let serve: Awaited<ReturnType<typeof spawnServe>> | undefined;
    try {
      const caFile = join(dir, 'ca.pem');
      await writeFile(caFile, ca.certPem);
      const policies: [string, string, number][] = [
        ['enforce.mig.test', 'version: STSv1\nmode: enforce\nmx: mx1.enforce.mig.test\nmx: *.mx.mig.test\n', DAY_S],
        ['testing.mig.test', 'version: STSv1\nmode: testing\nmx: mx.testing.mig.test\n', DAY_S],
        ['none.mig.test', 'version: STSv1\nmode: none\n', DAY_S],
        ['short.mig.test', 'version: STSv1\nmode: enforce\nmx: mx.short.mig.test\n', 1],
      ];
      for (const [d, text, maxAge] of policies) {
        dns.mtaSts(d, { id: `id${maxAge}`, address: ns.hostAddress });
        https.policy(d, `${text}max_age: ${maxAge}\n`);
      }
      const cachePath = join(dir, 'cache.db');
      peer = await startPeerDaemon({ netns: ns, cachePath, caFile, timeoutSeconds: 5 });
      const c = await SocketmapClient.open({ host: peer.host, port: peer.port });
      // The peer's own answer: match= in its (set) order, wildcards without the '*'.
      const peerAnswer = await c.query('postfix', 'enforce.mig.test');
      assert.match(peerAnswer, /^OK secure match=\S+ servername=hostname$/);
      for (const [d] of policies.slice(1)) await c.query('postfix', d);
      c.destroy();
      await peer.stop();
      peer = undefined;

      // What the peer wrote, read as it stores it.
      const peerDb = new Database(cachePath, { readonly: true });
      const rows = peerDb
        .prepare('select domain, ts, pol_id, pol_body from sts_policy_cache order by domain')
        .all() as {
        domain: string;
        ts: number;
        pol_id: string;
        pol_body: string;
      }[];
      peerDb.close();
      assert.deepEqual(
        rows.map((r) => r.domain),
        ['enforce.mig.test', 'none.mig.test', 'short.mig.test', 'testing.mig.test'],
      );
      const enforceRow = rows.find((r) => r.domain === 'enforce.mig.test');
      assert.deepEqual(JSON.parse(enforceRow?.pol_body ?? '{}'), {
        mx: ['mx1.enforce.mig.test', '*.mx.mig.test'],
        version: 'STSv1',
        mode: 'enforce',
        max_age: DAY_S,
      });
      // Rows the peer never writes but a hand-edited or damaged cache may hold: reported and skipped.
      const edit = new Database(cachePath);
      edit
        .prepare('insert into sts_policy_cache (domain, ts, pol_id, pol_body) values (?, ?, ?, ?)')
        .run('garbage.mig.test', Math.floor(Date.now() / 1000), 'g1', '{not json');
      edit
        .prepare('insert into sts_policy_cache (domain, ts, pol_id, pol_body) values (?, ?, ?, ?)')
        .run(
          'badmx.mig.test',
          Math.floor(Date.now() / 1000),
          'b1',
          JSON.stringify({ version: 'STSv1', mode: 'enforce', mx: ['*'], max_age: 600 }),
        );
      edit.close();
      // short.mig.test (max_age 1) expires before the import.
      await new Promise((r) => setTimeout(r, 2100));

      // A mistyped source creates nothing and says why.
      const data = join(dir, 'data');
      const wrong = await mtastsdb([
        '--data-dir',
        data,
        'import',
        '--from-postfix-mta-sts-resolver',
        join(dir, 'nope.db'),
      ]);
      assert.equal(wrong.status, 2, wrong.stderr);
      assert.match(wrong.stderr, /^ERR_MTASTS_USAGE: cannot read .*nope\.db/);
      const missing = await mtastsdb(['--data-dir', data, 'list']);
      assert.equal(missing.status, 8, 'the failed import created no store');

      const dry = await mtastsdb([
        '--data-dir',
        data,
        'import',
        '--from-postfix-mta-sts-resolver',
        cachePath,
        '--dry-run',
        '--json',
      ]);
      assert.equal(dry.status, 0, dry.stderr);
      assert.deepEqual(JSON.parse(dry.stdout), { valid: 3, expired: 1, invalid: 2 });

      const imported = await mtastsdb(['--data-dir', data, 'import', '--from-postfix-mta-sts-resolver', cachePath]);
      assert.equal(imported.status, 0, imported.stderr);
      assert.equal(
        imported.stdout,
        'imported 3 records, 0 skipped (cached copy newer), 1 expired (not imported), 2 invalid\n',
      );
      const complaints = imported.stderr.trimEnd().split('\n').sort();
      assert.equal(complaints.length, 2, imported.stderr);
      assert.match(complaints[0] ?? '', /^ERR_MTASTS_USAGE: badmx\.mig\.test: .*\(skipped\)$/);
      assert.match(complaints[1] ?? '', /^ERR_MTASTS_USAGE: garbage\.mig\.test: pol_body is not JSON/);

      const shown = await mtastsdb(['--data-dir', data, 'show', '--json', 'enforce.mig.test']);
      assert.equal(shown.status, 0, shown.stderr);
      const rec = JSON.parse(shown.stdout) as Record<string, unknown>;
      assert.equal(rec.recordId, `id${DAY_S}`);
      assert.equal(rec.lastUpdate, new Date((enforceRow?.ts ?? 0) * 1000).toISOString());
      assert.equal(rec.validEnd, new Date(((enforceRow?.ts ?? 0) + DAY_S) * 1000).toISOString());
      assert.deepEqual((rec.policy as { mx: string[] }).mx, ['mx1.enforce.mig.test', '*.mx.mig.test']);

      // Importing again changes nothing: newest wins, equal times rewrite the same record.
      const again = await mtastsdb([
        '--data-dir',
        data,
        'import',
        '--from-postfix-mta-sts-resolver',
        cachePath,
        '--json',
      ]);
      assert.deepEqual(JSON.parse(again.stdout), { imported: 3, older: 0, expired: 1, invalid: 2 });

      // The protection survives the switch: with DNS failing, the imported enforce policy answers.
      const deadDns = ['--dns-server', '127.0.0.1:9', '--timeout', '1'];
      const [enforce, testing, none] = await Promise.all(
        ['enforce.mig.test', 'testing.mig.test', 'none.mig.test'].map((d) =>
          mtastsdb(['--data-dir', data, ...deadDns, 'query', d]),
        ),
      );
      assert.equal(enforce?.stdout, 'OK secure match=mx1.enforce.mig.test:.mx.mig.test servername=hostname\n');
      assert.equal(testing?.stdout, 'NOTFOUND \n');
      assert.equal(none?.stdout, 'NOTFOUND \n');

      // The same file under serve -c (the peer's config, "changing nothing"): the import is offered.
      const sameFile = join(dir, 'same.db');
      const copy = new Database(cachePath, { readonly: true });
      await copy.backup(sameFile);
      copy.close();
      const config = join(dir, 'mta-sts-daemon.yml');
      await writeFile(config, `cache:\n  type: sqlite\n  options:\n    filename: ${sameFile}\n`);
      serve = await spawnServe(['-c', config, ...deadDns]);
      const offer = JSON.parse(await serve.waitFor(/postfix-mta-sts-resolver's cache/, 15_000)) as Record<
        string,
        unknown
      >;
      assert.equal(offer.level, 40, 'a warning');
      assert.equal(offer.unexpired, 3);
      assert.equal(offer.command, `mtastsdb import --from-postfix-mta-sts-resolver ${sameFile} -c ${config}`);
      serve.child.kill('SIGTERM');
      await serve.exited;
      serve = undefined;
      // Run the offered command; the next start offers nothing.
      const done = await mtastsdb(['-c', config, 'import', '--from-postfix-mta-sts-resolver', sameFile]);
      assert.equal(done.status, 0, done.stderr);
      assert.match(done.stdout, /^imported 3 records/);
      serve = await spawnServe(['-c', config, ...deadDns, '--log-level', 'debug']);
      await serve.waitFor(/already imported/, 15_000);
      assert.equal(
        serve.lines.some((l) => l.includes('import them once')),
        false,
      );
    } finally {
      if (serve !== undefined) {
        serve.child.kill('SIGTERM');
        await serve.exited;
      }
      await peer?.stop();
      await https.close();
      await dns.close();
      await ns.close();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('migrating from postfix-mta-sts-resolver on PostgreSQL', async () => {
  const { postgresSuite, postgresTestUrl, testSchema, withAdmin } = await import('../helpers/postgres.js');
  const suite = await postgresSuite();
  it("reads its sts_policy_cache table (jsonb, upstream's schema) into a SQLite store", suite, async () => {
    const { schema, drop } = testSchema('peer');
    const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-migrate-pg-'));
    try {
      const now = Math.floor(Date.now() / 1000);
      await withAdmin(async (c) => {
        await c.query(`CREATE SCHEMA ${schema}`);
        // As postfix_mta_sts_resolver/postgres_cache.py creates it.
        await c.query(
          `CREATE TABLE ${schema}.sts_policy_cache (id serial primary key, domain text, ts integer, pol_id text, pol_body jsonb)`,
        );
        const insert = `INSERT INTO ${schema}.sts_policy_cache (domain, ts, pol_id, pol_body) VALUES ($1, $2, $3, $4)`;
        await c.query(insert, [
          'pg.mig.test',
          now - 60,
          'pg1',
          JSON.stringify({ mx: ['mx.pg.mig.test'], version: 'STSv1', mode: 'enforce', max_age: DAY_S }),
        ]);
        await c.query(insert, [
          'old.mig.test',
          now - 2 * DAY_S,
          'o1',
          JSON.stringify({ mx: ['mx.old.mig.test'], version: 'STSv1', mode: 'enforce', max_age: DAY_S }),
        ]);
      });
      const data = join(dir, 'data');
      const source = `${postgresTestUrl}?schema=${schema}`;
      const run = await mtastsdb(['--data-dir', data, 'import', '--from-postfix-mta-sts-resolver', source, '--json']);
      assert.equal(run.status, 0, run.stderr);
      assert.deepEqual(JSON.parse(run.stdout), { imported: 1, older: 0, expired: 1, invalid: 0 });
      const shown = await mtastsdb(['--data-dir', data, 'show', '--json', 'pg.mig.test']);
      const rec = JSON.parse(shown.stdout) as Record<string, unknown>;
      assert.equal(rec.validEnd, new Date((now - 60 + DAY_S) * 1000).toISOString());
      assert.equal(rec.recordId, 'pg1');
      const noTable = await mtastsdb([
        '--data-dir',
        data,
        'import',
        '--from-postfix-mta-sts-resolver',
        postgresTestUrl,
      ]);
      assert.equal(noTable.status, 2);
      assert.match(noTable.stderr, /has no sts_policy_cache table in schema public/);
    } finally {
      await drop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});
