import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { formatDate, formatFields, formatSeconds, indentText, write, writeJsonLine } from '../output.js';
import { policyToJson, recordToJson } from '../record-json.js';

/** `mtastsdb show <domain>`: one cached record as stored, without network and without touching lastUse. */
export function command(runtime: CliRuntime): Command {
  return new Command('show')
    .summary('show the cached record of a domain (no network)')
    .description(
      'Prints the record the cache holds for <domain>, expired and backoff records included, with ' +
        'the exact policy text. Reads the store only: no DNS, no fetch, and last use is not updated.\n\n' +
        'Exit status: 0 shown, 3 no record for the domain, 6 store error, 8 no store there (none is created), ' +
        '2 invalid domain.',
    )
    .argument('<domain>', 'the recipient domain')
    .option('--json', 'print the record as one JSON object (the export format)')
    .action(async function (this: Command, name: string) {
      const domain = domainArgument(name);
      const json = this.opts<{ json?: boolean }>().json === true;
      await withContext(this, runtime, async (ctx) => {
        const store = await ctx.store({ mustExist: true });
        const r = await store.get(domain.name());
        if (r === undefined) throw new MtaStsError('ERR_MTASTSDB_NOT_FOUND', `no cached record for ${domain.name()}`);
        if (json) {
          await writeJsonLine(runtime.stdout, recordToJson(r));
          return;
        }
        const p = policyToJson(r.policy);
        const now = runtime.clock.now();
        const expired = r.validEnd.getTime() <= now;
        await write(
          runtime.stdout,
          formatFields([
            ['domain', r.domain],
            ['mode', p.mode],
            ['max_age', `${p.maxAgeSeconds} (${formatSeconds(p.maxAgeSeconds)})`],
            ['mx', p.mx],
            ['record id', r.recordId === '' ? '-' : r.recordId],
            ['backoff', r.backoff ? 'yes (a fetch failed; no policy applies until it expires)' : 'no'],
            ['valid until', `${formatDate(r.validEnd)}${expired ? ' (expired)' : ''}`],
            ['last update', formatDate(r.lastUpdate)],
            ['last use', formatDate(r.lastUse)],
            ['inserted', formatDate(r.inserted)],
          ]) +
            'policy:\n' +
            indentText(r.policyText),
        );
      });
    });
}
