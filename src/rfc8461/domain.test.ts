import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtaStsError } from '../errors.js';
import { Domain, parseDomain } from './domain.js';

function assertDomainError(input: unknown): void {
  assert.throws(
    () => parseDomain(input as string),
    (err: unknown) => err instanceof MtaStsError && err.code === 'ERR_MTASTS_DOMAIN',
    `expected ERR_MTASTS_DOMAIN for ${JSON.stringify(input)}`,
  );
}

const label63 = 'a'.repeat(63);
// 63+1+63+1+63+1+61 = 253 octets
const name253 = `${label63}.${label63}.${label63}.${'b'.repeat(61)}`;

// [input, ascii, unicode]
const valid: [string, string, string][] = [
  ['example.com', 'example.com', ''],
  ['Example.COM', 'example.com', ''],
  ['MX.EXAMPLE.COM', 'mx.example.com', ''],
  ['example.com.', 'example.com', ''],
  ['Example.Com.', 'example.com', ''],
  ['mx1.example.com', 'mx1.example.com', ''],
  ['a.b.c.d.example', 'a.b.c.d.example', ''],
  ['localhost', 'localhost', ''],
  ['a-b.example', 'a-b.example', ''],
  ['a--b.example', 'a--b.example', ''],
  ['123.example', '123.example', ''],
  ['1.2.3.4a', '1.2.3.4a', ''],
  ['foo.0xg', 'foo.0xg', ''],
  ['mta-sts.example.test', 'mta-sts.example.test', ''],
  // R-LDH labels (`--` in positions 3-4) are valid DNS names, in any case (a bug fixed: the
  // lower-case fast path accepted them while UTS-46 CheckHyphens rejected the upper-case form).
  ['r3---sn-abc.example', 'r3---sn-abc.example', ''],
  ['R3---SN-ABC.example', 'r3---sn-abc.example', ''],
  ['ab--c.example', 'ab--c.example', ''],
  ['AB--C.example', 'ab--c.example', ''],
  [`${label63}.example`, `${label63}.example`, ''],
  [name253, name253, ''],
  [`${name253}.`, name253, ''],
  // IDN: U-labels become A-labels, the Unicode form is kept.
  ['bücher.example', 'xn--bcher-kva.example', 'bücher.example'],
  ['BÜCHER.example', 'xn--bcher-kva.example', 'bücher.example'],
  ['xn--bcher-kva.example', 'xn--bcher-kva.example', 'bücher.example'],
  ['XN--BCHER-KVA.EXAMPLE', 'xn--bcher-kva.example', 'bücher.example'],
  ['Xn--Bcher-Kva.example.', 'xn--bcher-kva.example', 'bücher.example'],
  ['mx.bücher.example', 'mx.xn--bcher-kva.example', 'mx.bücher.example'],
  ['münchen.bücher.example', 'xn--mnchen-3ya.xn--bcher-kva.example', 'münchen.bücher.example'],
  ['r3---sn.bücher.example', 'r3---sn.xn--bcher-kva.example', 'r3---sn.bücher.example'],
  // Non-transitional UTS-46: ß stays ß (IDNA2008).
  ['faß.de', 'xn--fa-hia.de', 'faß.de'],
  ['straße.de', 'xn--strae-oqa.de', 'straße.de'],
  ['xn--zca.example', 'xn--zca.example', 'ß.example'],
  // UTS-46 mapping: ideographic full stop, full-width letters, compatibility forms.
  ['mx\u3002example\u3002com', 'mx.example.com', ''],
  ['mx\uff0eexample\uff0ecom', 'mx.example.com', ''],
  ['\uff4d\uff58.example.com', 'mx.example.com', ''],
  ['ドメイン.テスト', 'xn--eckwd4c7c.xn--zckzah', 'ドメイン.テスト'],
  ['مثال.example', 'xn--mgbh0fb.example', 'مثال.example'],
  ['xn--mgbh0fb.example', 'xn--mgbh0fb.example', 'مثال.example'],
];

