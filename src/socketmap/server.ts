/**
 * The socketmap network adapter: accepts connections (TCP or Unix socket), frames netstrings,
 * hands `<name> <key>` requests to a handler, and writes the replies back in request order.
 *
 * Framing is not serving (STYLE.md): this file only moves bytes in order, limits them, and closes
 * gracefully. What to answer is the handler's business.
 */
import { setMaxListeners } from 'node:events';
import { connect, createServer } from 'node:net';
import type { Server, Socket } from 'node:net';
import { chmod, lstat, unlink } from 'node:fs/promises';
import { MtaStsError, isMtaStsError } from '../errors.js';
import type { Logger } from '../logger.js';
import { silentLogger } from '../logger.js';
import type { Metrics } from '../metrics/metrics.js';
import { noopMetrics } from '../metrics/metrics.js';
import { DEFAULT_REQUEST_LIMIT, NetstringDecoder, POSTFIX_REPLY_LIMIT, encodeNetstring } from './netstring.js';
import { NOTFOUND_REPLY, parseRequest } from './protocol.js';

/** Answers one request: returns the reply payload (before framing). Should not reject; if it does, the reply is `TEMP`. */
export type SocketmapHandler = (name: string, key: string, signal: AbortSignal) => Promise<string>;

/** Where to listen. */
export type SocketmapListen =
  | { readonly host: string; readonly port: number }
  /** A Unix socket; `mode` (e.g. `0o666`) is applied with chmod right after listening. */
  | { readonly path: string; readonly mode?: number };

/** Options of {@link startSocketmapServer}. */
export interface SocketmapServerOptions {
  readonly listen: SocketmapListen;
  readonly handler: SocketmapHandler;
  /**
   * Open connections at most. Default 10,000. A connection beyond it closes the quiet connection
   * (no request being answered) that has been quiet longest, or, with none quiet, is closed itself.
   */
  readonly maxConnections?: number;
  /** A connection with no request being answered and no byte received for this long is closed, ms. Default 300,000. */
  readonly idleTimeoutMs?: number;
  /** A request frame must be complete this long after its first byte, or the connection is closed, ms. Default 10,000. */
  readonly frameTimeoutMs?: number;
  /**
   * Requests of one connection being answered at once (postfix-mta-sts-resolver's queue of 128).
   * When reached, the server stops reading from that connection until replies go out.
   */
  readonly maxInFlightPerConnection?: number;
  /** Largest request payload in bytes (postfix-mta-sts-resolver: 1024). */
  readonly requestLimit?: number;
  /**
   * SO_REUSEPORT, so several daemons share the port. Needs Node ≥ 22.12 (`reusePort` in
   * `server.listen`); on older Node it is ignored with a log line.
   */
  readonly reusePort?: boolean;
  /** Reply to a well-framed request that is not `<name> <key>` in UTF-8. Default `NOTFOUND `. */
  readonly badRequestReply?: string;
  readonly logger?: Logger;
  readonly metrics?: Metrics;
}

/** A running socketmap server. */
export interface SocketmapServer {
  /** The bound address: `{ host, port }` for TCP (the real port when 0 was asked), `{ path }` for a Unix socket. */
  readonly address: { readonly host: string; readonly port: number } | { readonly path: string };
  /** Open connections. */
  connectionCount(): number;
  /**
   * Stops accepting, lets requests already received be answered, then ends each connection.
   * After `graceMs` the remaining connections are destroyed and their work aborted. Idempotent.
   */
  close(graceMs?: number): Promise<void>;
}

const DEFAULT_MAX_CONNECTIONS = 10_000;
/** Postfix reopens a socketmap connection on demand; one quiet for 5 minutes only holds a slot. */
const DEFAULT_IDLE_TIMEOUT_MS = 300_000;
/** A request is at most a few hundred bytes: 10 s for one is already a very slow client. */
const DEFAULT_FRAME_TIMEOUT_MS = 10_000;
/** postfix-mta-sts-resolver `QUEUE_LIMIT`. */
const DEFAULT_MAX_IN_FLIGHT = 128;
/** After we end a connection, how long the peer has to close its side before we destroy it. */
const END_LINGER_MS = 5_000;

