import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { write, writeJsonLine } from '../output.js';

/** `mtastsdb delete <domain>`: forgets one cached record. */
export function command(runtime: CliRuntime): Command {
  return new Command('delete')
    .summary('delete the cached record of a domain')
    .description(
      'Removes <domain> from the cache; the next get or daemon query discovers it again.\n\n' +
        'Exit status: 0 deleted, 3 no record for the domain, 6 store error, 8 no store there (none is created), ' +
        '2 invalid domain.',
    )
    .argument('<domain>', 'the recipient domain')
    .option('--json', 'print {"deleted": n}')
    .action(async function (this: Command, name: string) {
      const domain = domainArgument(name);
      const json = this.opts<{ json?: boolean }>().json === true;
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db({ mustExist: true });
        const deleted = (await db.delete(domain)) ? 1 : 0;
        if (json) await writeJsonLine(runtime.stdout, { deleted });
        else await write(runtime.stdout, `deleted ${deleted} record${deleted === 1 ? '' : 's'}\n`);
        if (deleted === 0) throw new MtaStsError('ERR_MTASTSDB_NOT_FOUND', `no cached record for ${domain.name()}`);
      });
    });
}
