import { Command } from 'commander';
import { UNUSED_DELETE_SECONDS } from '../../rfc8461/limits.js';
import { integer } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { write, writeJsonLine } from '../output.js';

interface PurgeFlags {
  readonly expired?: boolean;
  readonly unusedDays?: number;
  readonly json?: boolean;
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
        'Exit status: 0 done (also when nothing matched), 6 store error.',
    )
    .option('--expired', 'delete records whose policy has expired (valid until is past)')
    .option('--unused-days <n>', 'delete records not used for at least n days', integer(0))
    .option('--json', 'print {"deleted": n}')
    .action(async function (this: Command) {
      const flags = this.opts<PurgeFlags>();
      const both = flags.expired !== true && flags.unusedDays === undefined;
      const expired = both || flags.expired === true;
      const unusedDays = both ? DEFAULT_UNUSED_DAYS : flags.unusedDays;
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db();
        const now = runtime.clock.now();
        const deleted = await db.purge({
          ...(expired ? { expiredBefore: new Date(now) } : {}),
          ...(unusedDays !== undefined ? { unusedSince: new Date(now - unusedDays * 86_400_000) } : {}),
          signal: ctx.signal,
        });
        if (flags.json === true) {
          await writeJsonLine(runtime.stdout, { deleted });
          return;
        }
        const what = [
          ...(expired ? ['expired'] : []),
          ...(unusedDays !== undefined ? [`unused for ${unusedDays} days`] : []),
        ].join(' or ');
        await write(runtime.stdout, `purged ${deleted} record${deleted === 1 ? '' : 's'} (${what})\n`);
      });
    });
}
