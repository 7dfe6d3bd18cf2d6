/**
 * Lets timers and I/O run. The SQLite store answers synchronously, so a walk over many records
 * would otherwise run as one chain of microtasks and starve the event loop (a daemon would stop
 * answering while the refresher counts a million records).
 */
export function yieldToEventLoop(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}
