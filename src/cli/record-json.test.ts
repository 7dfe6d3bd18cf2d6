import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import { parsePolicy } from '../rfc8461/policy.js';
import type { PolicyRecord } from '../store/policy-store.js';
import { recordFromJson, recordToJson } from './record-json.js';

const HUGE_MAX_AGE = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmax_age: 999999999\r\n';
const TEXT =
  'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.test\r\nmx: *.example.test\r\nmax_age: 86400\r\nx-ext: 1\r\n';

function record(overrides: Partial<PolicyRecord> = {}): PolicyRecord {
  return {
    domain: 'example.test',
    inserted: new Date('2026-01-01T00:00:00.000Z'),
    validEnd: new Date('2026-01-02T00:00:00.000Z'),
    lastUpdate: new Date('2026-01-01T00:00:00.000Z'),
    lastUse: new Date('2026-01-01T12:00:00.000Z'),
    backoff: false,
    recordId: 'abc123',
    policy: parsePolicy(TEXT),
    policyText: TEXT,
    ...overrides,
  };
}

/** When the lines below are read: after every fixture date. */
const NOW = Date.parse('2026-06-01T00:00:00.000Z');

function roundTrip(r: PolicyRecord): PolicyRecord {
  return recordFromJson(JSON.parse(JSON.stringify(recordToJson(r))), NOW);
}

