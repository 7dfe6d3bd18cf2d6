/**
 * The last policy answered per domain, kept in memory to answer while the store cannot be read
 * (RFC 8461 §10: never weaker than the cache before it expires). Bounded by entries and by an
 * estimate of bytes ({@link BoundedMap}); the first remembered is the first evicted.
 */
import { BoundedMap } from '../bounded-map.js';
import type { Policy } from '../rfc8461/policy.js';

/** A policy answered, kept to answer again while the store is unreadable. */
export interface Remembered {
  readonly policy: Policy;
  readonly policyText: string;
  /** Epoch ms after which the policy no longer applies. */
  readonly validEnd: number;
}

/** Estimated bytes of a policy kept in memory with its key and text. */
export function estimatePolicyBytes(key: string, policy: Policy, policyText: string): number {
  // Strings are UTF-16 in V8; patterns and object headers estimated generously.
  return 2 * (key.length + policyText.length) + 160 * policy.mx.length + 512;
}

/** See the module comment. */
export class RememberedPolicies {
  private readonly entries: BoundedMap<string, Remembered>;

  constructor(maxEntries: number, maxBytes: number) {
    this.entries = new BoundedMap(maxEntries, maxBytes);
  }

  remember(key: string, policy: Policy, policyText: string, validEnd: number): void {
    const old = this.entries.get(key);
    // The common warm answer: already remembered. Its place in the eviction order is left as it is
    // (first remembered, first evicted): moving it on every answer would make the Map rebuild its
    // table several times a second under load, and a busy domain evicted is remembered again at
    // its next answer.
    if (old !== undefined && old.policy === policy && old.validEnd === validEnd) return;
    this.entries.set(key, { policy, policyText, validEnd }, estimatePolicyBytes(key, policy, policyText));
  }

  forget(key: string): void {
    this.entries.delete(key);
  }

  /** The remembered policy if it is still valid at `now`. */
  recall(key: string, now: number): Remembered | undefined {
    const r = this.entries.get(key);
    if (r === undefined) return undefined;
    if (r.validEnd <= now) {
      this.forget(key);
      return undefined;
    }
    return r;
  }
}
