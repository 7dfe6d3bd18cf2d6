/**
 * Storage faults under a running daemon: while the policy store cannot be read, a
 * policy the daemon answered before is answered again from memory (never weaker than the cache,
 * RFC 8461 §10), a domain it never answered gets `TEMP` (even without `temp_on_error`), and when
 * the fault clears, discoveries are stored again.
 *
 * Faults are confined to this file's own data: a renamed column in a private PostgreSQL schema
 * (a dropped or renamed table would be recreated by the store: see postgres-drift.test.ts),
 * a SQLite file overwritten in place and later restored. A real PostgreSQL restart runs only in
 * CI as root (it would disturb other test files elsewhere).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, truncateSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import Database from 'better-sqlite3';
import { parseConfigText } from '../../src/config/load-config.js';
import { MtaStsDb } from '../../src/cache/mtastsdb.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import { createSocketmapHandler } from '../../src/daemon/handler.js';
import type { Daemon } from '../../src/daemon/daemon.js';
import { openStore } from '../../src/store/open-store.js';
import type { PolicyStore } from '../../src/store/policy-store.js';
import {
  captureLogger,
  policyText,
  publish,
  recordingMetrics,
  startNet,
  uniqueDomain,
  until,
} from '../helpers/cache-fixture.js';
import type { Net } from '../helpers/cache-fixture.js';
import { inCI, requireOrSkip } from '../helpers/ci.js';
import { ManualClock } from '../helpers/manual-clock.js';
import { postgresReachable, postgresTestUrl, testSchema, withAdmin } from '../helpers/postgres.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let net: Net;
let dir: string;
before(async () => {
  net = await startNet({ dnsTimeoutMs: 800, fetchTimeoutMs: 2000 });
  dir = await mkdtemp(join(tmpdir(), 'mtastsdb-faults-'));
});
after(async () => {
  await net.close();
  await rm(dir, { recursive: true, force: true });
});

/** `temp_on_error` is off everywhere: a TEMP answer below comes from the store fault alone. */
function configYaml(store: string): string {
  return `
host: 127.0.0.1
port: 0
cache_grace: 0
store: ${store}
proactive_policy_fetching:
  enabled: false
default_zone:
  timeout: 3
zones:
  postfix:
    timeout: 3
  tlsrpt:
    tlsrpt: true
metrics:
  enabled: false
`;
}

interface Running {
  readonly daemon: Daemon;
  readonly client: SocketmapClient;
  readonly logger: ReturnType<typeof captureLogger>;
  q(key: string, name?: string): Promise<string>;
  close(): Promise<void>;
}

async function run(store: string): Promise<Running> {
  const logger = captureLogger();
  const daemon = await startDaemon({
    config: parseConfigText(configYaml(store)),
    logger,
    resolver: net.resolver,
    fetchOptions: net.fetchOptions,
  });
  const client = await SocketmapClient.open({ host: '127.0.0.1', port: (daemon.address as { port: number }).port });
  return {
    daemon,
    client,
    logger,
    q: (key, name = 'postfix') => client.query(name, key),
    async close() {
      client.destroy();
      await daemon.close();
    },
  };
}

const okFor = (d: string): string => `OK secure match=mx.${d} servername=hostname`;

/** Publishes an enforce policy for a fresh domain and returns it. */
function enforced(prefix: string): string {
  const d = uniqueDomain(prefix);
  publish(net, d, 'id1', policyText('enforce', [`mx.${d}`], 86400));
  return d;
}

/**
 * The shared scenario: warm a policy, break the store, check the answers, heal it, check that
 * discoveries are stored again (read back through a separate store connection).
 */