/** True when this Node's `server.listen` knows `reusePort` (added in 22.12.0 and 23.1.0). */
export function reusePortSupported(version: string = process.versions.node): boolean {
  const [major = 0, minor = 0] = version.split('.').map(Number);
  return major > 23 || (major === 23 && minor >= 1) || (major === 22 && minor >= 12);
}

interface Entry {
  reply: string | null;
}

/** One client connection: decoding, in-order replies, backpressure. */
class Connection {
  private readonly decoder: NetstringDecoder;
  private frameTimer: NodeJS.Timeout | undefined;
  private readonly abort = new AbortController();
  /** Requests started and not yet written, in request order. */
  private readonly queue: Entry[] = [];
  private queueHead = 0;
  /** Frames decoded but not yet started (a read can hold more than the in-flight limit). */
  private readonly backlog: Buffer[] = [];
  private backlogHead = 0;
  private paused = false;
  private writeBlocked = false;
  private readEnded = false;
  private failed = false;
  private draining = false;
  private ended = false;
  private closed = false;
  private pumping = false;
  private pumpScheduled = false;

  constructor(
    readonly socket: Socket,
    private readonly server: ServerState,
  ) {
    this.decoder = new NetstringDecoder({ maxLength: server.requestLimit });
    // Each request in flight may listen on this signal; the in-flight limit bounds them, not 10.
    setMaxListeners(0, this.abort.signal);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.onEnd());
    socket.on('drain', () => {
      this.writeBlocked = false;
      this.pump();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      server.logger.debug({ err: { code: err.code, message: err.message } }, 'socketmap connection error');
    });
    socket.on('close', () => this.onClose());
    // Node restarts this on every read and write: it fires after idleTimeoutMs of silence. With
    // a request still being answered the connection is not idle: the timer is armed again.
    socket.setTimeout(server.idleTimeoutMs);
    socket.on('timeout', () => {
      if (this.pending() === 0) this.closeFor('idle');
      else socket.setTimeout(server.idleTimeoutMs);
    });
    server.quiet.add(this);
  }

  /** Closes the connection now, counted by `reason`; its work is aborted. */
  closeFor(reason: ConnectionCloseReason): void {
    if (this.closed) return;
    this.server.metrics.connectionClosed?.(reason);
    this.server.logger.debug({ reason, remote: this.socket.remoteAddress }, 'socketmap connection closed');
    this.socket.destroy();
  }

  /** Tracks whether a request is being answered (quiet connections may be closed to make room). */
  private markQuiet(): void {
    const quiet = this.pending() === 0;
    // Re-added at the end: the set is ordered by when each connection last became quiet.
    this.server.quiet.delete(this);
    if (quiet && !this.closed) this.server.quiet.add(this);
  }

  private frameExpired(): void {
    // While we do not read (backpressure), the rest of the frame may be waiting on our side.
    if (this.paused) this.frameTimer = setTimeout(() => this.frameExpired(), this.server.frameTimeoutMs);
    else this.closeFor('frame_timeout');
  }

  /** A frame has started and not finished: it must finish within frameTimeoutMs of its first byte. */
  private watchFrame(): void {
    if (this.decoder.partial && !this.failed && !this.draining) {
      this.frameTimer ??= setTimeout(() => this.frameExpired(), this.server.frameTimeoutMs);
    } else if (this.frameTimer !== undefined) {
      clearTimeout(this.frameTimer);
      this.frameTimer = undefined;
    }
  }

  private pending(): number {
    return this.queue.length - this.queueHead + (this.backlog.length - this.backlogHead);
  }

  private onData(chunk: Buffer): void {
    if (this.failed || this.draining) return;
    let frames: Buffer[];
    try {
      frames = this.decoder.push(chunk);
    } catch (err) {
      if (!isMtaStsError(err, 'ERR_MTASTS_NETSTRING')) throw err;
      // postfix-mta-sts-resolver: a bad frame gets a warning and the connection closes without a
      // reply to it. Requests framed before it are still answered.
      this.server.logger.warn(
        { reason: err.details.reason, offset: err.details.offset, remote: this.socket.remoteAddress },
        'bad netstring from socketmap client; closing the connection',
      );
      frames = (err.details.frames as Buffer[] | undefined) ?? [];
      this.failed = true;
    }
    for (const f of frames) this.backlog.push(f);
    this.watchFrame();
    this.pump();
  }

  /**
   * The client sent FIN. It may have half-closed (sent its requests, still reading: a debugging
   * `nc`, or postfix-mta-sts-resolver's own behaviour) or closed fully; TCP cannot tell them apart
   * without writing. Like postfix-mta-sts-resolver we answer what was received (the handler's
   * own timeouts bound that work) and then end. A reset or error closes at once and aborts.
   */
  private onEnd(): void {
    this.readEnded = true;
    if (this.decoder.partial) this.server.logger.debug({}, 'socketmap client closed inside a frame');
    this.pump();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.frameTimer);
    this.server.quiet.delete(this);
    // An early disconnect cancels the work of this connection only.
    this.abort.abort(new MtaStsError('ERR_MTASTS_ABORTED', 'socketmap client disconnected'));
    this.queue.length = 0;
    this.backlog.length = 0;
    this.server.connections.delete(this);
    this.server.metrics.connections(-1);
    this.server.onConnectionClosed();
  }

  /** Stop reading; answer what was received; then end. */
  drain(): void {
    this.draining = true;
    this.pump();
  }

  destroy(): void {
    this.socket.destroy();
  }

  /** Starts backlog requests up to the in-flight limit, writes finished replies, adjusts reading. */
  private pump(): void {
    if (this.closed || this.pumping) return;
    this.pumping = true;
    try {
      const max = this.server.maxInFlight;
      for (;;) {
        // While the socket does not drain, start nothing new: buffered replies stay bounded by
        // the in-flight limit times the reply limit.
        while (
          !this.writeBlocked &&
          this.backlogHead < this.backlog.length &&
          this.queue.length - this.queueHead < max
        ) {
          const frame = this.backlog[this.backlogHead] as Buffer;
          this.backlog[this.backlogHead++] = EMPTY;
          this.start(frame);
        }
        if (this.backlogHead === this.backlog.length) {
          this.backlog.length = 0;
          this.backlogHead = 0;
        }
        const wrote = this.flush();
        if (!wrote || this.backlogHead === this.backlog.length || this.writeBlocked) break;
      }
      this.updateReading();
      this.markQuiet();
      if ((this.readEnded || this.failed || this.draining) && this.pending() === 0 && !this.ended) {
        this.ended = true;
        this.socket.end();
        // The client should close its side now; do not wait for it forever.
        setTimeout(() => this.socket.destroy(), END_LINGER_MS).unref();
      }
    } finally {
      this.pumping = false;
    }
  }

  private start(frame: Buffer): void {
    const entry: Entry = { reply: null };
    this.queue.push(entry);
    let name: string;
    let key: string;
    try {
      ({ name, key } = parseRequest(frame));
    } catch (err) {
      this.server.logger.warn(
        { err: isMtaStsError(err) ? { code: err.code, message: err.message } : String(err) },
        'bad socketmap request',
      );
      entry.reply = this.server.badRequestReply;
      return;
    }
    let result: Promise<string>;
    try {
      result = this.server.handler(name, key, this.abort.signal);
    } catch (err) {
      result = Promise.reject(err);
    }
    result.then(
      (reply) => this.finish(entry, reply),
      (err: unknown) => {
        if (!this.abort.signal.aborted) {
          this.server.logger.error({ err, name, key }, 'socketmap handler failed');
        }
        this.finish(entry, 'TEMP internal error');
      },
    );
  }

  private finish(entry: Entry, reply: string): void {
    if (this.closed) return;
    if (typeof reply !== 'string' || Buffer.byteLength(reply) > POSTFIX_REPLY_LIMIT) {
      this.server.logger.error({ length: String(reply).length }, 'socketmap reply invalid or over 100,000 bytes');
      reply = 'TEMP reply too long';
    }
    entry.reply = reply;
    if (this.queue[this.queueHead] !== entry) return;
    // One request outstanding and nothing read behind it (how Postfix uses a connection): there is
    // nothing to write together with this reply, so it goes out now rather than a loop turn later.
    if (this.queue.length - this.queueHead === 1 && this.backlogHead === this.backlog.length && !this.pumpScheduled) {
      this.pump();
      return;
    }
    this.schedulePump();
  }

  /**
   * Writes once per event-loop turn: the replies that finished in this turn go out corked as one
   * write (pipelined requests answered from the cache finish together), instead of a syscall each.
   */
  private schedulePump(): void {
    if (this.pumpScheduled) return;
    this.pumpScheduled = true;
    setImmediate(() => {
      this.pumpScheduled = false;
      this.pump();
    });
  }

  /** Writes the finished replies at the head of the queue, in order. True when something was written. */
  private flush(): boolean {
    let wrote = false;
    let corked = false;
    while (this.queueHead < this.queue.length) {
      const head = this.queue[this.queueHead] as Entry;
      if (head.reply === null) break;
      if (!corked && this.queueHead + 1 < this.queue.length) {
        this.socket.cork();
        corked = true;
      }
      this.queue[this.queueHead++] = DONE;
      if (!this.socket.write(encodeNetstring(head.reply))) this.writeBlocked = true;
      wrote = true;
    }
    if (corked) this.socket.uncork();
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    } else if (this.queueHead > 1024) {
      this.queue.splice(0, this.queueHead);
      this.queueHead = 0;
    }
    return wrote;
  }

  /** Backpressure: read only while we can take more requests and the socket drains our replies. */
  private updateReading(): void {
    const stop =
      this.failed ||
      this.draining ||
      this.writeBlocked ||
      this.backlogHead < this.backlog.length ||
      this.queue.length - this.queueHead >= this.server.maxInFlight;
    if (stop && !this.paused) {
      this.paused = true;
      this.socket.pause();
    } else if (!stop && this.paused) {
      this.paused = false;
      this.socket.resume();
    }
  }
}

