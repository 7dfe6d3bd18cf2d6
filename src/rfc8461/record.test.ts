import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { formatRecord, parseRecord } from './record.js';
import type { Extension, StsRecord } from './record.js';

function assertCode(fn: () => unknown, code: ErrorCode, what: string): void {
  assert.throws(fn, (err: unknown) => err instanceof MtaStsError && err.code === code, `expected ${code} for ${what}`);
}

const id32 = 'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6';
const punct = '!"#$%&\'()*+,-./:<>?@[\\]^_`{|}~';

// Not an MTA-STS record: parseRecord returns null (RFC 8461 §3.1: records that do not begin with v=STSv1 are discarded).
const notRecords: [string, string][] = [
  ['empty', ''],
  ['SPF', 'v=spf1 -all'],
  ['DMARC', 'v=DMARC1; p=none'],
  ['TLSRPT', 'v=TLSRPTv1; rua=mailto:tlsrpt@example.com'],
  ['other version v=STSv10', 'v=STSv10; id=1'],
  ['other version v=STSv1.1', 'v=STSv1.1; id=1'],
  ['v=STSv1x', 'v=STSv1x'],
  ['v=STSv1= ', 'v=STSv1=; id=1'],
  ['leading space', ' v=STSv1; id=1'],
  ['leading tab', '\tv=STSv1; id=1'],
  ['upper-case key', 'V=STSv1; id=1'],
  ['lower-case value', 'v=stsv1; id=1'],
  ['spaces around =', 'v = STSv1; id=1'],
  ['truncated version', 'v=STSv'],
  ['id first', 'id=abc; v=STSv1'],
  ['newline right after the version', 'v=STSv1\n; id=1'],
  ['byte-order mark', '\ufeffv=STSv1; id=1'],
  ['plain text', 'hello world'],
  ['comma after the version', 'v=STSv1, id=a'],
  ['binary garbage', '\u0000\u00ff\u0001v=STSv1'],
];

// [text, id, extensions]
const records: [string, string, Extension[]][] = [
  ['v=STSv1; id=20160831085700Z;', '20160831085700Z', []],
  ['v=STSv1; id=20160831085700Z', '20160831085700Z', []],
  ['v=STSv1;id=abc', 'abc', []],
  ['v=STSv1;id=abc;', 'abc', []],
  ['v=STSv1 ;id=abc', 'abc', []],
  ['v=STSv1\t;\tid=abc\t;\t', 'abc', []],
  ['v=STSv1; id=abc; ', 'abc', []],
  ['v=STSv1; id=abc ', 'abc', []],
  ['v=STSv1; id=abc ;', 'abc', []],
  ['v=STSv1;   id=abc   ;   ', 'abc', []],
  ['v=STSv1; id=x', 'x', []],
  ['v=STSv1; id=7', '7', []],
  [`v=STSv1; id=${id32};`, id32, []],
  ['v=STSv1; id=ABCdef123;', 'ABCdef123', []],
  // Repeated fields: the first one counts, later ones are dropped.
  ['v=STSv1; id=first; id=second;', 'first', []],
  ['v=STSv1; id=first; id=not-an-id;', 'first', []],
  ['v=STSv1; id=abc; v=STSv2;', 'abc', []],
  ['v=STSv1; id=abc; v=STSv1;', 'abc', []],
  ['v=STSv1; id=abc; foo=1; foo=2;', 'abc', [{ key: 'foo', value: '1' }]],
  // Extensions, kept in order; keys are case-sensitive.
  ['v=STSv1; foo=bar; id=abc', 'abc', [{ key: 'foo', value: 'bar' }]],
  [
    'v=STSv1; id=abc; foo=bar; baz=qux;',
    'abc',
    [
      { key: 'foo', value: 'bar' },
      { key: 'baz', value: 'qux' },
    ],
  ],
  [
    'v=STSv1; z=1; id=abc; a=2; m=3',
    'abc',
    [
      { key: 'z', value: '1' },
      { key: 'a', value: '2' },
      { key: 'm', value: '3' },
    ],
  ],
  ['v=STSv1; id=abc; ID=xyz', 'abc', [{ key: 'ID', value: 'xyz' }]],
  ['v=STSv1; id=abc; Id=x-y', 'abc', [{ key: 'Id', value: 'x-y' }]],
  ['v=STSv1; id=abc; a.b_c-d=x', 'abc', [{ key: 'a.b_c-d', value: 'x' }]],
  ['v=STSv1; id=abc; 9lives=x', 'abc', [{ key: '9lives', value: 'x' }]],
  [`v=STSv1; id=abc; ${'k'.repeat(32)}=x`, 'abc', [{ key: 'k'.repeat(32), value: 'x' }]],
  [`v=STSv1; id=abc; p=${punct}`, 'abc', [{ key: 'p', value: punct }]],
  ['v=STSv1; id=abc; rua=mailto:a@b.example', 'abc', [{ key: 'rua', value: 'mailto:a@b.example' }]],
];

