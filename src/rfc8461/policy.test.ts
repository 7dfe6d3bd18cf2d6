import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { Domain, parseDomain } from './domain.js';
import { MAX_MAX_AGE_SECONDS, MAX_POLICY_BYTES } from './limits.js';
import { effectiveMaxAgeSeconds, formatMxPattern, formatPolicy, parsePolicy, policyLines } from './policy.js';
import type { Mode, Policy } from './policy.js';
import type { Extension } from './record.js';

function assertCode(fn: () => unknown, code: ErrorCode, what: string): MtaStsError {
  let caught: unknown;
  assert.throws(
    fn,
    (err: unknown) => {
      caught = err;
      return err instanceof MtaStsError && err.code === code;
    },
    `expected ${code} for ${what}`,
  );
  return caught as MtaStsError;
}

const lf = (...lines: string[]): string => lines.map((l) => `${l}\n`).join('');
const crlf = (...lines: string[]): string => lines.map((l) => `${l}\r\n`).join('');

const V = 'version: STSv1';
const E = 'mode: enforce';
const M = 'mx: mail.example.com';
const A = 'max_age: 86400';
const basic = [V, E, M, A];

interface Want {
  mode: Mode;
  mx: string[];
  maxAge: number;
  ext?: Extension[];
}
const want = (mode: Mode, mx: string[], maxAge: number, ext: Extension[] = []): Want => ({ mode, mx, maxAge, ext });
const enforceMail = want('enforce', ['mail.example.com'], 86400);

const rfcExample = lf(
  'version: STSv1',
  'mode: enforce',
  'mx: mail.example.com',
  'mx: *.example.net',
  'mx: backupmx.example.com',
  'max_age: 604800',
);

function padTo(bytes: number, filler = 'x'): string {
  // A policy of exactly `bytes` UTF-8 bytes (for a one-byte filler): the basic policy plus a long extension.
  const head = lf(...basic) + 'pad: ';
  return head + filler.repeat(bytes - head.length);
}