const EMPTY = Buffer.alloc(0);
const DONE: Entry = { reply: '' };

/** Why the server closed a connection (the metric's `reason`). */
export type ConnectionCloseReason = 'idle' | 'frame_timeout' | 'evicted' | 'limit';

interface ServerState {
  readonly handler: SocketmapHandler;
  readonly idleTimeoutMs: number;
  readonly frameTimeoutMs: number;
  /** Connections with no request being answered, the longest quiet first. */
  readonly quiet: Set<Connection>;
  readonly maxInFlight: number;
  readonly requestLimit: number;
  readonly badRequestReply: string;
  readonly logger: Logger;
  readonly metrics: Metrics;
  readonly connections: Set<Connection>;
  onConnectionClosed(): void;
}

function positiveInt(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 1) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `${name} must be a positive integer, got ${value}`);
  }
  return value;
}

/**
 * Removes a stale Unix socket file left by a daemon that died, so `listen` can bind. Refuses to
 * remove anything that is not a socket, or a socket a live server still answers on.
 */
async function removeStaleSocket(path: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = (await lstat(path)).isSocket();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  if (!isSocket) {
    throw new MtaStsError('ERR_MTASTS_CONFIG', `socket path ${path} exists and is not a socket`, {
      details: { key: 'path' },
    });
  }
  const alive = await new Promise<boolean>((resolve) => {
    const probe = connect(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
  if (alive) {
    throw new MtaStsError('ERR_MTASTS_CONFIG', `socket path ${path} is in use by a running server`, {
      details: { key: 'path' },
    });
  }
  await unlink(path);
}

function listen(server: Server, options: Parameters<Server['listen']>[0]): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (err: Error): void => reject(err);
    server.once('error', onError);
    server.listen(options, () => {
      server.off('error', onError);
      resolve();
    });
  });
}

