import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import { domainArgument, messageOf } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { Progress, write, writeJsonLine } from '../output.js';

/** A domain list larger than this is refused (a million names is about 20 MB). */
const MAX_LIST_BYTES = 64 * 1024 * 1024;

async function readAll(input: AsyncIterable<Buffer | string>, what: string): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  for await (const chunk of input) {
    const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    size += buf.length;
    if (size > MAX_LIST_BYTES)
      throw new MtaStsError('ERR_MTASTS_USAGE', `${what}: larger than ${MAX_LIST_BYTES} bytes`);
    parts.push(buf);
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * The domains of a list: one per line, `#` starts a comment, blank lines are skipped, duplicates
 * count once. Every name is checked before any lookup; the first invalid one stops with its line.
 */
export function parseDomainList(text: string, what: string): string[] {
  const out = new Set<string>();
  text.split(/\r?\n/).forEach((raw, i) => {
    const name = raw.replace(/#.*$/, '').trim();
    if (name === '') return;
    try {
      out.add(domainArgument(name).name());
    } catch (err) {
      throw new MtaStsError('ERR_MTASTS_USAGE', `${what} line ${i + 1}: ${messageOf(err)}`, { cause: err });
    }
  });
  return [...out];
}

/** `mtastsdb refresh [domain…]`: runs the refresher now. */
export function command(runtime: CliRuntime): Command {
  return new Command('refresh')
    .summary('refresh cached policies now')
    .description(
      'Re-checks the TXT record of each given domain and fetches its policy again when the id ' +
        "changed (RFC 8461 §5.1), as the daemon's refresher does. Without domains, refreshes every " +
        'record that is due (not updated for 12 hours) and deletes records unused for 180 days. ' +
        'Shows progress on a terminal and prints a summary. A failed refresh keeps the cached policy.\n\n' +
        '--from-file FILE (or - for stdin) warms the cache from a list of domains, one per line ' +
        '(# comments, blank lines skipped): each one not cached yet is discovered and stored, as ' +
        'the daemon would on its first query. Refreshing given domains creates the store if needed; ' +
        'refreshing what is due needs an existing store.\n\n' +
        'Exit status: 0 the refresh ran (see the summary for failures), 6 store error, ' +
        '2 invalid domain or unreadable list, 8 no store (without domains).',
    )
    .argument('[domain...]', 'the domains to refresh (default: every record that is due)')
    .option('--from-file <file>', 'also refresh (or first fetch) the domains listed in file, - for stdin')
    .option('--json', 'print the summary as one JSON object')
    .action(async function (this: Command, names: string[]) {
      const flags = this.opts<{ json?: boolean; fromFile?: string }>();
      const json = flags.json === true;
      const wanted = new Set(names.map((n) => domainArgument(n).name()));
      if (flags.fromFile !== undefined) {
        const file = flags.fromFile;
        let text: string;
        try {
          text =
            file === '-'
              ? await readAll(runtime.stdin as AsyncIterable<Buffer | string>, 'stdin')
              : await readFile(file, 'utf8');
        } catch (err) {
          if (err instanceof MtaStsError) throw err;
          throw new MtaStsError('ERR_MTASTS_USAGE', `cannot read ${file}: ${messageOf(err)}`, { cause: err });
        }
        for (const d of parseDomainList(text, file === '-' ? 'stdin' : file)) wanted.add(d);
      }
      const domains = [...wanted];
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db({ mustExist: domains.length === 0 && flags.fromFile === undefined });
        const progress = new Progress(runtime.stderr, runtime.clock);
        let summary;
        try {
          summary = await db.refresh(domains.length > 0 || flags.fromFile !== undefined ? domains : undefined, {
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
