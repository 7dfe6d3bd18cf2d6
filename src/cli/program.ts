import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { addGlobalOptions, type CliRuntime } from './context.js';
import * as dane from './commands/dane.js';
import * as del from './commands/delete.js';
import * as exportCmd from './commands/export.js';
import * as get from './commands/get.js';
import * as importCmd from './commands/import.js';
import * as list from './commands/list.js';
import * as lookup from './commands/lookup.js';
import * as purge from './commands/purge.js';
import * as query from './commands/query.js';
import * as refresh from './commands/refresh.js';
import * as serve from './commands/serve.js';
import * as show from './commands/show.js';

/** The package version, read from the nearest package.json named mtastsdb (dist/, build/ and src/ alike). */
function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      try {
        const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
        if (pkg.name === 'mtastsdb' && typeof pkg.version === 'string') return pkg.version;
      } catch {
        // not ours or unreadable: keep looking upwards
      }
    }
    dir = dirname(dir);
  }
  return 'unknown';
}

/** The sections after the option and command lists of `mtastsdb --help` (and of the man page). */
export const PROGRAM_HELP_FOOTER: readonly { readonly title: string; readonly text: string }[] = [
  {
    title: 'ENVIRONMENT',
    text:
      'Environment: MTASTSDB_CONFIG, MTASTSDB_STORE, MTASTSDB_DATA_DIR, MTASTSDB_POLICY_PORT,\n' +
      'MTASTSDB_LOG_LEVEL, MTASTSDB_ALLOW_PRIVATE_ADDRESSES=1.\n' +
      'The store is found as the daemon finds it (-c, the environment, then --store/--data-dir);\n' +
      'commands that only read or maintain the cache never create one.',
  },
  {
    title: 'EXIT STATUS',
    text:
      'Exit status: 0 ok, 1 internal error, 2 usage/config/invalid input, 3 no policy or not found,\n' +
      '4 temporary failure (DNS, fetch), 5 invalid published record/policy, 6 store error,\n' +
      '7 backoff, 8 no store where the command looked, 9 serve cannot listen, 130 interrupted.\n' +
      'Errors are printed on stderr as one line `CODE: message`.',
  },
];

/** Applies the settings every command needs, recursively (addCommand does not inherit them). */
function configure(cmd: Command, runtime: CliRuntime): void {
  cmd
    .exitOverride()
    .configureOutput({
      writeOut: (s) => runtime.stdout.write(s),
      writeErr: (s) => runtime.stderr.write(s),
      // main.ts prints usage errors itself as one `ERR_MTASTS_USAGE: …` line.
      outputError: () => {},
    })
    .showSuggestionAfterError(true);
  for (const sub of cmd.commands) configure(sub, runtime);
}

/** The `mtastsdb` command with its global options and every subcommand. */
export function buildProgram(runtime: CliRuntime): Command {
  const program = new Command('mtastsdb')
    .description(
      'MTA-STS (RFC 8461) policy cache for sending mail servers: a Postfix socketmap daemon (serve) ' +
        'and commands to look up, inspect and maintain the policy cache.',
    )
    .version(packageVersion(), '-V, --version', 'print the version')
    .helpCommand(true)
    .addHelpText('after', `\n${PROGRAM_HELP_FOOTER.map((section) => section.text).join('\n')}`);
  addGlobalOptions(program);
  program.addCommand(serve.command(runtime));
  for (const mod of [lookup, dane, get, query, list, show, refresh, del, purge, exportCmd, importCmd]) {
    program.addCommand(mod.command(runtime));
  }
  configure(program, runtime);
  return program;
}
