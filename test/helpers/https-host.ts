/**
 * A loopback HTTPS policy host for tests: one node:https server on 127.0.0.1 (random port) that
 * serves every host name by SNI with a certificate from the test CA, and behaves per host.
 *
 * ```ts
 * const ca = await getTestCa();
 * const https = await startHttpsHost({ ca });
 * https.policy('example.test', 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n');
 * https.behave('bad.test', { status: 301, headers: { location: 'https://elsewhere.test/' } });
 * await fetchPolicy('example.test', { ca: ca.certPem, port: https.port, resolver, allowPrivateAddresses: true });
 * https.requests('example.test'); // 1
 * ```
 *
 * Names: a name starting with `mta-sts.` is a host name; any other name is a policy domain and
 * means the host `mta-sts.<name>`. A host without a behaviour answers 404.
 *
 * `silentPort` is a second, raw TCP listener that accepts connections and never says a word: a
 * TLS handshake there never finishes.
 */
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import zlib from 'node:zlib';
import { once } from 'node:events';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CertKind, TestCa } from './test-ca.js';

/** How the body is produced. */
export type BodySpec =
  /** A fixed body with Content-Length. */
  | { readonly kind: 'fixed'; readonly data: string | Buffer }
  /** Chunked, never ends (until the client goes away). */
  | { readonly kind: 'endless'; readonly chunkBytes?: number }
  /** `data` one byte per `intervalMs`, with Content-Length. */
  | { readonly kind: 'trickle'; readonly data: string | Buffer; readonly intervalMs: number }
  /** `bytes` octets of policy-looking text, announced with Content-Length unless `declareLength` is false. */
  | { readonly kind: 'oversized'; readonly bytes: number; readonly declareLength?: boolean }
  /** `Content-Encoding: gzip` (unless `headers` override it), a small body inflating to `inflatedMiB` (default 1024) MiB of zeros. */
  | { readonly kind: 'gzip-bomb'; readonly inflatedMiB?: number }
  /** The status line and headers, then nothing, ever. */
  | { readonly kind: 'hang' }
  /** Announces `data` with its Content-Length, sends the first half, then drops the connection. */
  | { readonly kind: 'truncated'; readonly data: string | Buffer };

/** What a host does. Every field is optional: the default is 200, text/plain, an empty body, a good certificate. */
export interface HostBehaviour {
  readonly status?: number;
  /** Extra response headers. */
  readonly headers?: Readonly<Record<string, string | number | readonly string[]>>;
  /** Content-Type; default `text/plain`; `null` sends none. */
  readonly contentType?: string | null;
  readonly body?: string | Buffer | BodySpec;
  /** The certificate presented for this host (default `good`). */
  readonly cert?: CertKind;
  /** Adds this many octets of extra response headers (`x-filler-N: aaaa…`). */
  readonly hugeHeaderBytes?: number;
  /** Never answer the request at all (TLS completes, no HTTP response). */
  readonly noResponse?: boolean;
}

