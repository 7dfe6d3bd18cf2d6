import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import { NetstringDecoder, decodeNetstrings, encodeNetstring } from './netstring.js';

const CHUNK_SIZES = [1, 16, 4096] as const;

/** Feeds `input` in chunks of `size`; returns the frames as strings, or the error reason. */
function feed(input: Buffer, size: number, maxLength?: number): { frames: string[]; reason?: string; offset?: number } {
  const decoder = new NetstringDecoder(maxLength === undefined ? {} : { maxLength });
  const frames: string[] = [];
  for (let i = 0; i < input.length; i += size) {
    try {
      for (const f of decoder.push(input.subarray(i, i + size))) frames.push(f.toString('latin1'));
    } catch (err) {
      assert.ok(isMtaStsError(err, 'ERR_MTASTS_NETSTRING'), `coded error expected, got ${String(err)}`);
      const before = (err.details.frames as Buffer[]).map((f) => f.toString('latin1'));
      return { frames: [...frames, ...before], reason: String(err.details.reason), offset: Number(err.details.offset) };
    }
  }
  return { frames };
}

const long = 'x'.repeat(1024);
const valid: ReadonlyArray<{ name: string; input: string; frames: string[]; maxLength?: number }> = [
  { name: 'one frame', input: '19:postfix example.com,', frames: ['postfix example.com'] },
  { name: 'empty payload', input: '0:,', frames: [''] },
  { name: 'leading zero', input: '01:X,', frames: ['X'] },
  { name: 'many leading zeros', input: '0000003:abc,', frames: ['abc'] },
  { name: 'pipelined', input: '1:a,2:bc,3:def,', frames: ['a', 'bc', 'def'] },
  { name: 'payload with colon and comma', input: '5:a:b,c,', frames: ['a:b,c'] },
  { name: 'binary payload', input: '3:\x00\xff\x01,', frames: ['\x00\xff\x01'] },
  { name: 'exactly the limit', input: `1024:${long},`, frames: [long] },
  { name: 'custom larger limit', input: `1025:${long}y,`, frames: [`${long}y`], maxLength: 1025 },
  { name: 'partial trailing frame kept', input: '1:a,5:ab', frames: ['a'] },
  { name: 'nothing', input: '', frames: [] },
];

const invalid: ReadonlyArray<{
  name: string;
  input: string;
  reason: string;
  frames: string[];
  offset: number;
  maxLength?: number;
}> = [
  { name: 'colon first', input: ':a,', reason: 'bad-length', frames: [], offset: 0 },
  { name: 'letter in length', input: '1a:x,', reason: 'bad-length', frames: [], offset: 1 },
  { name: 'sign', input: '-1:x,', reason: 'bad-length', frames: [], offset: 0 },
  { name: 'space before length', input: ' 1:x,', reason: 'bad-length', frames: [], offset: 0 },
  { name: 'newline between frames', input: '1:a,\n1:b,', reason: 'bad-length', frames: ['a'], offset: 4 },
  { name: 'over the default limit', input: `1025:${long}y,`, reason: 'too-long', frames: [], offset: 3 },
  { name: 'huge length digits', input: '99999999999999999999999:', reason: 'too-long', frames: [], offset: 3 },
  { name: 'custom small limit', input: '1:a,11:', reason: 'too-long', frames: ['a'], offset: 5, maxLength: 10 },
  { name: 'missing comma', input: '1:ab', reason: 'bad-terminator', frames: [], offset: 3 },
  { name: 'wrong terminator after frames', input: '1:a,2:bc;', reason: 'bad-terminator', frames: ['a'], offset: 8 },
  { name: 'HTTP request', input: 'GET / HTTP/1.1\r\n', reason: 'bad-length', frames: [], offset: 0 },
];

