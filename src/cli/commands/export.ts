import { Command } from 'commander';
import { withContext, type CliRuntime } from '../context.js';
import { Progress, writeJsonLine } from '../output.js';
import { recordToJson } from '../record-json.js';

/** `mtastsdb export`: every record as JSON lines on stdout, streamed. */
export function command(runtime: CliRuntime): Command {
  return new Command('export')
    .summary('write every cached record to stdout as JSON lines')
    .description(
      'Streams every record (newest last use first) as one JSON object per line, each record once, ' +
        'from one snapshot of the store taken at the start (a running daemon may go on writing): domain, inserted, ' +
        'validEnd, lastUpdate, lastUse (ISO 8601), backoff, recordId, policy and the exact ' +
        'policyText. For backups and for moving a cache between stores:\n\n' +
        '  mtastsdb export --data-dir /var/lib/mtastsdb | mtastsdb import --store postgres://…\n\n' +
        'Exit status: 0 exported, 6 store error, 8 no store there (none is created: an export from ' +
        'the wrong place fails instead of writing an empty backup).',
    )
    .action(async function (this: Command) {
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db({ mustExist: true });
        const progress = new Progress(runtime.stderr, runtime.clock);
        let n = 0;
        try {
          for await (const r of db.policyRecordsStream()) {
            if (ctx.signal.aborted) break;
            await writeJsonLine(runtime.stdout, recordToJson(r));
            progress.update(`exported ${++n} records`);
          }
        } finally {
          progress.clear();
        }
        ctx.signal.throwIfAborted();
      });
    });
}
