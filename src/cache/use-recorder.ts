/**
 * Deferred `lastUse` writes. A hit records the time in memory; the waiting uses are written with
 * one `store.touch` every {@link USE_FLUSH_MS}, every {@link USE_FLUSH_ENTRIES} domains, before
 * listing or purging (the caller flushes), and on close. A hit within the resolution of the stored
 * `lastUse` is not recorded again (resolution 0 records every hit, as mox does).
 */
import type { Logger } from '../logger.js';
import type { PolicyStore } from '../store/policy-store.js';
import { RepeatGate, repeatedFields } from '../repeat-gate.js';
import {
  MAX_PENDING_USES,
  STORE_ERROR_LOG_INTERVAL_MS,
  USE_BACKPRESSURE_ENTRIES,
  USE_FLUSH_ENTRIES,
  USE_FLUSH_MS,
} from './tunables.js';

/** Batches `lastUse` writes to a store (see the module comment). */
export class UseRecorder {
  private pendingUses = new Map<string, number>();
  private flushTimer: NodeJS.Timeout | undefined;
  private flushing: Promise<void> | undefined;
  private stopped = false;
  /** A store that refuses writes refuses every batch: its failure is logged once a minute. */
  private readonly failures = new RepeatGate(STORE_ERROR_LOG_INTERVAL_MS);

  constructor(
    private readonly store: Pick<PolicyStore, 'touch'>,
    private readonly logger: Logger,
    /** A use within this many ms of the stored `lastUse` is not recorded. */
    private readonly resolutionMs: number,
  ) {}

  /** Uses waiting in memory. */
  get pending(): number {
    return this.pendingUses.size;
  }

  /**
   * Records a use at `now` of a record whose stored `lastUse` is `lastUse`. Resolves at once, or,
   * when lookups outrun the store (a million first uses after a restart), once the flush in
   * progress is done rather than holding ever more uses in memory.
   */
  async use(key: string, lastUse: number, now: number): Promise<void> {
    // A use within the resolution of the stored one changes nothing worth a write.
    if (now - lastUse < this.resolutionMs) return;
    this.pendingUses.set(key, now);
    if (this.pendingUses.size >= USE_FLUSH_ENTRIES) {
      // One flush at a time; the one running starts the next when it ends (see flush).
      if (this.flushing === undefined) void this.flush();
    } else {
      this.scheduleFlush();
    }
    if (this.pendingUses.size >= USE_BACKPRESSURE_ENTRIES && this.flushing !== undefined) await this.flushing;
  }

  /** Drops the waiting use of `key` (its record was deleted). */
  forget(key: string): void {
    this.pendingUses.delete(key);
  }

  private scheduleFlush(): void {
    if (this.flushTimer !== undefined || this.pendingUses.size === 0 || this.stopped) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      void this.flush();
    }, USE_FLUSH_MS);
    // A pending flush never keeps the process alive; close() flushes what is left.
    this.flushTimer.unref();
  }

  private dropOldestUses(): void {
    for (const k of this.pendingUses.keys()) {
      if (this.pendingUses.size <= MAX_PENDING_USES) break;
      this.pendingUses.delete(k);
    }
  }

  /** Writes the waiting uses now (one batch at a time). Never throws: failures are logged and kept. */
  async flush(): Promise<void> {
    while (this.flushing !== undefined) await this.flushing;
    if (this.flushTimer !== undefined) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.pendingUses.size === 0) return;
    const batch = this.pendingUses;
    this.pendingUses = new Map();
    const flush = (async () => {
      let written = false;
      try {
        const uses = Array.from(batch, ([domain, t]) => ({ domain, lastUse: new Date(t) }));
        await this.store.touch(uses);
        written = true;
      } catch (err) {
        const msg = 'recording MTA-STS policy use (lastUse) failed; will retry';
        const held = this.failures.pass(msg);
        if (held !== undefined) this.logger.error({ err, count: batch.size, ...repeatedFields(held) }, msg);
        for (const [k, t] of batch) {
          const newer = this.pendingUses.get(k);
          if (newer === undefined || newer < t) this.pendingUses.set(k, t);
        }
        this.dropOldestUses();
      } finally {
        this.flushing = undefined;
      }
      // Uses recorded meanwhile: a full batch is written now, a partial one (or a retry after a
      // failure) by the timer. close() writes what is left itself.
      if (this.stopped) return;
      if (written && this.pendingUses.size >= USE_FLUSH_ENTRIES) void this.flush();
      else this.scheduleFlush();
    })();
    this.flushing = flush;
    await flush;
  }

  /** Stops the timer and writes what is left, trying twice (a transient store fault should not lose them). */
  async close(): Promise<void> {
    this.stopped = true;
    await this.flush();
    if (this.pendingUses.size > 0) {
      await this.flush();
      if (this.pendingUses.size > 0) {
        this.logger.error({ count: this.pendingUses.size }, 'lastUse updates could not be written before close');
      }
    }
  }
}
