// Property tests for the protocol core: random input never crashes a parser (it returns or throws
// a coded MtaStsError), and format/parse round-trips hold for generated records and policies.
// Runs are bounded so the file takes a few seconds; MTASTSDB_FUZZ_RUNS raises the count.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ERROR_CODES, MtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { parseDomain } from './domain.js';
import type { Domain } from './domain.js';
import { mxPatternMatches, policyMatches } from './mx-match.js';
import { formatPolicy, parsePolicy, policyLines } from './policy.js';
import type { Mode, MxPattern, Policy } from './policy.js';
import { formatRecord, parseRecord } from './record.js';
import type { Extension, StsRecord } from './record.js';

const envRuns = Number.parseInt(process.env.MTASTSDB_FUZZ_RUNS ?? '', 10);
/** Runs per property: MTASTSDB_FUZZ_RUNS when set, else a count that keeps the file under 10 s. */
const RUNS = Number.isSafeInteger(envRuns) && envRuns > 0 ? envRuns : 0;
const runs = (byDefault: number): number => (RUNS > 0 ? RUNS : byDefault);

/** Calls `fn`; an error must be an MtaStsError with `code` (which is in ERROR_CODES). Returns the result or undefined. */
function total<T>(fn: () => T, code: ErrorCode): T | undefined {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof MtaStsError)) throw new Error(`uncoded error: ${String(err)}`, { cause: err });
    assert.ok(ERROR_CODES.includes(err.code), `unknown code ${err.code}`);
    assert.equal(err.code, code);
    return undefined;
  }
}

/**
 * Runs a property and prints how many inputs it tried (and, when the predicate returns booleans,
 * how many the code under test accepted: a fuzzer that never gets past the first check proves little).
 */
function check<T>(name: string, arb: fc.Arbitrary<T>, numRuns: number, predicate: (v: T) => boolean | void): void {
  let inputs = 0;
  let accepted = 0;
  let counted = false;
  fc.assert(
    fc.property(arb, (v) => {
      inputs++;
      const ok = predicate(v);
      if (typeof ok === 'boolean') {
        counted = true;
        if (ok) accepted++;
      }
    }),
    { numRuns },
  );
  console.log(`# fuzz ${name}: ${inputs} inputs${counted ? ` (${accepted} accepted)` : ''}`);
}

// Inputs: random Unicode, ASCII, and random bytes decoded as latin1 and as UTF-8 (invalid sequences become U+FFFD).
const bytes = fc.uint8Array({ maxLength: 300 });
const anyText = fc.oneof(
  fc.string({ unit: 'binary', maxLength: 300 }),
  fc.string({ unit: 'binary-ascii', maxLength: 300 }),
  fc.string({ unit: 'grapheme', maxLength: 100 }),
  bytes.map((b) => Buffer.from(b).toString('latin1')),
  bytes.map((b) => Buffer.from(b).toString('utf8')),
);

/** Text assembled from the format's own tokens, so that many inputs get deep into the parsers. */
function tokens(list: string[], maxLength: number): fc.Arbitrary<string> {
  return fc
    .array(fc.oneof(fc.constantFrom(...list), fc.string({ unit: 'binary', maxLength: 3 })), { maxLength })
    .map((parts) => parts.join(''));
}
const policyish = tokens(
  [
    'version',
    'mode',
    'mx',
    'max_age',
    'Mode',
    'x-ext',
    ':',
    ': ',
    ' ',
    '\t',
    '\n',
    '\r\n',
    '\r',
    'STSv1',
    'enforce',
    'testing',
    'none',
    '*.',
    '*',
    '.',
    'example.com',
    'bücher',
    'xn--bcher-kva',
    'xn--',
    '-',
    '[1.2.3.4]',
    '::1',
    '86400',
    '0',
    '99999999999',
    'version: STSv1\n',
    'mode: enforce\n',
    'mx: mx.example.com\n',
    'max_age: 86400\n',
  ],
  40,
);
const recordish = tokens(
  ['v=STSv1', 'v=STSv1;', ';', '; ', ' ', '\t', 'id=', 'id', '=', 'abc123', 'x'.repeat(33), 'ext', '_', '-', 'é'],
  30,
);
const domainish = tokens(
  ['.', '-', '--', 'xn--', 'a', 'Z', '0', '1', 'example', 'bücher', 'ß', '\u3002', '*', ':', '[', ']', '_'],
  20,
);