const valid: [string, string, Want][] = [
  ['LF lines', lf(...basic), enforceMail],
  ['CRLF lines', crlf(...basic), enforceMail],
  ['no final terminator', basic.join('\n'), enforceMail],
  ['no final terminator, CRLF', basic.join('\r\n'), enforceMail],
  ['mixed LF and CRLF', `${V}\r\n${E}\n${M}\r\n${A}`, enforceMail],
  [
    'the RFC 8461 §3.2 example',
    rfcExample,
    want('enforce', ['mail.example.com', '*.example.net', 'backupmx.example.com'], 604800),
  ],
  ['fields in any order', lf(A, M, E, V), enforceMail],
  [
    'no space after the colon',
    lf('version:STSv1', 'mode:enforce', 'mx:mail.example.com', 'max_age:86400'),
    enforceMail,
  ],
  [
    'tab after the colon',
    lf('version:\tSTSv1', 'mode:\tenforce', 'mx:\tmail.example.com', 'max_age:\t86400'),
    enforceMail,
  ],
  ['many spaces after the colon', lf('version:    STSv1', E, 'mx:     mail.example.com', A), enforceMail],
  ['whitespace before the colon', lf('version : STSv1', 'mode\t: enforce', 'mx  :mail.example.com', A), enforceMail],
  [
    'trailing whitespace',
    lf('version: STSv1 ', 'mode: enforce\t', 'mx: mail.example.com  ', 'max_age: 86400 \t'),
    enforceMail,
  ],
  ['trailing whitespace before CRLF', crlf('version: STSv1 ', 'mode: enforce\t', M, 'max_age: 86400 '), enforceMail],
  ['blank lines between fields', lf(V, '', E, '', '', M, A), enforceMail],
  ['blank lines at the end', lf(...basic, '', ''), enforceMail],
  ['blank line at the start', lf('', ...basic), enforceMail],
  ['whitespace-only lines', lf(V, '   ', E, '\t', M, A), enforceMail],
  ['CRLF blank lines', crlf(V, '', E, M, A, ''), enforceMail],
  ['mode testing', lf(V, 'mode: testing', M, A), want('testing', ['mail.example.com'], 86400)],
  ['mode none without mx', lf(V, 'mode: none', A), want('none', [], 86400)],
  ['mode none with mx', lf(V, 'mode: none', M, A), want('none', ['mail.example.com'], 86400)],
  // First occurrence wins for every field except mx.
  ['version twice', lf(V, 'version: STSv2', E, M, A), enforceMail],
  ['mode twice (enforce first)', lf(V, E, 'mode: none', M, A), enforceMail],
  ['mode twice (none first)', lf(V, 'mode: none', E, A), want('none', [], 86400)],
  ['mode twice, the later one invalid', lf(V, E, 'mode: bogus', M, A), enforceMail],
  ['max_age twice', lf(V, E, M, A, 'max_age: 1'), enforceMail],
  ['max_age twice, the later one invalid', lf(V, E, M, A, 'max_age: -1'), enforceMail],
  [
    'mx repeated, kept in order',
    lf(V, E, 'mx: c.example', 'mx: a.example', 'mx: b.example', A),
    want('enforce', ['c.example', 'a.example', 'b.example'], 86400),
  ],
  ['identical mx kept', lf(V, E, M, M, A), want('enforce', ['mail.example.com', 'mail.example.com'], 86400)],
  // max_age: 1*10DIGIT, kept as published.
  ['max_age 0', lf(V, E, M, 'max_age: 0'), want('enforce', ['mail.example.com'], 0)],
  ['max_age 1', lf(V, E, M, 'max_age: 1'), want('enforce', ['mail.example.com'], 1)],
  ['max_age 31557600', lf(V, E, M, 'max_age: 31557600'), want('enforce', ['mail.example.com'], 31557600)],
  ['max_age 31557601 (kept)', lf(V, E, M, 'max_age: 31557601'), want('enforce', ['mail.example.com'], 31557601)],
  ['max_age of 10 digits', lf(V, E, M, 'max_age: 9999999999'), want('enforce', ['mail.example.com'], 9999999999)],
  ['max_age with leading zeros', lf(V, E, M, 'max_age: 0000086400'), enforceMail],
  // Extensions, in order; first occurrence wins.
  [
    'an extension',
    lf(...basic, 'foo: bar'),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'foo', value: 'bar' }]),
  ],
  [
    'extensions in order',
    lf('z: 1', ...basic, 'a: 2', 'm: 3'),
    want('enforce', ['mail.example.com'], 86400, [
      { key: 'z', value: '1' },
      { key: 'a', value: '2' },
      { key: 'm', value: '3' },
    ]),
  ],
  [
    'repeated extension: first wins',
    lf(...basic, 'foo: 1', 'foo: 2'),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'foo', value: '1' }]),
  ],
  [
    'extension value with inner spaces and tabs',
    lf(...basic, 'x-y.z_w:   a b\tc  '),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'x-y.z_w', value: 'a b\tc' }]),
  ],
  [
    'extension value in UTF-8',
    lf(...basic, 'note: grüße 👋 日本'),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'note', value: 'grüße 👋 日本' }]),
  ],
  [
    'extension value with a colon',
    lf(...basic, 'url: https://example.com/a:b'),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'url', value: 'https://example.com/a:b' }]),
  ],
  [
    '32-character extension name',
    lf(...basic, `${'k'.repeat(32)}: v`),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'k'.repeat(32), value: 'v' }]),
  ],
  [
    'keys are case-sensitive: Mode is an extension',
    lf(...basic, 'Mode: none', 'MX: evil.example'),
    want('enforce', ['mail.example.com'], 86400, [
      { key: 'Mode', value: 'none' },
      { key: 'MX', value: 'evil.example' },
    ]),
  ],
  // mx patterns: case, trailing dot, IDN (converted to A-labels), wildcards.
  ['upper-case mx', lf(V, E, 'mx: MAIL.Example.COM', A), enforceMail],
  ['mx with a trailing dot', lf(V, E, 'mx: mail.example.com.', A), enforceMail],
  ['wildcard mx', lf(V, E, 'mx: *.example.net', A), want('enforce', ['*.example.net'], 86400)],
  ['upper-case wildcard mx', lf(V, E, 'mx: *.EXAMPLE.NET.', A), want('enforce', ['*.example.net'], 86400)],
  ['U-label mx', lf(V, E, 'mx: mx.bücher.example', A), want('enforce', ['mx.xn--bcher-kva.example'], 86400)],
  ['A-label mx', lf(V, E, 'mx: mx.xn--bcher-kva.example', A), want('enforce', ['mx.xn--bcher-kva.example'], 86400)],
  ['wildcard U-label mx', lf(V, E, 'mx: *.bücher.example', A), want('enforce', ['*.xn--bcher-kva.example'], 86400)],
  ['faß.de mx (non-transitional)', lf(V, E, 'mx: faß.de', A), want('enforce', ['xn--fa-hia.de'], 86400)],
  ['ideographic full stops', lf(V, E, 'mx: mail\u3002example\u3002com', A), enforceMail],
  ['R-LDH label mx', lf(V, E, 'mx: r3---sn.example', A), want('enforce', ['r3---sn.example'], 86400)],
  ['single-label mx', lf(V, E, 'mx: localhost', A), want('enforce', ['localhost'], 86400)],
  // Size: the 64 KiB cap is the fetcher's (RFC 8461 §3.3, enforced while streaming); the parser
  // takes any length so that parse(format(p)) holds even when CRLF makes the text longer.
  ['exactly 64 KiB', padTo(MAX_POLICY_BYTES), enforceMail],
  ['64 KiB + 1 byte', padTo(MAX_POLICY_BYTES + 1), enforceMail],
  ['1 MiB', padTo(1 << 20), enforceMail],
  [
    '20000 ü (40000 bytes)',
    lf(...basic, `u: ${'ü'.repeat(20_000)}`),
    want('enforce', ['mail.example.com'], 86400, [{ key: 'u', value: 'ü'.repeat(20_000) }]),
  ],
];

