/**
 * Fleet mode: three MtaStsDb nodes in separate processes on one PostgreSQL schema, their
 * refreshers on manual clocks driven from here over IPC. Each due record is refreshed exactly once
 * (fetches counted at the HTTPS fixture, which runs here); a node killed with SIGKILL in the middle
 * of a refresh loses nothing, and its lease is taken over once it expires.
 */
import assert from 'node:assert/strict';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, test, type TestContext } from 'node:test';
import { MtaStsDb } from '../src/cache/mtastsdb.js';
import { parsePolicy } from '../src/rfc8461/policy.js';
import type { PolicyStore } from '../src/store/policy-store.js';
import {
  fetches,
  policyText,
  publish,
  startNet,
  storeKinds,
  until,
  uniqueDomain,
  type Net,
} from './helpers/cache-fixture.js';
import type { FleetNodeConfig, FleetNodeReply } from './helpers/fleet-node.js';
import { ManualClock } from './helpers/manual-clock.js';

const MIN = 60_000;
const HOUR = 60 * MIN;
const T0 = Date.UTC(2026, 1, 1);
const postgres = storeKinds.find((k) => k.kind === 'postgres')!;

/** One node process and its IPC. */
class Node {
  readonly child: ChildProcess;
  last: FleetNodeReply | undefined;
  output = '';
  private waiting: Array<(r: FleetNodeReply) => void> = [];

  constructor(config: FleetNodeConfig) {
    const here = fileURLToPath(import.meta.url);
    const ts = here.endsWith('.ts');
    this.child = fork(
      path.join(path.dirname(here), 'helpers', `fleet-node.${ts ? 'ts' : 'js'}`),
      ['fleet', JSON.stringify(config)],
      {
        execArgv: ts ? process.execArgv.filter((a) => !a.startsWith('--test')) : [],
        stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
      },
    );
    this.child.stdout?.on('data', (b: Buffer) => (this.output += b.toString()));
    this.child.stderr?.on('data', (b: Buffer) => (this.output += b.toString()));
    this.child.on('message', (m: FleetNodeReply) => {
      this.last = m;
      this.waiting.shift()?.(m);
    });
  }

  private next(): Promise<FleetNodeReply> {
    return new Promise((resolve, reject) => {
      const onExit = (): void => reject(new Error(`node exited: ${this.output}`));
      this.child.once('exit', onExit);
      this.waiting.push((r) => {
        this.child.off('exit', onExit);
        resolve(r);
      });
    });
  }

  ready(): Promise<FleetNodeReply> {
    return this.next();
  }

  async send(msg: { op: string; ms?: number }): Promise<FleetNodeReply> {
    const reply = this.next();
    this.child.send(msg);
    return reply;
  }

