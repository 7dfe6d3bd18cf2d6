import https from 'node:https';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { LookupFunction } from 'node:net';
import { isMtaStsError, MtaStsError } from '../errors.js';
import { asDomain, type Domain } from '../rfc8461/domain.js';
import { DEFAULT_FETCH_TIMEOUT_MS, MAX_DOMAIN_OCTETS, MAX_POLICY_BYTES } from '../rfc8461/limits.js';
import { parsePolicy } from '../rfc8461/policy.js';
import { createNodeResolver } from '../discovery/node-resolver.js';
import { resolveFollowingCnames } from '../discovery/follow-cname.js';
import type { DnsResolver } from '../discovery/resolver.js';
import { classifyAddress, isPublicAddress } from './address-policy.js';
import type { FetchedPolicy, FetchPolicyOptions, PolicyFetcher } from './fetcher.js';

/** RFC 8461 §3.3: the policy lives at this path of `mta-sts.<domain>`. */
export const POLICY_PATH = '/.well-known/mta-sts.txt';
/** Largest response header block we parse (Node's default is 16 KiB too; stated so it cannot drift). */
const MAX_RESPONSE_HEADER_BYTES = 16 * 1024;
/** After one address family answered, how long we still wait for the other (RFC 8305 §3 "resolution delay", generous). */
const SECOND_FAMILY_GRACE_MS = 250;

/**
 * OpenSSL certificate-verification results and Node's host-name check: a failure here is RFC 8460's
 * `sts-webpki-invalid`, not a generic fetch error.
 */
const WEBPKI_CODES = new Set([
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'ERR_TLS_CERT_ALTNAME_FORMAT',
]);

const PEM_CERT = /-----BEGIN CERTIFICATE-----[^-]+-----END CERTIFICATE-----/g;

function codeOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/**
 * The trust store: Node's default (bundled Mozilla roots plus `NODE_EXTRA_CA_CERTS`) when no `ca`
 * is given. Node's `ca` option *replaces* the roots, so extra CAs are added to
 * `tls.rootCertificates` and to the `NODE_EXTRA_CA_CERTS` file, read here once.
 */
function secureContextFor(ca: FetchPolicyOptions['ca']): tls.SecureContext | undefined {
  if (ca === undefined) return undefined;
  const extra = typeof ca === 'string' ? [ca] : [...ca];
  // OpenSSL silently skips text that is not PEM, which would surface later as an untrusted certificate.
  for (const pem of extra) {
    const blocks = String(pem).match(PEM_CERT) ?? [];
    try {
      if (blocks.length === 0) throw new Error('no PEM certificate found');
      for (const block of blocks) new X509Certificate(block);
    } catch (err) {
      throw new MtaStsError('ERR_MTASTS_USAGE', 'invalid CA certificate in the ca option', { cause: err });
    }
  }
  const fromEnv: string[] = [];
  const envFile = process.env.NODE_EXTRA_CA_CERTS;
  if (envFile) {
    try {
      fromEnv.push(readFileSync(envFile, 'utf8'));
    } catch {
      // Node itself warns about an unreadable NODE_EXTRA_CA_CERTS at start-up.
    }
  }
  try {
    return tls.createSecureContext({ ca: [...tls.rootCertificates, ...fromEnv, ...extra] });
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_USAGE', 'invalid CA certificate in the ca option', { cause: err });
  }
}

type Settled = { ok: true; addresses: string[] } | { ok: false; error: unknown };

/**
 * A and AAAA of the policy host through the injected resolver, CNAME-only answers followed. Once
 * one family has addresses the other gets {@link SECOND_FAMILY_GRACE_MS} more, so a server that
 * drops AAAA queries does not stall every fetch. IPv4 first: a broken IPv6 path is the commoner fault.
 */
