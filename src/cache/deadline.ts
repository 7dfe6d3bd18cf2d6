import { setMaxListeners } from 'node:events';
import { MtaStsError } from '../errors.js';

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
