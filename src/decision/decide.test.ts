import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import type { StsState } from '../cache/types.js';
import type { DaneState, DaneStateKind } from '../dane/dane-state.js';
import { parseDomain } from '../rfc8461/domain.js';
import type { Mode, Policy } from '../rfc8461/policy.js';
import { decide, formatDecision, needsDane, POSTFIX_REPLY_LIMIT, type DecisionZone } from './decide.js';

function policy(mode: Mode, patterns: readonly string[]): Policy {
  return {
    version: 'STSv1',
    mode,
    mx: patterns.map((p) =>
      p.startsWith('*.')
        ? { wildcard: true, domain: parseDomain(p.slice(2)) }
        : { wildcard: false, domain: parseDomain(p) },
    ),
    maxAgeSeconds: 86400,
    extensions: [],
  };
}

const TEXT = 'version: STSv1\r\nmode: enforce\r\nmx: mx1.example.com\r\nmx: *.example.net\r\nmax_age: 86400\r\n';
const ENFORCE = policy('enforce', ['mx1.example.com', '*.example.net']);
const sts = (p: Policy, policyText = TEXT): StsState => ({
  kind: 'policy',
  domain: 'example.com',
  policy: p,
  policyText,
  source: 'fresh',
});
const NONE: StsState = { kind: 'none' };
const TEMP: StsState = { kind: 'temp', reason: 'MTA-STS DNS lookup failed', storeUnreadable: false };
const UNREADABLE: StsState = { kind: 'temp', reason: 'MTA-STS policy store unavailable', storeUnreadable: true };
const dane = (kind: DaneStateKind): DaneState => ({
  kind,
  ttlSeconds: kind === 'temp' ? 0 : 300,
  reason: kind === 'temp' ? 'SERVFAIL at _25._tcp.mx1.example.com TLSA' : kind,
});

const Z: DecisionZone = { strictTesting: false, requireSni: true, tlsrpt: false, tempOnError: false, dane: 'off' };
const zone = (o: Partial<DecisionZone> = {}): DecisionZone => ({ ...Z, ...o });
const SECURE = 'OK secure match=mx1.example.com:.example.net servername=hostname';
const SECURE_TLSRPT =
  'OK secure match=mx1.example.com:.example.net servername=hostname policy_type=sts policy_domain=example.com ' +
  'mx_host_pattern=mx1.example.com mx_host_pattern=*.example.net { policy_string = version: STSv1 } ' +
  '{ policy_string = mode: enforce } { policy_string = mx: mx1.example.com } ' +
  '{ policy_string = mx: *.example.net } { policy_string = max_age: 86400 }';