const invalid: [string, unknown][] = [
  ['empty text', ''],
  ['a newline only', '\n'],
  ['blank lines only', '\n\r\n  \n'],
  ['not a string', undefined],
  ['missing version', lf(E, M, A)],
  ['missing mode', lf(V, M, A)],
  ['missing max_age', lf(V, E, M)],
  ['enforce without mx', lf(V, E, A)],
  ['testing without mx', lf(V, 'mode: testing', A)],
  ['version STSv2', lf('version: STSv2', E, M, A)],
  ['version stsv1', lf('version: stsv1', E, M, A)],
  ['version with more text', lf('version: STSv1 extra', E, M, A)],
  ['upper-case version key only', lf('Version: STSv1', E, M, A)],
  ['mode ENFORCE', lf(V, 'mode: ENFORCE', M, A)],
  ['mode strict', lf(V, 'mode: strict', M, A)],
  ['mode empty', lf(V, 'mode:', M, A)],
  ['mode whitespace only', lf(V, 'mode:   ', M, A)],
  ['max_age negative', lf(V, E, M, 'max_age: -1')],
  ['max_age with +', lf(V, E, M, 'max_age: +86400')],
  ['max_age exponent', lf(V, E, M, 'max_age: 1e5')],
  ['max_age decimal', lf(V, E, M, 'max_age: 86400.0')],
  ['max_age hex', lf(V, E, M, 'max_age: 0x10')],
  ['max_age of 11 digits', lf(V, E, M, 'max_age: 10000000000')],
  ['max_age of 11 digits with leading zero', lf(V, E, M, 'max_age: 00000086400')],
  ['max_age empty', lf(V, E, M, 'max_age:')],
  ['max_age full-width digits', lf(V, E, M, 'max_age: １２')],
  ['max_age with unit', lf(V, E, M, 'max_age: 86400s')],
  ['max_age with inner space', lf(V, E, M, 'max_age: 86 400')],
  ['mx IPv4 bracketed', lf(V, E, 'mx: [1.2.3.4]', A)],
  ['mx IPv4', lf(V, E, 'mx: 1.2.3.4', A)],
  ['mx IPv6', lf(V, E, 'mx: ::1', A)],
  ['mx IPv6 bracketed', lf(V, E, 'mx: [::1]', A)],
  ['mx wildcard IPv4', lf(V, E, 'mx: *.1.2.3.4', A)],
  ['mx star alone', lf(V, E, 'mx: *', A)],
  ['mx star dot alone', lf(V, E, 'mx: *.', A)],
  ['mx inner star', lf(V, E, 'mx: a.*.b', A)],
  ['mx double wildcard', lf(V, E, 'mx: *.*.example.com', A)],
  ['mx **.', lf(V, E, 'mx: **.example.com', A)],
  ['mx star without dot', lf(V, E, 'mx: *example.com', A)],
  ['mx trailing star', lf(V, E, 'mx: mx.*', A)],
  ['mx leading dot (Postfix style)', lf(V, E, 'mx: .example.com', A)],
  ['mx underscore', lf(V, E, 'mx: mx_1.example.com', A)],
  ['mx with port', lf(V, E, 'mx: mail.example.com:25', A)],
  ['mx URL', lf(V, E, 'mx: smtp://mail.example.com', A)],
  ['mx list on one line', lf(V, E, 'mx: a.example.com, b.example.com', A)],
  ['mx empty label', lf(V, E, 'mx: mail..example.com', A)],
  ['mx bad punycode', lf(V, E, 'mx: xn--abc.example', A)],
  ['mx U-label failing IDNA', lf(V, E, 'mx: -ü.example', A)],
  ['mx U-label failing bidi', lf(V, E, 'mx: a\u05d0.example', A)],
  ['mx empty', lf(V, E, 'mx:', A)],
  ['an invalid mx among valid ones', lf(V, E, M, 'mx: 10.0.0.1', A)],
  ['no colon', lf(V, 'mode enforce', M, A)],
  ['key alone', lf(V, E, 'mode', M, A)],
  ['a later duplicate without colon', lf(V, E, M, A, 'mode')],
  ['leading space', lf(V, ' mode: enforce', M, A)],
  ['leading tab', lf(V, '\tmode: enforce', M, A)],
  ['no key', lf(V, ': enforce', M, A)],
  ['comment line', lf('# MTA-STS policy', ...basic)],
  ['bare CR as terminator', `${V}\r${E}\r${M}\r${A}\r`],
  ['CR at the end without LF', `${basic.join('\n')}\r`],
  ['NUL in a value', lf(V, 'mode: enf\u0000orce', M, A)],
  ['DEL in an extension value', lf(...basic, 'x: a\u007fb')],
  ['byte-order mark', `\ufeff${lf(...basic)}`],
  ['space in a key', lf(...basic, 'foo bar: x')],
  ['extension name starting with _', lf(...basic, '_ext: x')],
  ['extension name starting with .', lf(...basic, '.ext: x')],
  ['33-character extension name', lf(...basic, `${'k'.repeat(33)}: x`)],
  ['empty extension value', lf(...basic, 'foo:')],
  ['whitespace-only extension value', lf(...basic, 'foo:   ')],
  ['equals sign instead of colon', lf(V, 'mode=enforce', M, A)],
  ['an HTML error page', '<!DOCTYPE html>\n<html><body>Not Found</body></html>\n'],
  ['JSON', '{"version":"STSv1","mode":"enforce"}'],
  ['binary garbage', '\u0000\u0001\u00ff\ufffd\u0089PNG\r\n\u001a\n'],
  ['64 KiB of garbage', '\u00ff'.repeat(MAX_POLICY_BYTES)],
  ['64 KiB of a line without colon', 'x'.repeat(MAX_POLICY_BYTES)],
  ['64 KiB of blank lines', '\n'.repeat(MAX_POLICY_BYTES)],
];

