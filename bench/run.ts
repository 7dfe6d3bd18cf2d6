// `npm run bench`: runs each benchmark in its own process (so memory figures are its own), one after
// another, and prints their `name: value unit` lines. `npm run bench -- cache store` runs a subset.
// `peer` (bench/peer-bench.ts: side by side with postfix-mta-sts-resolver, which it installs with
// apt, in a network namespace) needs root and runs only when named: `npm run bench -- peer`.
// Machine facts are printed first so BENCHMARKS.md can record them with the figures.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ALL = ['protocol', 'discovery', 'store', 'cache', 'socketmap'] as const;
const ON_REQUEST = ['peer'] as const;

const here = dirname(fileURLToPath(import.meta.url));
const ext = import.meta.url.endsWith('.ts') ? '.ts' : '.js';
const wanted = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = wanted.length > 0 ? wanted : [...ALL];

console.log(`date: ${new Date().toISOString()}`);
console.log(
  `machine: ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'unknown cpu'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB`,
);
console.log(`node: ${process.version} on ${os.type()} ${os.release()}`);

let failed = 0;
for (const name of names) {
  const file = join(here, `${name}-bench${ext}`);
  if (!existsSync(file)) {
    console.error(`unknown benchmark ${name} (have: ${[...ALL, ...ON_REQUEST].join(', ')})`);
    failed++;
    continue;
  }
  console.log(`\n## ${name}`);
  const args = ext === '.ts' ? ['--import', 'tsx', file] : [file];
  const r = spawnSync(process.execPath, ['--expose-gc', ...args], { stdio: 'inherit' });
  if (r.status !== 0) {
    console.error(`benchmark ${name} failed (exit ${r.status ?? r.signal})`);
    failed++;
  }
}
if (failed > 0) process.exitCode = 1;
