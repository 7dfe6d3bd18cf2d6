/**
 * Netstring framing for the Postfix socketmap protocol (socketmap_table(5)): `<length>:<bytes>,`.
 *
 * Pure: no I/O, timers or logging. The decoder is incremental (feed it whatever the socket read)
 * and linear in the input: payload bytes are copied once into a buffer of the announced length.
 */
import { MtaStsError } from '../errors.js';

/** postfix-mta-sts-resolver's `REQUEST_LIMIT`: the largest request payload we accept, in bytes. */
export const DEFAULT_REQUEST_LIMIT = 1024;

/** socketmap_table(5): Postfix refuses replies longer than this (payload bytes); the decision keeps to it. */
export { POSTFIX_REPLY_LIMIT } from '../decision/decide.js';

/** Why a byte stream is not a valid netstring sequence (`details.reason` of `ERR_MTASTS_NETSTRING`). */
export type NetstringErrorReason = 'bad-length' | 'too-long' | 'bad-terminator';

const COLON = 0x3a;
const COMMA = 0x2c;
const DIGIT_0 = 0x30;
const DIGIT_9 = 0x39;

/** Encodes one netstring: decimal byte length, `:`, the payload, `,`. Strings are encoded as UTF-8. */
export function encodeNetstring(payload: string | Buffer): Buffer {
  const len = typeof payload === 'string' ? Buffer.byteLength(payload, 'utf8') : payload.length;
  const header = `${len}:`;
  const out = Buffer.allocUnsafe(header.length + len + 1);
  out.write(header, 0, 'latin1');
  if (typeof payload === 'string') out.write(payload, header.length, 'utf8');
  else payload.copy(out, header.length);
  out[out.length - 1] = COMMA;
  return out;
}

/** Options of {@link NetstringDecoder}. */
export interface NetstringDecoderOptions {
  /** Largest payload accepted, in bytes. Default {@link DEFAULT_REQUEST_LIMIT} (1024). */
  readonly maxLength?: number;
}

const enum State {
  /** Before the first length digit. */
  Start,
  /** Reading length digits. */
  Length,
  /** Copying payload bytes. */
  Payload,
  /** Expecting the `,`. */
  Terminator,
  /** A framing error happened; the stream cannot be resynchronised. */
  Failed,
}

/**
 * Incremental netstring decoder. `push` returns the payloads completed by a chunk and keeps any
 * partial frame. Leading zeros in the length are accepted (`01:X,` is `X`), as
 * postfix-mta-sts-resolver accepts them.
 *
 * On a framing error `push` throws `ERR_MTASTS_NETSTRING` with `details.reason`
 * (`bad-length`, `too-long`, `bad-terminator`), `details.offset` (stream byte offset of the bad
 * byte) and `details.frames` (the payloads completed earlier in the same chunk, so a server can
 * still answer them). After an error the decoder stays failed: a netstring stream cannot be
 * resynchronised.
 */
export class NetstringDecoder {
  readonly maxLength: number;
  private state: State = State.Start;
  private length = 0;
  private payload: Buffer | null = null;
  private filled = 0;
  private offset = 0;
  private failure: MtaStsError | null = null;

  constructor(options: NetstringDecoderOptions = {}) {
    const max = options.maxLength ?? DEFAULT_REQUEST_LIMIT;
    if (!Number.isSafeInteger(max) || max < 0) {
      throw new MtaStsError('ERR_MTASTS_USAGE', `netstring maxLength must be a non-negative integer, got ${max}`);
    }
    this.maxLength = max;
  }

  /** True while a frame is partly received (the stream ended mid-frame if the peer closes now). */
  get partial(): boolean {
    return this.state !== State.Start && this.state !== State.Failed;
  }

  /** The error that failed this decoder, if any. */
  get error(): MtaStsError | null {
    return this.failure;
  }

  /** Feeds bytes; returns the payloads of the frames they complete, in order. */
  push(chunk: Buffer): Buffer[] {
    if (this.failure !== null) {
      throw new MtaStsError('ERR_MTASTS_NETSTRING', this.failure.message, {
        details: { ...this.failure.details, frames: [] },
      });
    }
    const frames: Buffer[] = [];
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Start:
        case State.Length: {
          const c = chunk[i] as number;
          if (c >= DIGIT_0 && c <= DIGIT_9) {
            this.length = this.length * 10 + (c - DIGIT_0);
            // Checked per digit, so a long run of digits can never overflow or buffer.
            if (this.length > this.maxLength) {
              this.fail('too-long', `netstring length over the limit of ${this.maxLength} bytes`, i, frames);
            }
            this.state = State.Length;
            i++;
          } else if (c === COLON && this.state === State.Length) {
            i++;
            if (this.length === 0) {
              this.state = State.Terminator;
            } else {
              this.payload = Buffer.allocUnsafe(this.length);
              this.filled = 0;
              this.state = State.Payload;
            }
          } else {
            this.fail('bad-length', 'netstring length is not a decimal number followed by ":"', i, frames);
          }
          break;
        }
        case State.Payload: {
          const payload = this.payload as Buffer;
          const take = Math.min(n - i, payload.length - this.filled);
          chunk.copy(payload, this.filled, i, i + take);
          this.filled += take;
          i += take;
          if (this.filled === payload.length) this.state = State.Terminator;
          break;
        }
        case State.Terminator: {
          if (chunk[i] !== COMMA) {
            this.fail('bad-terminator', 'netstring does not end with ","', i, frames);
          }
          i++;
          frames.push(this.payload ?? Buffer.alloc(0));
          this.payload = null;
          this.length = 0;
          this.filled = 0;
          this.state = State.Start;
          break;
        }
        case State.Failed:
          // Unreachable: fail() throws and push() checks the failure first.
          throw new MtaStsError('ERR_MTASTS_INTERNAL', 'netstring decoder used after a failure');
      }
    }
    this.offset += n;
    return frames;
  }

  private fail(reason: NetstringErrorReason, message: string, index: number, frames: Buffer[]): never {
    this.state = State.Failed;
    this.payload = null;
    this.failure = new MtaStsError('ERR_MTASTS_NETSTRING', message, {
      details: { reason, offset: this.offset + index, frames },
    });
    throw this.failure;
  }
}

/**
 * Decodes a complete buffer of netstrings (for tests and tools).
 *
 * @throws MtaStsError `ERR_MTASTS_NETSTRING`, also when the input ends inside a frame (`details.reason` `bad-terminator`).
 */
export function decodeNetstrings(data: Buffer, options: NetstringDecoderOptions = {}): Buffer[] {
  const decoder = new NetstringDecoder(options);
  const frames = decoder.push(data);
  if (decoder.partial) {
    throw new MtaStsError('ERR_MTASTS_NETSTRING', 'input ends inside a netstring', {
      details: { reason: 'bad-terminator', offset: data.length, frames },
    });
  }
  return frames;
}
