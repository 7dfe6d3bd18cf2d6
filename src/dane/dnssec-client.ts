/**
 * A DNSSEC-aware stub client: it asks one validating resolver and reports the answer's rcode and
 * AD bit, which node:dns (c-ares) does not expose. dns-packet does the wire format; this file only
 * moves messages over node:dgram and node:net and decides which reply belongs to which query.
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { randomInt } from 'node:crypto';
import * as packet from 'dns-packet';
import { MtaStsError } from '../errors.js';
import { DANE_QUERY_TIMEOUT_MS, EDNS_UDP_PAYLOAD_BYTES, TCP_MESSAGE_MAX_BYTES } from './tunables.js';

/** The part of a reply that DANE discovery reads. */
export interface DnssecAnswer {
  /** The reply's rcode as dns-packet names it: `NOERROR`, `NXDOMAIN`, `SERVFAIL`, … (`RCODE_<n>` when unnamed). */
  readonly rcode: string;
  /** The AD bit: the resolver validated the answer and the authority sections (RFC 4035 §3.2.3). */
  readonly ad: boolean;
  readonly answers: readonly packet.Answer[];
  readonly authorities: readonly packet.Answer[];
}

/** The record types DANE discovery and the resolver probe ask for. */
export type DnssecQueryType = 'MX' | 'A' | 'AAAA' | 'TLSA' | 'CNAME' | 'SOA' | 'DS' | 'NS' | 'TXT';

/** Sends one question to the validating resolver. */
export interface DnssecClient {
  /**
   * Resolves with the reply whatever its rcode (a SERVFAIL is an answer, not an error).
   *
   * @throws MtaStsError `ERR_DANE_DNS` with `details.reason` `timeout` (no matching reply within the
   *   deadline), `network` (a socket error, a refused or reset TCP connection) or `malformed` (a TCP
   *   reply that does not decode or does not answer the question); `ERR_MTASTS_ABORTED` with
   *   `details.reason` `aborted` when `signal` aborts.
   */
  query(name: string, type: DnssecQueryType, signal?: AbortSignal): Promise<DnssecAnswer>;
}

/** Where and how long to ask. */
export interface DnssecClientOptions {
  /** The validating resolver as `host:port`, an IPv6 address as `[addr]:port`; host is an IP address. */
  readonly server: string;
  /** Bound of one query including its TCP retry, milliseconds (default 2000). */
  readonly timeoutMs?: number;
}

/** Why a query failed, in `details.reason`. */
export type DnssecFailureReason = 'timeout' | 'aborted' | 'network' | 'malformed';

interface Server {
  readonly host: string;
  readonly port: number;
  readonly family: 4 | 6;
}

/** Parses `host:port` or `[v6]:port`; `ERR_MTASTS_USAGE` for anything else. */
function parseServer(server: string): Server {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(server) ?? /^([^:[\]]+):(\d+)$/.exec(server);
  const host = m?.[1] ?? '';
  const port = Number(m?.[2]);
  const family = net.isIP(host);
  // A zone index (`fe80::1%eth0`) is refused: replies are matched on the address text.
  const bad = m === null || (family !== 4 && family !== 6) || host.includes('%');
  if (bad || !Number.isInteger(port) || port < 1 || port > 65_535) {
    throw new MtaStsError(
      'ERR_MTASTS_USAGE',
      `DNSSEC resolver must be an IP address and port ("127.0.0.1:53", "[::1]:53"), got ${JSON.stringify(server)}`,
    );
  }
  // The reply's source address is compared with this text: use Node's canonical form of IPv6.
  const canonical = new net.SocketAddress({ address: host, family: family === 6 ? 'ipv6' : 'ipv4' }).address;
  return { host: canonical, port, family };
}

function failure(
  reason: DnssecFailureReason,
  name: string,
  type: string,
  detail: string,
  cause?: unknown,
): MtaStsError {
  const code = reason === 'aborted' ? 'ERR_MTASTS_ABORTED' : 'ERR_DANE_DNS';
  return new MtaStsError(code, `${detail} at ${name} ${type}`, { cause, details: { reason } });
}

function newQuery(name: string, type: DnssecQueryType): packet.Packet {
  return {
    type: 'query',
    id: randomInt(0, 65_536),
    // RFC 6840 §5.7: set AD in the query to ask for the AD bit without requiring DNSSEC records.
    flags: packet.RECURSION_DESIRED | packet.AUTHENTIC_DATA,
    questions: [{ name, type, class: 'IN' }],
    // RFC 6891 EDNS0 with the DO bit (RFC 3225): a validating resolver sets AD only for DO or AD queries.
    additionals: [
      {
        type: 'OPT',
        name: '.',
        udpPayloadSize: EDNS_UDP_PAYLOAD_BYTES,
        extendedRcode: 0,
        ednsVersion: 0,
        flags: packet.DNSSEC_OK,
        flag_do: true,
        options: [],
      },
    ],
  };
}

