import { Command } from 'commander';
import type { MtaStsDb } from '../../cache/mtastsdb.js';
import { UNUSED_DELETE_SECONDS } from '../../rfc8461/limits.js';
import type { ListOptions } from '../../store/policy-store.js';
import { integer } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { formatDate, write, writeJsonLine } from '../output.js';

interface PurgeFlags {
  readonly expired?: boolean;
  readonly unusedDays?: number;
  readonly json?: boolean;
  readonly dryRun?: boolean;
}

/**
 * `--dry-run`: lists what `purge` would delete, with the same two sweeps (expired, then unused),
 * each record once with every reason that applies. Returns how many.
 */
async function dryRun(
  db: MtaStsDb,
  sweeps: { readonly expiredBefore?: Date; readonly unusedSince?: Date },
  runtime: CliRuntime,
  json: boolean,
): Promise<number> {
  const filters: ListOptions[] = [
    ...(sweeps.expiredBefore !== undefined ? [{ validEndBefore: sweeps.expiredBefore }] : []),
    ...(sweeps.unusedSince !== undefined ? [{ usedBefore: sweeps.unusedSince }] : []),
  ];
  const seen = new Set<string>();
  for (const filter of filters) {
    for await (const r of db.policyRecordsStream(filter)) {
      if (runtime.signal.aborted) break;
      if (seen.has(r.domain)) continue;
      seen.add(r.domain);
      const reasons = [
        ...(sweeps.expiredBefore !== undefined && r.validEnd < sweeps.expiredBefore ? ['expired'] : []),
        ...(sweeps.unusedSince !== undefined && r.lastUse < sweeps.unusedSince ? ['unused'] : []),
      ];
      if (json) {
        await writeJsonLine(runtime.stdout, {
          domain: r.domain,
          reasons,
          validEnd: r.validEnd.toISOString(),
          lastUse: r.lastUse.toISOString(),
        });
      } else {
        await write(
          runtime.stdout,
          `${r.domain}  ${reasons.join(',')}  valid until ${formatDate(r.validEnd)}  last use ${formatDate(r.lastUse)}\n`,
        );
      }
    }
  }
  runtime.signal.throwIfAborted();
  return seen.size;
}

const DEFAULT_UNUSED_DAYS = UNUSED_DELETE_SECONDS / 86400;

/** `mtastsdb purge`: deletes expired and long-unused records. */
export function command(runtime: CliRuntime): Command {
  return new Command('purge')
    .summary('delete expired and long-unused records')
    .description(
      'Deletes records whose policy has expired and/or records not used for a number of days. ' +
        `Without options: both, with ${DEFAULT_UNUSED_DAYS} days (what the refresher deletes). With --expired ` +
        'and/or --unused-days: only what is asked. Prints how many records were deleted.\n\n' +
        'Exit status: 0 done (also when nothing matched), 6 store error, 8 no store there.',
    )
    .option('--expired', 'delete records whose policy has expired (valid until is past)')
    .option('--unused-days <n>', 'delete records not used for at least n days', integer(0))
    .option('--dry-run', 'print what would be deleted, delete nothing')
    .option('--json', 'print {"deleted": n}; with --dry-run one {domain, reasons, validEnd, lastUse} per line')
    .action(async function (this: Command) {
      const flags = this.opts<PurgeFlags>();
      const both = flags.expired !== true && flags.unusedDays === undefined;
      const expired = both || flags.expired === true;
      const unusedDays = both ? DEFAULT_UNUSED_DAYS : flags.unusedDays;
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db({ mustExist: true });
        const now = runtime.clock.now();
        const sweeps = {
          ...(expired ? { expiredBefore: new Date(now) } : {}),
          ...(unusedDays !== undefined ? { unusedSince: new Date(now - unusedDays * 86_400_000) } : {}),
        };
        const what = [
          ...(expired ? ['expired'] : []),
          ...(unusedDays !== undefined ? [`unused for ${unusedDays} days`] : []),
        ].join(' or ');
        if (flags.dryRun === true) {
          const n = await dryRun(db, sweeps, runtime, flags.json === true);
          if (flags.json !== true) {
            await write(
              runtime.stdout,
              `would purge ${n} record${n === 1 ? '' : 's'} (${what}; dry run, nothing deleted)\n`,
            );
          }
          return;
        }
        const deleted = await db.purge({ ...sweeps, signal: ctx.signal });
        if (flags.json === true) {
          await writeJsonLine(runtime.stdout, { deleted });
          return;
        }
        await write(runtime.stdout, `purged ${deleted} record${deleted === 1 ? '' : 's'} (${what})\n`);
      });
    });
}
