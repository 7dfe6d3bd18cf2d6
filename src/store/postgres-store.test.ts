/**
 * The PostgreSQL store: the SAME contract as SQLite against a real server (each test in its own
 * schema, dropped after), then fleet behaviour: concurrent migrations, concurrent upserts of one
 * domain from several processes, claims across pools, and connections killed mid-run.
 *
 * The server is `MTASTSDB_TEST_POSTGRES` or the local one. Unreachable: in CI the run fails, elsewhere
 * the tests are skipped with the reason printed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { describe, test } from 'node:test';
import { isMtaStsError } from '../errors.js';
import { silentLogger } from '../logger.js';
import {
  backendPids,
  postgresSuite,
  postgresTestUrl,
  terminateBackends,
  testSchema,
  uniqueSchemaName,
  withAdmin,
  withSchema,
} from '../../test/helpers/postgres.js';
import { T0, collect, makeRecord, rejectsWith, storeContract } from '../../test/helpers/store-contract.js';
import { spawnStoreWriter, upsertRecord } from '../../test/helpers/store-writer.js';
import { POSTGRES_MIGRATIONS, POSTGRES_SCHEMA_VERSION } from './postgres-schema.js';
import { openPostgresStore } from './postgres-store.js';

const skip = await postgresSuite();

storeContract(
  'postgres',
  async () => {
    const { schema, drop } = testSchema();
    const store = await openPostgresStore({ url: postgresTestUrl, schema });
    return { store, cleanup: drop, another: () => openPostgresStore({ url: postgresTestUrl, schema }) };
  },
  skip,
);

describe('postgres store: fleet behaviour', skip, () => {
  test('three stores opening one fresh schema at once migrate it exactly once', async () => {
    await withSchema(async (schema) => {
      const stores = await Promise.all(
        [1, 2, 3].map(() => openPostgresStore({ url: postgresTestUrl, schema, poolSize: 2 })),
      );
      try {
        const rows = await withAdmin(
          async (c) => (await c.query(`SELECT version FROM "${schema}".mtastsdb_schema ORDER BY version`)).rows,
        );
        assert.deepEqual(
          rows.map((r: { version: number }) => r.version),
          POSTGRES_MIGRATIONS.map((m) => m.version),
        );
        assert.equal(rows.length, POSTGRES_SCHEMA_VERSION);
        await stores[0]!.put(makeRecord('shared.test'));
        assert.equal((await stores[2]!.get('shared.test'))?.domain, 'shared.test');
      } finally {
        await Promise.all(stores.map((s) => s.close()));
      }
    });
  });

  test('a schema from a newer mtastsdb is refused', async () => {
    await withSchema(async (schema) => {
      await (await openPostgresStore({ url: postgresTestUrl, schema })).close();
      await withAdmin((c) => c.query(`INSERT INTO "${schema}".mtastsdb_schema VALUES (99, 'future', 0)`));
      await assert.rejects(openPostgresStore({ url: postgresTestUrl, schema }), (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE'));
        assert.match(err.message, /newer/);
        return true;
      });
    });
  });

  test('concurrent upserts of one domain from 4 processes: the newest wins, one row, nothing else', async () => {
    await withSchema(async (schema) => {
      const store = await openPostgresStore({ url: postgresTestUrl, schema });
      try {
        const writers = 4;
        const count = 60;
        const children = Array.from({ length: writers }, (_, w) =>
          spawnStoreWriter([
            'upsert-one',
            postgresTestUrl,
            schema,
            'contested.test',
            String(w),
            String(writers),
            String(count),
          ]),
        );
        const summaries = await Promise.all(
          children.map(async (child) => {
            let out = '';
            let err = '';
            child.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
            child.stderr.setEncoding('utf8').on('data', (d: string) => (err += d));
            const [code] = (await once(child, 'exit')) as [number | null];
            assert.equal(code, 0, err);
            return JSON.parse(out.trim()) as { writer: number; written: number; count: number };
          }),
        );
        const got = await store.get('contested.test');
        // The newest lastUpdate of all: writer (writers-1), round (count-1).
        const newest = upsertRecord('contested.test', writers - 1, writers, count - 1);
        assert.equal(got?.lastUpdate.getTime(), newest.lastUpdate.getTime());
        assert.equal(got?.recordId, newest.recordId);
        assert.equal(got?.policyText, newest.policyText);
        assert.equal(await store.count(), 1);
        const rows = await withAdmin(
          async (c) =>
            (await c.query(`SELECT count(*)::int AS n FROM "${schema}".policies WHERE domain = 'contested.test'`))
              .rows[0],
        );
        assert.equal((rows as { n: number }).n, 1);
        const accepted = summaries.reduce((n, s) => n + s.written, 0);
        assert.ok(accepted >= 1 && accepted <= writers * count, `accepted ${accepted}`);
        console.log(
          `# postgres: ${writers} processes x ${count} upserts of one domain, ${accepted} accepted, newest kept`,
        );
      } finally {
        await store.close();
      }
    });
  });

  test('claims across three pools: each due record is claimed by exactly one node', async () => {
    await withSchema(async (schema) => {
      const nodes = await Promise.all(
        [0, 1, 2].map(() => openPostgresStore({ url: postgresTestUrl, schema, poolSize: 4 })),
      );
      try {
        const domains = Array.from({ length: 150 }, (_, i) => `due${i}.test`);
        await nodes[0]!.putMany(domains.map((d) => makeRecord(d)));
        const at = new Date(T0 + 13 * 3600_000);
        const claim = { now: at, leaseUntil: new Date(at.getTime() + 600_000), updatedBefore: new Date(T0 + 3600_000) };
        const results = await Promise.all(
          nodes.flatMap((node, n) =>
            domains.map(async (d) => ({ d, n, won: await node.claimRefresh(d, { ...claim, owner: `node-${n}` }) })),
          ),
        );
        const wins = new Map<string, number>();
        for (const r of results) if (r.won) wins.set(r.d, (wins.get(r.d) ?? 0) + 1);
        assert.equal(wins.size, domains.length, 'every record claimed');
        assert.ok(
          [...wins.values()].every((n) => n === 1),
          'no record claimed twice',
        );
        // The lease of a dead node expires: another node takes its records later.
        const later = new Date(at.getTime() + 600_001);
        const takeover = {
          now: later,
          leaseUntil: new Date(later.getTime() + 600_000),
          updatedBefore: claim.updatedBefore,
        };
        const lost = results.find((r) => r.won && r.n === 0)!;
        assert.equal(await nodes[1]!.claimRefresh(lost.d, { ...takeover, owner: 'node-1' }), true);
      } finally {
        await Promise.all(nodes.map((s) => s.close()));
      }
    });
  });

  test('touch from two nodes on overlapping batches in opposite orders never deadlocks', async () => {
    await withSchema(async (schema) => {
      const a = await openPostgresStore({ url: postgresTestUrl, schema });
      const b = await openPostgresStore({ url: postgresTestUrl, schema });
      try {
        const domains = Array.from({ length: 400 }, (_, i) => `t${i}.test`);
        await a.putMany(domains.map((d) => makeRecord(d)));
        const rounds = [];
        for (let k = 1; k <= 10; k++) {
          const uses = domains.map((domain) => ({ domain, lastUse: new Date(T0 + k) }));
          rounds.push(a.touch(uses), b.touch([...uses].reverse()));
        }
        await Promise.all(rounds);
        for (const d of [domains[0]!, domains[399]!]) assert.equal((await a.get(d))?.lastUse.getTime(), T0 + 10);
      } finally {
        await a.close();
        await b.close();
      }
    });
  });
});

describe('postgres store: connection faults', skip, () => {
  test('all pooled connections terminated while idle: the next queries succeed on new connections', async () => {
    await withSchema(async (schema) => {
      const app = `mtastsdb-test-${uniqueSchemaName('idle')}`;
      const store = await openPostgresStore({ url: postgresTestUrl, schema, poolSize: 4, applicationName: app });
      try {
        await store.putMany(Array.from({ length: 20 }, (_, i) => makeRecord(`c${i}.test`)));
        await Promise.all(Array.from({ length: 8 }, (_, i) => store.get(`c${i}.test`)));
        const before = await backendPids(app);
        assert.ok(before.length >= 1);
        assert.equal(await terminateBackends(app), before.length);
        // No pause: the first queries may meet a connection the pool has not yet seen die.
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.get(`c${i}.test`)));
        assert.ok(got.every((r) => r !== undefined));
        assert.equal(await store.put(makeRecord('after.test')), true);
        const after = await backendPids(app);
        assert.ok(after.length >= 1 && after.every((p) => !before.includes(p)), 'new backends serve the store');
      } finally {
        await store.close();
      }
    });
  });

  test('a connection terminated mid-query: the query is retried on a new connection and succeeds', async () => {
    await withSchema(async (schema) => {
      const app = `mtastsdb-test-${uniqueSchemaName('busy')}`;
      const warned: Array<Record<string, unknown>> = [];
      const logger = { ...silentLogger, warn: (obj: object) => void warned.push(obj as Record<string, unknown>) };
      const store = await openPostgresStore({
        url: postgresTestUrl,
        schema,
        poolSize: 2,
        applicationName: app,
        logger,
      });
      try {
        await store.put(makeRecord('locked.test'));
        await withAdmin(async (admin) => {
          // Hold the row lock so the store's put waits inside the server, then kill its backend.
          await admin.query('BEGIN');
          await admin.query(`SELECT 1 FROM "${schema}".policies WHERE domain = 'locked.test' FOR UPDATE`);
          const put = store.put(makeRecord('locked.test', { lastUpdate: new Date(T0 + 1000), recordId: 'retried' }));
          let waiting: number[] = [];
          for (let i = 0; i < 100 && waiting.length === 0; i++) {
            await new Promise((r) => setTimeout(r, 20));
            const res = await admin.query<{ pid: number }>(
              "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
              [app],
            );
            waiting = res.rows.map((r) => r.pid);
          }
          assert.equal(waiting.length, 1, 'the put is waiting on the row lock');
          await admin.query('SELECT pg_terminate_backend($1)', [waiting[0]]);
          await new Promise((r) => setTimeout(r, 100));
          await admin.query('COMMIT');
          assert.equal(await put, true);
        });
        assert.ok(
          warned.some((w) => w.op === 'put'),
          'the put failed on its dead connection and was retried',
        );
        assert.equal((await store.get('locked.test'))?.recordId, 'retried');
      } finally {
        await store.close();
      }
    });
  });

  test('an unreachable server fails open with ERR_MTASTSDB_STORE within the connect timeout, without the password', async () => {
    const t = Date.now();
    await assert.rejects(
      openPostgresStore({ url: 'postgres://user:s3cret@127.0.0.1:1/none', connectTimeoutMs: 2000 }),
      (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE'), String(err));
        assert.ok(!err.message.includes('s3cret'), err.message);
        assert.ok(err.message.includes('127.0.0.1:1'), err.message);
        return true;
      },
    );
    assert.ok(Date.now() - t < 5000);
  });

  test('bad URLs and options are configuration errors', async () => {
    await rejectsWith(openPostgresStore({ url: 'not a url' }), 'ERR_MTASTS_CONFIG');
    await rejectsWith(openPostgresStore({ url: 'mysql://x@127.0.0.1/db' }), 'ERR_MTASTS_CONFIG');
    await rejectsWith(openPostgresStore({ url: postgresTestUrl, schema: 'bad"name' }), 'ERR_MTASTS_CONFIG');
    await rejectsWith(openPostgresStore({ url: postgresTestUrl, poolSize: 0 }), 'ERR_MTASTS_USAGE');
  });

  test('a ?schema= URL parameter selects the schema', async () => {
    await withSchema(async (schema) => {
      const store = await openPostgresStore({ url: `${postgresTestUrl}?schema=${schema}` });
      try {
        assert.equal(store.schema, schema);
        await store.put(makeRecord('s.test'));
        const n = await withAdmin(
          async (c) => (await c.query(`SELECT count(*)::int AS n FROM "${schema}".policies`)).rows[0],
        );
        assert.equal((n as { n: number }).n, 1);
      } finally {
        await store.close();
      }
    });
  });
});

describe('postgres store: list snapshots', skip, () => {
  /** The store's connections that sit in a transaction between statements (a held snapshot). */
  async function inTransaction(app: string): Promise<number> {
    return withAdmin(
      async (c) =>
        (
          await c.query<{ n: number }>(
            "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'",
            [app],
          )
        ).rows[0]!.n,
    );
  }

  test('a walk in lastUse order holds one snapshot connection until it ends, is left, or the store closes; gets never wait for it', async () => {
    await withSchema(async (schema) => {
      const app = `mtastsdb-test-${uniqueSchemaName('snap')}`;
      const store = await openPostgresStore({ url: postgresTestUrl, schema, poolSize: 1, applicationName: app });
      try {
        await store.putMany(Array.from({ length: 50 }, (_, i) => makeRecord(`l${i}.test`)));
        const it = store.list({ pageSize: 10 })[Symbol.asyncIterator]();
        assert.equal((await it.next()).done, false);
        assert.equal(await inTransaction(app), 1, 'the walk holds its snapshot');
        // The walk's connection is not the pool's only one: lookups and writes go on.
        const got = await Promise.all(Array.from({ length: 20 }, (_, i) => store.get(`l${i}.test`)));
        assert.ok(got.every((r) => r !== undefined));
        assert.equal(await store.put(makeRecord('during.test')), true);
        await it.return?.();
        assert.equal(await inTransaction(app), 0, 'return() ended it');
        for await (const _ of store.list({ pageSize: 10 })) break;
        assert.equal(await inTransaction(app), 0, 'break ended it');
        await assert.rejects(async () => {
          for await (const _ of store.list({ pageSize: 10 })) throw new Error('consumer failed');
        }, /consumer failed/);
        assert.equal(await inTransaction(app), 0, 'a throw ended it');
        assert.equal((await collect(store.list({ pageSize: 7 }))).length, 51);
        assert.equal(await inTransaction(app), 0, 'the end ended it');
        const byDomain = store.list({ pageSize: 10, order: 'domain' })[Symbol.asyncIterator]();
        assert.equal((await byDomain.next()).done, false);
        assert.equal(await inTransaction(app), 0, 'domain order holds no transaction');
        await byDomain.return?.();
        // Three walks at once: two snapshot connections, the third waits for one (not for gets).
        const walks = [0, 1, 2].map(() => collect(store.list({ pageSize: 5 })));
        assert.deepEqual(
          (await Promise.all(walks)).map((w) => w.length),
          [51, 51, 51],
        );
        // Abandoned half-way: close does not wait for it, and its connection goes.
        const abandoned = store.list({ pageSize: 10 })[Symbol.asyncIterator]();
        assert.equal((await abandoned.next()).done, false);
        await store.close();
        for (let i = 0; i < 50 && (await backendPids(app)).length > 0; i++) await new Promise((r) => setTimeout(r, 20));
        assert.deepEqual(await backendPids(app), [], 'no connection left behind');
        await rejectsWith(
          (async () => {
            for (let r = await abandoned.next(); r.done !== true; r = await abandoned.next());
          })(),
          'ERR_MTASTSDB_CLOSED',
        );
      } finally {
        await store.close();
      }
    });
  });

  test('the snapshot connection terminated mid-walk: the walk fails with a coded error, the store goes on', async () => {
    await withSchema(async (schema) => {
      const app = `mtastsdb-test-${uniqueSchemaName('snapkill')}`;
      const store = await openPostgresStore({ url: postgresTestUrl, schema, applicationName: app });
      try {
        await store.putMany(Array.from({ length: 30 }, (_, i) => makeRecord(`k${i}.test`)));
        const it = store.list({ pageSize: 5 })[Symbol.asyncIterator]();
        assert.equal((await it.next()).done, false);
        const held = await withAdmin(
          async (c) =>
            (
              await c.query<{ pid: number }>(
                "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND state = 'idle in transaction'",
                [app],
              )
            ).rows,
        );
        assert.equal(held.length, 1);
        await withAdmin((c) => c.query('SELECT pg_terminate_backend($1)', [held[0]!.pid]));
        await assert.rejects(
          (async () => {
            for (let r = await it.next(); r.done !== true; r = await it.next());
          })(),
          (err: unknown) => {
            assert.ok(isMtaStsError(err, 'ERR_MTASTSDB_STORE'), String(err));
            return true;
          },
        );
        assert.equal((await collect(store.list())).length, 30, 'the next walk works');
        assert.equal(await store.put(makeRecord('after.test')), true);
      } finally {
        await store.close();
      }
    });
  });
});
