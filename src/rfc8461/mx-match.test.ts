import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Domain, parseDomain } from './domain.js';
import { mxPatternMatches, policyMatches } from './mx-match.js';
import { parsePolicy } from './policy.js';
import type { MxPattern } from './policy.js';

function pattern(s: string): MxPattern {
  const wildcard = s.startsWith('*.');
  return { wildcard, domain: parseDomain(wildcard ? s.slice(2) : s) };
}

const l63 = 'a'.repeat(63);
// A base name of 190 octets: a wildcard host under it is at most 253 octets with a 62-octet label.
const base190 = `${'b'.repeat(63)}.${'c'.repeat(63)}.${'d'.repeat(62)}`;

// [pattern, host, matches]
const cases: [string, string | Domain, boolean][] = [
  // Exact patterns: case-insensitive, one trailing dot ignored.
  ['mail.example.com', 'mail.example.com', true],
  ['mail.example.com', 'MAIL.EXAMPLE.COM', true],
  ['mail.example.com', 'Mail.Example.Com', true],
  ['mail.example.com', 'mail.example.com.', true],
  ['mail.example.com', 'MAIL.example.COM.', true],
  ['MAIL.example.com.', 'mail.example.com', true],
  ['mail.example.com', 'mail.example.com..', false],
  ['mail.example.com', 'example.com', false],
  ['mail.example.com', 'mx.mail.example.com', false],
  ['mail.example.com', 'mail.example.co', false],
  ['mail.example.com', 'ail.example.com', false],
  ['mail.example.com', 'mail.example.comx', false],
  ['mail.example.com', 'xmail.example.com', false],
  ['mail.example.com', '', false],
  ['mail.example.com', '.', false],
  ['mail.example.com', '.mail.example.com', false],
  ['mail.example.com', 'mail.example.com ', false],
  ['mail.example.com', ' mail.example.com', false],
  ['mail.example.com', '[mail.example.com]', false],
  ['mail.example.com', 'mail.example.com:25', false],
  ['mail.example.com', 'mail\u3002example\u3002com', true],
  ['mail.example.com', '\uff4d\uff41\uff49\uff4c.example.com', true],
  ['mail.example.com', parseDomain('MAIL.example.com.'), true],
  ['mail.example.com', parseDomain('mail.example.org'), false],
  // Wildcards: exactly one extra left-most label, never the bare name (RFC 8461 §4.1).
  ['*.example.net', 'mx.example.net', true],
  ['*.example.net', 'MX.Example.NET.', true],
  ['*.example.net', 'a.b.example.net', false],
  ['*.example.net', 'a.b.c.example.net', false],
  ['*.example.net', 'example.net', false],
  ['*.example.net', 'example.net.', false],
  ['*.example.net', '.example.net', false],
  ['*.example.net', '..example.net', false],
  ['*.example.net', '*.example.net', false],
  ['*.example.net', 'xexample.net', false],
  ['*.example.net', 'mx.notexample.net', false],
  ['*.example.net', 'mx.example.net.evil', false],
  ['*.example.net', 'mx.example.org', false],
  ['*.example.net', '-mx.example.net', false],
  ['*.example.net', 'mx-.example.net', false],
  ['*.example.net', 'mx_1.example.net', false],
  ['*.example.net', 'm x.example.net', false],
  ['*.example.net', 'mx1.example.net', true],
  ['*.example.net', '1.example.net', true],
  ['*.example.net', 'a-b.example.net', true],
  ['*.example.net', 'r3---sn.example.net', true],
  ['*.example.net', 'R3---SN.example.net', true],
  ['*.example.net', `${l63}.example.net`, true],
  ['*.example.net', `${l63}a.example.net`, false],
  ['*.example.net', 'xn--bcher-kva.example.net', true],
  ['*.example.net', 'XN--BCHER-KVA.example.net', true],
  ['*.example.net', 'bücher.example.net', true],
  ['*.example.net', 'xn--abc.example.net', false],
  ['*.example.net', 'xn--.example.net', false],
  ['*.example.net', parseDomain('mx.example.net'), true],
  ['*.example.net', parseDomain('example.net'), false],
  ['*.example.net', parseDomain('a.mx.example.net'), false],
  [`*.${base190}`, `${'e'.repeat(62)}.${base190}`, true],
  [`*.${base190}`, `${'e'.repeat(63)}.${base190}`, false],
  ['*.com', 'example.com', true],
  ['*.com', 'mx.example.com', false],
  // IDN: compared in A-label form.
  ['bücher.example', 'bücher.example', true],
  ['bücher.example', 'BÜCHER.example', true],
  ['bücher.example', 'xn--bcher-kva.example', true],
  ['bücher.example', 'XN--BCHER-KVA.EXAMPLE.', true],
  ['bücher.example', 'bucher.example', false],
  ['xn--bcher-kva.example', 'bücher.example', true],
  ['*.bücher.example', 'mx.bücher.example', true],
  ['*.bücher.example', 'mx.xn--bcher-kva.example', true],
  ['*.bücher.example', 'MX.XN--BCHER-KVA.EXAMPLE', true],
  ['*.bücher.example', 'münchen.bücher.example', true],
  ['*.bücher.example', 'a.b.bücher.example', false],
  ['*.bücher.example', 'bücher.example', false],
  ['*.bücher.example', 'xn--bcher-kva.example', false],
  ['faß.de', 'faß.de', true],
  ['faß.de', 'xn--fa-hia.de', true],
  ['faß.de', 'fass.de', false],
  ['faß.de', 'FASS.DE', false],
  ['ドメイン.テスト', 'xn--eckwd4c7c.xn--zckzah', true],
  ['ドメイン.テスト', 'ドメイン\u3002テスト', true],
  // Hosts that are not host names match nothing.
  ['mail.example.com', '1.2.3.4', false],
  ['*.example.net', '[1.2.3.4]', false],
  ['*.example.net', '::1', false],
  ['*.example.net', 'mx.example.net\u0000', false],
  ['*.example.net', 'mx.example.net\n', false],
  ['*.example.net', '\ufffd.example.net', false],
  ['*.example.net', 'a\u200db.example.net', false],
];

