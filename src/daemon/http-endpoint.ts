/**
 * The daemon's optional HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`.
 * Off by default; meant for loopback (the configuration defaults to 127.0.0.1).
 */
import { createServer } from 'node:http';
import type { Logger } from '../logger.js';

/** Options of {@link startHttpEndpoint}. */
export interface HttpEndpointOptions {
  readonly host: string;
  readonly port: number;
  /** The exposition text and its Content-Type. */
  readonly metrics: () => Promise<{ readonly text: string; readonly contentType: string }>;
  /** True when the daemon can answer (the store responds). Bounded by `healthTimeoutMs`. */
  readonly health: () => Promise<boolean>;
  readonly healthTimeoutMs?: number;
  /**
   * Why the daemon answers, but with less than it was configured for (e.g. DANE off because the
   * resolver does not validate), or what it repaired lately (a store table recreated, the SQLite
   * file deleted and reopened). Non-empty: `/healthz` says `degraded: …` (still 200: the daemon
   * answers, and a restart would not help).
   */
  readonly degraded?: () => readonly string[];
  readonly logger: Logger;
}

/** A running endpoint. */
export interface HttpEndpoint {
  readonly address: { readonly host: string; readonly port: number };
  close(): Promise<void>;
}

async function healthy(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      check(),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), ms);
      }),
    ]);
  } catch {
    return false;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Starts the endpoint. `GET /metrics` → 200 Prometheus text; `GET /healthz` → 200 `ok`, 200
 * `degraded: <reasons>`, or 503 `unavailable`; else 404.
 */
export async function startHttpEndpoint(options: HttpEndpointOptions): Promise<HttpEndpoint> {
  const server = createServer((req, res) => {
    const url = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { 'content-type': 'text/plain', allow: 'GET, HEAD' }).end('method not allowed\n');
      return;
    }
    if (url === '/metrics') {
      options.metrics().then(
        ({ text, contentType }) => res.writeHead(200, { 'content-type': contentType }).end(text),
        (err: unknown) => {
          options.logger.error({ err }, 'collecting metrics');
          res.writeHead(500, { 'content-type': 'text/plain' }).end('metrics unavailable\n');
        },
      );
    } else if (url === '/healthz') {
      void healthy(options.health, options.healthTimeoutMs ?? 2000).then((ok) => {
        const reasons = ok ? (options.degraded?.() ?? []) : [];
        const body = !ok ? 'unavailable\n' : reasons.length > 0 ? `degraded: ${reasons.join('; ')}\n` : 'ok\n';
        res.writeHead(ok ? 200 : 503, { 'content-type': 'text/plain', 'cache-control': 'no-store' }).end(body);
      });
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  // Scrapers are trusted local clients, but a stuck one must not hold a socket forever.
  server.requestTimeout = 10_000;
  server.headersTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: options.host, port: options.port }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const a = server.address();
  const address = a !== null && typeof a === 'object' ? { host: a.address, port: a.port } : { host: '', port: 0 };
  options.logger.info({ address }, 'metrics endpoint listening');
  return {
    address,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
