import { MtaStsError } from './errors.js';

/**
 * A counting semaphore with a FIFO of waiters. `acquire` resolves with a release function; a
 * waiter whose signal aborts leaves the queue and rejects with `ERR_MTASTS_ABORTED`.
 */
export class Semaphore {
  private active = 0;
  private readonly waiters: Array<{ grant: () => void; cancelled: boolean } | null> = [];
  private head = 0;

  constructor(readonly limit: number) {
    if (!Number.isSafeInteger(limit) || limit < 1) {
      throw new MtaStsError('ERR_MTASTS_USAGE', `semaphore limit must be a positive integer, got ${limit}`);
    }
  }

  /** Permits in use. */
  get inUse(): number {
    return this.active;
  }

  /** Callers waiting. */
  get waiting(): number {
    let n = 0;
    for (let i = this.head; i < this.waiters.length; i++) if (this.waiters[i]?.cancelled === false) n++;
    return n;
  }

  acquire(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) {
      return Promise.reject(new MtaStsError('ERR_MTASTS_ABORTED', 'aborted while waiting', { cause: signal.reason }));
    }
    if (this.active < this.limit) {
      this.active++;
      return Promise.resolve(this.releaser());
    }
    return new Promise((resolve, reject) => {
      const entry = {
        cancelled: false,
        grant: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve(this.releaser());
        },
      };
      const onAbort = (): void => {
        entry.cancelled = true;
        reject(new MtaStsError('ERR_MTASTS_ABORTED', 'aborted while waiting', { cause: signal?.reason }));
      };
      this.waiters.push(entry);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      this.active--;
      this.next();
    };
  }

  private next(): void {
    while (this.head < this.waiters.length && this.active < this.limit) {
      const w = this.waiters[this.head];
      this.waiters[this.head++] = null;
      if (w != null && !w.cancelled) {
        this.active++;
        w.grant();
      }
    }
    if (this.head === this.waiters.length) {
      this.waiters.length = 0;
      this.head = 0;
    } else if (this.head > 1024) {
      this.waiters.splice(0, this.head);
      this.head = 0;
    }
  }
}
