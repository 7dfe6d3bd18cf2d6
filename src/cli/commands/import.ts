import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import type { PolicyRecord } from '../../store/policy-store.js';
import { messageOf } from '../args.js';
import { withContext, type CliContext, type CliRuntime } from '../context.js';
import { Progress, write, writeJsonLine } from '../output.js';
import { recordFromJson } from '../record-json.js';
import { resolverRowToExport } from '../../store/resolver-row.js';

/** A line longer than this is refused (a 64 KiB policy JSON-escaped stays far below it). */
const MAX_LINE_BYTES = 1024 * 1024;
/** Writes in flight at once: hides PostgreSQL round trips; SQLite is unaffected. */
const MAX_IN_FLIGHT = 16;

interface ImportFlags {
  readonly json?: boolean;
  readonly skipInvalid?: boolean;
  readonly dryRun?: boolean;
  readonly fromPostfixMtaStsResolver?: string;
}

interface Line {
  readonly no: number;
  readonly text: string;
}

/** Splits a byte stream into UTF-8 lines (LF or CRLF), each at most {@link MAX_LINE_BYTES}. */
async function* readLines(input: AsyncIterable<Buffer | string>, onBytes: (n: number) => void): AsyncGenerator<Line> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let parts: Buffer[] = [];
  let size = 0;
  let no = 0;
  const take = (tail: Buffer): Line => {
    const all = parts.length === 0 ? tail : Buffer.concat([...parts, tail]);
    parts = [];
    size = 0;
    no++;
    const bytes = all.at(-1) === 0x0d ? all.subarray(0, -1) : all;
    let text: string;
    try {
      text = decoder.decode(bytes);
    } catch (err) {
      throw new MtaStsError('ERR_MTASTS_USAGE', `line ${no}: not valid UTF-8`, { cause: err });
    }
    return { no, text };
  };
  for await (const chunk of input) {
    let buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    onBytes(buf.length);
    for (let nl = buf.indexOf(0x0a); nl !== -1; nl = buf.indexOf(0x0a)) {
      if (size + nl > MAX_LINE_BYTES)
        throw new MtaStsError('ERR_MTASTS_USAGE', `line ${no + 1}: longer than ${MAX_LINE_BYTES} bytes`);
      yield take(buf.subarray(0, nl));
      buf = buf.subarray(nl + 1);
    }
    size += buf.length;
    if (size > MAX_LINE_BYTES)
      throw new MtaStsError('ERR_MTASTS_USAGE', `line ${no + 1}: longer than ${MAX_LINE_BYTES} bytes`);
    if (buf.length > 0) parts.push(buf);
  }
  if (size > 0) yield take(Buffer.alloc(0));
}

/** Parses and validates one line, read at `now` (epoch ms); the error names the line. */
function parseLine(line: Line, now: number): PolicyRecord {
  let value: unknown;
  try {
    value = JSON.parse(line.text);
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `line ${line.no}: not JSON: ${messageOf(err)}`, { cause: err });
  }
  try {
    return recordFromJson(value, now);
  } catch (err) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `line ${line.no}: ${messageOf(err)}`, { cause: err });
  }
}

/**
 * Writes records with a few in flight, never two of one domain at once (so the store's newest-wins
 * comparison sees them in file order).
 */
class Writer {
  private readonly put: (record: PolicyRecord) => Promise<boolean>;
  private readonly inFlight = new Map<string, Promise<void>>();
  private failure: unknown;
  imported = 0;
  older = 0;

  constructor(put: (record: PolicyRecord) => Promise<boolean>) {
    this.put = put;
  }

  async add(record: PolicyRecord): Promise<void> {
    const same = this.inFlight.get(record.domain);
    if (same !== undefined) await same;
    while (this.inFlight.size >= MAX_IN_FLIGHT) await Promise.race(this.inFlight.values());
    if (this.failure !== undefined) throw this.failure;
    const p: Promise<void> = this.put(record).then(
      (written) => {
        if (written) this.imported++;
        else this.older++;
      },
      (err: unknown) => {
        this.failure ??= err;
      },
    );
    const tracked = p.finally(() => {
      if (this.inFlight.get(record.domain) === tracked) this.inFlight.delete(record.domain);
    });
    this.inFlight.set(record.domain, tracked);
  }

