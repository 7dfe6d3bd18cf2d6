import { Command } from 'commander';
import { isMtaStsError } from '../../errors.js';
import { getPolicy } from '../../fetch/get-policy.js';
import type { StsRecord } from '../../rfc8461/record.js';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { policyToJson } from '../record-json.js';
import { formatFields, formatSeconds, indentText, write, writeJsonLine } from '../output.js';

function recordJson(record: StsRecord): { id: string; extensions: { key: string; value: string }[] } {
  return { id: record.id, extensions: record.extensions.map((e) => ({ key: e.key, value: e.value })) };
}

/** `mtastsdb lookup <domain>`: discovery over the network (TXT record, then HTTPS policy), no cache. */
export function command(runtime: CliRuntime): Command {
  return new Command('lookup')
    .summary('discover the MTA-STS policy of a domain over the network (no cache)')
    .description(
      'Looks up the _mta-sts TXT record of <domain> and fetches its policy from ' +
        'https://mta-sts.<domain>/.well-known/mta-sts.txt, without reading or writing the cache. ' +
        'Prints the record id, mode, max_age, mx patterns and the policy text.\n\n' +
        'Exit status: 0 policy found, 3 no MTA-STS (no record, or 404), 4 temporary failure ' +
        '(DNS, fetch, TLS), 5 invalid record or policy, 2 invalid domain.',
    )
    .argument('<domain>', 'the recipient domain, e.g. example.com')
    .option('--json', 'print one JSON object')
    .action(async function (this: Command, name: string) {
      const domain = domainArgument(name);
      const json = this.opts<{ json?: boolean }>().json === true;
      await withContext(this, runtime, async (ctx) => {
        const fetchOptions = await ctx.fetchOptions();
        let found;
        try {
          found = await getPolicy(domain, { ...fetchOptions, signal: ctx.signal });
        } catch (err) {
          // getPolicy keeps the TXT record when the fetch fails: show it, then fail with the error's status.
          const record = isMtaStsError(err) ? (err.details.record as StsRecord | undefined) : undefined;
          if (json && isMtaStsError(err)) {
            await writeJsonLine(runtime.stdout, {
              domain: domain.name(),
              record: record === undefined ? null : recordJson(record),
              policy: null,
              error: { code: err.code, message: err.message },
            });
          } else if (record !== undefined) {
            await write(
              runtime.stdout,
              formatFields([
                ['domain', domain.name()],
                ['record id', record.id],
              ]),
            );
          }
          throw err;
        }
        const { record, policy, text } = found;
        if (json) {
          await writeJsonLine(runtime.stdout, {
            domain: domain.name(),
            record: recordJson(record),
            policy: policyToJson(policy),
            policyText: text,
          });
          return;
        }
        const p = policyToJson(policy);
        await write(
          runtime.stdout,
          formatFields([
            ['domain', domain.name()],
            ['record id', record.id],
            ...record.extensions.map((e) => ['record ext', `${e.key}=${e.value}`] as const),
            ['mode', p.mode],
            ['max_age', `${p.maxAgeSeconds} (${formatSeconds(p.maxAgeSeconds)})`],
            ['mx', p.mx],
          ]) +
            'policy:\n' +
            indentText(text),
        );
      });
    });
}
