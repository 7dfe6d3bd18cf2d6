import type { Command, Help } from 'commander';
import { systemClock } from '../clock.js';
import type { CliRuntime } from './context.js';
import { buildProgram, PROGRAM_HELP_FOOTER } from './program.js';

/** One section of text after the lists (environment, exit status). */
export interface ManSection {
  readonly title: string;
  readonly text: string;
}

/** Escapes text for roff: backslashes, and a leading `.` or `'` that would read as a request. */
function roff(text: string): string {
  return text
    .replace(/\\/g, '\\e')
    .split('\n')
    .map((l) => (/^[.']/.test(l) ? `\\&${l}` : l))
    .join('\n');
}

/** An option or argument term in bold, its dashes as roff minus signs. */
function term(text: string): string {
  return `\\fB${roff(text).replace(/-/g, '\\-')}\\fR`;
}

/**
 * Help text as roff paragraphs: blank lines separate paragraphs; indented lines (examples) are
 * kept as they are, in a no-fill block.
 */
function paragraphs(text: string): string {
  const out: string[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const lines = para.split('\n');
    let prose: string[] = [];
    const flush = (): void => {
      if (prose.length > 0) out.push('.PP', roff(prose.join(' ')));
      prose = [];
    };
    let inExample = false;
    for (const line of lines) {
      if (/^\s{2,}\S/.test(line)) {
        flush();
        if (!inExample) out.push('.PP', '.RS', '.nf');
        inExample = true;
        out.push(roff(line.trim()));
        continue;
      }
      if (inExample) out.push('.fi', '.RE');
      inExample = false;
      prose.push(line.trim());
    }
    if (inExample) out.push('.fi', '.RE');
    flush();
  }
  return out.join('\n');
}

function optionList(cmd: Command, help: Help): string[] {
  const out: string[] = [];
  for (const opt of help.visibleOptions(cmd)) {
    out.push('.TP', term(help.optionTerm(opt)), roff(help.optionDescription(opt)));
  }
  return out;
}

function argumentList(cmd: Command, help: Help): string[] {
  const out: string[] = [];
  for (const arg of help.visibleArguments(cmd)) {
    out.push('.TP', term(help.argumentTerm(arg)), roff(help.argumentDescription(arg)));
  }
  return out;
}

/**
 * The man page `mtastsdb(1)` in roff, built from the program's own help: its description, global
 * options, every command with its usage, description, arguments and options, then `sections`.
 * Deterministic (no date), so a test can compare it with the checked-in file.
 */
export function manPage(program: Command, version: string, sections: readonly ManSection[]): string {
  const help = program.createHelp();
  const name = program.name();
  const lines: string[] = [
    `.TH ${name.toUpperCase()} 1 "" "${name} ${version}" "User Commands"`,
    '.SH NAME',
    `${name} \\- ${roff(program.description().split(':')[0] ?? '')}`,
    '.SH SYNOPSIS',
    `.B ${name}`,
    '[\\fIoptions\\fR] \\fIcommand\\fR [\\fIcommand options\\fR] [\\fIarguments\\fR]',
    '.SH DESCRIPTION',
    paragraphs(program.description()),
    '.SH GLOBAL OPTIONS',
    '.PP',
    'Global options may be given before or after the command name.',
    ...optionList(program, help),
    '.SH COMMANDS',
  ];
  for (const cmd of help.visibleCommands(program)) {
    if (cmd.name() === 'help') continue;
    lines.push(`.SS "${roff(`${name} ${cmd.name()} ${cmd.usage()}`.trim())}"`);
    lines.push(paragraphs(cmd.description()));
    lines.push(...argumentList(cmd, help), ...optionList(cmd, help));
  }
  for (const section of sections) {
    lines.push(`.SH ${section.title}`, paragraphs(section.text.replace(/^[^:]*:\s*/, '')));
  }
  lines.push('.SH SEE ALSO', 'The README and docs/cli.md of the package; RFC 8461 (MTA-STS), RFC 8460 (TLSRPT).', '');
  return lines.join('\n');
}

/** The man page of this package's `mtastsdb` command (what `npm run man` writes to man/mtastsdb.1). */
export function renderManPage(): string {
  const quiet = { write: () => true, once: () => undefined, removeListener: () => undefined };
  const runtime: CliRuntime = {
    env: {},
    stdin: process.stdin,
    stdout: quiet,
    stderr: quiet,
    signal: new AbortController().signal,
    clock: systemClock,
  };
  const program = buildProgram(runtime);
  return manPage(program, program.version() ?? 'unknown', PROGRAM_HELP_FOOTER);
}