  async finish(): Promise<void> {
    await Promise.all(this.inFlight.values());
    if (this.failure !== undefined) throw this.failure;
  }
}

/**
 * `import --from-postfix-mta-sts-resolver SOURCE`: copies the peer's cached policies into the store.
 * Rows that are not valid policies are reported on stderr and skipped (a foreign cache should not
 * stop at its first odd row); expired ones are counted and skipped.
 */
async function importFromResolver(
  ctx: CliContext,
  runtime: CliRuntime,
  flags: ImportFlags,
  source: string,
): Promise<void> {
  const { readResolverCache } = await import('../../store/resolver-cache.js');
  const rows = readResolverCache(source, ctx.signal);
  // Read the first row before opening the target: a wrong source must not create a store.
  const first = await rows.next();
  const db = flags.dryRun === true ? undefined : await ctx.db();
  const writer = db === undefined ? undefined : new Writer((r) => db.importRecord(r));
  const progress = new Progress(runtime.stderr, runtime.clock);
  const now = runtime.clock.now();
  let valid = 0;
  let expired = 0;
  let invalid = 0;
  try {
    for (let next = first; next.done !== true; next = await rows.next()) {
      ctx.signal.throwIfAborted();
      let record: PolicyRecord;
      try {
        const out = resolverRowToExport(next.value, now);
        if (out.kind === 'expired') {
          expired++;
          continue;
        }
        record = recordFromJson(out.json, now);
      } catch (err) {
        invalid++;
        const why = messageOf(err);
        await write(
          runtime.stderr,
          `ERR_MTASTS_USAGE: ${why.startsWith(`${next.value.domain}:`) ? why : `${next.value.domain}: ${why}`} (skipped)\n`,
        );
        continue;
      }
      valid++;
      await writer?.add(record);
      progress.update(`${flags.dryRun === true ? 'checked' : 'imported'} ${valid} records`);
    }
    await writer?.finish();
  } finally {
    progress.clear();
  }
  const imported = writer?.imported ?? 0;
  const older = writer?.older ?? 0;
  if (flags.json === true) {
    await writeJsonLine(
      runtime.stdout,
      flags.dryRun === true ? { valid, expired, invalid } : { imported, older, expired, invalid },
    );
  } else if (flags.dryRun === true) {
    await write(
      runtime.stdout,
      `${valid} valid, ${expired} expired, ${invalid} invalid records (dry run, nothing written)\n`,
    );
  } else {
    await write(
      runtime.stdout,
      `imported ${imported} records, ${older} skipped (cached copy newer), ${expired} expired (not imported), ` +
        `${invalid} invalid\n`,
    );
  }
}