describe('mxPatternMatches', () => {
  for (const [p, host, expected] of cases) {
    const shown = typeof host === 'string' ? JSON.stringify(host) : `Domain(${host.ascii})`;
    it(`${p} ${expected ? 'matches' : 'does not match'} ${shown.slice(0, 60)}`, () => {
      assert.equal(mxPatternMatches(pattern(p), host), expected);
    });
  }
});

describe('policyMatches', () => {
  const policy = parsePolicy(
    'version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: *.bücher.example\nmax_age: 86400\n',
  );
  const hosts: [string, boolean][] = [
    ['mail.example.com', true],
    ['MAIL.EXAMPLE.COM.', true],
    ['mx1.example.net', true],
    ['mx.xn--bcher-kva.example', true],
    ['mx.bücher.example', true],
    ['backup.example.com', false],
    ['example.net', false],
    ['a.b.example.net', false],
    ['bücher.example', false],
    ['evil.example', false],
    ['', false],
    ['*', false],
  ];
  for (const [host, expected] of hosts) {
    it(`${expected ? 'matches' : 'does not match'} ${JSON.stringify(host)}`, () => {
      assert.equal(policyMatches(policy, host), expected);
      // Every host agrees with the per-pattern answer.
      assert.equal(
        policy.mx.some((p) => mxPatternMatches(p, host)),
        expected,
      );
    });
  }

  it('a policy without mx (mode none) matches nothing', () => {
    const none = parsePolicy('version: STSv1\nmode: none\nmax_age: 86400\n');
    assert.equal(policyMatches(none, 'mail.example.com'), false);
  });

  it('the order of the patterns does not matter', () => {
    const reversed = { ...policy, mx: [...policy.mx].reverse() };
    for (const [host, expected] of hosts) assert.equal(policyMatches(reversed, host), expected, host);
  });
});