// Starts like an MTA-STS record but breaks RFC 8461 §3.1: ERR_MTASTS_RECORD_SYNTAX.
const syntaxErrors: [string, string][] = [
  ['version only', 'v=STSv1'],
  ['version and ;', 'v=STSv1;'],
  ['version, ; and space', 'v=STSv1; '],
  ['version and space', 'v=STSv1 '],
  ['empty id', 'v=STSv1; id='],
  ['empty id with ;', 'v=STSv1; id=;'],
  ['33-character id', `v=STSv1; id=${id32}x`],
  ['hyphen in id', 'v=STSv1; id=abc-def'],
  ['underscore in id', 'v=STSv1; id=abc_def'],
  ['dot in id', 'v=STSv1; id=2024.01'],
  ['non-ASCII id', 'v=STSv1; id=ünï'],
  ['quoted id', 'v=STSv1; id="abc"'],
  ['missing ; before id', 'v=STSv1 id=abc'],
  ['empty field', 'v=STSv1;; id=abc'],
  ['empty field at the end', 'v=STSv1; id=abc;;'],
  ['no = after key', 'v=STSv1; id abc'],
  ['space before =', 'v=STSv1; id = abc'],
  ['space inside the value', 'v=STSv1; id=abc def'],
  ['missing id', 'v=STSv1; foo=bar'],
  ['upper-case ID only', 'v=STSv1; ID=abc'],
  ['extension name starting with _', 'v=STSv1; _foo=bar; id=a'],
  ['extension name starting with -', 'v=STSv1; -foo=bar; id=a'],
  ['33-character extension name', `v=STSv1; ${'k'.repeat(33)}=x; id=a`],
  ['empty extension value', 'v=STSv1; id=a; foo='],
  ['= in extension value', 'v=STSv1; id=a; foo=a=b'],
  ['non-ASCII extension value', 'v=STSv1; id=a; foo=ü'],
  ['quoted value with space', 'v=STSv1; id=a; foo="bar baz"'],
  ['field without value', 'v=STSv1; id=a; foo'],
  ['field without name', 'v=STSv1; =x; id=a'],
  ['LF at the end', 'v=STSv1; id=a\n'],
  ['CRLF at the end', 'v=STSv1; id=a\r\n'],
  ['NUL between fields', 'v=STSv1;\u0000id=a'],
  ['NUL in id', 'v=STSv1; id=a\u0000b'],
  ['64 KiB of garbage', `v=STSv1; ${'\u00ff'.repeat(64 * 1024)}`],
  ['64 KiB of fields without id', `v=STSv1; ${'k=v; '.repeat(13_000)}`],
];