function check(text: string, w: Want): Policy {
  const p = parsePolicy(text);
  assert.equal(p.version, 'STSv1');
  assert.equal(p.mode, w.mode);
  assert.deepEqual(p.mx.map(formatMxPattern), w.mx);
  assert.equal(p.maxAgeSeconds, w.maxAge);
  if (w.ext !== undefined && !text.includes('pad: ')) assert.deepEqual(p.extensions, w.ext);
  for (const m of p.mx) assert.ok(m.domain instanceof Domain);
  return p;
}

describe('parsePolicy', () => {
  for (const [why, text, w] of valid) {
    it(`accepts ${why}`, () => {
      check(text, w);
    });
  }
  for (const [why, text] of invalid) {
    it(`rejects ${why}`, () => {
      assertCode(() => parsePolicy(text as string), 'ERR_MTASTS_POLICY_SYNTAX', why);
    });
  }

  it('returns the full structure (RFC example)', () => {
    assert.deepEqual(parsePolicy(rfcExample), {
      version: 'STSv1',
      mode: 'enforce',
      mx: [
        { wildcard: false, domain: parseDomain('mail.example.com') },
        { wildcard: true, domain: parseDomain('example.net') },
        { wildcard: false, domain: parseDomain('backupmx.example.com') },
      ],
      maxAgeSeconds: 604800,
      extensions: [],
    });
  });

  it('keeps the U-label form of an IDN mx', () => {
    const p = parsePolicy(lf(V, E, 'mx: *.bücher.example', A));
    assert.equal(p.mx[0]?.wildcard, true);
    assert.equal(p.mx[0]?.domain.ascii, 'xn--bcher-kva.example');
    assert.equal(p.mx[0]?.domain.unicode, 'bücher.example');
  });

  const lineCases: [string, number][] = [
    [lf(V, E, 'mx: 1.2.3.4', A), 3],
    [lf(V, '', '', 'mode enforce', M, A), 4],
    [crlf(V, E, M, A, 'foo:'), 5],
    [lf(V, 'max_age: -5', E, M), 2],
    [lf('version: STSv3', E, M, A), 1],
  ];
  for (const [text, line] of lineCases) {
    it(`names line ${line} in the message`, () => {
      const err = assertCode(() => parsePolicy(text), 'ERR_MTASTS_POLICY_SYNTAX', `line ${line}`);
      assert.match(err.message, new RegExp(`\\bline ${line}\\b`));
    });
  }

  it('keeps the parseDomain error as cause for a bad mx', () => {
    const err = assertCode(() => parsePolicy(lf(V, E, 'mx: [::1]', A)), 'ERR_MTASTS_POLICY_SYNTAX', 'mx');
    assert.ok(err.cause instanceof MtaStsError);
    assert.equal(err.cause.code, 'ERR_MTASTS_DOMAIN');
  });

  it('keeps hostile input short in the error message', () => {
    const err = assertCode(
      () => parsePolicy(lf(V, E, `mx: ${'a'.repeat(60_000)}`, A)),
      'ERR_MTASTS_POLICY_SYNTAX',
      'long mx',
    );
    assert.ok(err.message.length < 500, `message is ${err.message.length} characters`);
  });

  it('parses a 64 KiB policy of thousands of mx lines', () => {
    let text = lf(V, E, A);
    let i = 0;
    for (;;) {
      const line = `mx: mx${i}.example.com\n`;
      if (text.length + line.length > MAX_POLICY_BYTES) break;
      text += line;
      i++;
    }
    const p = parsePolicy(text);
    assert.equal(p.mx.length, i);
    assert.equal(p.mx[i - 1]?.domain.ascii, `mx${i - 1}.example.com`);
    assert.deepEqual(parsePolicy(formatPolicy(p)), p);
  });

  it('parses a 64 KiB policy of thousands of distinct extensions', () => {
    let text = lf(...basic);
    let i = 0;
    for (;;) {
      const line = `k${i}: v\n`;
      if (text.length + line.length > MAX_POLICY_BYTES) break;
      text += line;
      i++;
    }
    assert.equal(parsePolicy(text).extensions.length, i);
  });
});

