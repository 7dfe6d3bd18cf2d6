import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import type { DaneState, DaneStateKind } from './dane-state.js';
import type { DaneReport } from './discover.js';
import { DaneStateCache, type DaneStateCacheOptions } from './state-cache.js';

/** A lookup that answers `states[domain]` (or `none`, 300 s) and counts its calls. */
function fakeLookup(states: Record<string, DaneState> = {}) {
  const calls: string[] = [];
  let release: (() => void) | undefined;
  let gate: Promise<void> | undefined;
  const lookup = async (domain: string): Promise<DaneReport> => {
    calls.push(domain);
    if (gate !== undefined) await gate;
    const state = states[domain] ?? { kind: 'none', ttlSeconds: 300, reason: 'no TLSA records' };
    return { domain, mxSecure: true, implicitMx: false, hosts: [], state, queries: 1 };
  };
  return {
    lookup,
    calls,
    hold() {
      gate = new Promise((r) => (release = r));
    },
    release() {
      gate = undefined;
      release?.();
    },
  };
}

const state = (kind: DaneStateKind, ttlSeconds: number): DaneState => ({ kind, ttlSeconds, reason: kind });

function cacheWith(options: Partial<DaneStateCacheOptions> & { lookup: DaneStateCacheOptions['lookup'] }) {
  let t = 1_000_000;
  const cache = new DaneStateCache({ now: () => t, ...options });
  return { cache, advance: (seconds: number) => (t += seconds * 1000) };
}

