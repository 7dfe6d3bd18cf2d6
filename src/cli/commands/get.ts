import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { formatDate, formatFields, formatSeconds, indentText, write, writeJsonLine } from '../output.js';
import { policyToJson, recordToJson } from '../record-json.js';

/** `mtastsdb get <domain>`: the policy as the daemon gets it, through the cache. */
export function command(runtime: CliRuntime): Command {
  return new Command('get')
    .summary('get the policy of a domain through the cache, like the daemon')
    .description(
      'Answers from the policy cache the way the daemon does (RFC 8461 §5.1): a cached policy is ' +
        'served after checking the TXT id, a new id triggers a fetch, a domain not in the cache is ' +
        'discovered and stored, a failed fetch stores a 5-minute backoff record. Prints the policy, ' +
        'whether it was confirmed now ("fresh") and, with --json, the TLSRPT result (RFC 8460).\n\n' +
        'Exit status: 0 a policy applies, 3 no policy, 7 backoff (a recent fetch failed), ' +
        '4 temporary DNS failure with nothing cached, 6 store error, 2 invalid domain.',
    )
    .argument('<domain>', 'the recipient domain')
    .option('--json', 'print one JSON object: {domain, policy, fresh, report, record}')
    .action(async function (this: Command, name: string) {
      const domain = domainArgument(name);
      const json = this.opts<{ json?: boolean }>().json === true;
      await withContext(this, runtime, async (ctx) => {
        const db = await ctx.db();
        const outcome = await db.get(domain, { signal: ctx.signal });
        const policy = outcome.policy === null ? null : policyToJson(outcome.policy);
        if (json) {
          await writeJsonLine(runtime.stdout, {
            domain: domain.name(),
            policy,
            fresh: outcome.fresh,
            report: outcome.report,
            record: outcome.record === undefined ? null : recordToJson(outcome.record),
          });
        } else {
          const r = outcome.record;
          const fields: [string, string | readonly string[]][] = [['domain', domain.name()]];
          if (policy !== null) {
            fields.push(
              ['mode', policy.mode],
              ['max_age', `${policy.maxAgeSeconds} (${formatSeconds(policy.maxAgeSeconds)})`],
              ['mx', policy.mx],
            );
          } else {
            fields.push(['policy', r?.backoff === true ? 'none (backoff: a recent fetch failed)' : 'none']);
          }
          fields.push(['fresh', outcome.fresh ? 'yes' : 'no (served from cache without confirmation)']);
          if (r !== undefined) {
            fields.push(['record id', r.recordId === '' ? '-' : r.recordId], ['valid until', formatDate(r.validEnd)]);
          }
          fields.push(['tlsrpt', outcome.report.policy.type]);
          for (const f of outcome.report.failureDetails)
            fields.push(['failure', `${f.resultType}: ${f.failureReasonCode}`]);
          let text = formatFields(fields);
          if (policy !== null && r !== undefined && !r.backoff) text += `policy:\n${indentText(r.policyText)}`;
          await write(runtime.stdout, text);
        }
        if (outcome.policy === null) {
          const reasons = outcome.report.failureDetails.map((f) => f.failureReasonCode).join('; ');
          if (outcome.record?.backoff === true || outcome.report.failureDetails.length > 0) {
            throw new MtaStsError(
              'ERR_MTASTSDB_BACKOFF',
              `${domain.name()}: no policy applies, a recent fetch failed${reasons === '' ? '' : `: ${reasons}`}`,
            );
          }
          throw new MtaStsError('ERR_MTASTS_NO_POLICY', `${domain.name()} publishes no MTA-STS policy`);
        }
      });
    });
}
