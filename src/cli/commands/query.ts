import { Command } from 'commander';
import { noopMetrics } from '../../metrics/metrics.js';
import { withContext, type CliRuntime } from '../context.js';
import { write } from '../output.js';

interface QueryFlags {
  readonly name: string;
  readonly config?: string;
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
        "configuration's), so the answer is the daemon's, through the cache.\n\n" +
        'Exit status: 0 whenever a reply was produced (NOTFOUND and TEMP included), 2 bad ' +
        'configuration, 6 store error.',
    )
    .argument('<key>', 'the lookup key, e.g. example.com or [mx.example.com]:25')
    .option('--name <name>', 'socketmap name selecting the zone', 'postfix')
    .option('-c, --config <file>', 'daemon configuration (YAML, postfix-mta-sts-resolver format)')
    .action(async function (this: Command, key: string) {
      // Loaded on use so other commands do not pay for yaml and the daemon's modules.
      const [{ loadConfig }, { createSocketmapHandler }] = await Promise.all([
        import('../../config/load-config.js'),
        import('../../daemon/handler.js'),
      ]);
      const flags = this.opts<QueryFlags>();
      await withContext(this, runtime, async (ctx) => {
        const config = await loadConfig({
          ...(flags.config !== undefined ? { file: flags.config } : {}),
          overrides: {
            ...(ctx.options.store !== undefined ? { store: ctx.options.store } : {}),
            ...(ctx.options.dataDir !== undefined ? { dataDir: ctx.options.dataDir } : {}),
          },
          env: runtime.env,
        });
        const db = await ctx.db({
          ...(config.store !== undefined ? { store: config.store } : { dataDir: config.dataDir }),
          txtRecheckSeconds: config.cacheGraceSeconds,
        });
        const handler = createSocketmapHandler({ db, config: () => config, logger: ctx.logger, metrics: noopMetrics });
        const reply = await handler(flags.name, key, ctx.signal);
        await write(runtime.stdout, `${reply}\n`);
      });
    });
}
