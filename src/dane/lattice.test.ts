import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { daneKind, type HostEvidence } from './lattice.js';
import type { DaneTlsaRecord } from './tlsa.js';

const usable: DaneTlsaRecord = { usage: 3, selector: 1, matchingType: 1, data: 'ab'.repeat(32), usable: true };
const pkix: DaneTlsaRecord = { usage: 1, selector: 1, matchingType: 1, data: 'ab'.repeat(32), usable: false };
const covered = (host: string): HostEvidence => ({ host, addressSecure: true, tlsaSecure: true, tlsa: [usable] });
const unusableOnly = (host: string): HostEvidence => ({ host, addressSecure: true, tlsaSecure: true, tlsa: [pkix] });
const noTlsa = (host: string): HostEvidence => ({ host, addressSecure: true, tlsaSecure: true, tlsa: [] });
const insecureTlsa = (host: string): HostEvidence => ({ host, addressSecure: true, tlsaSecure: false, tlsa: [] });
const insecureAddress = (host: string): HostEvidence => ({ host, addressSecure: false, tlsa: [] });

describe('the DANE lattice', () => {
  const table: [string, boolean, HostEvidence[], string][] = [
    ['secure MX, every host covered', true, [covered('a'), covered('b')], 'dane-only'],
    ['secure MX, one host without TLSA', true, [covered('a'), noTlsa('b')], 'dane'],
    ['secure MX, one host with insecure TLSA', true, [covered('a'), insecureTlsa('b')], 'dane'],
    ['secure MX, one host only unusable', true, [covered('a'), unusableOnly('b')], 'dane'],
    ['secure MX, one host without a secure address', true, [covered('a'), insecureAddress('b')], 'dane'],
    ['insecure MX, every host covered (RFC 7672 §2.2.1)', false, [covered('a')], 'dane'],
    ['secure MX, only unusable TLSA', true, [unusableOnly('a'), unusableOnly('b')], 'unusable'],
    ['insecure MX, only unusable TLSA', false, [unusableOnly('a')], 'unusable'],
    ['secure MX, unusable and none', true, [unusableOnly('a'), noTlsa('b')], 'unusable'],
    ['secure MX, no TLSA anywhere', true, [noTlsa('a')], 'none'],
    ['secure MX, insecure TLSA', true, [insecureTlsa('a')], 'none'],
    ['no secure address', true, [insecureAddress('a')], 'none'],
    ['no hosts', true, [], 'none'],
    [
      'usable records on a host without a secure address do not count',
      true,
      [{ host: 'a', addressSecure: false, tlsaSecure: true, tlsa: [usable] }],
      'none',
    ],
    ['unknown address', true, [covered('a'), { host: 'b', addressSecure: 'unknown', tlsa: [] }], 'dane'],
  ];
  for (const [what, mxSecure, hosts, kind] of table) {
    it(`${what} → ${kind}`, () => {
      const r = daneKind(mxSecure, hosts);
      assert.equal(r.kind, kind);
      assert.ok(r.reason.length > 0);
    });
  }

  it('property: no dane-only without an authenticated MX set, addresses and TLSA for every host', () => {
    const record = fc.record({
      usage: fc.integer({ min: 0, max: 4 }),
      selector: fc.integer({ min: 0, max: 2 }),
      matchingType: fc.integer({ min: 0, max: 3 }),
      data: fc.constant('00'),
      usable: fc.boolean(),
    });
    const host = fc.record({
      host: fc.constantFrom('a', 'b', 'c'),
      addressSecure: fc.constantFrom(true, false, 'unknown' as const),
      tlsaSecure: fc.option(fc.boolean(), { nil: undefined }),
      tlsa: fc.array(record, { maxLength: 3 }),
    });
    fc.assert(
      fc.property(fc.boolean(), fc.array(host, { maxLength: 5 }), (mxSecure, raw) => {
        const hosts: HostEvidence[] = raw.map(({ tlsaSecure, ...h }) =>
          tlsaSecure === undefined ? h : { ...h, tlsaSecure },
        );
        const authenticated =
          mxSecure &&
          hosts.length > 0 &&
          hosts.every((h) => h.addressSecure === true && h.tlsaSecure === true && h.tlsa.some((r) => r.usable));
        const kind = daneKind(mxSecure, hosts).kind;
        if (!authenticated) assert.notEqual(kind, 'dane-only');
        else assert.equal(kind, 'dane-only');
      }),
      { numRuns: 2000 },
    );
  });
});
