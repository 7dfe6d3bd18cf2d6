import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isMtaStsError } from './errors.js';
import { abortable, SingleFlight } from './single-flight.js';

function deferred<T>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

test('concurrent runs of one key share one piece of work; other keys run their own', async () => {
  const sf = new SingleFlight<string, number>();
  let runs = 0;
  const gate = deferred<number>();
  const work = (): Promise<number> => {
    runs++;
    return gate.promise;
  };
  const all = [sf.run('a', work), sf.run('a', work), sf.run('a', work), sf.run('b', async () => 7)];
  assert.equal(sf.has('a'), true);
  gate.resolve(42);
  assert.deepEqual(await Promise.all(all), [42, 42, 42, 7]);
  assert.equal(runs, 1);
  assert.equal(sf.size, 0, 'settled flights are forgotten');
  assert.equal(await sf.run('a', async () => 43), 43, 'a new run after the first settled');
});

test('an error is given to every caller of the run, then forgotten', async () => {
  const sf = new SingleFlight<string, number>();
  const boom = new Error('boom');
  const results = await Promise.allSettled([sf.run('k', () => Promise.reject(boom)), sf.run('k', async () => 1)]);
  assert.deepEqual(
    results.map((r) => (r.status === 'rejected' ? r.reason : r.value)),
    [boom, boom],
  );
  assert.equal(sf.size, 0);
});

test('a synchronous throw in the work is a rejection and does not stick', async () => {
  const sf = new SingleFlight<string, number>();
  await assert.rejects(
    sf.run('k', () => {
      throw new Error('sync');
    }),
    /sync/,
  );
  assert.equal(sf.size, 0);
  assert.equal(await sf.run('k', async () => 5), 5);
});

test("a caller's signal ends only that caller's wait; the work goes on for the others", async () => {
  const sf = new SingleFlight<string, string>();
  const gate = deferred<string>();
  let runs = 0;
  const ac = new AbortController();
  const a = sf.run(
    'k',
    () => {
      runs++;
      return gate.promise;
    },
    ac.signal,
  );
  const b = sf.run('k', () => Promise.resolve('other'));
  ac.abort();
  await assert.rejects(a, (err) => isMtaStsError(err, 'ERR_MTASTS_ABORTED'));
  gate.resolve('done');
  assert.equal(await b, 'done');
  assert.equal(runs, 1);
});

test('an already aborted signal rejects at once; idle() waits for running work', async () => {
  const sf = new SingleFlight<string, number>();
  const gate = deferred<number>();
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(
    sf.run('k', () => gate.promise, ac.signal),
    (err) => isMtaStsError(err, 'ERR_MTASTS_ABORTED'),
  );
  let idle = false;
  const waiting = sf.idle().then(() => (idle = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(idle, false);
  gate.resolve(1);
  await waiting;
  assert.equal(idle, true);
});

test('abortable passes values and errors through and removes its listener', async () => {
  const ac = new AbortController();
  assert.equal(await abortable(Promise.resolve(3), ac.signal), 3);
  await assert.rejects(abortable(Promise.reject(new Error('x')), ac.signal), /x/);
  ac.abort();
  await assert.rejects(abortable(new Promise(() => {}), ac.signal), (err) => isMtaStsError(err, 'ERR_MTASTS_ABORTED'));
});