describe('DaneStateCache', () => {
  it('keeps a state for its TTL, then looks again', async () => {
    const f = fakeLookup({ 'a.example': state('dane-only', 600) });
    const { cache, advance } = cacheWith({ lookup: f.lookup });
    assert.equal((await cache.get('a.example')).kind, 'dane-only');
    advance(599);
    await cache.get('A.Example.');
    assert.deepEqual(f.calls, ['a.example']);
    advance(1);
    await cache.get('a.example');
    assert.deepEqual(f.calls, ['a.example', 'a.example']);
  });

  // [TTL of the state, seconds it is kept, bounds given]
  const clamps: [number, number, Partial<DaneStateCacheOptions>][] = [
    [0, 60, {}],
    [5, 60, {}],
    [60, 60, {}],
    [61, 61, {}],
    [3600, 3600, {}],
    [86400, 3600, {}],
    [5, 10, { minTtlSeconds: 10, maxTtlSeconds: 20 }],
    [50, 20, { minTtlSeconds: 10, maxTtlSeconds: 20 }],
  ];
  for (const [ttl, kept, bounds] of clamps) {
    it(`TTL ${ttl} s is kept ${kept} s (bounds ${JSON.stringify(bounds)}, default 60…3600)`, async () => {
      const f = fakeLookup({ 'a.example': state('dane', ttl) });
      const { cache, advance } = cacheWith({ lookup: f.lookup, ...bounds });
      await cache.get('a.example');
      advance(kept - 1);
      await cache.get('a.example');
      assert.equal(f.calls.length, 1);
      advance(1);
      await cache.get('a.example');
      assert.equal(f.calls.length, 2);
    });
  }

  it('never keeps temp', async () => {
    const f = fakeLookup({ 'a.example': state('temp', 0) });
    const { cache } = cacheWith({ lookup: f.lookup });
    assert.equal((await cache.get('a.example')).kind, 'temp');
    assert.equal((await cache.get('a.example')).kind, 'temp');
    assert.equal(f.calls.length, 2);
    assert.equal(cache.size, 0);
  });

  it('concurrent gets share one lookup; an aborted caller does not stop the others', async () => {
    const f = fakeLookup({ 'a.example': state('dane-only', 600) });
    const { cache } = cacheWith({ lookup: f.lookup });
    f.hold();
    const controller = new AbortController();
    const aborted = cache.get('a.example', controller.signal);
    const others = Array.from({ length: 5 }, () => cache.get('a.example'));
    controller.abort();
    await assert.rejects(aborted, (err) => isMtaStsError(err, 'ERR_MTASTS_ABORTED'));
    f.release();
    const states = await Promise.all(others);
    assert.ok(states.every((s) => s.kind === 'dane-only'));
    assert.equal(f.calls.length, 1);
  });

  it('is bounded: the oldest stored domain goes first', async () => {
    const f = fakeLookup();
    const { cache } = cacheWith({ lookup: f.lookup, maxEntries: 2 });
    for (const d of ['a.example', 'b.example', 'c.example']) await cache.get(d);
    assert.equal(cache.size, 2);
    await cache.get('c.example');
    await cache.get('a.example');
    assert.deepEqual(f.calls, ['a.example', 'b.example', 'c.example', 'a.example']);
  });

  it('clear() forgets every state, and a lookup in progress is not kept', async () => {
    const f = fakeLookup();
    const { cache } = cacheWith({ lookup: f.lookup });
    await cache.get('a.example');
    f.hold();
    const running = cache.get('b.example');
    await new Promise((r) => setImmediate(r));
    cache.clear();
    f.release();
    await running;
    assert.equal(cache.size, 0);
    await cache.get('a.example');
    assert.equal(f.calls.filter((d) => d === 'a.example').length, 2);
  });

  it('a lookup that rejects rejects the get and keeps nothing', async () => {
    let n = 0;
    const { cache } = cacheWith({
      lookup: async () => {
        n++;
        throw new Error('boom');
      },
    });
    await assert.rejects(cache.get('a.example'), /boom/);
    await assert.rejects(cache.get('a.example'), /boom/);
    assert.equal(n, 2);
  });

  it('bad input: a domain that is not a host name, bad bounds', async () => {
    const f = fakeLookup();
    const { cache } = cacheWith({ lookup: f.lookup });
    await assert.rejects(cache.get('[192.0.2.1]'), (err) => isMtaStsError(err, 'ERR_MTASTS_DOMAIN'));
    assert.equal(f.calls.length, 0);
    for (const bad of [{ maxEntries: 0 }, { minTtlSeconds: 10, maxTtlSeconds: 5 }, { minTtlSeconds: -1 }]) {
      assert.throws(
        () => new DaneStateCache({ lookup: f.lookup, ...bad }),
        (err) => isMtaStsError(err, 'ERR_MTASTS_USAGE'),
        JSON.stringify(bad),
      );
    }
  });

  describe('state(): within a time, never rejecting', () => {
    // The deadline ticker is unref'd (it never keeps a daemon alive): hold the loop open here.
    let alive: NodeJS.Timeout | undefined;
    beforeEach(() => {
      alive = setInterval(() => {}, 1000);
    });
    afterEach(() => clearInterval(alive));
    it('answers a kept state at once and a new one from the lookup', async () => {
      const f = fakeLookup({ 'a.example': state('dane-only', 600) });
      const { cache } = cacheWith({ lookup: f.lookup });
      assert.equal((await cache.state('a.example', { timeoutMs: 1000 })).kind, 'dane-only');
      assert.equal((await cache.state('a.example', { timeoutMs: 1000 })).kind, 'dane-only');
      assert.deepEqual(f.calls, ['a.example']);
    });

    it('a lookup slower than the time is temp, and its late result is kept for the next caller', async () => {
      const f = fakeLookup({ 'a.example': state('dane', 600) });
      f.hold();
      const { cache } = cacheWith({ lookup: f.lookup });
      const s = await cache.state('a.example', { timeoutMs: 60 });
      assert.deepEqual([s.kind, s.reason], ['temp', 'DANE lookup timed out']);
      f.release();
      await new Promise((r) => setTimeout(r, 10));
      assert.equal((await cache.state('a.example', { timeoutMs: 60 })).kind, 'dane');
      assert.equal(f.calls.length, 1);
    });

    it('an abort, a rejecting lookup and a bad name are temp', async () => {
      const f = fakeLookup();
      f.hold();
      const { cache } = cacheWith({ lookup: f.lookup });
      const ac = new AbortController();
      const pending = cache.state('a.example', { timeoutMs: 5000, signal: ac.signal });
      ac.abort();
      assert.deepEqual((await pending).kind, 'temp');
      f.release();
      const failing = cacheWith({
        lookup: async () => {
          throw new Error('boom');
        },
      }).cache;
      const s = await failing.state('b.example', { timeoutMs: 1000 });
      assert.deepEqual([s.kind, s.reason], ['temp', 'DANE lookup failed']);
      assert.equal((await cache.state('[192.0.2.1]', { timeoutMs: 1000 })).kind, 'temp');
    });
  });
});