/** Random small edits (insert, delete, replace) of a valid text: most inputs then fail late, not early. */
const edit = fc.record({
  at: fc.nat(),
  del: fc.nat({ max: 3 }),
  ins: fc.oneof(
    fc.constantFrom(
      '',
      ' ',
      '\t',
      '\n',
      '\r',
      '\r\n',
      ':',
      '*.',
      '*',
      '.',
      '-',
      ';',
      '=',
      'x',
      'X',
      'ü',
      '\u0000',
      '1',
    ),
    fc.string({ unit: 'binary', maxLength: 2 }),
  ),
});
function mutated(base: fc.Arbitrary<string>): fc.Arbitrary<string> {
  return fc.tuple(base, fc.array(edit, { maxLength: 3 })).map(([text, edits]) => {
    let s = text;
    for (const e of edits) {
      const i = e.at % (s.length + 1);
      s = s.slice(0, i) + e.ins + s.slice(i + e.del);
    }
    return s;
  });
}

// Generators for valid values.
/** C0 controls but HTAB, and DEL: never in a policy value (RFC 8461 §3.2). */
const isControl = (c: number): boolean => (c < 0x20 && c !== 0x09) || c === 0x7f;
const ldhLabel = fc
  .stringMatching(/^[a-z0-9](?:[a-z0-9-]{0,12}[a-z0-9])?$/)
  .filter((l) => !l.startsWith('xn--') && l.length <= 63);
const label = fc.oneof(
  { weight: 4, arbitrary: ldhLabel },
  { weight: 1, arbitrary: ldhLabel.map((l) => l.toUpperCase()) },
  { weight: 1, arbitrary: fc.constantFrom('bücher', 'münchen', 'faß', 'ドメイン', 'пример', 'café', 'xn--bcher-kva') },
);
/** Valid domains (whatever parseDomain accepts of 1–5 generated labels). */
const domain: fc.Arbitrary<Domain> = fc
  .array(label, { minLength: 1, maxLength: 5 })
  .map((labels) => {
    try {
      return parseDomain(labels.join('.'));
    } catch {
      return null;
    }
  })
  .filter((d): d is Domain => d !== null);
const mxPattern: fc.Arbitrary<MxPattern> = fc.record({ wildcard: fc.boolean(), domain }, { noNullPrototype: true });
const mode = fc.constantFrom<Mode>('enforce', 'testing', 'none');
const policyExtValue = fc
  .string({
    unit: fc.oneof(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 1 }), fc.constantFrom(' ', '\t')),
    minLength: 1,
    maxLength: 20,
  })
  .filter((v) => /^[^ \t]/.test(v) && /[^ \t]$/.test(v) && ![...v].some((ch) => isControl(ch.charCodeAt(0))));
const policyExtKey = fc
  .stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/)
  .filter((k) => !['version', 'mode', 'max_age', 'mx'].includes(k));
const policy: fc.Arbitrary<Policy> = fc
  .record({
    mode,
    mx: fc.array(mxPattern, { maxLength: 6 }),
    maxAgeSeconds: fc.integer({ min: 0, max: 9_999_999_999 }),
    extensions: fc.uniqueArray(fc.record({ key: policyExtKey, value: policyExtValue }, { noNullPrototype: true }), {
      maxLength: 4,
      selector: (e) => e.key,
    }),
  })
  .filter((p) => p.mode === 'none' || p.mx.length > 0)
  .map((p) => ({ version: 'STSv1' as const, ...p }));
const record: fc.Arbitrary<StsRecord> = fc
  .record({
    id: fc.stringMatching(/^[A-Za-z0-9]{1,32}$/),
    extensions: fc.uniqueArray(
      fc.record(
        {
          key: fc.stringMatching(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/).filter((k) => k !== 'id' && k !== 'v'),
          value: fc.stringMatching(/^[\x21-\x3a\x3c\x3e-\x7e]{1,20}$/),
        },
        { noNullPrototype: true },
      ),
      { maxLength: 4, selector: (e: Extension) => e.key },
    ),
  })
  .map((r) => ({ version: 'STSv1' as const, ...r }));

