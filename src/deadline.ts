import { setMaxListeners } from 'node:events';
import { MtaStsError } from './errors.js';

/** Period of the one ticker that checks every pending answer deadline, ms (zone timeouts are seconds). */
const DEADLINE_TICK_MS = 50;

/** A signal that aborts when its parent does or when its time is up, and can be released. */
export interface Deadline {
  readonly signal: AbortSignal;
  /** Clears the timer and unhooks from the parent. Call when the bounded work is over. */
  dispose(): void;
}

/**
 * A child signal of `parent` that also aborts after `ms` (reason `ERR_MTASTS_ABORTED`).
 *
 * Not `AbortSignal.any([parent, AbortSignal.timeout(ms)])`: that keeps a live timer per call until
 * it fires (a refresher walking a million records at thousands per second held hundreds of
 * thousands of 60 s timers) and links every child to the long-lived parent. Here the timer is
 * cleared and the listener removed as soon as the work ends. The timer is unref'd: it never keeps
 * the process alive.
 */
export function deadline(parent: AbortSignal, ms: number): Deadline {
  const ac = new AbortController();
  if (parent.aborted) {
    ac.abort(parent.reason);
    return { signal: ac.signal, dispose() {} };
  }
  const onAbort = (): void => ac.abort(parent.reason);
  parent.addEventListener('abort', onAbort, { once: true });
  const timer = setTimeout(
    () => ac.abort(new MtaStsError('ERR_MTASTS_ABORTED', `timed out after ${ms} ms`)),
    Math.max(0, ms),
  );
  timer.unref();
  return {
    signal: ac.signal,
    dispose() {
      clearTimeout(timer);
      parent.removeEventListener('abort', onAbort);
    },
  };
}

/**
 * Marks a long-lived signal as one many concurrent operations listen on, so Node does not warn
 * about a possible listener leak (its default limit is 10).
 */
export function shareSignal(signal: AbortSignal): AbortSignal {
  setMaxListeners(0, signal);
  return signal;
}

/** What a {@link Deadlines} deadline resolves with when its time is up. */
export const TIMED_OUT: unique symbol = Symbol('timed out');

/** One deadline of a {@link Deadlines} ticker. */
export interface TickedDeadline {
  /** `performance.now()` at which it fires. */
  readonly at: number;
  /** Resolves with {@link TIMED_OUT} when the time is up (never rejects). */
  readonly expired: Promise<typeof TIMED_OUT>;
  fire: () => void;
}

/**
 * Answer deadlines checked by one unref'd ticker ({@link DEADLINE_TICK_MS}) that runs only while
 * deadlines are pending: zone timeouts are seconds, so 50 ms of slack is nothing, and a warm answer
 * costs a Set insert instead of a timer and an AbortController.
 */
export class Deadlines {
  private readonly pending = new Set<TickedDeadline>();
  private ticker: NodeJS.Timeout | undefined;

  add(ms: number): TickedDeadline {
    let fire: () => void = () => {};
    const expired = new Promise<typeof TIMED_OUT>((resolve) => {
      fire = () => resolve(TIMED_OUT);
    });
    const d: TickedDeadline = { at: performance.now() + ms, expired, fire };
    this.pending.add(d);
    if (this.ticker === undefined) {
      this.ticker = setInterval(() => this.tick(), DEADLINE_TICK_MS);
      this.ticker.unref();
    }
    return d;
  }

  remove(d: TickedDeadline): void {
    this.pending.delete(d);
  }

  private tick(): void {
    // Stopped by an idle tick rather than by remove(): a busy daemon keeps one interval.
    if (this.pending.size === 0 && this.ticker !== undefined) {
      clearInterval(this.ticker);
      this.ticker = undefined;
      return;
    }
    const now = performance.now();
    for (const d of this.pending) {
      if (d.at <= now) {
        this.pending.delete(d);
        d.fire();
      }
    }
  }
}