async function resolveHost(resolver: DnsResolver, host: string, signal: AbortSignal): Promise<string[]> {
  const dnsAbort = new AbortController();
  const onAbort = (): void => dnsAbort.abort(signal.reason);
  signal.addEventListener('abort', onAbort, { once: true });
  const run = (q: (n: string, s?: AbortSignal) => Promise<string[]>): Promise<Settled> =>
    resolveFollowingCnames(resolver, host, q, dnsAbort.signal).then(
      (r) => ({ ok: true, addresses: r.answers }),
      (error: unknown) => ({ ok: false, error }),
    );
  const results: [Settled | undefined, Settled | undefined] = [undefined, undefined];
  let pending = 2;
  try {
    await new Promise<void>((resolve) => {
      let grace: NodeJS.Timeout | undefined;
      const settle = (i: 0 | 1, r: Settled): void => {
        results[i] = r;
        if (--pending === 0) {
          clearTimeout(grace);
          resolve();
        } else if (r.ok && r.addresses.length > 0) {
          grace = setTimeout(resolve, SECOND_FAMILY_GRACE_MS);
        }
      };
      void run((n, s) => resolver.resolve4(n, s)).then((r) => settle(0, r));
      void run((n, s) => resolver.resolve6(n, s)).then((r) => settle(1, r));
    });
  } finally {
    signal.removeEventListener('abort', onAbort);
    // Cancels a family still outstanding after the grace period. Skipped when both answered:
    // abort() builds a DOMException (a stack capture) for nobody.
    if (pending > 0) dnsAbort.abort();
  }
  const addresses = results.flatMap((r) => (r?.ok ? r.addresses : []));
  if (addresses.length > 0) return addresses;
  const failures = results.flatMap((r) => (r !== undefined && !r.ok ? [r.error] : []));
  const hard = failures.find((e) => {
    const c = codeOf(e);
    return c !== 'ENOTFOUND' && c !== 'ENODATA';
  });
  if (hard === undefined) {
    // RFC 8461 §3.3: a policy host that does not exist means the domain publishes no policy.
    throw new MtaStsError('ERR_MTASTS_NO_POLICY', `policy host ${host} has no address`, {
      cause: failures[0],
    });
  }
  throw new MtaStsError('ERR_MTASTS_POLICY_FETCH', `cannot resolve policy host ${host} (${codeOf(hard) ?? 'error'})`, {
    cause: hard,
    details: { dnsCode: codeOf(hard) },
  });
}

interface FetchContext {
  readonly resolver: DnsResolver;
  readonly secureContext: tls.SecureContext | undefined;
  readonly agent: https.Agent;
}

/**
 * A connection-per-request agent shared by the fetches of one fetcher, instead of `agent: false`,
 * which builds a new Agent for every request. No keep-alive and no TLS session cache: every fetch
 * connects and verifies the certificate afresh (RFC 8461 §3.3).
 */
function createPolicyAgent(): https.Agent {
  return new https.Agent({ keepAlive: false, maxCachedSessions: 0 });
}

