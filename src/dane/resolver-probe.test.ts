import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtaStsError } from '../errors.js';
import type { DnssecAnswer, DnssecClient } from './dnssec-client.js';
import { ResolverProbe, probeResolver, verdictOf, type ResolverVerdict } from './resolver-probe.js';

const reply = (rcode: string, ad: boolean): DnssecAnswer => ({ rcode, ad, answers: [], authorities: [] });

describe('resolver probe', () => {
  // [rcode, AD, verdict]
  const rows: [string, boolean, ResolverVerdict][] = [
    ['NOERROR', true, 'validating'],
    ['NOERROR', false, 'not-validating'],
    ['NXDOMAIN', false, 'not-validating'],
    // The probe name must exist: a validated NXDOMAIN is no proof that answers get AD.
    ['NXDOMAIN', true, 'not-validating'],
    ['SERVFAIL', false, 'unreachable'],
    ['REFUSED', false, 'unreachable'],
  ];
  for (const [rcode, ad, verdict] of rows) {
    it(`${rcode} with AD ${ad} → ${verdict}`, () => {
      assert.equal(verdictOf(reply(rcode, ad), '.').verdict, verdict);
    });
  }

  it('a query that fails is unreachable, with its message as the reason', async () => {
    const client: DnssecClient = {
      query: () =>
        Promise.reject(new MtaStsError('ERR_DANE_DNS', 'timeout at . SOA', { details: { reason: 'timeout' } })),
    };
    assert.deepEqual(await probeResolver(client, '.'), { verdict: 'unreachable', reason: 'timeout at . SOA' });
  });

  it('probes at start and on schedule, reporting each change once; usable unless not validating', async () => {
    const answers = [reply('NOERROR', true), reply('NOERROR', true), reply('NOERROR', false), reply('SERVFAIL', false)];
    const asked: string[] = [];
    const client: DnssecClient = {
      query: async (name, type) => {
        asked.push(`${name} ${type}`);
        return answers.shift() ?? reply('NOERROR', true);
      },
    };
    const changes: [ResolverVerdict, ResolverVerdict | undefined][] = [];
    const probe = new ResolverProbe({
      client,
      name: 'example.org',
      intervalMs: 20,
      onChange: (r, prev) => changes.push([r.verdict, prev]),
    });
    assert.equal(probe.usable, false, 'not usable before the first probe');
    await probe.start();
    assert.equal(probe.usable, true);
    const seen: boolean[] = [];
    for (let i = 0; i < 50 && changes.length < 4; i++) {
      await new Promise((r) => setTimeout(r, 10));
      seen.push(probe.usable);
    }
    probe.stop();
    assert.deepEqual(changes, [
      ['validating', undefined],
      ['not-validating', 'validating'],
      ['unreachable', 'not-validating'],
      ['validating', 'unreachable'],
    ]);
    assert.ok(seen.includes(false), 'not usable while not validating');
    assert.equal(asked[0], 'example.org SOA');
  });
});
