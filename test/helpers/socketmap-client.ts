import { connect } from 'node:net';
import type { Socket } from 'node:net';
import { NetstringDecoder, encodeNetstring } from '../../src/socketmap/netstring.js';

/** Where a socketmap server listens. */
export type SocketmapTarget = { host: string; port: number } | { path: string };

/**
 * A minimal pipelining socketmap client for tests and the load generator: replies are matched to
 * requests in order, as Postfix does.
 */
export class SocketmapClient {
  private readonly decoder = new NetstringDecoder({ maxLength: 200_000 });
  private readonly waiting: Array<{ resolve: (s: string) => void; reject: (e: Error) => void }> = [];
  private waitingHead = 0;
  /** Every reply received, in order (also the ones nobody waited for). */
  readonly replies: string[] = [];
  /** Resolves when the server closes the connection. */
  readonly closed: Promise<void>;
  private closedFlag = false;
  keepReplies = true;

  private constructor(readonly socket: Socket) {
    socket.on('data', (chunk: Buffer) => {
      for (const f of this.decoder.push(chunk)) {
        const s = f.toString('utf8');
        if (this.keepReplies) this.replies.push(s);
        const w = this.waiting[this.waitingHead];
        if (w) {
          this.waiting[this.waitingHead++] = undefined as never;
          if (this.waitingHead > 4096) {
            this.waiting.splice(0, this.waitingHead);
            this.waitingHead = 0;
          }
          w.resolve(s);
        }
      }
    });
    socket.on('error', () => {});
    this.closed = new Promise((resolve) =>
      socket.on('close', () => {
        this.closedFlag = true;
        const err = new Error('connection closed');
        for (let i = this.waitingHead; i < this.waiting.length; i++) this.waiting[i]?.reject(err);
        this.waiting.length = 0;
        this.waitingHead = 0;
        resolve();
      }),
    );
  }

  static open(target: SocketmapTarget): Promise<SocketmapClient> {
    return new Promise((resolve, reject) => {
      const socket = 'path' in target ? connect(target.path) : connect(target.port, target.host);
      socket.setNoDelay(true);
      socket.once('error', reject);
      socket.once('connect', () => {
        socket.off('error', reject);
        resolve(new SocketmapClient(socket));
      });
    });
  }

  get isClosed(): boolean {
    return this.closedFlag;
  }

  /** Sends one request `<name> <key>` and resolves with the reply payload. */
  query(name: string, key: string): Promise<string> {
    return this.request(`${name} ${key}`);
  }

  /** Sends a raw payload (framed) and resolves with the reply payload. */
  request(payload: string | Buffer): Promise<string> {
    const p = this.expect();
    this.socket.write(encodeNetstring(payload));
    return p;
  }

  /** Registers interest in the next reply without sending anything (for raw writes). */
  expect(): Promise<string> {
    return new Promise((resolve, reject) => {
      if (this.closedFlag) reject(new Error('connection closed'));
      else this.waiting.push({ resolve, reject });
    });
  }

  /** Writes raw bytes in chunks of `size`, each its own write (and, with `delayMs`, its own packet). */
  async writeChunked(data: Buffer, size: number, delayMs = 0): Promise<void> {
    for (let i = 0; i < data.length; i += size) {
      const ok = this.socket.write(data.subarray(i, i + size));
      if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
      else if (!ok) await new Promise((r) => this.socket.once('drain', r));
    }
  }

  close(): void {
    this.socket.end();
  }

  destroy(): void {
    this.socket.destroy();
  }
}