// Every row of the reply table: zone, MTA-STS state, DANE state → reply.
const rows: ReadonlyArray<{ name: string; zone: DecisionZone; sts: StsState; dane?: DaneState; reply: string }> = [
  // MTA-STS alone
  { name: 'no MTA-STS', zone: zone(), sts: NONE, reply: 'NOTFOUND ' },
  { name: 'temporary failure', zone: zone(), sts: TEMP, reply: 'NOTFOUND ' },
  {
    name: 'temporary failure, temp_on_error',
    zone: zone({ tempOnError: true }),
    sts: TEMP,
    reply: 'TEMP MTA-STS DNS lookup failed',
  },
  {
    name: 'store unreadable: TEMP whatever temp_on_error says',
    zone: zone(),
    sts: UNREADABLE,
    reply: 'TEMP MTA-STS policy store unavailable',
  },
  { name: 'enforce', zone: zone(), sts: sts(ENFORCE), reply: SECURE },
  {
    name: 'enforce, no SNI',
    zone: zone({ requireSni: false }),
    sts: sts(ENFORCE),
    reply: 'OK secure match=mx1.example.com:.example.net',
  },
  { name: 'enforce, tlsrpt', zone: zone({ tlsrpt: true }), sts: sts(ENFORCE), reply: SECURE_TLSRPT },
  { name: 'testing', zone: zone(), sts: sts(policy('testing', ['mx1.example.com'])), reply: 'NOTFOUND ' },
  {
    name: 'testing, strict_testing',
    zone: zone({ strictTesting: true }),
    sts: sts(policy('testing', ['mx1.example.com'])),
    reply: 'OK secure match=mx1.example.com servername=hostname',
  },
  { name: 'mode none', zone: zone({ strictTesting: true }), sts: sts(policy('none', [])), reply: 'NOTFOUND ' },
  // DANE preferred, where MTA-STS says secure
  {
    name: 'dane-only',
    zone: zone({ dane: 'prefer' }),
    sts: sts(ENFORCE),
    dane: dane('dane-only'),
    reply: 'OK dane-only',
  },
  { name: 'dane', zone: zone({ dane: 'prefer' }), sts: sts(ENFORCE), dane: dane('dane'), reply: 'OK dane' },
  {
    name: 'dane-only in a tlsrpt zone: no TLSRPT attributes',
    zone: zone({ dane: 'prefer', tlsrpt: true }),
    sts: sts(ENFORCE),
    dane: dane('dane-only'),
    reply: 'OK dane-only',
  },
  {
    name: 'DANE temporary failure: TEMP even without temp_on_error',
    zone: zone({ dane: 'prefer' }),
    sts: sts(ENFORCE),
    dane: dane('temp'),
    reply: 'TEMP DANE lookup failed: SERVFAIL at _25._tcp.mx1.example.com TLSA',
  },
  { name: 'no DANE: MTA-STS', zone: zone({ dane: 'prefer' }), sts: sts(ENFORCE), dane: dane('none'), reply: SECURE },
  {
    name: 'unusable TLSA: MTA-STS',
    zone: zone({ dane: 'prefer' }),
    sts: sts(ENFORCE),
    dane: dane('unusable'),
    reply: SECURE,
  },
  {
    name: 'unusable TLSA in a tlsrpt zone: MTA-STS with TLSRPT',
    zone: zone({ dane: 'prefer', tlsrpt: true }),
    sts: sts(ENFORCE),
    dane: dane('unusable'),
    reply: SECURE_TLSRPT,
  },
  // DANE changes nothing where MTA-STS does not say secure
  {
    name: 'NOTFOUND stays with dane-only',
    zone: zone({ dane: 'prefer' }),
    sts: NONE,
    dane: dane('dane-only'),
    reply: 'NOTFOUND ',
  },
  {
    name: 'testing stays NOTFOUND with DANE temp',
    zone: zone({ dane: 'prefer' }),
    sts: sts(policy('testing', ['mx1.example.com'])),
    dane: dane('temp'),
    reply: 'NOTFOUND ',
  },
  {
    name: 'zone with dane off ignores a DANE state',
    zone: zone(),
    sts: sts(ENFORCE),
    dane: dane('dane-only'),
    reply: SECURE,
  },
  {
    name: 'enforce without a usable pattern stays TEMP with dane-only',
    zone: zone({ dane: 'prefer' }),
    sts: sts({ ...ENFORCE, mx: [] }),
    dane: dane('dane-only'),
    reply: 'TEMP MTA-STS policy has no usable mx pattern',
  },
];

describe('decide', () => {
  for (const r of rows) {
    it(r.name, () => {
      assert.equal(formatDecision(decide(r.zone, r.sts, r.dane)), r.reply);
    });
  }

  it('gives a structured decision a Node MTA can use', () => {
    assert.deepEqual(decide(zone(), sts(ENFORCE)), {
      level: 'secure',
      match: ['mx1.example.com', '.example.net'],
      servername: true,
    });
    assert.deepEqual(decide(zone({ dane: 'prefer' }), sts(ENFORCE), dane('dane-only')), { level: 'dane-only' });
    assert.deepEqual(decide(zone(), UNREADABLE), { level: 'temp', reason: 'MTA-STS policy store unavailable' });
  });

  it('needsDane only where MTA-STS would answer OK secure in a dane: prefer zone', () => {
    const prefer = zone({ dane: 'prefer' });
    assert.equal(needsDane(prefer, sts(ENFORCE)), true);
    assert.equal(needsDane(zone(), sts(ENFORCE)), false);
    assert.equal(needsDane(prefer, NONE), false);
    assert.equal(needsDane(prefer, TEMP), false);
    assert.equal(needsDane(prefer, UNREADABLE), false);
    assert.equal(needsDane(prefer, sts(policy('testing', ['mx1.example.com']))), false);
    assert.equal(needsDane({ ...prefer, strictTesting: true }, sts(policy('testing', ['mx1.example.com']))), true);
    assert.equal(needsDane(prefer, sts({ ...ENFORCE, mx: [] })), false);
  });
});

