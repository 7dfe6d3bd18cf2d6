/**
 * V8 heap settings for the long-running daemon. The daemon keeps little (a few tens of MiB of
 * live heap with a million cached policies), but with V8's defaults its heap grows to several
 * times that under load before a full collection runs, and its RSS with it. A smaller growing
 * factor collects sooner; the cost is a few more (incremental, mostly concurrent) collections.
 * Measured (BENCHMARKS.md, 1,000,000 cached policies): peak RSS 193 → 135 MiB, same throughput.
 *
 * The young generation's size can only be set on Node's command line; `--max-semi-space-size=4`
 * there takes the peak down further (about 113 MiB) for a few percent of throughput (README).
 */
import v8 from 'node:v8';

/** Old generation limit = live heap × (1 + this / 100) after a full collection. */
export const DAEMON_HEAP_GROWING_PERCENT = 25;

/**
 * Applies {@link DAEMON_HEAP_GROWING_PERCENT} unless the operator set `--heap-growing-percent`
 * (command line or NODE_OPTIONS). Returns the flags in force, for the start-up log.
 */
export function tuneDaemonHeap(
  execArgv: readonly string[] = process.execArgv,
  nodeOptions = process.env.NODE_OPTIONS ?? '',
): string[] {
  const given = [...execArgv, ...nodeOptions.split(/\s+/)];
  const flags = given.filter((a) =>
    /^--(max-semi-space-size|heap-growing-percent|max-old-space-size|optimize-for-size)\b/.test(a),
  );
  if (!given.some((a) => a.startsWith('--heap-growing-percent'))) {
    const own = `--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`;
    v8.setFlagsFromString(own);
    flags.push(own);
  }
  return flags;
}
