// What a benchmark reads about a daemon process from /proc: its memory (VmRSS, VmHWM) and the CPU
// time it has used (utime + stime of all its threads). NaN when the process is gone.
import { readFileSync } from 'node:fs';

function statusKiB(pid: number | undefined, field: RegExp): number {
  if (pid === undefined) return NaN;
  try {
    const m = field.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}

/** Resident set size of `pid`, MiB. */
export const rssMiB = (pid: number | undefined): number => statusKiB(pid, /VmRSS:\s+(\d+) kB/) / 1024;

/** Peak resident set size of `pid` (VmHWM), MiB. */
export const hwmMiB = (pid: number | undefined): number => statusKiB(pid, /VmHWM:\s+(\d+) kB/) / 1024;

/** Peak VmRSS of `pid`, MiB, sampled every `intervalMs` until `stop()` (which stops the sampling and returns it). */
export function rssSampler(pid: number | undefined, intervalMs = 50): { stop(): number } {
  let peak = rssMiB(pid);
  const timer = setInterval(() => (peak = Math.max(peak, rssMiB(pid))), intervalMs);
  return {
    stop() {
      clearInterval(timer);
      return Math.max(peak, rssMiB(pid));
    },
  };
}

/** CPU time (user + system) `pid` has used, seconds. */
export function cpuSeconds(pid: number | undefined): number {
  if (pid === undefined) return NaN;
  try {
    // Fields after the command name: utime and stime are the 12th and 13th (clock ticks, 100/s).
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(fields[11]) + Number(fields[12])) / 100;
  } catch {
    return NaN;
  }
}
