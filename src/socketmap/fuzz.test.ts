// Property tests of the socketmap core: the netstring decoder, the request parser, key
// normalisation and reply formatting never throw anything but coded errors, never hang, and keep
// their contracts on random input. Bounded to a few seconds; MTASTSDB_FUZZ_RUNS sets the runs per
// property. Each property prints how many inputs it tried.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { MtaStsError } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import { Domain, parseDomain } from '../rfc8461/domain.js';
import type { Policy } from '../rfc8461/policy.js';
import { NetstringDecoder, encodeNetstring, POSTFIX_REPLY_LIMIT } from './netstring.js';
import { formatReply, normalizeKey, parseRequest } from './protocol.js';

const envRuns = Number.parseInt(process.env.MTASTSDB_FUZZ_RUNS ?? '', 10);
const runs = (byDefault: number): number => (Number.isSafeInteger(envRuns) && envRuns > 0 ? envRuns : byDefault);

function property<T>(name: string, arb: fc.Arbitrary<T>, numRuns: number, predicate: (v: T) => void): void {
  it(name, () => {
    let inputs = 0;
    const started = Date.now();
    fc.assert(
      fc.property(arb, (v) => {
        inputs++;
        predicate(v);
      }),
      { numRuns, seed: Number(process.env.MTASTSDB_FUZZ_SEED ?? Date.now() % 2 ** 31) },
    );
    console.log(`# fuzz ${name}: ${inputs} inputs in ${Date.now() - started} ms`);
  });
}

/** Runs `fn`; any error must be an MtaStsError with `code`. */
function onlyCoded<T>(fn: () => T, code: ErrorCode): T | MtaStsError {
  try {
    return fn();
  } catch (err) {
    if (!(err instanceof MtaStsError)) throw new Error(`uncoded error: ${String(err)}`, { cause: err });
    assert.equal(err.code, code);
    return err;
  }
}

/** Splits `data` at random cut points. */
const chunked = (data: Buffer): fc.Arbitrary<Buffer[]> =>
  fc.uniqueArray(fc.integer({ min: 1, max: Math.max(1, data.length - 1) }), { maxLength: 12 }).map((cuts) => {
    const points = [0, ...cuts.filter((c) => c < data.length).sort((a, b) => a - b), data.length];
    const out: Buffer[] = [];
    for (let i = 1; i < points.length; i++) out.push(data.subarray(points[i - 1], points[i]));
    return out;
  });

// Bytes biased towards netstring syntax so the decoder gets past its first check often.
const netByte = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...Buffer.from('0123456789:,')) },
  { weight: 1, arbitrary: fc.integer({ min: 0, max: 255 }) },
);

describe('fuzz: NetstringDecoder', () => {
  property(
    'random bytes in random chunks: frames or ERR_MTASTS_NETSTRING, never anything else',
    fc
      .uint8Array({ maxLength: 300 })
      .chain((a) => fc.tuple(fc.constant(Buffer.from(a)), chunked(Buffer.from(a)), fc.integer({ min: 0, max: 64 }))),
    runs(10000),
    ([, chunks, max]) => {
      const d = new NetstringDecoder({ maxLength: max });
      for (const c of chunks) {
        const r = onlyCoded(() => d.push(c), 'ERR_MTASTS_NETSTRING');
        if (r instanceof MtaStsError) {
          assert.ok(['bad-length', 'too-long', 'bad-terminator'].includes(String(r.details.reason)));
          break;
        }
        for (const f of r) assert.ok(f.length <= max);
      }
    },
  );

  property(
    'netstring-like bytes: same frames whatever the chunking',
    fc.array(netByte, { maxLength: 200 }).chain((bytes) => {
      const data = Buffer.from(bytes);
      return fc.tuple(fc.constant(data), chunked(data));
    }),
    runs(10000),
    ([data, chunks]) => {
      const whole = new NetstringDecoder({ maxLength: 50 });
      const oneShot = onlyCoded(() => whole.push(data), 'ERR_MTASTS_NETSTRING');
      const split = new NetstringDecoder({ maxLength: 50 });
      const frames: string[] = [];
      let failed: MtaStsError | undefined;
      for (const c of chunks) {
        const r = onlyCoded(() => split.push(c), 'ERR_MTASTS_NETSTRING');
        if (r instanceof MtaStsError) {
          frames.push(...(r.details.frames as Buffer[]).map((f) => f.toString('latin1')));
          failed = r;
          break;
        }
        frames.push(...r.map((f) => f.toString('latin1')));
      }
      if (oneShot instanceof MtaStsError) {
        assert.ok(failed, 'chunked decoding fails too');
        assert.equal(failed.details.reason, oneShot.details.reason);
        assert.equal(failed.details.offset, oneShot.details.offset);
        assert.deepEqual(
          frames,
          (oneShot.details.frames as Buffer[]).map((f) => f.toString('latin1')),
        );
      } else {
        assert.equal(failed, undefined);
        assert.deepEqual(
          frames,
          oneShot.map((f) => f.toString('latin1')),
        );
      }
    },
  );

  property(
    'encode → decode round trip in random chunks',
    fc.array(fc.uint8Array({ maxLength: 1024 }), { maxLength: 8 }).chain((payloads) => {
      const wire = Buffer.concat(payloads.map((p) => encodeNetstring(Buffer.from(p))));
      return fc.tuple(fc.constant(payloads), chunked(wire));
    }),
    runs(5000),
    ([payloads, chunks]) => {
      const d = new NetstringDecoder();
      const frames = chunks.flatMap((c) => d.push(c));
      assert.deepEqual(
        frames.map((f) => Buffer.from(f).toString('hex')),
        payloads.map((p) => Buffer.from(p).toString('hex')),
      );
      assert.equal(d.partial, false);
    },
  );
});