/**
 * Starts a socketmap server: persistent connections; pipelined requests processed concurrently
 * and answered strictly in request order; backpressure (a connection is not read while it has
 * `maxInFlightPerConnection` requests open or its socket buffer is full); a malformed frame closes
 * that connection without a reply (earlier requests are still answered); a client that disconnects
 * aborts its in-flight work through the handler's `AbortSignal`.
 */
export async function startSocketmapServer(options: SocketmapServerOptions): Promise<SocketmapServer> {
  const logger = options.logger ?? silentLogger;
  const metrics = options.metrics ?? noopMetrics;
  const maxConnections = positiveInt('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  let closeWaiters: Array<() => void> = [];
  const state: ServerState = {
    handler: options.handler,
    idleTimeoutMs: positiveInt('idleTimeoutMs', options.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS),
    frameTimeoutMs: positiveInt('frameTimeoutMs', options.frameTimeoutMs ?? DEFAULT_FRAME_TIMEOUT_MS),
    quiet: new Set(),
    maxInFlight: positiveInt('maxInFlightPerConnection', options.maxInFlightPerConnection ?? DEFAULT_MAX_IN_FLIGHT),
    requestLimit: positiveInt('requestLimit', options.requestLimit ?? DEFAULT_REQUEST_LIMIT),
    badRequestReply: options.badRequestReply ?? NOTFOUND_REPLY,
    logger,
    metrics,
    connections: new Set(),
    onConnectionClosed() {
      if (state.connections.size === 0) {
        const waiters = closeWaiters;
        closeWaiters = [];
        for (const w of waiters) w();
      }
    },
  };

  let refused = 0;
  let evicted = 0;
  const server = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    if (state.connections.size >= maxConnections) {
      // At the limit, the connection quiet longest makes room: idle or stalled connections (a
      // flood holding partial frames) must not lock Postfix out. With every connection busy, the
      // new one is refused.
      const oldest = state.quiet.values().next();
      if (oldest.done === true) {
        refused++;
        metrics.connectionClosed?.('limit');
        socket.destroy();
        // The first and then one in a thousand: a flood must not flood the log too.
        if (refused === 1 || refused % 1000 === 0) {
          logger.warn({ maxConnections, refused, remote: socket.remoteAddress }, 'socketmap connection limit reached');
        }
        return;
      }
      evicted++;
      if (evicted === 1 || evicted % 1000 === 0) {
        logger.warn(
          { maxConnections, evicted },
          'socketmap connection limit reached; closing the connection quiet longest',
        );
      }
      oldest.value.closeFor('evicted');
    }
    state.connections.add(new Connection(socket, state));
    metrics.connections(1);
  });

  const { listen: where } = options;
  let address: SocketmapServer['address'];
  if ('path' in where) {
    await removeStaleSocket(where.path);
    await listen(server, { path: where.path });
    // chmod right after listen: Node has no way to create the socket with a mode.
    if (where.mode !== undefined) await chmod(where.path, where.mode);
    address = { path: where.path };
  } else {
    const listenOptions: { host: string; port: number; reusePort?: boolean } = { host: where.host, port: where.port };
    if (options.reusePort) {
      if (reusePortSupported()) listenOptions.reusePort = true;
      else logger.info({ node: process.versions.node }, 'reuse_port needs Node >= 22.12; ignored');
    }
    await listen(server, listenOptions);
    const a = server.address();
    if (a === null || typeof a === 'string')
      throw new MtaStsError('ERR_MTASTS_INTERNAL', 'no TCP address after listen');
    address = { host: a.address, port: a.port };
  }
  // Only once listening: a failed listen is the caller's error to report, not a log line with a stack.
  server.on('error', (err) => logger.error({ err }, 'socketmap server error'));
  logger.info({ address }, 'socketmap server listening');

  let closing: Promise<void> | null = null;
  return {
    address,
    connectionCount: () => state.connections.size,
    close(graceMs = 20_000) {
      closing ??= (async () => {
        const serverClosed = new Promise<void>((resolve) => server.close(() => resolve()));
        for (const c of state.connections) c.drain();
        if (state.connections.size > 0) {
          const allClosed = new Promise<void>((resolve) => closeWaiters.push(resolve));
          let timer: NodeJS.Timeout | undefined;
          const timedOut = new Promise<void>((resolve) => {
            timer = setTimeout(resolve, graceMs);
          });
          await Promise.race([allClosed, timedOut]);
          clearTimeout(timer);
          if (state.connections.size > 0) {
            logger.warn({ connections: state.connections.size }, 'shutdown grace expired; closing connections');
            const destroyed = new Promise<void>((resolve) => closeWaiters.push(resolve));
            for (const c of state.connections) c.destroy();
            await destroyed;
          }
        }
        await serverClosed;
        logger.info({}, 'socketmap server closed');
      })();
      return closing;
    },
  };
}
