import { Command } from 'commander';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { Progress, write, writeJsonLine } from '../output.js';

/** `mtastsdb refresh [domain…]`: runs the refresher now. */
export function command(runtime: CliRuntime): Command {
  return new Command('refresh')
    .summary('refresh cached policies now')
    .description(
      'Re-checks the TXT record of each given domain and fetches its policy again when the id ' +
        "changed (RFC 8461 §5.1), as the daemon's refresher does. Without domains, refreshes every " +
        'record that is due (not updated for 12 hours) and deletes records unused for 180 days. ' +
        'Shows progress on a terminal and prints a summary. A failed refresh keeps the cached policy.\n\n' +
        'Exit status: 0 the refresh ran (see the summary for failures), 6 store error, ' +
        '2 invalid domain.',
    )
    .argument('[domain...]', 'the domains to refresh (default: every record that is due)')
    .option('--json', 'print the summary as one JSON object')
    .action(async function (this: Command, names: string[]) {
      const domains = names.map((n) => domainArgument(n).name());
      const json = this.opts<{ json?: boolean }>().json === true;
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db();
        const progress = new Progress(runtime.stderr, runtime.clock);
        let summary;
        try {
          summary = await db.refresh(domains.length > 0 ? domains : undefined, {
            signal: ctx.signal,
            onProgress: (done, total) => progress.update(`refreshing: ${done}/${total}`, done === total),
          });
        } finally {
          progress.clear();
        }
        // Records another node (or a recent run) holds a refresh lease on are neither refreshed nor counted.
        const skipped = Math.max(
          0,
          summary.checked - summary.unchanged - summary.updated - summary.failed - summary.deleted,
        );
        if (json) {
          await writeJsonLine(runtime.stdout, { ...summary, skipped });
          return;
        }
        await write(
          runtime.stdout,
          `checked ${summary.checked}: ${summary.unchanged} unchanged, ${summary.updated} updated, ` +
            `${summary.failed} failed, ${summary.deleted} deleted` +
            `${skipped > 0 ? `, ${skipped} skipped (being refreshed elsewhere)` : ''}\n`,
        );
      });
    });
}
