/**
 * The socketmap request handler: normalise the key → ask the cache for the domain's MTA-STS state
 * (every fallback and the zone timeout applied there) → where it can change the answer, the DANE
 * state → one pure decision → format. Nothing else.
 */
import type { StsState } from '../cache/types.js';
import type { DaneState } from '../dane/dane-state.js';
import type { DaneStateOptions } from '../dane/state-cache.js';
import type { StsStateOptions } from '../cache/mtastsdb.js';
import type { Config, ZoneConfig } from '../config/schema.js';
import { zoneFor } from '../config/schema.js';
import { decide, formatDecision, needsDane, type Decision } from '../decision/decide.js';
import type { Logger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import type { Domain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import { NOTFOUND_REPLY, normalizeKey } from '../socketmap/protocol.js';
import type { SocketmapHandler } from '../socketmap/server.js';

/** The part of the policy database the handler uses. */
export interface HandlerDatabase {
  stsState(domain: string | Domain, options: StsStateOptions): Promise<StsState>;
}

/** Where the handler gets DANE states (RFC 7672 §2.2). */
export interface HandlerDane {
  /** False while DANE answers must not be given (the resolver is known not to validate). */
  usable(): boolean;
  /** The domain's DANE state within the timeout; never rejects (a failure is `temp`). */
  state(domain: string, options: DaneStateOptions): Promise<DaneState>;
}

/** Options of {@link createSocketmapHandler}. */
export interface HandlerOptions {
  readonly db: HandlerDatabase;
  /** The current configuration (re-read on every request, so SIGHUP reloads take effect at once). */
  readonly config: () => Config;
  readonly logger: Logger;
  readonly metrics: Metrics;
  /** DANE; absent means DANE is off and every zone answers as with `dane: off`. */
  readonly dane?: HandlerDane;
  /** Monotonic seconds for latency. Default `performance.now() / 1000`. */
  readonly seconds?: () => number;
}

/** `OK`, `NOTFOUND` or `TEMP`: the metrics label of a reply. */
function firstWord(reply: string): string {
  const space = reply.indexOf(' ');
  return space < 0 ? reply : reply.slice(0, space);
}

/**
 * Creates the handler the socketmap server calls for each request. Keys that are IP literals,
 * start with `.`, or are not host names → `NOTFOUND ` without a lookup; a client gone before the
 * answer → `TEMP client gone`; everything else is the decision's ({@link decide}).
 */
export function createSocketmapHandler(options: HandlerOptions): SocketmapHandler {
  const { db, metrics, dane, logger } = options;
  const seconds = options.seconds ?? (() => performance.now() / 1000);
  // Without TLSRPT a decision depends only on the zone, the policy and the DANE state's kind: made
  // once per zone and policy object (records share them) and kept, formatted, with whether DANE can
  // change it, so a warm answer runs no decision with DANE on or off. Both keys are weak, so the
  // zones of a replaced configuration (SIGHUP) and the policies no longer cached are collected with
  // their replies.
  interface Memo {
    /** The MTA-STS answer is `secure`, so a preferred DANE state would replace it. */
    readonly needsDane: boolean;
    /** Reply by DANE state kind ('' = DANE not consulted); `temp` is never kept (its reason varies). */
    readonly replies: Map<string, KeptReply>;
  }
  const memos = new WeakMap<ZoneConfig, WeakMap<Policy, Memo>>();
  const memoFor = (zone: ZoneConfig, sts: StsState & { readonly kind: 'policy' }): Memo => {
    let byPolicy = memos.get(zone);
    if (byPolicy === undefined) {
      byPolicy = new WeakMap();
      memos.set(zone, byPolicy);
    }
    let memo = byPolicy.get(sts.policy);
    if (memo === undefined) {
      memo = { needsDane: needsDane(zone, sts), replies: new Map() };
      byPolicy.set(sts.policy, memo);
    }
    return memo;
  };

  // Filled only when the debug line is wanted: what the answer rested on.
  interface Trace {
    domain?: string;
    sts?: string;
    dane?: string;
  }

  return async (name, key, connectionSignal) => {
    const started = seconds();
    const config = options.config();
    const zone = zoneFor(config, name);
    const zoneLabel = Object.hasOwn(config.zones, name) ? name : 'default';
    const trace: Trace | undefined = logger.isLevelEnabled?.('debug') === true ? {} : undefined;
    const reply = await answer(zone, key, connectionSignal, trace);
    const took = seconds() - started;
    metrics.socketmapQuery(zoneLabel, firstWord(reply), took);
    if (trace !== undefined) {
      logger.debug({ key, zone: zoneLabel, answer: reply, ...trace, ms: Math.round(took * 1e4) / 10 }, 'answered');
    }
    return reply;
  };

  async function answer(
    zone: ZoneConfig,
    key: string,
    connectionSignal: AbortSignal,
    trace: Trace | undefined,
  ): Promise<string> {
    const normalized = normalizeKey(key);
    if (normalized.kind === 'skip') return NOTFOUND_REPLY;
    if (trace !== undefined) trace.domain = normalized.domain;
    const sts = await db.stsState(normalized.domain, {
      signal: connectionSignal,
      timeoutMs: zone.timeoutSeconds * 1000,
    });
    if (trace !== undefined) trace.sts = sts.kind === 'policy' ? `${sts.policy.mode} from ${sts.source}` : sts.kind;
    if (connectionSignal.aborted) return 'TEMP client gone';
    const daneOn = zone.dane === 'prefer' && dane !== undefined && dane.usable();
    const memo = sts.kind === 'policy' && !zone.tlsrpt ? memoFor(zone, sts) : undefined;
    // The DANE state is asked for only where it can change the answer (rule 5 of decide), which
    // needs a policy.
    if (!daneOn || sts.kind !== 'policy' || !(memo?.needsDane ?? needsDane(zone, sts))) {
      if (memo === undefined) return formatDecision(decide(zone, sts));
      return (memo.replies.get('') ?? keep(memo, '', decide(zone, sts))).text;
    }
    const state = await dane.state(sts.domain, {
      signal: connectionSignal,
      timeoutMs: zone.timeoutSeconds * 1000,
    });
    if (trace !== undefined) trace.dane = state.kind === 'temp' ? `temp: ${state.reason}` : state.kind;
    if (connectionSignal.aborted) return 'TEMP client gone';
    if (memo !== undefined && state.kind !== 'temp') {
      const kept = memo.replies.get(state.kind) ?? keep(memo, state.kind, decide(zone, sts, state));
      metrics.daneAnswer?.(kept.daneLevel);
      return kept.text;
    }
    const d = decide(zone, sts, state);
    metrics.daneAnswer?.(daneLevel(d));
    return formatDecision(d);
  }
}

/** A memoised reply and the DANE answers metric's label of its decision. */
interface KeptReply {
  readonly text: string;
  readonly daneLevel: DaneLevel;
}

function keep(memo: { readonly replies: Map<string, KeptReply> }, kind: string, d: Decision): KeptReply {
  const kept = { text: formatDecision(d), daneLevel: daneLevel(d) };
  memo.replies.set(kind, kept);
  return kept;
}

type DaneLevel = 'dane-only' | 'dane' | 'temp' | 'secure';

/** The DANE answers metric's label of a decision made with a DANE state. */
function daneLevel(d: Decision): DaneLevel {
  return d.level === 'dane-only' || d.level === 'dane' || d.level === 'temp' ? d.level : 'secure';
}
