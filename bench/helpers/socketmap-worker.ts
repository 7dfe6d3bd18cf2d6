// Child process of bench/helpers/socketmap-load.ts: runs one command given as JSON in argv[2]
// (a socketmap load, filling a SQLite store, or the bare TLS client of tls-floor.ts) and prints its
// result as one JSON line.
import { openSqliteStore } from '../../src/store/sqlite-store.js';
import type { PolicyRecord } from '../../src/store/policy-store.js';
import { runLoad, storeRecord } from './socketmap-load.js';
import type { FillResult, FillSpec, WorkerCommand } from './socketmap-load.js';
import { runTlsFloor } from './tls-floor.js';

/** Records per transaction: bounded memory, few commits. */
const FILL_CHUNK = 20_000;

async function fill(spec: FillSpec): Promise<FillResult> {
  const started = process.hrtime.bigint();
  // No memo: every text is distinct, so it would only cost time and memory.
  const store = await openSqliteStore({ path: spec.path, policyMemoEntries: 0 });
  try {
    for (let i = 0; i < spec.count; i += FILL_CHUNK) {
      const chunk: PolicyRecord[] = [];
      for (let j = i; j < Math.min(spec.count, i + FILL_CHUNK); j++) chunk.push(storeRecord(j, spec.now));
      await store.putMany(chunk);
    }
  } finally {
    await store.close();
  }
  return { records: spec.count, seconds: Number(process.hrtime.bigint() - started) / 1e9 };
}

const command = JSON.parse(process.argv[2] ?? '{}') as WorkerCommand;
const result =
  command.cmd === 'load'
    ? await runLoad(command)
    : command.cmd === 'fill'
      ? await fill(command)
      : await runTlsFloor(command);
process.stdout.write(`${JSON.stringify(result)}\n`);