describe('effectiveMaxAgeSeconds', () => {
  const cases: [number, number][] = [
    [0, 0],
    [1, 1],
    [86400, 86400],
    [31557599, 31557599],
    [31557600, 31557600],
    [31557601, 31557600],
    [9999999999, 31557600],
  ];
  for (const [published, effective] of cases) {
    it(`max_age ${published} is cached for ${effective} s`, () => {
      assert.equal(effectiveMaxAgeSeconds({ maxAgeSeconds: published }), effective);
      assert.equal(effectiveMaxAgeSeconds(parsePolicy(lf(V, E, M, `max_age: ${published}`))), effective);
    });
  }
  it('caps at MAX_MAX_AGE_SECONDS', () => assert.equal(MAX_MAX_AGE_SECONDS, 31557600));
});

describe('policyLines', () => {
  const cases: [string, string, string[]][] = [
    ['LF', lf(V, E, M, A), basic],
    ['CRLF', crlf(V, E, M, A), basic],
    ['no final terminator', basic.join('\r\n'), basic],
    ['blank lines dropped', lf('', V, '', '  ', E, '\t', M, A, '', ''), basic],
    ['trailing whitespace kept as served', lf('mode: enforce  ', 'max_age:\t1'), ['mode: enforce  ', 'max_age:\t1']],
    ['empty text', '', []],
    ['newlines only', '\n\r\n\n', []],
    ['a bare CR stays inside its line', 'a\rb\r\nc', ['a\rb', 'c']],
    ['a CR at the end without LF stays', 'a: b\r', ['a: b\r']],
  ];
  for (const [why, text, lines] of cases) {
    it(why, () => assert.deepEqual(policyLines(text), lines));
  }
});

