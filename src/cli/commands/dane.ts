import { Command } from 'commander';
import { MtaStsError } from '../../errors.js';
import { domainArgument } from '../args.js';
import { withContext, type CliRuntime } from '../context.js';
import { formatFields, formatSeconds, write, writeJsonLine } from '../output.js';

interface DaneFlags {
  readonly resolver?: string;
  readonly probe?: string;
  readonly json?: boolean;
}

/** What `mtastsdb dane` would tell Postfix the state means, in words. */
const MEANING: Readonly<Record<string, string>> = {
  'dane-only': 'mandatory DANE: the daemon answers dane-only where MTA-STS would answer secure',
  dane: 'opportunistic DANE: the daemon answers dane where MTA-STS would answer secure',
  unusable: 'TLSA records exist but none is usable for SMTP: the MTA-STS answer stands',
  none: 'no DANE (validated): the MTA-STS answer stands',
  temp: 'temporary failure: the daemon answers TEMP where MTA-STS would answer secure',
};

/**
 * `mtastsdb dane <domain>`: DANE discovery over the network (RFC 7672 §2.2) through a validating
 * resolver, no cache.
 */
export function command(runtime: CliRuntime): Command {
  return new Command('dane')
    .summary('look up the DANE state of a domain (MX hosts, DNSSEC, TLSA) through a validating resolver')
    .description(
      'Asks the validating resolver for the MX hosts of <domain> (CNAMEs followed, Null MX, implicit ' +
        'MX on a DNSSEC-authenticated NODATA), whether each host has a DNSSEC-secure address, its TLSA ' +
        'records at _25._tcp.<host> and whether they are usable for SMTP (RFC 7672), and prints the ' +
        'resulting state: dane-only (mandatory DANE), dane (opportunistic), unusable, none or temp. ' +
        'First checks that the resolver validates: the probe name must come back with the AD bit. ' +
        'The resolver and probe are --resolver/--probe, else the dane: section of the configuration ' +
        '(-c, else MTASTSDB_CONFIG), else 127.0.0.1:53 and ".". Nothing is cached.\n\n' +
        'Exit status: 0 DANE applies (dane-only or dane), 3 no usable DANE (none, unusable), ' +
        '4 temporary failure or a resolver that does not validate or answer, 2 invalid domain or option.',
    )
    .argument('<domain>', 'the recipient domain, e.g. example.com')
    .option('--resolver <ip:port>', 'the validating resolver, e.g. 127.0.0.1:53 or [::1]:53')
    .option('--probe <name>', 'a name whose SOA must validate (AD set), e.g. "." or example.org')
    .option('--json', 'print one JSON object')
    .action(async function (this: Command, name: string) {
      const domain = domainArgument(name);
      const flags = this.opts<DaneFlags>();
      // Loaded on use so other commands do not pay for the DANE modules.
      const [{ createDnssecClient }, { lookupDane }, { probeResolver }] = await Promise.all([
        import('../../dane/dnssec-client.js'),
        import('../../dane/discover.js'),
        import('../../dane/resolver-probe.js'),
      ]);
      await withContext(this, runtime, async (ctx) => {
        const config = await ctx.config();
        const resolver = flags.resolver ?? config.dane?.resolver ?? '127.0.0.1:53';
        const probe = flags.probe ?? config.dane?.probe ?? '.';
        const timeoutMs = ctx.timeoutMs ?? (config.dane?.timeoutSeconds ?? 2) * 1000;
        const client = createDnssecClient({ server: resolver, timeoutMs });
        const checked = await probeResolver(client, probe, ctx.signal);
        if (checked.verdict !== 'validating') {
          // Without AD every answer reads as "no DANE": a state from this resolver would mislead.
          throw new MtaStsError(
            'ERR_DANE_DNS',
            checked.verdict === 'not-validating'
              ? `the resolver ${resolver} does not validate DNSSEC (${checked.reason}); DANE needs a validating resolver`
              : `the resolver ${resolver} does not answer (${checked.reason})`,
            { details: { resolver, probe, verdict: checked.verdict } },
          );
        }
        const report = await lookupDane(domain.name(), { client, signal: ctx.signal });
        const { state } = report;
        if (flags.json === true) {
          await writeJsonLine(runtime.stdout, {
            details: { domain: report.domain },
            resolver,
            probe,
            mxSecure: report.mxSecure,
            implicitMx: report.implicitMx,
            hosts: report.hosts,
            state,
            queries: report.queries,
          });
        } else {
          const rows: Array<readonly [string, string]> = [
            ['domain', report.domain],
            ['resolver', `${resolver} (validates: ${checked.reason})`],
            [
              'mx',
              report.implicitMx
                ? `none: the domain itself (implicit MX), ${report.mxSecure ? 'DNSSEC-secure' : 'insecure'}`
                : `${report.hosts.length} host(s), ${report.mxSecure ? 'DNSSEC-secure' : 'insecure'} MX RRset`,
            ],
          ];
          for (const h of report.hosts) {
            const address =
              h.addressSecure === true
                ? 'secure address'
                : h.addressSecure === false
                  ? 'insecure address'
                  : 'address not known';
            const tlsa =
              h.tlsaName === undefined
                ? 'no TLSA asked'
                : `${h.tlsaName} ${h.tlsa.length === 0 ? 'no TLSA' : h.tlsaSecure === true ? 'secure' : 'insecure'}`;
            rows.push(['host', `${h.host} (preference ${h.preference}): ${address}, ${tlsa}`]);
            for (const r of h.tlsa) {
              rows.push([
                '  tlsa',
                `${r.usage} ${r.selector} ${r.matchingType} ${r.data} (${r.usable ? 'usable' : 'unusable'})`,
              ]);
            }
          }
          rows.push(['state', `${state.kind}: ${MEANING[state.kind] ?? state.kind}`]);
          if (state.kind !== 'temp') rows.push(['ttl', `${state.ttlSeconds} (${formatSeconds(state.ttlSeconds)})`]);
          rows.push(['reason', state.reason]);
          rows.push(['queries', String(report.queries)]);
          await write(runtime.stdout, formatFields(rows));
        }
        if (state.kind === 'temp') {
          throw new MtaStsError('ERR_DANE_DNS', `DANE lookup of ${report.domain} failed: ${state.reason}`, {
            details: { domain: report.domain },
          });
        }
      });
    });
}
