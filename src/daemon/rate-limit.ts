/**
 * Limits the daemon puts on network work caused by socketmap traffic: token buckets (per domain
 * and global) and a counting semaphore for discoveries in flight. Pure logic on an injected clock;
 * waiting is bounded by the caller's AbortSignal.
 */
import type { Clock } from '../clock.js';
import { MtaStsError } from '../errors.js';

/** A token bucket: `rate` tokens per second, holding at most `burst`. */
export class TokenBucket {
  private tokens: number;
  private last: number;

  constructor(
    private readonly rate: number,
    private readonly burst: number,
    now: number,
  ) {
    this.tokens = burst;
    this.last = now;
  }

  /** Takes one token if there is one. */
  take(now: number): boolean {
    this.refill(now);
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }

  /** True when the bucket is full at `now` (it then carries no state worth keeping). */
  full(now: number): boolean {
    this.refill(now);
    return this.tokens >= this.burst;
  }

  private refill(now: number): void {
    const elapsed = Math.max(0, now - this.last) / 1000;
    this.last = Math.max(this.last, now);
    this.tokens = Math.min(this.burst, this.tokens + elapsed * this.rate);
  }
}

/** Options of {@link KeyedRateLimiter}. */
export interface KeyedRateLimiterOptions {
  readonly rate: number;
  readonly burst: number;
  readonly clock: Clock;
  /** Keys tracked at most; beyond it, full buckets and then the oldest are forgotten. Default 100,000. */
  readonly maxKeys?: number;
}

/**
 * One token bucket per key (per recipient domain), in bounded memory: a key whose bucket has
 * refilled is forgotten, and when `maxKeys` is reached the oldest keys go first (forgetting a
 * key only ever allows more, never less, than a perfect limiter).
 */
export class KeyedRateLimiter {
  private readonly buckets = new Map<string, TokenBucket>();
  private readonly maxKeys: number;

  constructor(private readonly options: KeyedRateLimiterOptions) {
    this.maxKeys = options.maxKeys ?? 100_000;
  }

  /** Takes one token for `key`. */
  take(key: string): boolean {
    const now = this.options.clock.now();
    let bucket = this.buckets.get(key);
    if (bucket === undefined) {
      if (this.buckets.size >= this.maxKeys) this.prune(now);
      bucket = new TokenBucket(this.options.rate, this.options.burst, now);
      this.buckets.set(key, bucket);
    }
    return bucket.take(now);
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.buckets.size;
  }

  private prune(now: number): void {
    for (const [k, b] of this.buckets) if (b.full(now)) this.buckets.delete(k);
    // Still full of busy keys: drop the oldest tenth (Map iterates in insertion order).
    if (this.buckets.size >= this.maxKeys) {
      let drop = Math.max(1, Math.floor(this.maxKeys / 10));
      for (const k of this.buckets.keys()) {
        this.buckets.delete(k);
        if (--drop === 0) break;
      }
    }
  }
}

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
