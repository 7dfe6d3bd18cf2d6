// Throughput of the pure protocol core (RFC 8461 parsers and MX matching), in ops/s.
// Targets: parsePolicy of a 4-mx policy >= 300k ops/s, policyMatches >= 5M ops/s.
// Run alone: npx tsx bench/protocol-bench.ts
import { pathToFileURL } from 'node:url';
import { parseDomain } from '../src/rfc8461/domain.js';
import { policyMatches } from '../src/rfc8461/mx-match.js';
import { parsePolicy } from '../src/rfc8461/policy.js';
import { parseRecord } from '../src/rfc8461/record.js';

const POLICY_4MX =
  'version: STSv1\r\n' +
  'mode: enforce\r\n' +
  'mx: mail.example.com\r\n' +
  'mx: mx2.example.com\r\n' +
  'mx: *.mail.protection.example.net\r\n' +
  'mx: backupmx.example.org\r\n' +
  'max_age: 604800\r\n';

/** Keeps results alive so the JIT cannot drop the work. */
let sink = 0;

/**
 * Runs `fn` in batches until `ms` milliseconds have passed and returns ops/s. A warm-up of a
 * quarter of the time comes first, so the measured part runs optimised code.
 */
function measure(fn: () => unknown, ms: number): number {
  const batch = 1000;
  const spin = (budgetNs: bigint): { ops: number; ns: bigint } => {
    const start = process.hrtime.bigint();
    let ops = 0;
    let now = start;
    while (now - start < budgetNs) {
      for (let i = 0; i < batch; i++) if (fn()) sink++;
      ops += batch;
      now = process.hrtime.bigint();
    }
    return { ops, ns: now - start };
  };
  spin(BigInt(Math.round(ms / 4)) * 1_000_000n);
  const { ops, ns } = spin(BigInt(ms) * 1_000_000n);
  return Math.round((ops * 1e9) / Number(ns));
}

/** Prints the protocol figures as `name: value ops/s` lines. */
export async function run(): Promise<void> {
  const ms = Number(process.env.MTASTSDB_BENCH_MS ?? 400);
  const policy = parsePolicy(POLICY_4MX);

  const cases: [string, () => unknown][] = [
    ['parsePolicy (4 mx)', () => parsePolicy(POLICY_4MX)],
    ['policyMatches (exact match)', () => policyMatches(policy, 'backupmx.example.org')],
    ['policyMatches (wildcard match)', () => policyMatches(policy, 'eur01.mail.protection.example.net')],
    ['policyMatches (no match)', () => policyMatches(policy, 'evil.example.com')],
    ['policyMatches (upper case, trailing dot)', () => policyMatches(policy, 'MX2.Example.COM.')],
    ['policyMatches (IDN host)', () => policyMatches(policy, 'bücher.example.com')],
    ['parseRecord', () => parseRecord('v=STSv1; id=20190429T010101;')],
    ['parseDomain (ASCII)', () => parseDomain('mail.protection.example.net')],
    ['parseDomain (IDN)', () => parseDomain('mx.bücher.example')],
  ];
  for (const [name, fn] of cases) {
    console.log(`${name}: ${measure(fn, ms)} ops/s`);
  }
  if (sink < 0) console.log(sink);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await run();
}
