// Discovery over loopback: the node:dns resolver, lookupRecord, the HTTPS policy fetch and full
// getPolicy, against the test fixtures (loopback DNS server, HTTPS host with a test CA).
// The cold-discovery target (TXT + HTTPS + store >= 1,000 domains/s) needs the first two
// parts well above that. Run alone: npx tsx bench/discovery-bench.ts
import { Resolver } from 'node:dns/promises';
import { pathToFileURL } from 'node:url';
import { startDnsServer } from '../test/helpers/dns-server.js';
import { startHttpsHost } from '../test/helpers/https-host.js';
import { getTestCa } from '../test/helpers/test-ca.js';
import { createNodeResolver } from '../src/discovery/node-resolver.js';
import { lookupRecord } from '../src/discovery/lookup-record.js';
import { createHttpsFetcher, fetchPolicy } from '../src/fetch/https-fetcher.js';
import { getPolicy } from '../src/fetch/get-policy.js';
import { parseDomain } from '../src/rfc8461/domain.js';
import { createDnssecClient } from '../src/dane/dnssec-client.js';
import { lookupDane } from '../src/dane/discover.js';

const POLICY = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.mx.example.test\r\nmax_age: 86400\r\n';

/** Runs `fn(i)` with `concurrency` workers for about `ms` milliseconds; returns completions per second. */
async function rate(fn: (i: number) => Promise<unknown>, concurrency: number, ms: number): Promise<number> {
  let next = 0;
  let done = 0;
  const until = performance.now() + ms;
  const started = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < until) {
        await fn(next++);
        done++;
      }
    }),
  );
  return Math.round((done * 1000) / (performance.now() - started));
}

/** Prints the discovery figures as `name: value unit` lines. */
export async function run(): Promise<void> {
  const ms = Number(process.env.MTASTSDB_BENCH_MS ?? 1500);
  const ca = await getTestCa();
  const [dns, host] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
  try {
    const domains = Number(process.env.MTASTSDB_BENCH_DOMAINS ?? 64);
    for (let i = 0; i < domains; i++) {
      dns.mtaSts(`d${i}.bench.test`, { id: `id${i}` });
      host.policy(`d${i}.bench.test`, POLICY);
    }
    const parsed = Array.from({ length: domains }, (_, i) => parseDomain(`d${i}.bench.test`));
    const resolver = createNodeResolver({ servers: [dns.address] });
    const options = { resolver, ca: ca.certPem, port: host.port, allowPrivateAddresses: true };
    const fetcher = createHttpsFetcher(options);

    const n = 2000;
    let t = performance.now();
    for (let i = 0; i < n; i++) new Resolver({ timeout: 1000, tries: 2 }).setServers([dns.address]);
    console.log(`dns channel create: ${(((performance.now() - t) * 1000) / n).toFixed(1)} µs`);

    const lookup = (i: number): Promise<unknown> => lookupRecord(parsed[i % domains]!, { resolver });
    console.log(`lookupRecord, 1 at a time: ${await rate(lookup, 1, ms)} lookups/s`);
    console.log(`lookupRecord, 16 concurrent: ${await rate(lookup, 16, ms)} lookups/s`);

    // Warm-up: the fixture issues each host's certificate on first use (about 5 ms each).
    for (const d of parsed) await fetcher.fetch(d);
    const fetch = (i: number): Promise<unknown> => fetcher.fetch(parsed[i % domains]!);
    console.log(`createHttpsFetcher fetch, 1 at a time: ${await rate(fetch, 1, ms)} fetches/s`);
    console.log(`createHttpsFetcher fetch, 16 concurrent: ${await rate(fetch, 16, ms)} fetches/s`);
    // CPU time rather than wall time: it stays comparable on a busy machine. It includes the
    // fixture's side of each handshake (same process).
    const cpu0 = process.cpuUsage();
    let fetches = 0;
    await rate((i) => fetch(i).then(() => fetches++), 16, ms);
    const used = process.cpuUsage(cpu0);
    console.log(
      `createHttpsFetcher fetch CPU (client + fixture): ${((used.user + used.system) / fetches).toFixed(0)} µs`,
    );

    const discover = (i: number): Promise<unknown> => getPolicy(parsed[i % domains]!, { resolver, fetcher });
    console.log(`getPolicy (TXT + A/AAAA + HTTPS), 16 concurrent: ${await rate(discover, 16, ms)} domains/s`);

    // fetchPolicy with `ca` builds a trust store of Node's roots plus the CA on every call.
    t = performance.now();
    for (let i = 0; i < 20; i++) await fetchPolicy(parsed[i]!, options);
    console.log(`fetchPolicy one-off with ca: ${((performance.now() - t) / 20).toFixed(1)} ms`);

    // DANE discovery of a new domain with two signed MX hosts, both with TLSA (dane-only): MX, then
    // A and TLSA per host. The fixture sets AD itself; a real validating resolver adds its own cost.
    for (let i = 0; i < domains; i++) {
      const d = `d${i}.dane.bench.test`;
      dns.mx(d, `10 mx1.${d}`, `20 mx2.${d}`);
      for (const h of [`mx1.${d}`, `mx2.${d}`])
        dns.a(h, '192.0.2.25').tlsa(`_25._tcp.${h}`, `3 1 1 ${'ab'.repeat(32)}`);
    }
    dns.ad('dane.bench.test');
    const client = createDnssecClient({ server: dns.address });
    let queries = 0;
    const dane = async (i: number): Promise<void> => {
      const r = await lookupDane(`d${i % domains}.dane.bench.test`, { client });
      if (r.state.kind !== 'dane-only') throw new Error(`unexpected DANE state ${JSON.stringify(r.state)}`);
      queries += r.queries;
    };
    const danes = await rate(dane, 16, ms);
    console.log(`lookupDane (MX + 2 x (A + TLSA)), 16 concurrent: ${danes} domains/s`);
    const daneCpu0 = process.cpuUsage();
    queries = 0;
    let lookups = 0;
    await rate((i) => dane(i).then(() => lookups++), 16, ms);
    const daneCpu = process.cpuUsage(daneCpu0);
    console.log(`lookupDane queries per domain: ${(queries / lookups).toFixed(1)}`);
    console.log(
      `lookupDane CPU (client + fixture): ${((daneCpu.user + daneCpu.system) / lookups).toFixed(0)} µs per domain`,
    );
  } finally {
    await Promise.all([dns.close(), host.close()]);
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) await run();
