import { MtaStsError } from '../errors.js';
import { MAX_CNAME_HOPS } from '../rfc8461/limits.js';
import type { DnsResolver } from './resolver.js';

/** What {@link resolveFollowingCnames} found: the answers and the name that held them. */
export interface CnameFollowed<T> {
  readonly answers: T[];
  /** The name the answers belong to (the last CNAME target, or the queried name). */
  readonly name: string;
  /** CNAME hops we followed ourselves (0 when the resolver followed them, as it usually does). */
  readonly hops: number;
}

function errCode(err: unknown): unknown {
  return (err as { code?: unknown } | null)?.code;
}

/**
 * Runs `query(name)`; when the answer is empty, looks for a CNAME at that name and queries its
 * target, at most {@link MAX_CNAME_HOPS} times.
 *
 * Recursive resolvers follow CNAMEs and c-ares then returns the target's data, but an answer that
 * holds only a CNAME (a resolver stopping at its own hop limit, or a hostile server) reaches us as
 * an empty array rather than an error. Here we follow such chains one hop per round trip.
 *
 * An empty answer at a name without a CNAME (`ENODATA`/`ENOTFOUND` for the CNAME query) is a
 * genuine empty answer and is returned as such. Errors of `query` and of the CNAME query
 * otherwise propagate unchanged (node:dns codes).
 *
 * @throws MtaStsError `ERR_MTASTS_DNS` (`details.reason` `cname-loop` or `cname-hops`) when the
 *   chain loops or is longer than {@link MAX_CNAME_HOPS}: a recursive resolver answers such a
 *   broken zone with SERVFAIL, and so do we.
 */
export async function resolveFollowingCnames<T>(
  resolver: DnsResolver,
  name: string,
  query: (name: string, signal?: AbortSignal) => Promise<T[]>,
  signal?: AbortSignal,
): Promise<CnameFollowed<T>> {
  const seen = new Set<string>([name.toLowerCase()]);
  let current = name;
  for (let hops = 0; ; hops++) {
    const answers = await query(current, signal);
    if (answers.length > 0) return { answers, name: current, hops };
    let targets: string[];
    try {
      targets = await resolver.resolveCname(current, signal);
    } catch (err) {
      const code = errCode(err);
      if (code === 'ENODATA' || code === 'ENOTFOUND') return { answers, name: current, hops };
      throw err;
    }
    const target = targets[0]?.toLowerCase().replace(/\.$/, '');
    if (target === undefined || target === '') return { answers, name: current, hops };
    if (seen.has(target)) {
      throw new MtaStsError('ERR_MTASTS_DNS', `CNAME loop at ${current} → ${target}`, {
        details: { reason: 'cname-loop', name },
      });
    }
    if (hops >= MAX_CNAME_HOPS) {
      throw new MtaStsError('ERR_MTASTS_DNS', `more than ${MAX_CNAME_HOPS} CNAME hops from ${name}`, {
        details: { reason: 'cname-hops', name },
      });
    }
    seen.add(target);
    current = target;
  }
}