  get alive(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  async close(): Promise<void> {
    if (!this.alive) return;
    const exited = once(this.child, 'exit');
    await this.send({ op: 'close' }).catch(() => undefined);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(timer);
  }
}

interface Fleet {
  readonly net: Net;
  readonly store: PolicyStore;
  readonly storeSpec: string;
  nodes: Node[];
  start(owner: string, seed: number): Promise<Node>;
  /** Moves every live node's clock by `ms`, in lockstep, waiting until each is idle again. */
  advance(ms: number): Promise<void>;
}

async function fleet(t: TestContext): Promise<Fleet | undefined> {
  if (!(await postgres.available(t))) return undefined;
  const handle = await postgres.create();
  const net = await startNet({ dnsTimeoutMs: 1000, fetchTimeoutMs: 5000 });
  const store = await handle.open();
  const storeSpec = handle.spec;
  const f: Fleet = {
    net,
    store,
    storeSpec,
    nodes: [],
    async start(owner, seed) {
      const node = new Node({
        store: storeSpec,
        dnsServer: net.dns.address,
        httpsPort: net.https.port,
        caPem: net.ca.certPem,
        start: T0,
        owner,
        seed,
        leaseSeconds: 3600,
      });
      f.nodes.push(node);
      await node.ready();
      return node;
    },
    async advance(ms) {
      await Promise.all(f.nodes.filter((n) => n.alive).map((n) => n.send({ op: 'advance', ms })));
    },
  };
  t.after(async () => {
    await Promise.all(f.nodes.map((n) => n.close()));
    await store.close();
    await net.close();
    await handle.cleanup();
  });
  return f;
}

/** Caches `domains` 13 h before T0 with TXT id `old`, then publishes id `new` with a new policy. */
async function seedDue(f: Fleet, domains: readonly string[]): Promise<void> {
  const clock = new ManualClock(T0 - 13 * HOUR);
  const db = await MtaStsDb.open({ store: f.store, clock, resolver: f.net.resolver, fetchOptions: f.net.fetchOptions });
  try {
    for (const d of domains) {
      const old = policyText('enforce', [`mx.${d}`], 7 * 86400);
      await db.upsert(d, 'old', parsePolicy(old), old);
      publish(f.net, d, 'new', policyText('enforce', [`mx.${d}`, `mx2.${d}`], 7 * 86400));
    }
  } finally {
    await db.close();
  }
}

async function allNew(store: PolicyStore, domains: readonly string[]): Promise<boolean> {
  for (const d of domains) if ((await store.get(d))?.recordId !== 'new') return false;
  return true;
}

describe('fleet: three nodes in separate processes on one PostgreSQL schema', () => {
  test('each due record is refreshed exactly once', async (t) => {
    const f = await fleet(t);
    if (!f) return;
    const domains = Array.from({ length: 30 }, () => uniqueDomain('fleet'));
    await seedDue(f, domains);
    await Promise.all([f.start('node-1', 1), f.start('node-2', 2), f.start('node-3', 3)]);

    // The passes start at T0 and spread 30 refreshes over 3 h; drive the clocks past that.
    for (let elapsed = 0; elapsed <= 3.5 * HOUR; elapsed += 5 * MIN) await f.advance(5 * MIN);
    await until(() => allNew(f.store, domains), 20_000, 'every record refreshed');

    for (const d of domains) assert.equal(fetches(f.net, d), 1, `${d} fetched exactly once`);
    const replies = await Promise.all(f.nodes.map((n) => n.send({ op: 'status' })));
    const updated = replies.map((r) => r.refreshes.updated);
    assert.equal(
      updated.reduce((a, b) => a + b, 0),
      domains.length,
      `updates per node: ${updated.join(', ')}`,
    );
    assert.ok(updated.filter((u) => u > 0).length >= 2, `the work was shared: ${updated.join(', ')}`);
    for (const d of domains) {
      const rec = await f.store.get(d);
      assert.equal(rec?.policy.mx.length, 2);
      assert.ok(rec!.lastUpdate.getTime() >= T0);
    }
  });

  test('a node killed with SIGKILL mid-refresh loses nothing; its lease is taken over after expiry', async (t) => {
    const f = await fleet(t);
    if (!f) return;
    const normal = Array.from({ length: 8 }, () => uniqueDomain('kill'));
    const slow = uniqueDomain('slow');
    await seedDue(f, [...normal, slow]);
    // The policy host of `slow` accepts the request and never answers.
    f.net.https.behave(slow, { noResponse: true });
    const notDue = uniqueDomain('kept');
    {
      const clock = new ManualClock(T0);
      const db = await MtaStsDb.open({
        store: f.store,
        clock,
        resolver: f.net.resolver,
        fetchOptions: f.net.fetchOptions,
      });
      const text = policyText('enforce', [`mx.${notDue}`], 86400);
      await db.upsert(notDue, 'x', parsePolicy(text), text);
      await db.close();
    }
    const countBefore = await f.store.count();
    await Promise.all([f.start('node-a', 11), f.start('node-b', 12), f.start('node-c', 13)]);

    // Drive until some node is stuck fetching `slow`.
    let victim: Node | undefined;
    for (let i = 0; i < 60 && victim === undefined; i++) {
      await f.advance(5 * MIN);
      for (const n of f.nodes) if (n.last?.fetching.includes(slow)) victim = n;
    }
    assert.ok(victim, 'a node started fetching the slow policy');
    assert.equal(fetches(f.net, slow), 1);
    victim.child.kill('SIGKILL');
    await once(victim.child, 'exit');
    // The domain owner's host recovers.
    f.net.https.policy(slow, policyText('enforce', [`mx.${slow}`, `mx2.${slow}`], 7 * 86400));

    // Survivors finish the pass, then the next one 24 h later; the dead node's lease (1 h) expires
    // on the way, and `slow` is taken over, once.
    for (let elapsed = 0; elapsed <= 26 * HOUR && !(await allNew(f.store, [...normal, slow])); elapsed += 10 * MIN) {
      await f.advance(10 * MIN);
    }
    await until(() => allNew(f.store, [...normal, slow]), 20_000, 'every record refreshed');
    assert.equal(fetches(f.net, slow), 2, 'the hung fetch, then one takeover');
    for (const d of normal) assert.equal(fetches(f.net, d), 1, `${d} fetched once`);
    assert.equal(await f.store.count(), countBefore, 'nothing lost');
    assert.equal((await f.store.get(notDue))?.recordId, 'x');
    const survivors = await Promise.all(f.nodes.filter((n) => n.alive).map((n) => n.send({ op: 'status' })));
    assert.ok(survivors.some((r) => r.refreshes.updated > 0));
  });
});
