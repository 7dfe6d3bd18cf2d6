// Reads a V8 CPU profile of the daemon (`node --cpu-prof`, e.g. through
// MTASTSDB_BENCH_DAEMON_NODE_ARGS of bench/peer-bench.ts) and prints where its time went: busy time
// per second of the run (to tell the cold phase from the warm one), the share of each cost the
// issue asks about (a sample counts for a category when any frame of its stack matches it; a
// sample may count for several), and the functions with the most self time.
//
//   npx tsx bench/profile-summary.ts /tmp/prof/CPU.*.cpuprofile [fromSecond toSecond]
import { readFileSync } from 'node:fs';

interface ProfileNode {
  readonly id: number;
  readonly callFrame: {
    readonly functionName: string;
    readonly url: string;
    readonly lineNumber: number;
  };
  readonly children?: readonly number[];
}
interface Profile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Costs, by the frames that stand for them (function name and script URL). */
const CATEGORIES: readonly (readonly [string, RegExp])[] = [
  ['TLS handshake (node:_tls_wrap, node:tls)', /node:_tls_|node:tls|TLSWrap|onConnectSecure|SecureContext/],
  [
    'certificate handling (getPeerCertificate, checkServerIdentity)',
    /getPeerCertificate|translatePeerCertificate|checkServerIdentity|X509Certificate|node:internal\/tls/,
  ],
  ['HTTP client (node:_http_client, node:https)', /node:_http_|node:https|node:http /],
  ['DNS queries (src/discovery, node:dns)', /src\/discovery\/|node:dns|node:internal\/dns|QueryReqWrap/],
  ['fetch (src/fetch)', /src\/fetch\//],
  ['logging (pino, src/daemon/log)', /node_modules\/pino|src\/daemon\/log|sonic-boom|fast-redact|quick-format/],
  ['metrics (prom-client, src/metrics)', /node_modules\/prom-client|src\/metrics\//],
  ['store (src/store, better-sqlite3)', /src\/store\/|better-sqlite3/],
  ['TLSRPT result (src/cache/tlsrpt)', /src\/cache\/tlsrpt/],
  ['cache (src/cache)', /src\/cache\//],
  ['policy parsing (src/rfc8461)', /src\/rfc8461\//],
  ['socketmap (src/socketmap)', /src\/socketmap\//],
  ['handler (src/daemon/handler)', /src\/daemon\/handler/],
  ['DANE state and TLS decision (src/dane, src/decision)', /src\/dane\/|src\/daemon\/dane-service|src\/decision\//],
  ['net sockets (node:net, stream)', /node:net|node:internal\/streams|node:stream/],
  ['garbage collector', /^\(garbage collector\)/],
  ['(program): native work outside JS frames', /^\(program\)/],
];

const file = process.argv[2];
if (file === undefined) throw new Error('usage: profile-summary <file.cpuprofile> [fromSecond toSecond]');
const from = Number(process.argv[3] ?? -Infinity);
const to = Number(process.argv[4] ?? Infinity);
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: ProfileNode): string => {
  const f = n.callFrame;
  const url = f.url.replace(/^.*\/(src|node_modules)\//, '$1/').replace(/^file:\/\//, '');
  return `${f.functionName || '(anonymous)'} ${url}${url ? `:${f.lineNumber + 1}` : ''}`;
};
const text = (n: ProfileNode): string => `${n.callFrame.functionName} ${n.callFrame.url}`;

const perSecond = new Map<number, number>();
const self = new Map<string, number>();
const cats = new Map<string, number>();
let t = p.startTime;
let busy = 0;
for (let i = 0; i < p.samples.length; i++) {
  const dt = p.timeDeltas[i] ?? 0;
  t += dt;
  const sec = Math.floor((t - p.startTime) / 1e6);
  const leaf = byId.get(p.samples[i] as number);
  if (leaf === undefined || leaf.callFrame.functionName === '(idle)') continue;
  if (sec < from || sec >= to) continue;
  busy += dt;
  perSecond.set(sec, (perSecond.get(sec) ?? 0) + dt);
  self.set(label(leaf), (self.get(label(leaf)) ?? 0) + dt);
  const stack: string[] = [];
  for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
    const n = byId.get(id);
    if (n !== undefined) stack.push(text(n));
  }
  for (const [name, re] of CATEGORIES) if (stack.some((s) => re.test(s))) cats.set(name, (cats.get(name) ?? 0) + dt);
}

console.log(`busy time: ${(busy / 1e6).toFixed(2)} s`);
console.log('busy ms per second of the run:');
console.log(
  [...perSecond.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([s, us]) => `${s}:${Math.round(us / 1000)}`)
    .join(' '),
);
console.log('\nshare of busy time by cost (inclusive; categories overlap):');
for (const [name] of CATEGORIES) {
  const us = cats.get(name) ?? 0;
  console.log(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${name}`);
}
console.log('\ntop self time:');
for (const [name, us] of [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 30)) {
  console.log(`  ${((100 * us) / busy).toFixed(1).padStart(5)} %  ${name}`);
}
