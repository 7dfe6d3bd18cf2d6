/**
 * The resolver probe: does the configured resolver validate DNSSEC? A DANE answer is only as good
 * as the AD bit it rests on (RFC 7672 §2.1.1), and a resolver that does not validate sets no AD
 * anywhere, which DANE discovery would read as "no DANE" everywhere. So the daemon asks a name that
 * must validate at start and every few minutes, and uses DANE only while the answer carries AD.
 */
import { isMtaStsError } from '../errors.js';
import type { DnssecAnswer, DnssecClient } from './dnssec-client.js';

/**
 * - `validating`: the probe's answer was NOERROR with AD set.
 * - `not-validating`: an answer without AD (or NXDOMAIN for a name that must exist): the resolver
 *   does not validate, or has no trust anchor for the probe name.
 * - `unreachable`: no usable answer (timeout, network error, SERVFAIL): the resolver is down or
 *   broken; DANE lookups through it will fail too, and fail closed (`temp`).
 */
export type ResolverVerdict = 'validating' | 'not-validating' | 'unreachable';

/** What one probe found. */
export interface ProbeResult {
  readonly verdict: ResolverVerdict;
  /** A few words for the log: `NOERROR without AD for . SOA`, `timeout at . SOA`. */
  readonly reason: string;
}

/** The verdict on one reply to the probe question (pure). */
export function verdictOf(answer: DnssecAnswer, name: string): ProbeResult {
  const q = `${name} SOA`;
  if (answer.rcode === 'NOERROR' || answer.rcode === 'NXDOMAIN') {
    if (answer.ad && answer.rcode === 'NOERROR') return { verdict: 'validating', reason: `AD set for ${q}` };
    return { verdict: 'not-validating', reason: `${answer.rcode} without AD for ${q}` };
  }
  return { verdict: 'unreachable', reason: `${answer.rcode} for ${q}` };
}

/** Asks the probe question once; never rejects. */
export async function probeResolver(client: DnssecClient, name: string, signal?: AbortSignal): Promise<ProbeResult> {
  try {
    return verdictOf(await client.query(name, 'SOA', signal), name);
  } catch (err) {
    return { verdict: 'unreachable', reason: isMtaStsError(err) ? err.message : String(err) };
  }
}

/** Options of {@link ResolverProbe}. */
export interface ResolverProbeOptions {
  readonly client: DnssecClient;
  /** The name asked for (SOA): `.` with the root trust anchor, or a signed zone of one's own. */
  readonly name: string;
  /** Time between probes, ms. */
  readonly intervalMs: number;
  /** Called after every probe whose verdict differs from the previous one (the first one included). */
  readonly onChange: (result: ProbeResult, previous: ResolverVerdict | undefined) => void;
}

/**
 * Probes now and then every `intervalMs` until {@link stop}. DANE is usable while the last
 * verdict is not `not-validating`: an unreachable resolver keeps DANE on, so that lookups through
 * it fail closed (`TEMP`) instead of silently falling back to MTA-STS.
 */
export class ResolverProbe {
  private verdict: ResolverVerdict | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  private running: Promise<void> | undefined;

  constructor(private readonly options: ResolverProbeOptions) {}

  /** True when DANE answers may be given: the resolver is not known to skip validation. */
  get usable(): boolean {
    return this.verdict !== undefined && this.verdict !== 'not-validating';
  }

  /** Runs the first probe (resolves when it has answered) and schedules the next ones. */
  start(): Promise<void> {
    this.running ??= this.probe();
    return this.running;
  }

  /** Probes once now (also used by the schedule). */
  async probe(): Promise<void> {
    const result = await probeResolver(this.options.client, this.options.name, this.abort.signal);
    if (this.abort.signal.aborted) return;
    const previous = this.verdict;
    this.verdict = result.verdict;
    if (previous !== result.verdict) this.options.onChange(result, previous);
    clearTimeout(this.timer);
    this.timer = setTimeout(() => void this.probe(), this.options.intervalMs);
    this.timer.unref();
  }

  /** Stops probing (a probe in flight is abandoned). */
  stop(): void {
    this.abort.abort();
    clearTimeout(this.timer);
  }
}
