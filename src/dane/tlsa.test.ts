import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isUsableTlsa, toDaneTlsaRecord } from './tlsa.js';

describe('TLSA usability for SMTP (RFC 7672 §3.1)', () => {
  // [usage, selector, matching type, data octets, usable]
  const table: [number, number, number, number, boolean][] = [
    [3, 1, 1, 32, true], // DANE-EE SPKI SHA-256: the common record
    [3, 0, 1, 32, true],
    [2, 0, 1, 32, true], // DANE-TA
    [2, 1, 2, 64, true], // SHA-512
    [3, 1, 0, 91, true], // a full public key: accepted (postfix-tlspol rejects it)
    [3, 0, 0, 800, true],
    [3, 1, 0, 0, false], // matching type 0 needs data
    [3, 1, 1, 31, false], // a SHA-256 one octet short
    [3, 1, 1, 33, false],
    [3, 1, 1, 64, false], // SHA-512 length under SHA-256
    [3, 1, 2, 32, false],
    [3, 1, 2, 63, false],
    [0, 1, 1, 32, false], // PKIX-TA: unusable for SMTP (§3.1.3)
    [1, 1, 1, 32, false], // PKIX-EE
    [4, 1, 1, 32, false], // unassigned usage
    [255, 1, 1, 32, false],
    [3, 2, 1, 32, false], // unassigned selector
    [3, 1, 3, 32, false], // unassigned matching type
    [3, 1, 255, 32, false],
  ];
  for (const [usage, selector, matchingType, octets, usable] of table) {
    it(`${usage} ${selector} ${matchingType} with ${octets} octets → ${usable ? 'usable' : 'unusable'}`, () => {
      assert.equal(isUsableTlsa(usage, selector, matchingType, octets), usable);
      const r = toDaneTlsaRecord({ usage, selector, matchingType, certificate: Buffer.alloc(octets, 0xab) });
      assert.deepEqual(r, { usage, selector, matchingType, data: 'ab'.repeat(octets), usable });
    });
  }
});
