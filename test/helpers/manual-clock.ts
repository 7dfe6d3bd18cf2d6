import type { Clock } from '../../src/clock.js';
import { MtaStsError } from '../../src/errors.js';

interface Sleeper {
  readonly until: number;
  readonly resolve: () => void;
}

/**
 * A clock that moves only when told. `sleep` resolves once `advance`/`set` passes its deadline,
 * and every requested sleep is recorded so tests can assert scheduling.
 */
export class ManualClock implements Clock {
  private t: number;
  private stepped = 0;
  private sleepers: Sleeper[] = [];
  /** Every `sleep(ms)` requested, in order. */
  readonly sleeps: number[] = [];

  constructor(start: number | Date = Date.UTC(2026, 0, 1)) {
    this.t = typeof start === 'number' ? start : start.getTime();
  }

  now(): number {
    return this.t;
  }

  /** Moves with advance/set, not with {@link stepWall}. */
  monotonic(): number {
    return this.t - this.stepped;
  }

  /** A wall-clock step: now() moves by `ms` (either way), monotonic() does not; sleepers stay put. */
  stepWall(ms: number): void {
    this.t += ms;
    this.stepped += ms;
  }

  sleep(ms: number, signal?: AbortSignal): Promise<void> {
    this.sleeps.push(ms);
    if (signal?.aborted) return Promise.reject(new MtaStsError('ERR_MTASTS_ABORTED', 'aborted'));
    return new Promise((resolve, reject) => {
      const sleeper: Sleeper = { until: this.t + Math.max(0, ms), resolve };
      this.sleepers.push(sleeper);
      signal?.addEventListener(
        'abort',
        () => {
          this.sleepers = this.sleepers.filter((s) => s !== sleeper);
          reject(new MtaStsError('ERR_MTASTS_ABORTED', 'aborted'));
        },
        { once: true },
      );
    });
  }

  /** Number of sleeps not yet due. */
  pending(): number {
    return this.sleepers.length;
  }

  /** Moves time forward by `ms` and wakes every sleeper that is due, in deadline order. */
  async advance(ms: number): Promise<void> {
    await this.set(this.t + ms);
  }

  async set(t: number): Promise<void> {
    this.t = t;
    const due = this.sleepers.filter((s) => s.until <= t).sort((a, b) => a.until - b.until);
    this.sleepers = this.sleepers.filter((s) => s.until > t);
    for (const s of due) s.resolve();
    // Let woken tasks run until they block again.
    await new Promise((r) => setImmediate(r));
  }
}
