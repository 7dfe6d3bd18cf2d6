/**
 * Runs `mtastsdb serve` with the CLI's global options, for tests that need the daemon as a
 * separate process (signals, postmap). Usage: `node --import tsx test/helpers/run-serve.ts serve …`.
 */
import { Command } from 'commander';
import { command as serve } from '../../src/cli/commands/serve.js';
import { addGlobalOptions } from '../../src/cli/context.js';
import { isMtaStsError } from '../../src/errors.js';

const program = addGlobalOptions(new Command('mtastsdb'));
program.addCommand(serve());
try {
  await program.parseAsync(process.argv);
  process.exitCode = 0;
} catch (err) {
  process.stderr.write(`${isMtaStsError(err) ? `${err.code}: ${err.message}` : String(err)}\n`);
  process.exitCode = isMtaStsError(err, 'ERR_MTASTS_CONFIG', 'ERR_MTASTS_USAGE') ? 2 : 1;
}