const invalid: [string, unknown][] = [
  ['empty', ''],
  ['only a dot', '.'],
  ['two dots', '..'],
  ['empty inner label', 'example..com'],
  ['leading dot', '.example.com'],
  ['two trailing dots', 'example.com..'],
  ['leading hyphen', '-a.example'],
  ['trailing hyphen', 'a-.example'],
  ['hyphen label', '-.example'],
  ['underscore', 'a_b.example'],
  ['underscore label (SRV style)', '_mta-sts.example'],
  ['wildcard', '*.example.com'],
  ['star alone', '*'],
  ['inner star', 'a.*.b'],
  ['space', 'ex ample.com'],
  ['newline', 'example.com\n'],
  ['NUL', 'exa\0mple.com'],
  ['at sign', 'ex@mple.com'],
  ['slash', 'example.com/'],
  ['URL', 'http://example.com'],
  ['port', 'example.com:25'],
  ['IPv4 literal', '1.2.3.4'],
  ['IPv4 literal with dot', '1.2.3.4.'],
  ['IPv4 bracketed', '[1.2.3.4]'],
  ['IPv6 loopback', '::1'],
  ['IPv6', '2001:db8::1'],
  ['IPv6 bracketed', '[::1]'],
  ['IPv6 tagged', '[IPv6:2001:db8::1]'],
  ['short IPv4 form', '127.1'],
  ['octal IPv4', '1.2.3.010'],
  ['hex IPv4 as one label', '0x7f000001'],
  ['hex last label', 'a.0x1f'],
  ['numeric TLD', 'a.123'],
  ['64-octet label', `${'a'.repeat(64)}.example`],
  ['254-octet name', `a${name253}`],
  ['very long input', 'a.'.repeat(1000) + 'example'],
  ['bad punycode', 'xn--abc.example'],
  ['empty punycode', 'xn--.example'],
  ['punycode of ASCII', 'xn--ab--c.example'],
  ['U-label with leading hyphen', '-ü.example'],
  ['U-label with -- in 3-4', 'ab--ü.example'],
  ['A-label of leading-hyphen U-label', 'xn----eha.example'],
  ['A-label of ab--ü', 'xn--ab---3ra.example'],
  ['zero-width joiner (CONTEXTJ)', 'a\u200db.example'],
  ['bidi rule: LTR + RTL in one label', 'a\u05d0.example'],
  ['Arabic-Indic digits only', '\u0660\u0661.example'],
  ['replacement character', '\ufffd.example'],
  ['control character', 'a\u0001.example'],
  ['not a string: number', 42],
  ['not a string: undefined', undefined],
];

describe('parseDomain', () => {
  for (const [input, ascii, unicode] of valid) {
    it(`accepts ${JSON.stringify(input).slice(0, 60)}`, () => {
      const d = parseDomain(input);
      assert.ok(d instanceof Domain);
      assert.equal(d.ascii, ascii);
      assert.equal(d.unicode, unicode);
      assert.equal(d.name(), unicode === '' ? ascii : unicode);
      assert.equal(String(d), d.name());
      // Idempotent: both forms parse back to the same Domain.
      assert.deepEqual(parseDomain(d.ascii), d);
      assert.deepEqual(parseDomain(d.name()), d);
    });
  }
  for (const [why, input] of invalid) {
    it(`rejects ${why}`, () => assertDomainError(input));
  }

  it('equals compares A-label forms', () => {
    assert.ok(parseDomain('bücher.example').equals(parseDomain('XN--BCHER-KVA.example.')));
    assert.ok(!parseDomain('a.example').equals(parseDomain('b.example')));
  });

  it('keeps a short excerpt of hostile input in the message', () => {
    try {
      parseDomain(`${'x'.repeat(100_000)}_`);
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof MtaStsError);
      assert.equal(err.code, 'ERR_MTASTS_DOMAIN');
      assert.ok(err.message.length < 400, `message is ${err.message.length} characters`);
    }
  });
});