/** `mtastsdb import [file]`: loads JSON lines written by `export`. */
export function command(runtime: CliRuntime): Command {
  return new Command('import')
    .summary('load records from JSON lines (the export format)')
    .description(
      'Reads JSON lines written by `mtastsdb export` from [file] or stdin and stores them. Every line ' +
        'is validated (domain, record id, the policy text through the RFC 8461 parser, and the dates: ' +
        'real calendar dates, none in the future, validEnd within max_age of lastUpdate, a back-off ' +
        'record without a policy). ' +
        'Newest wins: a record whose lastUpdate is older than the cached one is skipped.\n\n' +
        'Each line is written atomically. By default the first invalid line stops the import with an ' +
        'error naming the line (lines before it stay imported; nothing of the bad line is written); ' +
        'with --skip-invalid, invalid lines are reported on stderr and skipped. --dry-run validates ' +
        'the whole input, reports every invalid line and writes nothing. Shows progress on a terminal.\n\n' +
        'Exit status: 0 imported (or, with --dry-run, every line valid), 2 invalid line or unreadable ' +
        'file (not with --skip-invalid), 6 store error.\n\n' +
        '--from-postfix-mta-sts-resolver SOURCE reads the cache of postfix-mta-sts-resolver instead ' +
        '(its sts_policy_cache table, in its SQLite file or a postgres:// URL) into the store that ' +
        '-c/--store/--data-dir name: each policy stays valid until its fetch time + max_age (capped ' +
        'at 31557600 s, a future time taken as now), expired policies are skipped, rows that are not ' +
        'valid policies are reported and skipped, newest wins. The source is only read.',
    )
    .argument('[file]', 'JSON lines file (default: stdin)')
    .option(
      '--from-postfix-mta-sts-resolver <source>',
      "import postfix-mta-sts-resolver's cache: its SQLite file (e.g. /var/lib/mta-sts/cache.db) or postgres:// URL",
    )
    .option('--skip-invalid', 'report invalid lines and go on instead of stopping')
    .option('--dry-run', 'validate every line, write nothing')
    .option('--json', 'print the counts as one JSON object')
    .action(async function (this: Command, file: string | undefined) {
      const flags = this.opts<ImportFlags>();
      const source = flags.fromPostfixMtaStsResolver;
      if (source !== undefined) {
        if (file !== undefined) {
          throw new MtaStsError('ERR_MTASTS_USAGE', 'give either a FILE or --from-postfix-mta-sts-resolver, not both');
        }
        await withContext(this, runtime, (ctx) => importFromResolver(ctx, runtime, flags, source));
        return;
      }
      await withContext(this, runtime, async (ctx) => {
        let total: number | undefined;
        let input: AsyncIterable<Buffer | string>;
        if (file !== undefined && file !== '-') {
          try {
            total = (await stat(file)).size;
          } catch (err) {
            throw new MtaStsError('ERR_MTASTS_USAGE', `cannot read ${file}: ${messageOf(err)}`, { cause: err });
          }
          input = createReadStream(file);
        } else {
          input = runtime.stdin as AsyncIterable<Buffer | string>;
        }
        const db = flags.dryRun === true ? undefined : await ctx.db();
        const writer = db === undefined ? undefined : new Writer((r) => db.importRecord(r));
        const progress = new Progress(runtime.stderr, runtime.clock);
        let read = 0;
        let valid = 0;
        let invalid = 0;
        let firstInvalid: number | undefined;
        const counts = () => ({
          imported: writer?.imported ?? 0,
          older: writer?.older ?? 0,
          invalid,
          valid,
        });
        const report = async (): Promise<void> => {
          const c = counts();
          if (flags.json === true) {
            await writeJsonLine(
              runtime.stdout,
              flags.dryRun === true ? { valid, invalid } : { imported: c.imported, older: c.older, invalid },
            );
          } else if (flags.dryRun === true) {
            await write(runtime.stdout, `${valid} valid, ${invalid} invalid records (dry run, nothing written)\n`);
          } else {
            await write(
              runtime.stdout,
              `imported ${c.imported} records, ${c.older} skipped (cached copy newer), ${invalid} invalid\n`,
            );
          }
        };
        try {
          for await (const line of readLines(input, (n) => (read += n))) {
            ctx.signal.throwIfAborted();
            if (line.text.trim() === '') continue;
            let record: PolicyRecord;
            try {
              record = parseLine(line, runtime.clock.now());
            } catch (err) {
              // --dry-run checks the whole input; otherwise the first bad line stops the import.
              if (flags.skipInvalid !== true && flags.dryRun !== true) throw err;
              invalid++;
              firstInvalid ??= line.no;
              await write(runtime.stderr, `ERR_MTASTS_USAGE: ${messageOf(err)}\n`);
              continue;
            }
            valid++;
            await writer?.add(record);
            const pct = total !== undefined && total > 0 ? ` (${Math.floor((read / total) * 100)}%)` : '';
            progress.update(`${flags.dryRun === true ? 'checked' : 'imported'} ${valid} records${pct}`);
          }
          await writer?.finish();
        } catch (err) {
          progress.clear();
          await writer?.finish().catch(() => undefined);
          // Say what was written before the failure, so a rerun with --skip-invalid is an informed choice.
          if (writer !== undefined && flags.json !== true) await report();
          throw err;
        }
        progress.clear();
        await report();
        if (flags.dryRun === true && flags.skipInvalid !== true && firstInvalid !== undefined) {
          throw new MtaStsError(
            'ERR_MTASTS_USAGE',
            `${invalid} invalid line${invalid === 1 ? '' : 's'}, the first is line ${firstInvalid}`,
          );
        }
      });
    });
}