describe('recordToJson / recordFromJson', () => {
  it('writes every PolicyRecord field, dates as ISO strings, mx as written', () => {
    const json = recordToJson(record());
    assert.deepEqual(Object.keys(json), [
      'domain',
      'inserted',
      'validEnd',
      'lastUpdate',
      'lastUse',
      'backoff',
      'recordId',
      'policy',
      'policyText',
    ]);
    assert.equal(json.inserted, '2026-01-01T00:00:00.000Z');
    assert.deepEqual(json.policy, {
      version: 'STSv1',
      mode: 'enforce',
      mx: ['mx1.example.test', '*.example.test'],
      maxAgeSeconds: 86400,
      extensions: [{ key: 'x-ext', value: '1' }],
    });
    assert.equal(json.policyText, TEXT);
  });

  const cases: [string, PolicyRecord][] = [
    ['enforce record', record()],
    [
      'backoff record',
      record({
        backoff: true,
        recordId: '',
        validEnd: new Date('2026-01-01T00:05:00.000Z'),
        policyText: 'version: STSv1\r\nmode: none\r\nmax_age: 300\r\n',
        policy: parsePolicy('version: STSv1\r\nmode: none\r\nmax_age: 300\r\n'),
      }),
    ],
    ['IDN domain', record({ domain: 'bücher.test' })],
    ['LF policy text kept exactly', record({ policyText: TEXT.replace(/\r\n/g, '\n') })],
    ['32-character id', record({ recordId: 'a'.repeat(32) })],
  ];
  for (const [name, r] of cases) {
    it(`round-trips: ${name}`, () => {
      assert.deepEqual(roundTrip(r), r);
    });
  }

  const valid = recordToJson(record()) as unknown as Record<string, unknown>;
  const edit = (change: Record<string, unknown>, drop?: string): unknown => {
    const o: Record<string, unknown> = { ...valid, ...change };
    if (drop !== undefined) delete o[drop];
    return o;
  };
  const invalid: [string, unknown, RegExp][] = [
    ['null', null, /not a JSON object/],
    ['an array', [valid], /not a JSON object/],
    ['a string', 'example.test', /not a JSON object/],
    ['no domain', edit({}, 'domain'), /missing field domain/],
    ['domain not a string', edit({ domain: 5 }), /domain is not a string/],
    ['bad domain', edit({ domain: 'a..b' }), /^domain: /],
    ['IP literal domain', edit({ domain: '192.0.2.1' }), /^domain: /],
    ['no policyText', edit({}, 'policyText'), /missing field policyText/],
    ['bad policyText', edit({ policyText: 'version: STSv1\nmode: enforce\n' }), /^policyText: /],
    ['empty policyText', edit({ policyText: '' }), /^policyText: /],
    ['oversized policyText', edit({ policyText: `${TEXT}x: ${'a'.repeat(70000)}\n` }), /larger than 65536/],
    [
      'policy.mode edited',
      edit({ policy: { ...(valid.policy as object), mode: 'testing' } }),
      /policy.mode does not match/,
    ],
    [
      'policy.mx edited',
      edit({ policy: { ...(valid.policy as object), mx: ['evil.test'] } }),
      /policy.mx does not match/,
    ],
    [
      'policy.maxAgeSeconds edited',
      edit({ policy: { ...(valid.policy as object), maxAgeSeconds: 1 } }),
      /maxAgeSeconds does not match/,
    ],
    [
      'policy.extensions edited',
      edit({ policy: { ...(valid.policy as object), extensions: [] } }),
      /extensions does not match/,
    ],
    ['policy not an object', edit({ policy: 'enforce' }), /policy is not an object/],
    ['backoff a string', edit({ backoff: 'false' }), /backoff is not true or false/],
    ['no backoff', edit({}, 'backoff'), /missing field backoff/],
    ['recordId too long', edit({ recordId: 'a'.repeat(33) }), /recordId/],
    ['recordId with punctuation', edit({ recordId: 'a-b' }), /recordId/],
    ['recordId a number', edit({ recordId: 123 }), /recordId/],
    ['date not ISO', edit({ validEnd: 'tomorrow' }), /validEnd is not an ISO 8601/],
    ['date a number', edit({ lastUse: 1767225600000 }), /lastUse is not an ISO 8601/],
    ['date impossible', edit({ inserted: '2026-13-45T00:00:00Z' }), /inserted is not a valid date/],
    ['no lastUpdate', edit({}, 'lastUpdate'), /missing field lastUpdate/],
    // Date would roll these over to another day instead of refusing them.
    ['30 February', edit({ lastUse: '2026-02-30T00:00:00Z' }), /lastUse is not a valid date/],
    ['29 February of a common year', edit({ lastUse: '2025-02-29T00:00:00Z' }), /lastUse is not a valid date/],
    ['hour 24', edit({ lastUse: '2026-01-01T24:00:00Z' }), /lastUse is not a valid date/],
    ['second 60', edit({ lastUse: '2026-01-01T23:59:60Z' }), /lastUse is not a valid date/],
    ['offset +25:00', edit({ lastUse: '2026-01-01T12:00:00+25:00' }), /lastUse is not a valid date/],
    ['lastUpdate in 9999', edit({ lastUpdate: '9999-12-31T00:00:00.000Z' }), /lastUpdate .* is in the future/],
    ['inserted in 9999', edit({ inserted: '9999-12-31T00:00:00.000Z' }), /inserted .* is in the future/],
    ['lastUse an hour ahead', edit({ lastUse: '2026-06-01T01:00:00.000Z' }), /lastUse .* is in the future/],
    ['validEnd in 9999', edit({ validEnd: '9999-12-31T00:00:00.000Z' }), /validEnd .* later than lastUpdate/],
    [
      'validEnd past max_age',
      edit({ validEnd: '2026-01-02T00:06:00.000Z' }),
      /validEnd .* later than lastUpdate \+ the policy's max_age \(86400 s\)/,
    ],
    [
      'validEnd past the one-year cap of a larger max_age',
      edit(
        {
          policyText: HUGE_MAX_AGE,
          policy: undefined,
          validEnd: '2027-01-02T00:00:00.000Z',
        },
        'policy',
      ),
      /max_age \(31557600 s\)/,
    ],
    ['backoff with an enforce policy', edit({ backoff: true }), /backoff is true but the policy is mode enforce/],
  ];
  for (const [name, value, message] of invalid) {
    it(`rejects ${name}`, () => {
      assert.throws(
        () => recordFromJson(value, NOW),
        (err: unknown) => isMtaStsError(err, 'ERR_MTASTS_USAGE') && message.test(err.message),
      );
    });
  }

  it('accepts times within the clock skew ahead, and validEnd exactly at the one-year cap', () => {
    const r = recordFromJson(edit({ lastUse: '2026-06-01T00:04:00.000Z' }), NOW);
    assert.equal(r.lastUse.toISOString(), '2026-06-01T00:04:00.000Z');
    const capped = recordFromJson(
      edit(
        {
          policyText: HUGE_MAX_AGE,
          validEnd: new Date(Date.parse('2026-01-01T00:00:00Z') + 31_557_600_000).toISOString(),
        },
        'policy',
      ),
      NOW,
    );
    assert.equal(capped.policy.maxAgeSeconds, 999999999);
    assert.equal(recordFromJson(edit({ lastUse: '2024-02-29T00:00:00Z' }), NOW).lastUse.getUTCDate(), 29);
  });

  it('normalises the domain to its display form and ignores unknown fields', () => {
    const r = recordFromJson(edit({ domain: 'XN--BCHER-KVA.Test.', futureField: { x: 1 } }), NOW);
    assert.equal(r.domain, 'bücher.test');
  });

  it('accepts a line without the informative policy field and with a UTC offset', () => {
    const r = recordFromJson(edit({ lastUse: '2026-01-01T13:00:00+01:00' }, 'policy'), NOW);
    assert.equal(r.lastUse.toISOString(), '2026-01-01T12:00:00.000Z');
    assert.equal(r.policy.mode, 'enforce');
  });
});
