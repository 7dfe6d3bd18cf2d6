/**
 * Holds back repeats of a log line: the first line of a kind passes, then at most one per interval,
 * carrying how many were held back since. Kinds are bounded (the oldest forgotten first). Time is
 * monotonic by default: a wall-clock step must not silence or flood the log.
 */
import { BoundedMap } from './bounded-map.js';

export class RepeatGate {
  private readonly kinds: BoundedMap<string, { next: number; held: number }>;

  constructor(
    private readonly intervalMs: number,
    maxKinds = 1000,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.kinds = new BoundedMap(maxKinds);
  }

  /** `undefined`: hold this line back; else the number of lines of `kind` held back before it. */
  pass(kind: string): number | undefined {
    const t = this.now();
    const k = this.kinds.get(kind);
    if (k !== undefined && t < k.next) {
      k.held++;
      return undefined;
    }
    const held = k?.held ?? 0;
    this.kinds.set(kind, { next: t + this.intervalMs, held: 0 });
    return held;
  }
}

/** `{ repeated: n }` when `n` lines were held back, else `{}`: for the fields of the line that passes. */
export function repeatedFields(held: number): { repeated?: number } {
  return held > 0 ? { repeated: held } : {};
}
