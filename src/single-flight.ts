import { MtaStsError } from './errors.js';

/**
 * Keyed promise sharing ("single-flight"): while work for a key is running, further callers for
 * the same key wait for that work instead of starting their own. `MtaStsDb.get` uses it so that
 * concurrent gets of one domain make one TXT lookup and at most one HTTPS fetch.
 *
 * A caller's `signal` ends only that caller's wait (it rejects with `ERR_MTASTS_ABORTED`); the
 * shared work carries on for the other callers and is bounded by its own signal, which the work
 * function creates itself.
 */
export class SingleFlight<K, V> {
  private readonly flights = new Map<K, Promise<V>>();

  /** Number of keys with work in progress. */
  get size(): number {
    return this.flights.size;
  }

  /** True when work for `key` is in progress. */
  has(key: K): boolean {
    return this.flights.has(key);
  }

  /**
   * Runs `work` for `key`, or joins the run already in progress. The result (or error) of one run
   * is given to every caller that joined it; the next call after it settled starts a new run.
   */
  run(key: K, work: () => Promise<V>, signal?: AbortSignal): Promise<V> {
    let flight = this.flights.get(key);
    if (flight === undefined) {
      // Start on a microtask so that a synchronous throw in `work` still goes through `finally`
      // after the flight is registered (and is then removed).
      const p: Promise<V> = Promise.resolve()
        .then(work)
        .finally(() => {
          if (this.flights.get(key) === p) this.flights.delete(key);
        });
      // Every caller may have stopped waiting: never let the shared rejection go unhandled.
      p.catch(() => {});
      this.flights.set(key, p);
      flight = p;
    }
    return signal === undefined ? flight : abortable(flight, signal);
  }

  /** Resolves once every run in progress has settled (for orderly shutdown). */
  async idle(): Promise<void> {
    while (this.flights.size > 0) await Promise.allSettled([...this.flights.values()]);
  }
}

/**
 * `promise`, or a rejection with `ERR_MTASTS_ABORTED` as soon as `signal` aborts, whichever comes
 * first. The promise itself is not cancelled.
 */
export function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    return Promise.reject(new MtaStsError('ERR_MTASTS_ABORTED', 'operation aborted', { cause: signal.reason }));
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => {
      reject(new MtaStsError('ERR_MTASTS_ABORTED', 'operation aborted', { cause: signal.reason }));
    };
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}
