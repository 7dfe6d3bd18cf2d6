import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import type { ResolverCacheRow } from './resolver-cache.js';
import { resolverRowToExport } from './resolver-row.js';

const NOW = Date.UTC(2026, 0, 10, 12, 0, 0);
const NOW_S = NOW / 1000;
const body = (over: Record<string, unknown> = {}): Record<string, unknown> => ({
  mx: ['mx1.example.com', '*.example.net'],
  version: 'STSv1',
  mode: 'enforce',
  max_age: 86400,
  ...over,
});
const row = (over: Partial<ResolverCacheRow> = {}): ResolverCacheRow => ({
  domain: 'example.com',
  ts: NOW_S - 3600,
  polId: '20260101',
  polBody: body(),
  ...over,
});

describe('resolverRowToExport', () => {
  it('a row of the peer becomes an export record valid until ts + max_age', () => {
    const out = resolverRowToExport(row(), NOW);
    assert.equal(out.kind, 'record');
    assert.deepEqual(out.kind === 'record' ? out.json : undefined, {
      domain: 'example.com',
      inserted: new Date(NOW - 3600_000).toISOString(),
      validEnd: new Date(NOW - 3600_000 + 86400_000).toISOString(),
      lastUpdate: new Date(NOW - 3600_000).toISOString(),
      lastUse: new Date(NOW - 3600_000).toISOString(),
      backoff: false,
      recordId: '20260101',
      policyText: 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n',
    });
  });

  const table: [string, ResolverCacheRow, (json: Record<string, unknown>) => void][] = [
    [
      'a ts in the future (a wrong clock) is taken as now',
      row({ ts: NOW_S + 10 * 86400 }),
      (j) => {
        assert.equal(j.lastUpdate, new Date(NOW).toISOString());
        assert.equal(j.validEnd, new Date(NOW + 86400_000).toISOString());
      },
    ],
    [
      'max_age beyond the RFC cap counts as the cap (31557600 s)',
      row({ polBody: body({ max_age: 99_999_999 }) }),
      (j) => assert.equal(j.validEnd, new Date(NOW - 3600_000 + 31_557_600_000).toISOString()),
    ],
    [
      'max_age as a string (older peers) is read as a number',
      row({ ts: NOW_S - 60, polBody: body({ max_age: '600' }) }),
      (j) => assert.match(String(j.policyText), /max_age: 600\r\n$/),
    ],
    [
      'a none policy without mx',
      row({ polBody: { version: 'STSv1', mode: 'none', max_age: 86400, mx: [] } }),
      (j) => assert.equal(j.policyText, 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n'),
    ],
  ];
  for (const [name, input, check] of table) {
    it(name, () => {
      const out = resolverRowToExport(input, NOW);
      assert.equal(out.kind, 'record');
      if (out.kind === 'record') check(out.json);
    });
  }

  it('an expired policy is skipped, not imported', () => {
    assert.deepEqual(resolverRowToExport(row({ ts: NOW_S - 86401 }), NOW), { kind: 'expired' });
    assert.deepEqual(resolverRowToExport(row({ ts: NOW_S - 86400 }), NOW), { kind: 'expired' });
  });

  const invalid: [string, ResolverCacheRow, RegExp][] = [
    ['pol_body not JSON', row({ polBody: '{x', polBodyError: 'pol_body is not JSON: bad' }), /not JSON/],
    ['pol_body not an object', row({ polBody: [1] }), /not an object/],
    ['another version', row({ polBody: body({ version: 'STSv2' }) }), /version/],
    ['no mode', row({ polBody: body({ mode: undefined }) }), /no mode/],
    ['max_age negative', row({ polBody: body({ max_age: -1 }) }), /max_age/],
    ['mx not a list', row({ polBody: body({ mx: 'mx.example.com' }) }), /mx/],
    ['a line break in a value', row({ polBody: body({ mode: 'enforce\r\nmx: evil.example' }) }), /line break/],
    ['pol_id not a string', row({ polId: 7 }), /pol_id/],
    ['ts not a time', row({ ts: Number.NaN }), /ts/],
  ];
  for (const [name, input, message] of invalid) {
    it(`refuses ${name} with ERR_MTASTS_USAGE naming the domain`, () => {
      assert.throws(
        () => resolverRowToExport(input, NOW),
        (err: unknown) =>
          isMtaStsError(err, 'ERR_MTASTS_USAGE') && /^example\.com: /.test(err.message) && message.test(err.message),
      );
    });
  }
});