/** A request the host received. */
export interface RequestLogEntry {
  readonly host: string;
  readonly method: string;
  readonly path: string;
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/** The running host. */
export interface HttpsHost {
  readonly port: number;
  /** A raw TCP listener that never speaks (a TLS handshake there never completes). */
  readonly silentPort: number;
  /** Serves `text` as the policy of `name` (200, text/plain unless given). */
  policy(name: string, text: string | Buffer, options?: Omit<HostBehaviour, 'body'>): this;
  /** Sets the whole behaviour of `name`. */
  behave(name: string, behaviour: HostBehaviour): this;
  /** Forgets the behaviour of `name` (it answers 404 again). */
  remove(name: string): this;
  /** Requests received for `name` (the SNI host), any path. */
  requests(name: string): number;
  /** Every request received, in order. */
  readonly log: readonly RequestLogEntry[];
  /** TCP connections accepted by the silent listener. */
  silentConnections(): number;
  /** Forgets all behaviours and counts. */
  reset(): void;
  close(): Promise<void>;
}

/** The host name meant by `name` (see the module comment). */
function hostOf(name: string): string {
  const n = name.toLowerCase().replace(/\.$/, '');
  return n.startsWith('mta-sts.') ? n : `mta-sts.${n}`;
}

const POLICY_FILLER = 'version: STSv1\r\nmode: enforce\r\nmx: mx.example.test\r\nmax_age: 86400\r\n';

function gzipBomb(inflatedMiB: number): Buffer {
  // Concatenated gzip members are one valid gzip stream; each inflates to 1 MiB of zeros and is
  // about 1 KiB, so building a 1 GiB bomb costs the fixture about 1 MiB.
  const member = zlib.gzipSync(Buffer.alloc(1024 * 1024), { level: 9 });
  return Buffer.concat(new Array<Buffer>(Math.max(1, Math.ceil(inflatedMiB))).fill(member));
}

/**
 * Starts the HTTPS policy host and its silent sibling on 127.0.0.1 (or `host`; `port` fixes the
 * HTTPS port, e.g. 443 on the host side of a network namespace, for a client that always uses 443).
 */
export async function startHttpsHost(options: { ca: TestCa; host?: string; port?: number }): Promise<HttpsHost> {
  const listenHost = options.host ?? '127.0.0.1';
  const { ca } = options;
  const behaviours = new Map<string, HostBehaviour>();
  const counts = new Map<string, number>();
  const log: RequestLogEntry[] = [];
  const contexts = new Map<string, Promise<tls.SecureContext>>();
  const timers = new Set<NodeJS.Timeout>();
  let bomb: Buffer | undefined;
  let bombMiB = 0;

  const contextFor = (host: string, kind: CertKind): Promise<tls.SecureContext> => {
    const k = `${kind} ${host}`;
    let c = contexts.get(k);
    if (c === undefined) {
      c = ca.leaf([host], kind).then((leaf) => tls.createSecureContext({ cert: leaf.chainPem, key: leaf.keyPem }));
      contexts.set(k, c);
    }
    return c;
  };

  const fallback = await ca.leaf(['default.test']);
  const server = https.createServer({
    cert: fallback.chainPem,
    key: fallback.keyPem,
    SNICallback(servername, cb) {
      const host = servername.toLowerCase();
      contextFor(host, behaviours.get(host)?.cert ?? 'good').then(
        (ctx) => cb(null, ctx),
        (err: Error) => cb(err),
      );
    },
  });
  server.on('tlsClientError', () => {});
  server.on('clientError', (_err, socket) => socket.destroy());

  function serve(req: IncomingMessage, res: ServerResponse): void {
    const host = ((req.socket as tls.TLSSocket).servername || '').toLowerCase();
    counts.set(host, (counts.get(host) ?? 0) + 1);
    log.push({ host, method: req.method ?? '', path: req.url ?? '', headers: { ...req.headers } });
    req.resume();
    const b = behaviours.get(host);
    if (b === undefined) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (b.noResponse === true) return;
    const headers: Record<string, string | number | string[]> = {};
    if (b.contentType !== null) headers['content-type'] = b.contentType ?? 'text/plain';
    if (b.hugeHeaderBytes !== undefined) {
      const line = 'a'.repeat(1000);
      for (let i = 0; i * 1000 < b.hugeHeaderBytes; i++) headers[`x-filler-${i}`] = line;
    }
    for (const [k, v] of Object.entries(b.headers ?? {})) headers[k] = typeof v === 'object' ? [...v] : v;
    const spec: BodySpec =
      b.body === undefined || typeof b.body === 'string' || Buffer.isBuffer(b.body)
        ? { kind: 'fixed', data: b.body ?? '' }
        : b.body;
    const status = b.status ?? 200;
    const onClose = (fn: () => void): void => void res.on('close', fn);

    switch (spec.kind) {
      case 'fixed': {
        const data = Buffer.from(spec.data);
        res.writeHead(status, { ...headers, 'content-length': data.length });
        res.end(data);
        return;
      }
      case 'oversized': {
        // Streamed in chunks as the client reads, so a huge size costs the fixture nothing up front.
        if (spec.declareLength !== false) headers['content-length'] = spec.bytes;
        res.writeHead(status, headers);
        const chunk = Buffer.alloc(16 * 1024, POLICY_FILLER);
        let left = spec.bytes;
        let open = true;
        onClose(() => (open = false));
        const pump = (): void => {
          while (open && left > 0) {
            const n = Math.min(left, chunk.length);
            left -= n;
            if (!res.write(n === chunk.length ? chunk : chunk.subarray(0, n))) break;
          }
          if (!open) return;
          if (left === 0) res.end();
          else res.once('drain', pump);
        };
        pump();
        return;
      }
      case 'gzip-bomb': {
        const mib = spec.inflatedMiB ?? 1024;
        if (bomb === undefined || bombMiB !== mib) {
          bomb = gzipBomb(mib);
          bombMiB = mib;
        }
        res.writeHead(status, { 'content-encoding': 'gzip', ...headers, 'content-length': bomb.length });
        res.end(bomb);
        return;
      }
      case 'truncated': {
        const data = Buffer.from(spec.data);
        res.writeHead(status, { ...headers, 'content-length': data.length });
        res.write(data.subarray(0, data.length >> 1), () => res.socket?.destroy());
        return;
      }
      case 'hang':
        res.writeHead(status, headers);
        res.flushHeaders();
        return;
      case 'endless': {
        res.writeHead(status, headers); // no Content-Length: chunked
        const chunk = Buffer.alloc(spec.chunkBytes ?? 16 * 1024, POLICY_FILLER);
        let open = true;
        onClose(() => (open = false));
        const pump = (): void => {
          while (open && res.write(chunk));
          if (open) res.once('drain', pump);
        };
        pump();
        return;
      }
      case 'trickle': {
        const data = Buffer.from(spec.data);
        res.writeHead(status, { ...headers, 'content-length': data.length });
        let i = 0;
        const t = setInterval(() => {
          if (i >= data.length) {
            clearInterval(t);
            timers.delete(t);
            res.end();
            return;
          }
          res.write(data.subarray(i, ++i));
        }, spec.intervalMs);
        timers.add(t);
        onClose(() => {
          clearInterval(t);
          timers.delete(t);
        });
        return;
      }
    }
  }
  server.on('request', serve);
  server.listen(options.port ?? 0, listenHost);
  await once(server, 'listening');

  const silentSockets = new Set<net.Socket>();
  let silentCount = 0;
  const silent = net.createServer((socket) => {
    silentCount++;
    silentSockets.add(socket);
    socket.on('error', () => {});
    socket.on('close', () => silentSockets.delete(socket));
    socket.resume(); // read and discard the ClientHello, answer nothing
  });
  silent.listen(0, listenHost);
  await once(silent, 'listening');

  const api: HttpsHost = {
    port: (server.address() as net.AddressInfo).port,
    silentPort: (silent.address() as net.AddressInfo).port,
    log,
    policy(name, text, opts = {}) {
      behaviours.set(hostOf(name), { ...opts, body: text });
      return this;
    },
    behave(name, behaviour) {
      behaviours.set(hostOf(name), behaviour);
      return this;
    },
    remove(name) {
      behaviours.delete(hostOf(name));
      return this;
    },
    requests(name) {
      return counts.get(hostOf(name)) ?? 0;
    },
    silentConnections: () => silentCount,
    reset() {
      behaviours.clear();
      counts.clear();
      log.length = 0;
      silentCount = 0;
    },
    async close() {
      for (const t of timers) clearInterval(t);
      for (const s of silentSockets) s.destroy();
      server.closeAllConnections();
      await Promise.all([
        new Promise<void>((resolve) => server.close(() => resolve())),
        new Promise<void>((resolve) => silent.close(() => resolve())),
      ]);
    },
  };
  return api;
}
