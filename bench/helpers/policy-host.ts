// The benchmarks' HTTPS policy host: one node:https server that answers `mta-sts.<domain>` by SNI
// with a certificate of the test CA, every certificate made before the load starts (the bench
// measures the daemon, not key generation), and `text(domain)` as the policy.
import 'reflect-metadata';
import { createServer as createHttpsServer } from 'node:https';
import { createSecureContext } from 'node:tls';
import type { SecureContext } from 'node:tls';
import { getTestCa } from '../../test/helpers/test-ca.js';

/** Where and how the host serves. */
export interface PolicyHostOptions {
  /** Listen address (default 127.0.0.1) and port (default a free one; 443 for a client that always uses it). */
  readonly host?: string;
  readonly port?: number;
  /**
   * Names per certificate (default 1: each host its own certificate, as on the Internet). The
   * client's certificate checks grow with the names a certificate carries (100 names cost the
   * daemon about 0.4 ms more per handshake).
   */
  readonly sans?: number;
}

/** A running policy host. */
export interface PolicyHost {
  readonly port: number;
  readonly caPem: string;
  /** Requests answered so far. */
  requests(): number;
  close(): Promise<void>;
}

/** Serves `text(domain)` (404 when undefined) at `https://mta-sts.<domain>/…` for each of `domains`. */
export async function startPolicyHost(
  domains: readonly string[],
  text: (d: string) => string | undefined,
  options: PolicyHostOptions = {},
): Promise<PolicyHost> {
  const sans = Math.max(1, options.sans ?? 1);
  const ca = await getTestCa();
  const contexts = new Map<number, Promise<SecureContext>>();
  const group = new Map<string, number>();
  domains.forEach((d, i) => group.set(`mta-sts.${d}`, Math.floor(i / sans)));
  const contextOf = (g: number): Promise<SecureContext> => {
    let c = contexts.get(g);
    if (c === undefined) {
      const names = domains.slice(g * sans, g * sans + sans).map((d) => `mta-sts.${d}`);
      c = ca.leaf(names).then((leaf) => createSecureContext({ cert: leaf.chainPem, key: leaf.keyPem }));
      contexts.set(g, c);
    }
    return c;
  };
  const t0 = Date.now();
  const groups = Math.ceil(domains.length / sans);
  await Promise.all(Array.from({ length: groups }, (_, g) => contextOf(g)));
  console.log(`# policy host: ${groups} certificates (${sans} names each) in ${Date.now() - t0} ms`);
  const fallback = await ca.leaf(['default.test']);
  let requests = 0;
  const server = createHttpsServer(
    {
      cert: fallback.chainPem,
      key: fallback.keyPem,
      SNICallback(name, cb) {
        const g = group.get(name.toLowerCase());
        if (g === undefined) cb(new Error('unknown host'));
        else contextOf(g).then((ctx) => cb(null, ctx), cb);
      },
    },
    (req, res) => {
      requests++;
      const host = (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase();
      const body = text(host.replace(/^mta-sts\./, ''));
      if (body === undefined) res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      else res.writeHead(200, { 'content-type': 'text/plain' }).end(body);
    },
  );
  await new Promise<void>((r) => server.listen(options.port ?? 0, options.host ?? '127.0.0.1', r));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    caPem: ca.certPem,
    requests: () => requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
