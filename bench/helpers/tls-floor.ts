// The cold-discovery ceiling of a Node client on this machine (bench/socketmap-bench.ts, cold phase):
// fetching `/.well-known/mta-sts.txt` from the bench's policy host with a new TLS connection per
// host, as a discovery must (no keep-alive, no session resumption), and nothing else: no DNS, no
// parsing, no store. Two client stacks, as the daemon's fetcher could use them: `tls` (tls.connect
// and a hand-written request) and `https` (node:https, the daemon's stack). Runs in a child process
// of its own (socketmap-worker.ts), so the client has a process to itself as the daemon has.
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { fixtureDomain } from './socketmap-load.js';

/** What to fetch: the policy host, its CA, and `count` hosts of the cold set, `concurrency` at a time. */
export interface TlsFloorSpec {
  readonly port: number;
  readonly caFile: string;
  readonly count: number;
  readonly concurrency: number;
}

/** Fetches per second and client CPU per fetch (ms) of each stack. */
export interface TlsFloorResult {
  readonly tls: { readonly rate: number; readonly cpuMs: number };
  readonly https: { readonly rate: number; readonly cpuMs: number };
}

/** Runs both stacks over the cold set, one after the other. */
export async function runTlsFloor(spec: TlsFloorSpec): Promise<TlsFloorResult> {
  const { port, count, concurrency } = spec;
  const secureContext = tls.createSecureContext({ ca: readFileSync(spec.caFile, 'utf8') });
  const agent = new https.Agent({ keepAlive: false, maxCachedSessions: 0 });

  function viaTls(host: string): Promise<void> {
    return new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, servername: host, secureContext }, () => {
        s.end(`GET /.well-known/mta-sts.txt HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
      });
      let got = 0;
      s.on('data', (d: Buffer) => (got += d.length));
      s.on('end', () => (got > 0 ? resolve() : reject(new Error('empty response'))));
      s.on('error', reject);
    });
  }

  function viaHttps(host: string): Promise<void> {
    const options: https.RequestOptions & tls.ConnectionOptions = {
      host: '127.0.0.1',
      port,
      servername: host,
      headers: { host },
      secureContext,
      agent,
      path: '/.well-known/mta-sts.txt',
    };
    return new Promise((resolve, reject) => {
      const req = https.request(options, (res) => {
        if (res.statusCode !== 200) reject(new Error(`HTTP ${res.statusCode}`));
        res.resume();
        res.on('end', resolve);
      });
      req.on('error', reject);
      req.end();
    });
  }

  async function measure(fetchOne: (host: string) => Promise<void>) {
    let next = 0;
    const cpu0 = process.cpuUsage();
    const t0 = performance.now();
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        while (next < count) await fetchOne(`mta-sts.${fixtureDomain('cold', next++)}`);
      }),
    );
    const seconds = (performance.now() - t0) / 1000;
    const cpu = process.cpuUsage(cpu0);
    return { rate: count / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / count };
  }

  return { tls: await measure(viaTls), https: await measure(viaHttps) };
}