describe('fuzz: request parsing and key normalisation', () => {
  const keyish = fc.oneof(
    fc.string({ maxLength: 80 }),
    fc.string({ unit: fc.constantFrom(...'[]:.0123456789abcdefABCDEF-x%ü '.split('')), maxLength: 40 }),
    fc.domain().map((d) => `[${d}]:25`),
    fc.ipV4(),
    fc.ipV6(),
  );

  property(
    'parseRequest: {name, key} or ERR_MTASTS_SOCKETMAP_REQUEST',
    fc.uint8Array({ maxLength: 200 }),
    runs(10000),
    (a) => {
      const r = onlyCoded(() => parseRequest(Buffer.from(a)), 'ERR_MTASTS_SOCKETMAP_REQUEST');
      if (!(r instanceof MtaStsError)) {
        assert.ok(r.name.length > 0 && !r.name.includes(' ') && r.key.length > 0);
        assert.equal(Buffer.from(`${r.name} ${r.key}`, 'utf8').equals(Buffer.from(a)), true);
      }
    },
  );

  property(
    'normalizeKey never throws; a domain result is trimmed, lower-case, without a trailing dot',
    keyish,
    runs(5000),
    (k) => {
      const r = normalizeKey(k);
      if (r.kind === 'domain') {
        assert.equal(r.domain, r.domain.trim());
        assert.equal(r.domain, r.domain.toLowerCase());
        assert.ok(!r.domain.endsWith('.') && !r.domain.startsWith('.') && r.domain !== '');
        // The daemon then validates; that too only throws coded errors.
        onlyCoded(() => parseDomain(r.domain), 'ERR_MTASTS_DOMAIN');
      }
    },
  );

  property(
    'IP literals in any key form are never looked up',
    fc.tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.constantFrom('%s', '[%s]', '[%s]:25', '%s.')),
    runs(5000),
    ([ip, form]) => {
      const key = form.replace('%s', ip);
      if (form === '%s.' && ip.includes(':')) return; // "::1." is not an address form
      assert.equal(normalizeKey(key).kind, 'skip', key);
    },
  );
});

describe('fuzz: formatReply', () => {
  const label = fc.stringMatching(/^[a-z0-9]([a-z0-9-]{0,10}[a-z0-9])?$/);
  const host = fc.array(label, { minLength: 2, maxLength: 4 }).map((l) => l.join('.'));
  property(
    'replies are ASCII, under the Postfix limit, NOTFOUND/OK/TEMP only',
    fc.record({
      mode: fc.constantFrom('enforce', 'testing', 'none'),
      mx: fc.array(fc.tuple(fc.boolean(), host), { maxLength: 30 }),
      text: fc.string({ maxLength: 400 }),
      zone: fc.record({
        strictTesting: fc.boolean(),
        requireSni: fc.boolean(),
        tlsrpt: fc.boolean(),
        tempOnError: fc.boolean(),
      }),
      bogus: fc.boolean(),
    }),
    runs(10000),
    ({ mode, mx, text, zone, bogus }) => {
      const patterns = mx.flatMap(([wildcard, h]) => {
        try {
          return [{ wildcard, domain: parseDomain(h) }];
        } catch {
          return [];
        }
      });
      if (bogus) patterns.push({ wildcard: false, domain: new Domain('a b}{', '') });
      const policy: Policy = { version: 'STSv1', mode, mx: patterns, maxAgeSeconds: 86400, extensions: [] };
      const reply = formatReply({ kind: 'policy', domain: 'example.test', policy, policyText: text }, zone);
      assert.ok(Buffer.byteLength(reply) <= POSTFIX_REPLY_LIMIT);
      assert.match(reply, /^(NOTFOUND |OK secure match=[a-z0-9.:-]+|TEMP [ -~]+)/);
      // Nothing a policy host wrote can close or open an attribute block or break the line.
      const extras = reply.split(' { policy_string = ').slice(1);
      for (const e of extras) assert.match(e, /^[^{}\r\n]* \}$/);
      assert.ok(!/[\r\n\0]/.test(reply));
    },
  );
});