describe('parseRecord', () => {
  for (const [why, txt] of notRecords) {
    it(`is null for ${why}`, () => assert.equal(parseRecord(txt), null));
  }
  for (const [txt, id, extensions] of records) {
    it(`parses ${JSON.stringify(txt).slice(0, 70)}`, () => {
      assert.deepEqual(parseRecord(txt), { version: 'STSv1', id, extensions });
    });
  }
  for (const [why, txt] of syntaxErrors) {
    it(`rejects ${why}`, () => assertCode(() => parseRecord(txt), 'ERR_MTASTS_RECORD_SYNTAX', why));
  }

  it('is null for a non-string', () => {
    assert.equal(parseRecord(undefined as unknown as string), null);
    assert.equal(parseRecord(42 as unknown as string), null);
  });

  it('parses a 64 KiB record with thousands of extensions in linear time', () => {
    let txt = 'v=STSv1; id=big';
    let i = 0;
    while (txt.length < 64 * 1024) txt += `; k${i++}=v`;
    const r = parseRecord(txt);
    assert.ok(r);
    assert.equal(r.id, 'big');
    assert.equal(r.extensions.length, i);
    assert.deepEqual(r.extensions[i - 1], { key: `k${i - 1}`, value: 'v' });
    assert.deepEqual(parseRecord(formatRecord(r)), r);
  });

  it('keeps hostile input short in the error message', () => {
    try {
      parseRecord(`v=STSv1; ${'x'.repeat(100_000)}`);
      assert.fail('expected an error');
    } catch (err) {
      assert.ok(err instanceof MtaStsError);
      assert.equal(err.code, 'ERR_MTASTS_RECORD_SYNTAX');
      assert.ok(err.message.length < 500, `message is ${err.message.length} characters`);
    }
  });
});

describe('formatRecord', () => {
  it('writes v=STSv1; id=X; and extensions', () => {
    assert.equal(formatRecord({ version: 'STSv1', id: 'abc', extensions: [] }), 'v=STSv1; id=abc;');
    assert.equal(
      formatRecord({
        version: 'STSv1',
        id: 'abc',
        extensions: [
          { key: 'foo', value: 'bar' },
          { key: 'x.y', value: 'a:b' },
        ],
      }),
      'v=STSv1; id=abc; foo=bar; x.y=a:b;',
    );
  });

  for (const [txt] of records) {
    it(`round-trips ${JSON.stringify(txt).slice(0, 70)}`, () => {
      const r = parseRecord(txt);
      assert.ok(r);
      const formatted = formatRecord(r);
      assert.deepEqual(parseRecord(formatted), r);
      // Formatting is canonical: formatting the re-parsed record gives the same text.
      assert.equal(formatRecord(parseRecord(formatted)!), formatted);
    });
  }

  const bad: [string, StsRecord][] = [
    ['empty id', { version: 'STSv1', id: '', extensions: [] }],
    ['33-character id', { version: 'STSv1', id: `${id32}x`, extensions: [] }],
    ['hyphen in id', { version: 'STSv1', id: 'a-b', extensions: [] }],
    ['other version', { version: 'STSv2' as 'STSv1', id: 'a', extensions: [] }],
    ['extension named id', { version: 'STSv1', id: 'a', extensions: [{ key: 'id', value: 'b' }] }],
    ['extension named v', { version: 'STSv1', id: 'a', extensions: [{ key: 'v', value: 'STSv1' }] }],
    ['empty extension name', { version: 'STSv1', id: 'a', extensions: [{ key: '', value: 'b' }] }],
    ['extension name with _ first', { version: 'STSv1', id: 'a', extensions: [{ key: '_x', value: 'b' }] }],
    ['extension name with space', { version: 'STSv1', id: 'a', extensions: [{ key: 'a b', value: 'b' }] }],
    [
      'repeated extension',
      {
        version: 'STSv1',
        id: 'a',
        extensions: [
          { key: 'x', value: '1' },
          { key: 'x', value: '2' },
        ],
      },
    ],
    ['empty extension value', { version: 'STSv1', id: 'a', extensions: [{ key: 'x', value: '' }] }],
    ['; in extension value', { version: 'STSv1', id: 'a', extensions: [{ key: 'x', value: 'a;b' }] }],
    ['= in extension value', { version: 'STSv1', id: 'a', extensions: [{ key: 'x', value: 'a=b' }] }],
    ['space in extension value', { version: 'STSv1', id: 'a', extensions: [{ key: 'x', value: 'a b' }] }],
    ['non-ASCII extension value', { version: 'STSv1', id: 'a', extensions: [{ key: 'x', value: 'ü' }] }],
  ];
  for (const [why, record] of bad) {
    it(`refuses ${why}`, () => assertCode(() => formatRecord(record), 'ERR_MTASTS_RECORD_SYNTAX', why));
  }
});