describe('formatPolicy', () => {
  it('writes CRLF lines: version, mode, mx…, max_age, extensions', () => {
    const p = parsePolicy(lf('foo: bar', A, 'mx: *.Example.NET', E, M, V));
    assert.equal(
      formatPolicy(p),
      'version: STSv1\r\nmode: enforce\r\nmx: *.example.net\r\nmx: mail.example.com\r\nmax_age: 86400\r\nfoo: bar\r\n',
    );
  });

  it('writes a none policy without mx', () => {
    const p: Policy = { version: 'STSv1', mode: 'none', mx: [], maxAgeSeconds: 0, extensions: [] };
    assert.equal(formatPolicy(p), 'version: STSv1\r\nmode: none\r\nmax_age: 0\r\n');
    assert.deepEqual(parsePolicy(formatPolicy(p)), p);
  });

  for (const [why, text] of valid) {
    it(`round-trips ${why}`, () => {
      const p = parsePolicy(text);
      const formatted = formatPolicy(p);
      assert.deepEqual(parsePolicy(formatted), p);
      assert.equal(formatPolicy(parsePolicy(formatted)), formatted);
    });
  }

  const good: Policy = parsePolicy(lf(...basic));
  const mx = (s: string): { wildcard: boolean; domain: Domain } => ({ wildcard: false, domain: parseDomain(s) });
  const bad: [string, Policy][] = [
    ['version STSv2', { ...good, version: 'STSv2' as 'STSv1' }],
    ['mode strict', { ...good, mode: 'strict' as Mode }],
    ['negative max_age', { ...good, maxAgeSeconds: -1 }],
    ['fractional max_age', { ...good, maxAgeSeconds: 1.5 }],
    ['NaN max_age', { ...good, maxAgeSeconds: Number.NaN }],
    ['infinite max_age', { ...good, maxAgeSeconds: Number.POSITIVE_INFINITY }],
    ['11-digit max_age', { ...good, maxAgeSeconds: 1e10 }],
    ['enforce without mx', { ...good, mx: [] }],
    ['testing without mx', { ...good, mode: 'testing', mx: [] }],
    ['upper-case Domain', { ...good, mx: [{ wildcard: false, domain: new Domain('MX.example.com', '') }] }],
    [
      'Domain missing its U-label',
      { ...good, mx: [{ wildcard: false, domain: new Domain('xn--bcher-kva.example', '') }] },
    ],
    ['invalid Domain', { ...good, mx: [{ wildcard: true, domain: new Domain('a_b.example', '') }] }],
    ['IP Domain', { ...good, mx: [mx('a.example'), { wildcard: false, domain: new Domain('1.2.3.4', '') }] }],
    ['extension named mode', { ...good, extensions: [{ key: 'mode', value: 'none' }] }],
    ['extension named mx', { ...good, extensions: [{ key: 'mx', value: 'evil.example' }] }],
    ['extension named max_age', { ...good, extensions: [{ key: 'max_age', value: '1' }] }],
    ['extension named version', { ...good, extensions: [{ key: 'version', value: 'STSv1' }] }],
    ['extension name with a space', { ...good, extensions: [{ key: 'a b', value: 'x' }] }],
    ['extension name with a colon', { ...good, extensions: [{ key: 'a:b', value: 'x' }] }],
    ['empty extension name', { ...good, extensions: [{ key: '', value: 'x' }] }],
    [
      'repeated extension',
      {
        ...good,
        extensions: [
          { key: 'x', value: '1' },
          { key: 'x', value: '2' },
        ],
      },
    ],
    ['empty extension value', { ...good, extensions: [{ key: 'x', value: '' }] }],
    ['extension value with a leading space', { ...good, extensions: [{ key: 'x', value: ' a' }] }],
    ['extension value with a trailing tab', { ...good, extensions: [{ key: 'x', value: 'a\t' }] }],
    ['extension value with LF', { ...good, extensions: [{ key: 'x', value: 'a\nmode: none' }] }],
    ['extension value with CR', { ...good, extensions: [{ key: 'x', value: 'a\rb' }] }],
    ['extension value with NUL', { ...good, extensions: [{ key: 'x', value: 'a\u0000b' }] }],
  ];
  for (const [why, policy] of bad) {
    it(`refuses ${why}`, () => {
      assertCode(() => formatPolicy(policy), 'ERR_MTASTS_POLICY_SYNTAX', why);
    });
  }
});
