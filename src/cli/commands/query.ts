import { Command } from 'commander';
import { noopMetrics } from '../../metrics/metrics.js';
import { withContext, type CliRuntime } from '../context.js';
import { write } from '../output.js';

interface QueryFlags {
  readonly name: string;
}

/** `mtastsdb query <key>`: the socketmap reply the daemon would send Postfix, from the daemon's own handler. */
export function command(runtime: CliRuntime): Command {
  return new Command('query')
    .summary('print what the daemon would answer Postfix for a domain')
    .description(
      'Prints the raw socketmap reply the daemon sends Postfix for <key> under the socketmap name ' +
        '(zone) --name, e.g. `OK secure match=mx1.example.com:.example.net servername=hostname` or ' +
        '`NOTFOUND ` (with its trailing space). The key may be written as Postfix sends it ' +
        "([host]:port, any case, trailing dot). Runs the daemon's request handler on the same " +
        'configuration (-c, else MTASTSDB_CONFIG) and cache (--store/--data-dir, else the ' +
        "configuration's), so the answer is the daemon's, through the cache. A store that does not " +
        'exist is an error (nothing is created). With a dane: section, DANE is asked as the daemon ' +
        'asks it (the resolver probed first), so the reply is the DANE-aware one (dane-only, dane, ' +
        'TEMP) where the zone says dane: prefer.\n\n' +
        'Exit status: 0 whenever a reply was produced (NOTFOUND and TEMP included), 2 bad ' +
        'configuration, 6 store error, 8 no store where the configuration points.',
    )
    .argument('<key>', 'the lookup key, e.g. example.com or [mx.example.com]:25')
    .option('--name <name>', 'socketmap name selecting the zone', 'postfix')
    .action(async function (this: Command, key: string) {
      // Loaded on use so other commands do not pay for the daemon's modules.
      const { createSocketmapHandler } = await import('../../daemon/handler.js');
      const flags = this.opts<QueryFlags>();
      await withContext(this, runtime, async (ctx) => {
        const config = await ctx.config();
        const db = await ctx.db({ mustExist: true, txtRecheckSeconds: config.cacheGraceSeconds });
        const { startDaneService } = await import('../../daemon/dane-service.js');
        const dane =
          config.dane !== undefined
            ? await startDaneService({ config: config.dane, logger: ctx.logger, metrics: noopMetrics })
            : undefined;
        try {
          const handler = createSocketmapHandler({
            db,
            config: () => config,
            logger: ctx.logger,
            metrics: noopMetrics,
            ...(dane !== undefined ? { dane: dane.handler } : {}),
          });
          const reply = await handler(flags.name, key, ctx.signal);
          await write(runtime.stdout, `${reply}\n`);
        } finally {
          dane?.close();
        }
      });
    });
}