/** A decoded reply, or null when it is not the reply to `query` (RFC 5452 §9.1: id and question). */
function matching(query: packet.Packet, msg: Buffer): packet.DecodedPacket | null {
  let reply: packet.DecodedPacket;
  try {
    reply = packet.decode(msg);
  } catch {
    return null;
  }
  const q = query.questions?.[0];
  const r = reply.questions?.[0];
  if (reply.type !== 'response' || reply.id !== query.id || q === undefined || r === undefined) return null;
  if ((reply.questions?.length ?? 0) !== 1 || r.type !== q.type || (r.class ?? 'IN') !== 'IN') return null;
  const bare = (n: string): string => n.toLowerCase().replace(/\.$/, '');
  return bare(r.name) === bare(q.name) ? reply : null;
}

function toAnswer(reply: packet.DecodedPacket): DnssecAnswer {
  return {
    // dns-packet decodes the rcode name; its type declarations omit the field.
    rcode: (reply as packet.DecodedPacket & { readonly rcode?: string }).rcode ?? `RCODE_${(reply.flags ?? 0) & 0xf}`,
    ad: reply.flag_ad,
    answers: reply.answers ?? [],
    authorities: reply.authorities ?? [],
  };
}

/**
 * A {@link DnssecClient} for one validating resolver.
 *
 * Each query goes out on a fresh UDP socket: the operating system picks a new random source port
 * every time (RFC 5452 §4: port and id together make a blind spoof hard), a late reply to an
 * earlier query reaches a closed socket, and no demultiplexing state is shared between queries.
 * Binding a socket costs tens of microseconds on loopback, far below the round trip; DANE lookups
 * are cached, so there are few of them.
 *
 * A UDP reply counts only when it comes from the resolver's address and port and carries the
 * query's id and question (name case-insensitively, type, class IN); anything else is dropped and
 * the query keeps waiting until its deadline. A truncated reply (TC=1) is asked again over TCP
 * within the same deadline. The socket or connection is closed on every path.
 *
 * @throws MtaStsError `ERR_MTASTS_USAGE` when `server` or `timeoutMs` is invalid.
 */
export function createDnssecClient(options: DnssecClientOptions): DnssecClient {
  const server = parseServer(options.server);
  const timeoutMs = options.timeoutMs ?? DANE_QUERY_TIMEOUT_MS;
  if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
    throw new MtaStsError('ERR_MTASTS_USAGE', `DNSSEC timeoutMs must be a positive number, got ${String(timeoutMs)}`);
  }

  return {
    query(name, type, signal) {
      if (signal?.aborted) return Promise.reject(failure('aborted', name, type, 'aborted', signal.reason));
      return new Promise<DnssecAnswer>((resolve, reject) => {
        let settled = false;
        let close = (): void => {};
        const finish = (err: MtaStsError | null, answer?: DnssecAnswer): void => {
          if (settled) return;
          settled = true;
          clearTimeout(timer);
          signal?.removeEventListener('abort', onAbort);
          close();
          if (err !== null) reject(err);
          else resolve(answer as DnssecAnswer);
        };
        const onAbort = (): void => finish(failure('aborted', name, type, 'aborted', signal?.reason));
        const timer = setTimeout(() => finish(failure('timeout', name, type, 'timeout')), timeoutMs);
        signal?.addEventListener('abort', onAbort, { once: true });

        const overTcp = (): void => {
          const query = newQuery(name, type);
          const socket = net.connect({ host: server.host, port: server.port, family: server.family });
          close = () => socket.destroy();
          let buf = Buffer.alloc(0);
          socket.on('connect', () => socket.write(packet.streamEncode(query)));
          socket.on('error', (err) => finish(failure('network', name, type, `TCP ${err.message}`, err)));
          socket.on('close', () => finish(failure('network', name, type, 'TCP connection closed before the reply')));
          socket.on('data', (data) => {
            buf = Buffer.concat([buf, data]);
            if (buf.length < 2) return;
            const length = buf.readUInt16BE(0);
            if (buf.length < 2 + length) return;
            const reply = length <= TCP_MESSAGE_MAX_BYTES ? matching(query, buf.subarray(2, 2 + length)) : null;
            // Over TCP nobody else can inject a reply: one that does not fit the query is an error.
            if (reply === null) finish(failure('malformed', name, type, 'TCP reply does not answer the query'));
            else finish(null, toAnswer(reply));
          });
        };

        const query = newQuery(name, type);
        const udp = dgram.createSocket(server.family === 6 ? 'udp6' : 'udp4');
        close = () => udp.close();
        udp.on('error', (err) => finish(failure('network', name, type, `UDP ${err.message}`, err)));
        udp.on('message', (msg, rinfo) => {
          if (settled || rinfo.address !== server.host || rinfo.port !== server.port) return;
          const reply = matching(query, msg);
          if (reply === null) return;
          if (!reply.flag_tc) {
            finish(null, toAnswer(reply));
            return;
          }
          udp.close();
          overTcp();
        });
        udp.send(packet.encode(query), server.port, server.host, (err) => {
          if (err) finish(failure('network', name, type, `UDP send ${err.message}`, err));
        });
      });
    },
  };
}
