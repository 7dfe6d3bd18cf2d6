import { Command, Option } from 'commander';
import type { ListOptions, PolicyRecord } from '../../store/policy-store.js';
import { integer } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { formatDate, write, writeJsonLine } from '../output.js';
import { recordToJson } from '../record-json.js';

interface ListFlags {
  readonly json?: boolean;
  readonly expired?: boolean;
  readonly backoff?: boolean;
  readonly mode?: 'enforce' | 'testing' | 'none';
  readonly unusedDays?: number;
  readonly limit?: number;
}

const DAY_MS = 86_400_000;
// Rows read before the column widths are fixed; later rows stream with those widths.
const WIDTH_SAMPLE = 200;
const HEADER = ['DOMAIN', 'MODE', 'VALID UNTIL', 'LAST USE', 'RECORD ID', 'BACKOFF'] as const;

function row(r: PolicyRecord): string[] {
  return [
    r.domain,
    r.policy.mode,
    formatDate(r.validEnd),
    formatDate(r.lastUse),
    r.recordId === '' ? '-' : r.recordId,
    r.backoff ? 'yes' : 'no',
  ];
}

function line(cells: readonly string[], widths: readonly number[]): string {
  return `${cells
    .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i] ?? 0)))
    .join('  ')
    .trimEnd()}\n`;
}

/** `mtastsdb list`: the cached records, newest last use first, streamed. */
export function command(runtime: CliRuntime): Command {
  return new Command('list')
    .summary('list cached records, newest last use first')
    .description(
      'Streams the cached records (never loading them all), most recently used first, then by ' +
        'domain. Filters combine (all must match). Prints a table, or JSON lines with --json ' +
        '(the export format without policyText).\n\n' +
        'Exit status: 0 listed (also when empty), 6 store error, 8 no store there (none is created).',
    )
    .option('--expired', 'only records whose policy has expired (valid until is past)')
    .option('--backoff', 'only backoff records (a recent fetch failed)')
    .addOption(
      new Option('--mode <mode>', 'only records whose policy has this mode').choices(['enforce', 'testing', 'none']),
    )
    .option('--unused-days <n>', 'only records not used for at least n days', integer(0))
    .option('--limit <n>', 'print at most n records', integer(1))
    .option('--json', 'print one JSON object per line')
    .action(async function (this: Command) {
      const flags = this.opts<ListFlags>();
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db({ mustExist: true });
        const now = runtime.clock.now();
        const filter: ListOptions = {
          ...(flags.expired === true ? { validEndBefore: new Date(now) } : {}),
          ...(flags.unusedDays !== undefined ? { usedBefore: new Date(now - flags.unusedDays * DAY_MS) } : {}),
        };
        const limit = flags.limit ?? Infinity;
        const pending: string[][] = [];
        let widths: number[] | undefined;
        let shown = 0;
        const flush = async (): Promise<void> => {
          widths ??= HEADER.map((h, i) => Math.max(h.length, ...pending.map((cells) => (cells[i] ?? '').length)));
          let out = shown === pending.length ? line(HEADER, widths) : '';
          for (const cells of pending) out += line(cells, widths);
          pending.length = 0;
          await write(runtime.stdout, out);
        };
        for await (const r of db.policyRecordsStream(filter)) {
          if (flags.backoff === true && !r.backoff) continue;
          if (flags.mode !== undefined && r.policy.mode !== flags.mode) continue;
          shown++;
          if (flags.json === true) {
            const { policyText: _omit, ...rest } = recordToJson(r);
            await writeJsonLine(runtime.stdout, rest);
          } else {
            pending.push(row(r));
            if (pending.length >= WIDTH_SAMPLE) await flush();
          }
          if (shown >= limit) break;
        }
        if (flags.json !== true && (pending.length > 0 || shown === 0)) await flush();
      });
    });
}
