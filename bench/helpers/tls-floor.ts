// The cold-discovery ceiling of a Node client on this machine (bench/socketmap-bench.ts, cold phase):
// a process of its own fetching `/.well-known/mta-sts.txt` from the bench's policy host with a new
// TLS connection per host, as a discovery must (no keep-alive, no session resumption), and nothing
// else: no DNS, no parsing, no store. Two client stacks, as the daemon's fetcher could use them:
// `tls` (tls.connect and a hand-written request) and `https` (node:https, the daemon's stack).
// Prints one JSON line: { tls: {rate, cpuMs}, https: {rate, cpuMs} } (per fetch, client CPU).
// Usage: node tls-floor.js <port> <caFile> <count> <concurrency> <zone>
import { readFileSync } from 'node:fs';
import https from 'node:https';
import tls from 'node:tls';
import { fixtureDomain } from './socketmap-load.js';

const [portArg, caFile, countArg, concurrencyArg, zoneArg] = process.argv.slice(2);
const port = Number(portArg);
const count = Number(countArg);
const concurrency = Number(concurrencyArg);
const zone = zoneArg === 'warm' ? 'warm' : 'cold';
const secureContext = tls.createSecureContext({ ca: readFileSync(caFile ?? '', 'utf8') });
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
      while (next < count) await fetchOne(`mta-sts.${fixtureDomain(zone, next++)}`);
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  return { rate: count / seconds, cpuMs: (cpu.user + cpu.system) / 1000 / count };
}

const result = { tls: await measure(viaTls), https: await measure(viaHttps) };
console.log(JSON.stringify(result));