/** GET the policy over vetted addresses; resolves with the raw body. */
function get(
  host: string,
  addresses: readonly string[],
  options: FetchPolicyOptions,
  ctx: FetchContext,
  signal: AbortSignal,
): Promise<Buffer> {
  const lookup: LookupFunction = (_hostname, opts, cb) => {
    const family = (a: string): 4 | 6 => (a.includes(':') ? 6 : 4);
    const list = addresses
      .filter((a) => !opts.family || opts.family === family(a))
      .map((address) => ({ address, family: family(address) }));
    if (list.length === 0) {
      cb(Object.assign(new Error(`no address of family ${String(opts.family)}`), { code: 'ENOTFOUND' }), '');
    } else if (opts.all) cb(null, list);
    else cb(null, list[0]?.address ?? '', list[0]?.family);
  };
  const requireTextPlain = options.requireTextPlain ?? true;

  return new Promise<Buffer>((resolve, reject) => {
    let settled = false;
    const fail = (err: MtaStsError): void => {
      if (settled) return;
      settled = true;
      req.destroy();
      reject(err);
    };
    const req = https.request({
      host,
      servername: host, // RFC 8461 §3.3: SNI is the policy host's name
      port: options.port ?? 443,
      path: POLICY_PATH,
      method: 'GET',
      headers: {
        'user-agent': options.userAgent ?? 'mtastsdb',
        // RFC 8461 §3.3: senders should not use HTTP caching.
        'cache-control': 'no-cache',
        // We never decompress: a compressed body could inflate past the 64 KiB cap.
        'accept-encoding': 'identity',
        connection: 'close',
      },
      agent: ctx.agent,
      lookup, // Node 20 calls it with {all:true} and tries each address (autoSelectFamily)
      signal,
      maxHeaderSize: MAX_RESPONSE_HEADER_BYTES,
      insecureHTTPParser: false,
      // RFC 8461 §3.3: the certificate must be valid for the policy host (Web PKI); never let
      // NODE_TLS_REJECT_UNAUTHORIZED=0 turn this off.
      rejectUnauthorized: true,
      ...(ctx.secureContext === undefined ? {} : { secureContext: ctx.secureContext }),
    });

    req.on('error', (err) => {
      const code = codeOf(err);
      if (code !== undefined && WEBPKI_CODES.has(code)) {
        fail(
          new MtaStsError('ERR_MTASTS_POLICY_FETCH', `certificate of ${host} rejected: ${err.message}`, {
            cause: err,
            details: { webpki: true, tlsCode: code },
          }),
        );
        return;
      }
      fail(
        new MtaStsError('ERR_MTASTS_POLICY_FETCH', `fetching https://${host}${POLICY_PATH} failed: ${err.message}`, {
          cause: err,
          details: { errorCode: code },
        }),
      );
    });

    req.on('response', (res: IncomingMessage) => {
      const status = res.statusCode ?? 0;
      if (status !== 200) {
        // RFC 8461 §3.3: only 200 is a policy; redirects must not be followed.
        const location = res.headers.location;
        // The Location is the server's text: quoted and shortened before it reaches a log line.
        const shown = location === undefined ? '(no Location)' : JSON.stringify(location.slice(0, 200));
        const why = status >= 300 && status < 400 ? `redirect to ${shown} refused` : 'not 200';
        fail(
          new MtaStsError(
            status === 404 ? 'ERR_MTASTS_NO_POLICY' : 'ERR_MTASTS_POLICY_FETCH',
            `https://${host}${POLICY_PATH} answered HTTP ${status} (${why})`,
            { details: { httpStatus: status, ...(location === undefined ? {} : { location }) } },
          ),
        );
        return;
      }
      const encoding = (res.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
      if (encoding !== 'identity' && encoding !== '') {
        fail(new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy sent with Content-Encoding ${encoding}, not identity`));
        return;
      }
      const transfer = (res.headers['transfer-encoding'] ?? 'identity').trim().toLowerCase();
      if (transfer !== 'chunked' && transfer !== 'identity') {
        fail(new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy sent with Transfer-Encoding ${transfer}`));
        return;
      }
      const type = res.headers['content-type'];
      // RFC 8461 §3.3: the policy is served as text/plain; media-type parameters (charset) are allowed.
      const mediaType = (type ?? '').split(';')[0]?.trim().toLowerCase();
      if (requireTextPlain && mediaType !== 'text/plain') {
        fail(
          new MtaStsError(
            'ERR_MTASTS_POLICY_FETCH',
            `policy served as ${JSON.stringify(type ?? null)}, not text/plain`,
            {
              details: { contentType: type },
            },
          ),
        );
        return;
      }
      const tooBig = (): MtaStsError =>
        new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy body larger than ${MAX_POLICY_BYTES} bytes`, {
          details: { limit: MAX_POLICY_BYTES, tooLarge: true },
        });
      // RFC 8461 §3.3: the body is at most 64 KiB; checked before and while reading, never after.
      const declared = Number(res.headers['content-length'] ?? '0');
      if (declared > MAX_POLICY_BYTES) {
        fail(tooBig());
        return;
      }
      // Chunks are copied into one growing buffer rather than kept: a body sent as tens of
      // thousands of 1-byte chunks would otherwise cost a Buffer object (and a retained slab) each.
      let body = Buffer.allocUnsafe(declared > 0 ? declared : 4096);
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        if (settled) return;
        const end = size + chunk.length;
        if (end > MAX_POLICY_BYTES) {
          fail(tooBig());
          return;
        }
        if (end > body.length) {
          const grown = Buffer.allocUnsafe(Math.min(MAX_POLICY_BYTES, Math.max(end, body.length * 2)));
          body.copy(grown, 0, 0, size);
          body = grown;
        }
        chunk.copy(body, size);
        size = end;
      });
      res.on('end', () => {
        if (settled) return;
        settled = true;
        resolve(body.subarray(0, size));
      });
      res.on('error', () => {}); // reported through req's 'error' or 'close'
      res.on('close', () => {
        if (!res.complete) {
          fail(new MtaStsError('ERR_MTASTS_POLICY_FETCH', `connection to ${host} closed before the body ended`));
        }
      });
    });
    req.end();
  });
}

/** Fetches with a prepared trust store; shared by {@link fetchPolicy} and {@link createHttpsFetcher}. */
async function fetchWith(domain: Domain, options: FetchPolicyOptions, ctx: FetchContext): Promise<FetchedPolicy> {
  const host = `mta-sts.${domain.ascii}`;
  if (host.length > MAX_DOMAIN_OCTETS) {
    throw new MtaStsError('ERR_MTASTS_NO_POLICY', `${host} is longer than a DNS name can be`);
  }
  const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  }
  const allowPrivate = options.allowPrivateAddresses ?? process.env.MTASTSDB_ALLOW_PRIVATE_ADDRESSES === '1';
  const caller = options.signal;
  if (caller?.aborted) throw new MtaStsError('ERR_MTASTS_ABORTED', 'policy fetch aborted', { cause: caller.reason });

  // One deadline for DNS, connect, TLS, headers and body (RFC 8461 §3.3). Our own timer and
  // listener rather than AbortSignal.timeout/any: both are released as soon as the fetch ends,
  // so a long-lived caller signal (a daemon's shutdown signal) accumulates nothing.
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    abort.abort(new DOMException(`policy fetch timed out after ${timeoutMs} ms`, 'TimeoutError'));
  }, timeoutMs);
  const onCallerAbort = (): void => abort.abort(caller?.reason);
  caller?.addEventListener('abort', onCallerAbort, { once: true });
  try {
    const all = await resolveHost(ctx.resolver, host, abort.signal);
    const valid = all.filter((a) => classifyAddress(a) !== 'invalid');
    // Defence against a recipient domain pointing us into the local network.
    const vetted = allowPrivate ? valid : valid.filter(isPublicAddress);
    if (vetted.length === 0) {
      throw new MtaStsError(
        'ERR_MTASTS_POLICY_FETCH',
        `policy host ${host} resolves only to non-public addresses (${all.join(', ')}); ` +
          'set allowPrivateAddresses or MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1 to allow them',
        { details: { addresses: all, refused: true } },
      );
    }
    const body = await get(host, vetted, options, ctx, abort.signal);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(body);
    } catch (err) {
      // The fetch worked; the content is not a policy (RFC 8460 `sts-policy-invalid`).
      throw new MtaStsError('ERR_MTASTS_POLICY_SYNTAX', `policy body of ${host} is not valid UTF-8`, { cause: err });
    }
    return { policy: parsePolicy(text), text };
  } catch (err) {
    // Report the underlying failure (the AbortError of the request, the ECANCELLED of DNS), not our wrapper.
    const inner = isMtaStsError(err) && err.cause !== undefined ? err.cause : err;
    if (caller?.aborted) throw new MtaStsError('ERR_MTASTS_ABORTED', 'policy fetch aborted', { cause: inner });
    if (timedOut) {
      throw new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy fetch from ${host} timed out after ${timeoutMs} ms`, {
        cause: inner,
        details: { timeout: true },
      });
    }
    if (isMtaStsError(err)) throw err;
    throw new MtaStsError('ERR_MTASTS_POLICY_FETCH', `policy fetch from ${host} failed`, { cause: err });
  } finally {
    clearTimeout(timer);
    caller?.removeEventListener('abort', onCallerAbort);
  }
}

/**
 * Fetches and parses the policy of `domain` (RFC 8461 §3.3):
 * `GET https://mta-sts.<domain>/.well-known/mta-sts.txt`.
 *
 * - The policy host is resolved (A and AAAA) through `options.resolver` (default: a node:dns
 *   resolver on the system's servers) and the connection goes only to the addresses found, which
 *   must be public unless `allowPrivateAddresses` (or `MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1` when
 *   the option is not given) allows loopback/private/link-local/unspecified ones.
 * - The certificate is verified against the Web PKI (Node's roots, `NODE_EXTRA_CA_CERTS` and
 *   `options.ca`) with SNI `mta-sts.<domain>`.
 * - Redirects are not followed, only 200 is a policy, `Content-Type` must be `text/plain`
 *   (parameters allowed; `requireTextPlain: false` relaxes this), `Content-Encoding` must be
 *   identity, and the body is capped at 64 KiB while it streams.
 * - `timeoutMs` (default 60 s) bounds the whole fetch: DNS, connect, TLS, headers and body.
 *
 * Errors:
 * - `ERR_MTASTS_NO_POLICY`: HTTP 404, or the policy host does not exist / has no address.
 * - `ERR_MTASTS_POLICY_FETCH`: any other failure, with the TLS/HTTP/DNS error in `cause`;
 *   `details.webpki` is true when certificate verification failed, `details.timeout` on timeout,
 *   `details.refused` when only non-public addresses were found, `details.httpStatus` for a status.
 * - `ERR_MTASTS_POLICY_SYNTAX`: the body is not UTF-8 or not a valid policy.
 * - `ERR_MTASTS_ABORTED`: `options.signal` aborted.
 */
export async function fetchPolicy(domain: string | Domain, options: FetchPolicyOptions = {}): Promise<FetchedPolicy> {
  const d = asDomain(domain);
  return fetchWith(d, options, {
    resolver: options.resolver ?? createNodeResolver(),
    secureContext: secureContextFor(options.ca),
    agent: createPolicyAgent(),
  });
}

/**
 * A {@link PolicyFetcher} doing {@link fetchPolicy} with fixed options. The resolver and the trust
 * store (Node's roots plus `ca`) are built once here, not per fetch.
 */
export function createHttpsFetcher(options: Omit<FetchPolicyOptions, 'signal'> = {}): PolicyFetcher {
  const ctx: FetchContext = {
    resolver: options.resolver ?? createNodeResolver(),
    secureContext: secureContextFor(options.ca),
    agent: createPolicyAgent(),
  };
  return {
    fetch: (domain, opts = {}) =>
      fetchWith(asDomain(domain), opts.signal === undefined ? options : { ...options, signal: opts.signal }, ctx),
  };
}
