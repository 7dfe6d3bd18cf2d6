import { MtaStsError } from './errors.js';

/** Time source. Expiry, backoff and scheduling read `now()` and wait with `sleep()`, so tests can drive time. */
export interface Clock {
  /** Milliseconds since the Unix epoch. */
  now(): number;
  /** Resolves after `ms` milliseconds; rejects with `ERR_MTASTS_ABORTED` when `signal` aborts. Never keeps the process alive on its own. */
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /**
   * Milliseconds on a clock that never steps (any origin), to tell a wall-clock step from time
   * passing. Optional: without it, steps are not detected this way.
   */
  monotonic?(): number;
}

/** The wall clock. Timers are unref'd so a pending sleep never holds the process open. */
export const systemClock: Clock = {
  now: () => Date.now(),
  monotonic: () => performance.now(),
  sleep(ms, signal) {
    return new Promise((resolve, reject) => {
      if (signal?.aborted) {
        reject(abortError(signal));
        return;
      }
      const onAbort = (): void => {
        clearTimeout(timer);
        reject(abortError(signal));
      };
      const timer = setTimeout(
        () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
        Math.max(0, ms),
      );
      timer.unref();
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  },
};

function abortError(signal: AbortSignal | undefined): MtaStsError {
  return new MtaStsError('ERR_MTASTS_ABORTED', 'operation aborted', { cause: signal?.reason });
}
