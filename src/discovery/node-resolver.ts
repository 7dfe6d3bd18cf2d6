import { Resolver } from 'node:dns/promises';
import { MtaStsError } from '../errors.js';
import type { DnsResolver, NodeResolverOptions } from './resolver.js';

/** Default upper bound of one query. */
export const DEFAULT_DNS_TIMEOUT_MS = 10_000;

// Idle c-ares channels kept for reuse; more concurrent queries simply create more channels.
const MAX_IDLE_CHANNELS = 32;

type Rrtype = 'TXT' | 'CNAME' | 'A' | 'AAAA';
type Query<T> = (r: Resolver, name: string) => Promise<T>;

const SYSCALL: Record<Rrtype, string> = { TXT: 'queryTxt', CNAME: 'queryCname', A: 'queryA', AAAA: 'queryAaaa' };

/** An Error shaped like node:dns's (`code`, `syscall`, `hostname`), so callers classify ours and c-ares' alike. */
function dnsError(code: 'ETIMEOUT' | 'ECANCELLED', rrtype: Rrtype, name: string, cause?: unknown): Error {
  const syscall = SYSCALL[rrtype];
  const err = new Error(`${syscall} ${code} ${name}`, cause === undefined ? undefined : { cause }) as Error & {
    code: string;
    syscall: string;
    hostname: string;
  };
  err.code = code;
  err.syscall = syscall;
  err.hostname = name;
  return err;
}

/**
 * A {@link DnsResolver} on node:dns (c-ares): the system's resolvers from /etc/resolv.conf, or
 * `options.servers` (e.g. a loopback test server as `127.0.0.1:5353`).
 *
 * Every query is bounded by our own timer (`timeoutMs`, default 10 s) because c-ares' timeouts
 * overshoot (a 1 s timeout took about 2 s, the default about 29 s). When the timer fires the query
 * rejects with code `ETIMEOUT`; when the caller's `signal` aborts it rejects at once with code
 * `ECANCELLED` and `cause` = the signal's reason (callers that passed the signal map that to
 * `ERR_MTASTS_ABORTED`). Other failures keep c-ares' codes (`ENOTFOUND`, `ENODATA`, `ESERVFAIL`,
 * `EREFUSED`, `ECONNREFUSED`, …).
 *
 * `Resolver.cancel()` cancels every outstanding query of a channel, so each query runs on a channel
 * of its own, taken from a small pool of idle channels (creating one costs about 20–40 µs, a
 * loopback query about 170 µs). A channel that was cancelled is dropped, not reused.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` when a server address is invalid.
 */
export function createNodeResolver(options: NodeResolverOptions = {}): DnsResolver {
  const timeoutMs = options.timeoutMs ?? DEFAULT_DNS_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `DNS timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  }
  const servers = options.servers === undefined ? undefined : [...options.servers];
  // c-ares gets one retransmission within our budget (its second try waits about twice as long);
  // our timer stays the hard bound either way.
  const channelOptions = { timeout: Math.min(5000, Math.max(50, Math.floor(timeoutMs / 4))), tries: 2 };
  const idle: Resolver[] = [];

  const newChannel = (): Resolver => {
    const r = new Resolver(channelOptions);
    if (servers !== undefined) r.setServers(servers);
    return r;
  };
  try {
    idle.push(newChannel()); // validates `servers` now rather than on the first query
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `invalid DNS server list ${JSON.stringify(servers)}`, { cause: err });
  }

  function run<T>(rrtype: Rrtype, query: Query<T>, name: string, signal: AbortSignal | undefined): Promise<T> {
    if (signal?.aborted) return Promise.reject(dnsError('ECANCELLED', rrtype, name, signal.reason));
    const channel = idle.pop() ?? newChannel();
    return new Promise<T>((resolve, reject) => {
      let done = false;
      const finish = (reuse: boolean): void => {
        done = true;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        if (reuse && idle.length < MAX_IDLE_CHANNELS) idle.push(channel);
      };
      const stop = (err: Error): void => {
        if (done) return;
        finish(false);
        channel.cancel();
        reject(err);
      };
      const onAbort = (): void => stop(dnsError('ECANCELLED', rrtype, name, signal?.reason));
      const timer = setTimeout(() => stop(dnsError('ETIMEOUT', rrtype, name)), timeoutMs);
      signal?.addEventListener('abort', onAbort, { once: true });
      let pending: Promise<T>;
      try {
        pending = query(channel, name);
      } catch (err) {
        // node:dns validates arguments synchronously.
        finish(true);
        reject(err);
        return;
      }
      pending.then(
        (value) => {
          if (done) return;
          finish(true);
          resolve(value);
        },
        (err: unknown) => {
          if (done) return;
          finish(true);
          reject(err);
        },
      );
    });
  }

  return {
    resolveTxt: (name, signal) => run('TXT', (r, n) => r.resolveTxt(n), name, signal),
    resolveCname: (name, signal) => run('CNAME', (r, n) => r.resolveCname(n), name, signal),
    resolve4: (name, signal) => run('A', (r, n) => r.resolve4(n), name, signal),
    resolve6: (name, signal) => run('AAAA', (r, n) => r.resolve6(n), name, signal),
  };
}