describe('decide: properties', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9]{0,10}[a-z0-9])?$/);
  const host = fc.array(label, { minLength: 1, maxLength: 3 }).map((l) => `${l.join('.')}.test`);
  const zoneArb = fc.record({
    strictTesting: fc.boolean(),
    requireSni: fc.boolean(),
    tlsrpt: fc.boolean(),
    tempOnError: fc.boolean(),
    dane: fc.constantFrom('off' as const, 'prefer' as const),
  });
  const stsArb: fc.Arbitrary<StsState> = fc.oneof(
    fc.constant(NONE),
    fc.record({
      kind: fc.constant('temp' as const),
      reason: fc.string({ maxLength: 40 }),
      storeUnreadable: fc.boolean(),
    }),
    fc
      .record({
        mode: fc.constantFrom<Mode>('enforce', 'testing', 'none'),
        mx: fc.array(fc.tuple(fc.boolean(), host), { maxLength: 8 }),
        text: fc.string({ maxLength: 200 }),
        source: fc.constantFrom('fresh' as const, 'fallback' as const, 'remembered' as const),
      })
      .map(({ mode, mx, text, source }) => ({
        kind: 'policy' as const,
        domain: 'example.test',
        policy: policy(
          mode,
          mx.map(([w, h]) => (w ? `*.${h}` : h)),
        ),
        policyText: text,
        source,
      })),
  );
  const daneArb = fc.option(
    fc.record({
      kind: fc.constantFrom<DaneStateKind>('dane-only', 'dane', 'unusable', 'none', 'temp'),
      ttlSeconds: fc.nat(86400),
      reason: fc.string({ maxLength: 40 }),
    }),
    { nil: undefined },
  );
  const runs = 5000;

  it('no DANE state but dane-only yields OK dane-only', () => {
    fc.assert(
      fc.property(zoneArb, stsArb, daneArb, (z, s, d) => {
        const reply = formatDecision(decide(z, s, d));
        if (d?.kind !== 'dane-only') assert.notEqual(reply, 'OK dane-only');
        assert.ok(Buffer.byteLength(reply) <= POSTFIX_REPLY_LIMIT);
        assert.match(reply, /^(NOTFOUND |OK secure match=|OK dane-only$|OK dane$|TEMP [ -~]+$)/);
      }),
      { numRuns: runs },
    );
  });

  it('a DANE temporary failure with an enforce policy yields only TEMP', () => {
    fc.assert(
      fc.property(zoneArb, stsArb, fc.string({ maxLength: 40 }), (z, s, reason) => {
        if (s.kind !== 'policy' || s.policy.mode !== 'enforce') return;
        const d = decide({ ...z, dane: 'prefer' }, s, { kind: 'temp', ttlSeconds: 0, reason });
        assert.equal(d.level, 'temp');
      }),
      { numRuns: runs },
    );
  });

  it('needsDane is exactly "the answer without DANE would be OK secure, and the zone prefers DANE"', () => {
    fc.assert(
      fc.property(zoneArb, stsArb, (z, s) => {
        assert.equal(needsDane(z, s), z.dane === 'prefer' && decide(z, s).level === 'secure');
      }),
      { numRuns: runs },
    );
  });
});