describe('fuzz: parsers never crash', () => {
  it('parseDomain returns a Domain or throws ERR_MTASTS_DOMAIN', () => {
    const near = mutated(domain.map((d) => (d.unicode === '' ? d.ascii : d.unicode)));
    check('parseDomain', fc.oneof(anyText, domainish, near), runs(12000), (s) => {
      const d = total(() => parseDomain(s), 'ERR_MTASTS_DOMAIN');
      if (d !== undefined) {
        // Whatever it accepts is normalised and stable.
        assert.match(d.ascii, /^[a-z0-9.-]+$/);
        assert.ok(d.ascii.length <= 253);
        assert.deepEqual(parseDomain(d.ascii), d);
      }
      return d !== undefined;
    });
  });

  it('parseRecord returns a record or null, or throws ERR_MTASTS_RECORD_SYNTAX', () => {
    const withPrefix = anyText.map((s) => `v=STSv1${s}`);
    const near = mutated(record.map(formatRecord));
    check('parseRecord', fc.oneof(anyText, withPrefix, recordish, near), runs(20000), (s) => {
      const r = total(() => parseRecord(s), 'ERR_MTASTS_RECORD_SYNTAX');
      if (r) assert.deepEqual(parseRecord(formatRecord(r)), r);
      return r != null;
    });
  });

  it('parsePolicy returns a policy or throws ERR_MTASTS_POLICY_SYNTAX', () => {
    const near = mutated(policy.map(formatPolicy));
    check('parsePolicy', fc.oneof(anyText, policyish, near), runs(8000), (s) => {
      const p = total(() => parsePolicy(s), 'ERR_MTASTS_POLICY_SYNTAX');
      policyLines(s);
      if (p) assert.deepEqual(parsePolicy(formatPolicy(p)), p);
      return p !== undefined;
    });
  });

  it('policyMatches never throws and agrees with a parseDomain-based oracle', () => {
    const p = parsePolicy(
      'version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: *.bücher.example\nmx: faß.de\nmax_age: 1\n',
    );
    // The slow, obvious definition (RFC 8461 §4.1) to check the fast path against.
    const oracle = (host: string): boolean => {
      let h: string;
      try {
        h = parseDomain(host).ascii;
      } catch {
        return false;
      }
      return p.mx.some((m) => {
        if (!m.wildcard) return h === m.domain.ascii;
        const suffix = `.${m.domain.ascii}`;
        return h.endsWith(suffix) && h.length > suffix.length && !h.slice(0, -suffix.length).includes('.');
      });
    };
    const near = mutated(
      fc.constantFrom(
        'mail.example.com',
        'MAIL.Example.com.',
        'mx.example.net',
        'a.b.example.net',
        'mx.bücher.example',
        'MX.XN--BCHER-KVA.example',
        'faß.de',
        'xn--fa-hia.de',
      ),
    );
    check('policyMatches', fc.oneof(anyText, domainish, near), runs(12000), (host) => {
      const matched = policyMatches(p, host);
      assert.equal(matched, oracle(host), `host ${JSON.stringify(host)}`);
      return matched;
    });
  });
});

describe('fuzz: round trips', () => {
  it('parseRecord(formatRecord(r)) deep-equals r', () => {
    check('record round trip', record, runs(3000), (r) => {
      assert.deepEqual(parseRecord(formatRecord(r)), r);
    });
  });

  it('parsePolicy(formatPolicy(p)) deep-equals p', () => {
    check('policy round trip', policy, runs(2000), (p) => {
      const text = formatPolicy(p);
      assert.deepEqual(parsePolicy(text), p);
      // Every line of the formatted policy is served as one policy-string line.
      assert.equal(policyLines(text).length, 3 + p.mx.length + p.extensions.length);
    });
  });

  it('a policy written with LF, odd spacing and blank lines parses the same', () => {
    check('policy spacing', policy, runs(1000), (p) => {
      const text = formatPolicy(p)
        .split('\r\n')
        .map((line) => line.replace(': ', ' :\t ').replace(/$/, line === '' ? '' : ' '))
        .join('\n\n');
      assert.deepEqual(parsePolicy(text), p);
    });
  });

  it('wildcards match exactly one extra label; exact patterns match their name in any form', () => {
    check('mx match', fc.tuple(domain, ldhLabel, ldhLabel), runs(3000), ([d, l1, l2]) => {
      const exact = { wildcard: false, domain: d };
      const wild = { wildcard: true, domain: d };
      assert.ok(mxPatternMatches(exact, d.ascii));
      assert.ok(mxPatternMatches(exact, d.name()));
      assert.ok(mxPatternMatches(exact, `${d.ascii.toUpperCase()}.`));
      assert.ok(!mxPatternMatches(wild, d.ascii));
      assert.ok(!mxPatternMatches(exact, `${l1}.${d.ascii}`));
      const one = `${l1}.${d.ascii}`;
      if (one.length <= 253) {
        assert.ok(mxPatternMatches(wild, one));
        assert.ok(mxPatternMatches(wild, `${l1.toUpperCase()}.${d.name()}.`));
      }
      assert.ok(!mxPatternMatches(wild, `${l2}.${l1}.${d.ascii}`));
    });
  });
});