async function faultScenario(
  r: Running,
  fault: { break(): Promise<void>; heal(): Promise<void> },
  reopen: () => Promise<PolicyStore>,
): Promise<void> {
  const d = enforced('mem');
  const testing = uniqueDomain('tst');
  publish(net, testing, 'id1', policyText('testing', [`mx.${testing}`], 86400));
  assert.equal(await r.q(d), okFor(d));
  assert.equal(await r.q(testing), 'NOTFOUND ');
  const tlsrptBefore = await r.q(d, 'tlsrpt');
  assert.match(tlsrptBefore, /^OK secure .* policy_type=sts /);
  const unseen = enforced('unseen'); // published, but never asked before the fault

  await fault.break();
  try {
    // The store answers nothing: the remembered policy, byte for byte, in every zone.
    assert.equal(await r.q(d), okFor(d), 'remembered enforce policy during the fault');
    assert.equal(await r.q(d.toUpperCase(), 'default'), okFor(d));
    assert.equal(await r.q(d, 'tlsrpt'), tlsrptBefore, 'policy strings remembered too');
    // Never answered before: nothing to go on, so defer (no temp_on_error in this config).
    assert.match(await r.q(unseen), /^TEMP MTA-STS policy store unavailable$/);
    // A remembered `testing` policy is answered as before (NOTFOUND here is not a downgrade).
    assert.equal(await r.q(testing), 'NOTFOUND ');
    assert.ok(
      r.logger.entries.some((e) => e.level === 'warn' && e.msg.includes('policy store unreadable')),
      'the fault is logged',
    );
  } finally {
    await fault.heal();
  }

  // Writes resume: a new domain is discovered, answered and stored.
  const fresh = enforced('after');
  assert.equal(await r.q(fresh), okFor(fresh));
  assert.equal(await r.q(unseen), okFor(unseen));
  assert.equal(await r.q(d), okFor(d));
  const store = await reopen();
  try {
    for (const x of [fresh, unseen, d]) {
      const rec = await store.get(x);
      assert.ok(rec !== undefined, `${x} stored`);
      assert.equal(rec.policy.mode, 'enforce');
      assert.equal(rec.backoff, false);
    }
  } finally {
    await store.close();
  }
}

let reachable: Promise<{ readonly ok: boolean; readonly why: string }> | undefined;
async function postgresAvailable(t: TestContext): Promise<boolean> {
  reachable ??= postgresReachable();
  const r = await reachable;
  return requireOrSkip(t, r.ok, r.why);
}

function schemaUrl(schema: string): string {
  return `${postgresTestUrl}${postgresTestUrl.includes('?') ? '&' : '?'}schema=${schema}`;
}

describe('store faults: PostgreSQL', () => {
  it('policies unreadable (a column renamed in our schema): remembered OK, unseen TEMP, writes resume', async (t) => {
    if (!(await postgresAvailable(t))) return;
    const { schema, drop } = testSchema('faults');
    const url = schemaUrl(schema);
    const r = await run(url);
    const rename = (from: string, to: string): Promise<unknown> =>
      withAdmin(async (c) => {
        await c.query('SET lock_timeout = 5000');
        return c.query(`ALTER TABLE "${schema}".policies RENAME COLUMN ${from} TO ${to}`);
      });
    try {
      await faultScenario(
        r,
        {
          break: () => rename('policy_text', 'policy_text_away').then(() => {}),
          heal: () => rename('policy_text_away', 'policy_text').then(() => {}),
        },
        () => openStore({ store: url }),
      );
    } finally {
      await r.close();
      await drop();
    }
  });

  it('a real server restart mid-run: never weaker than the cache, then the store is used again', async (t) => {
    // Restarting the shared server would break other test files running at the same time, so
    // only CI (one job, ours) does it, and only as root with Debian's pg_ctlcluster.
    const pgCtl = '/usr/bin/pg_ctlcluster';
    const why = !inCI
      ? 'restarting PostgreSQL runs only in CI (CI=true): it would disturb other tests on this server'
      : process.getuid?.() !== 0
        ? 'restarting PostgreSQL needs root'
        : !existsSync(pgCtl) || !existsSync('/etc/postgresql')
          ? 'pg_ctlcluster / /etc/postgresql not found'
          : '';
    if (why !== '') {
      console.log(`# skipped: ${why}`);
      t.skip(why);
      return;
    }
    if (!(await postgresAvailable(t))) return;
    const version = readdirSync('/etc/postgresql')
      .filter((v) => /^\d+$/.test(v))
      .sort((a, b) => +b - +a)[0];
    assert.ok(version !== undefined, 'a PostgreSQL cluster version under /etc/postgresql');
    // Asynchronous, so the daemon keeps answering (and we keep asking) while the server restarts.
    const ctl = async (action: string): Promise<void> => {
      await promisify(execFile)(pgCtl, ['--skip-systemctl-redirect', version, 'main', action], { timeout: 60_000 });
    };
    const { schema, drop } = testSchema('restart');
    const url = schemaUrl(schema);
    const r = await run(url);
    try {
      const d = enforced('rst');
      assert.equal(await r.q(d), okFor(d));
      const answers: string[] = [];
      let restarting = true;
      const asking = (async () => {
        while (restarting) {
          answers.push(await r.q(d));
          await sleep(20);
        }
      })();
      await ctl('restart');
      await sleep(200);
      restarting = false;
      await asking;
      assert.ok(answers.length > 0);
      for (const a of answers) {
        assert.ok(a === okFor(d) || a.startsWith('TEMP '), `never weaker than the cached policy: ${a}`);
      }
      // The pool reconnects: a new discovery is stored and read back.
      const fresh = enforced('rst-after');
      await until(async () => (await r.q(fresh)) === okFor(fresh), 30_000, 'answers from the store again');
      const store = await openStore({ store: url });
      try {
        assert.equal((await store.get(fresh))?.policy.mode, 'enforce');
      } finally {
        await store.close();
      }
    } finally {
      await r.close();
      // Whatever happened, leave the server running for whoever comes next.
      if (!(await postgresReachable()).ok) {
        try {
          await ctl('start');
        } catch (err) {
          console.log(`# starting PostgreSQL again failed: ${(err as Error).message}`);
        }
      }
      await drop().catch(() => undefined);
    }
  });
});