describe('NetstringDecoder', () => {
  for (const size of CHUNK_SIZES) {
    describe(`in chunks of ${size} bytes`, () => {
      for (const c of valid) {
        it(`decodes: ${c.name}`, () => {
          const r = feed(Buffer.from(c.input, 'latin1'), size, c.maxLength);
          assert.equal(r.reason, undefined);
          assert.deepEqual(r.frames, c.frames);
        });
      }
      for (const c of invalid) {
        it(`rejects: ${c.name} (${c.reason})`, () => {
          const r = feed(Buffer.from(c.input, 'latin1'), size, c.maxLength);
          assert.equal(r.reason, c.reason);
          assert.equal(r.offset, c.offset);
          // Frames completed before the bad byte are still delivered, whatever the chunking.
          assert.deepEqual(r.frames, c.frames);
        });
      }
    });
  }

  it('stays failed after an error', () => {
    const d = new NetstringDecoder();
    assert.throws(() => d.push(Buffer.from('x')), { code: 'ERR_MTASTS_NETSTRING' });
    assert.throws(
      () => d.push(Buffer.from('1:a,')),
      (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTS_NETSTRING'));
        assert.equal(err.details.reason, 'bad-length');
        assert.deepEqual(err.details.frames, []);
        return true;
      },
    );
    assert.ok(d.error);
  });

  it('reports a partial frame', () => {
    const d = new NetstringDecoder();
    assert.equal(d.partial, false);
    d.push(Buffer.from('3:a'));
    assert.equal(d.partial, true);
    d.push(Buffer.from('bc,'));
    assert.equal(d.partial, false);
  });

  it('rejects a bad maxLength', () => {
    assert.throws(() => new NetstringDecoder({ maxLength: -1 }), { code: 'ERR_MTASTS_USAGE' });
    assert.throws(() => new NetstringDecoder({ maxLength: 1.5 }), { code: 'ERR_MTASTS_USAGE' });
  });

  it('decodes 100,000 frames in one buffer in linear time', () => {
    const one = encodeNetstring('postfix example.com');
    const many = Buffer.concat(Array.from({ length: 100_000 }, () => one));
    const frames = decodeNetstrings(many);
    assert.equal(frames.length, 100_000);
    assert.equal(frames[99_999]?.toString(), 'postfix example.com');
  });

  it('decodes a max-size frame split into 1-byte chunks without copying it repeatedly', () => {
    const d = new NetstringDecoder({ maxLength: 100_000 });
    const input = encodeNetstring('y'.repeat(100_000));
    let frames: Buffer[] = [];
    for (let i = 0; i < input.length; i++) frames = frames.concat(d.push(input.subarray(i, i + 1)));
    assert.equal(frames.length, 1);
    assert.equal(frames[0]?.length, 100_000);
  });
});

describe('encodeNetstring', () => {
  const cases: ReadonlyArray<{ payload: string | Buffer; wire: string }> = [
    { payload: 'NOTFOUND ', wire: '9:NOTFOUND ,' },
    { payload: '', wire: '0:,' },
    {
      payload: 'OK secure match=mail.loc servername=hostname',
      wire: '44:OK secure match=mail.loc servername=hostname,',
    },
    { payload: 'bücher', wire: '7:bücher,' },
    { payload: Buffer.from([0, 1, 2]), wire: '3:\x00\x01\x02,' },
  ];
  for (const c of cases) {
    it(`encodes ${JSON.stringify(c.wire)}`, () => {
      assert.equal(encodeNetstring(c.payload).toString('utf8'), c.wire);
    });
  }

  it('round-trips through the decoder', () => {
    const payloads = ['a', '', 'postfix [mx.example.test]:25', 'x'.repeat(1024), 'ü€😀'];
    const wire = Buffer.concat(payloads.map((p) => encodeNetstring(p)));
    assert.deepEqual(
      decodeNetstrings(wire).map((f) => f.toString('utf8')),
      payloads,
    );
  });

  it('decodeNetstrings rejects input that ends mid-frame', () => {
    assert.throws(
      () => decodeNetstrings(Buffer.from('3:ab')),
      (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTS_NETSTRING'));
        assert.equal(err.details.reason, 'bad-terminator');
        return true;
      },
    );
  });
});
