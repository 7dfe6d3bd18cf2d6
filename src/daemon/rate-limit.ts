/**
 * Limits the daemon puts on network work caused by socketmap traffic: token buckets (per domain
 * and global). Pure logic on an injected clock.
 */
import type { Clock } from '../clock.js';

/** A token bucket: `rate` tokens per second, holding at most `burst`. */
class TokenBucket {
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