describe('store faults: SQLite', () => {
  it('database file overwritten in place (not a database): remembered OK, unseen TEMP, writes resume', async () => {
    const file = join(dir, `faults-${process.pid}.db`);
    const r = await run(file);
    let saved: Array<readonly [string, Buffer]> = [];
    /** In-place rewrite: the daemon's open connection sees it (a rename would not). */
    const put = (name: string, bytes: Buffer): void => {
      writeFileSync(name, bytes, { flag: 'r+' });
      truncateSync(name, bytes.length);
    };
    try {
      await faultScenario(
        r,
        {
          async break() {
            // All of the database into the main file first, so the saved bytes are the whole
            // state; everything here is synchronous, so the daemon cannot write in between.
            const side = new Database(file);
            try {
              side.pragma('wal_checkpoint(TRUNCATE)');
            } finally {
              side.close();
            }
            saved = ['', '-wal', '-shm']
              .map((s) => file + s)
              .filter((n) => existsSync(n))
              .map((n) => [n, readFileSync(n)] as const);
            const main = saved[0]?.[1];
            assert.ok(main !== undefined && main.length > 0);
            put(file, Buffer.alloc(main.length, 0x41));
            // A zeroed WAL index makes the open connection re-read the (now garbage) file.
            const shm = saved.find(([n]) => n.endsWith('-shm'));
            if (shm !== undefined) put(shm[0], Buffer.alloc(shm[1].length, 0));
          },
          async heal() {
            for (const [name, bytes] of saved) put(name, bytes);
          },
        },
        () => openStore({ path: file }),
      );
      assert.ok(
        r.logger.entries.some((e) => /ERR_MTASTSDB_STORE_CORRUPT/.test(JSON.stringify(e))),
        'the store reported the damaged file',
      );
    } finally {
      await r.close();
    }
  });
});

describe('store faults: the handler memory', () => {
  it('bounded (LRU), expires with the policy, and answers while the database is closed', async () => {
    // The cache's clock starts now; moving it past max_age expires what it remembers.
    const clock = new ManualClock(Date.now());
    const db = await MtaStsDb.open({
      path: join(dir, `memory-${process.pid}.db`),
      resolver: net.resolver,
      fetchOptions: net.fetchOptions,
      clock,
      rememberedPolicies: 2,
    });
    const config = parseConfigText(configYaml(join(dir, 'unused.db')));
    const handler = createSocketmapHandler({
      db,
      config: () => config,
      logger: captureLogger(),
      metrics: recordingMetrics(),
    });
    const signal = new AbortController().signal;
    const q = (d: string): Promise<string> => handler('postfix', d, signal);
    const [a, b, c] = [enforced('lru'), enforced('lru'), enforced('lru')];
    let closed = false;
    try {
      assert.equal(await q(a), okFor(a));
      assert.equal(await q(b), okFor(b));
      assert.equal(await q(a), okFor(a)); // a is now the most recently used
      assert.equal(await q(c), okFor(c)); // evicts b
      await db.close();
      closed = true;
      // Closed: nothing can be read. Remembered → the policy; evicted → TEMP (never NOTFOUND).
      assert.equal(await q(a), okFor(a));
      assert.equal(await q(c), okFor(c));
      assert.equal(await q(b), 'TEMP MTA-STS daemon shutting down');
      // Past max_age (86400 s) the memory no longer applies either.
      await clock.advance(86_401_000);
      assert.equal(await q(a), 'TEMP MTA-STS daemon shutting down');
    } finally {
      if (!closed) await db.close();
    }
  });
});
