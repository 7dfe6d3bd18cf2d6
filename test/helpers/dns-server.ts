/**
 * A loopback DNS server for tests (dns-packet over node:dgram and node:net).
 *
 * It listens on 127.0.0.1 on a random port (or the given address and port: 53 on the host side of a
 * network namespace, for a daemon that uses the system resolver), UDP and TCP on the same port: a UDP answer larger
 * than 512 octets is sent with TC=1 and no records, so the client retries over TCP (as c-ares
 * does). The zone is an in-process table changed per test; every query is counted per name.
 *
 * ```ts
 * const dns = await startDnsServer();
 * dns.txt('_mta-sts.example.test', ['v=STSv1; id=1;']);
 * dns.a('mta-sts.example.test', '127.0.0.1');
 * const resolver = createNodeResolver({ servers: [dns.address] });
 * ```
 */
import dgram from 'node:dgram';
import net from 'node:net';
import { once } from 'node:events';
import * as packet from 'dns-packet';

/** One TXT record: a string (split into 255-octet character-strings) or explicit character-strings. */
export type TxtRecord = string | Buffer | readonly (string | Buffer)[];

/** An error answer (the rcode) or a special behaviour for a name, whatever the query type. */
export type Failure = 'NXDOMAIN' | 'SERVFAIL' | 'REFUSED' | 'FORMERR' | 'NOTIMP' | 'drop';

interface Node {
  txt?: Buffer[][];
  a?: string[];
  aaaa?: string[];
  cname?: { target: string; only: boolean };
  failure?: Failure;
  /** Answer with records owned by this other name (c-ares does not check owner names). */
  owner?: string;
  delayMs?: number;
}

/** A query the server received. */
export interface QueryLogEntry {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
}

/** The running server and its zone. */
export interface DnsServer {
  /** `<host>:<port>`, for `createNodeResolver({ servers: [dns.address] })`. */
  readonly address: string;
  readonly port: number;
  /** Sets the TXT records of `name` (replacing earlier ones). */
  txt(name: string, records: readonly TxtRecord[]): this;
  /** Sets the A records of `name`. */
  a(name: string, ...addresses: string[]): this;
  /** Sets the AAAA records of `name`. */
  aaaa(name: string, ...addresses: string[]): this;
  /**
   * Makes `name` a CNAME to `target`. By default the answer also carries the target's records,
   * following the chain for up to `chaseLimit` hops like a recursive resolver; with `only` the
   * answer holds just the CNAME record.
   */
  cname(name: string, target: string, options?: { only?: boolean }): this;
  /** Answers every query for `name` with an error rcode, or never (`drop`). */
  fail(name: string, failure: Failure): this;
  nxdomain(name: string): this;
  servfail(name: string): this;
  refused(name: string): this;
  drop(name: string): this;
  /** `name` exists (NOERROR) but has no records of any type: NODATA. */
  nodata(name: string): this;
  /** Answers queries for `name` with records whose owner name is `owner`. */
  wrongOwner(name: string, owner: string): this;
  /** Delays every answer for `name`. */
  delay(name: string, ms: number): this;
  /** Forgets everything about `name`. */
  remove(name: string): this;
  /** Forgets the whole zone and the query counts. */
  reset(): void;
  /**
   * Publishes an MTA-STS domain: TXT `_mta-sts.<domain>` = `v=STSv1; id=<id>;` and the policy
   * host `mta-sts.<domain>` A → 127.0.0.1 (or `address`).
   */
  mtaSts(domain: string, options?: { id?: string; address?: string; record?: TxtRecord }): this;
  /** Queries received for `name` (any type unless `type` is given). */
  queries(name: string, type?: string): number;
  /** Every query received, in order. */
  readonly log: readonly QueryLogEntry[];
  /** How many CNAME hops an answer follows before it stops (default 16). */
  chaseLimit: number;
  close(): Promise<void>;
}

const RCODE: Record<Exclude<Failure, 'drop'>, number> = {
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
};
const UDP_LIMIT = 512;

function key(name: string): string {
  return name.toLowerCase().replace(/\.$/, '');
}

function chunks(record: TxtRecord): Buffer[] {
  if (Array.isArray(record)) return (record as readonly (string | Buffer)[]).map((s) => Buffer.from(s));
  const all = Buffer.from(record as string | Buffer);
  const out: Buffer[] = [];
  for (let i = 0; i < all.length; i += 255) out.push(all.subarray(i, i + 255));
  return out.length === 0 ? [Buffer.alloc(0)] : out;
}

/** Where the server listens: default 127.0.0.1 and a random port (UDP + TCP on the same number). */
export interface DnsServerOptions {
  readonly host?: string;
  /** A fixed port (e.g. 53); 0 or absent picks a free one. */
  readonly port?: number;
}

/** Starts a DNS server (default 127.0.0.1, random port, UDP + TCP). */
export async function startDnsServer(options: DnsServerOptions = {}): Promise<DnsServer> {
  const host = options.host ?? '127.0.0.1';
  const zone = new Map<string, Node>();
  const counts = new Map<string, number>();
  const log: QueryLogEntry[] = [];
  const sockets = new Set<net.Socket>();
  const timers = new Set<NodeJS.Timeout>();

  const node = (name: string): Node => {
    const k = key(name);
    let n = zone.get(k);
    if (n === undefined) zone.set(k, (n = {}));
    return n;
  };

  function answer(query: packet.DecodedPacket, transport: 'udp' | 'tcp'): Buffer | null {
    const q = query.questions?.[0];
    const base = {
      type: 'response' as const,
      id: query.id ?? 0,
      questions: query.questions ?? [],
    };
    const flags = packet.RECURSION_DESIRED | packet.RECURSION_AVAILABLE | packet.AUTHORITATIVE_ANSWER;
    if (q === undefined) return packet.encode({ ...base, flags: flags | RCODE.FORMERR });
    const qname = key(q.name);
    log.push({ name: qname, type: q.type, transport });
    counts.set(qname, (counts.get(qname) ?? 0) + 1);
    counts.set(`${qname} ${q.type}`, (counts.get(`${qname} ${q.type}`) ?? 0) + 1);

    const first = zone.get(qname);
    if (first?.failure === 'drop') return null;
    if (first?.failure !== undefined) return packet.encode({ ...base, flags: flags | RCODE[first.failure] });
    if (first === undefined) return packet.encode({ ...base, flags: flags | RCODE.NXDOMAIN });

    const answers: packet.Answer[] = [];
    let rcode = 0;
    let name = qname;
    let n: Node = first;
    for (let hops = 0; ; hops++) {
      const owner = n.owner ?? name;
      if (n.cname !== undefined) {
        answers.push({ type: 'CNAME', name: owner, ttl: 60, data: n.cname.target });
        if (n.cname.only || q.type === 'CNAME' || hops >= api.chaseLimit) break;
        // Like a recursive resolver: chase the target and report its rcode with the chain.
        name = key(n.cname.target);
        const next = zone.get(name);
        if (next === undefined) rcode = RCODE.NXDOMAIN;
        else if (next.failure === 'drop') return null;
        else if (next.failure !== undefined) rcode = RCODE[next.failure];
        if (next === undefined || next.failure !== undefined) break;
        n = next;
        continue;
      }
      if (q.type === 'TXT') for (const r of n.txt ?? []) answers.push({ type: 'TXT', name: owner, ttl: 60, data: r });
      if (q.type === 'A') for (const r of n.a ?? []) answers.push({ type: 'A', name: owner, ttl: 60, data: r });
      if (q.type === 'AAAA')
        for (const r of n.aaaa ?? []) answers.push({ type: 'AAAA', name: owner, ttl: 60, data: r });
      break;
    }
    const full = packet.encode({ ...base, flags: flags | rcode, answers });
    if (transport === 'udp' && full.length > UDP_LIMIT) {
      return packet.encode({ ...base, flags: flags | rcode | packet.TRUNCATED_RESPONSE });
    }
    if (full.length > 0xffff) {
      // dns-packet does not compress names; an answer no DNS message can carry is a test bug.
      process.stderr.write(`dns-server: answer for ${qname} is ${full.length} octets (> 65535); sent SERVFAIL\n`);
      return packet.encode({ ...base, flags: flags | RCODE.SERVFAIL });
    }
    return full;
  }

  function respond(msg: Buffer, transport: 'udp' | 'tcp', send: (b: Buffer) => void): void {
    let query: packet.DecodedPacket;
    try {
      query = packet.decode(msg);
    } catch {
      return;
    }
    const reply = answer(query, transport);
    if (reply === null) return;
    const delayMs = zone.get(key(query.questions?.[0]?.name ?? ''))?.delayMs ?? 0;
    if (delayMs <= 0) {
      send(reply);
      return;
    }
    const t = setTimeout(() => {
      timers.delete(t);
      send(reply);
    }, delayMs);
    timers.add(t);
  }

  const tcp = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    let buf = Buffer.alloc(0);
    socket.on('data', (data) => {
      buf = Buffer.concat([buf, data]);
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        respond(msg, 'tcp', (b) => {
          if (socket.destroyed) return;
          const head = Buffer.alloc(2);
          head.writeUInt16BE(b.length);
          socket.write(Buffer.concat([head, b]));
        });
      }
    });
  });
  // UDP and TCP on one port: take a free UDP port, then the same TCP port. On a busy machine that
  // TCP port may be taken (an ephemeral port of some other connection): try another pair.
  let udp: dgram.Socket | undefined;
  let port = 0;
  for (let attempt = 1; udp === undefined; attempt++) {
    const u = dgram.createSocket('udp4');
    u.on('message', (msg, rinfo) => {
      respond(msg, 'udp', (b) => u.send(b, rinfo.port, rinfo.address));
    });
    u.on('error', () => {});
    u.bind(options.port ?? 0, host);
    await once(u, 'listening');
    port = u.address().port;
    try {
      tcp.listen(port, host);
      await once(tcp, 'listening');
      udp = u;
    } catch (err) {
      u.close();
      const fixed = options.port !== undefined && options.port !== 0;
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || fixed || attempt >= 20) throw err;
    }
  }
  const udpSocket: dgram.Socket = udp;

  const api: DnsServer = {
    address: `${host}:${port}`,
    port,
    chaseLimit: 16,
    log,
    txt(name, records) {
      node(name).txt = records.map(chunks);
      return this;
    },
    a(name, ...addresses) {
      node(name).a = addresses;
      return this;
    },
    aaaa(name, ...addresses) {
      node(name).aaaa = addresses;
      return this;
    },
    cname(name, target, options = {}) {
      node(name).cname = { target, only: options.only === true };
      return this;
    },
    fail(name, failure) {
      node(name).failure = failure;
      return this;
    },
    nxdomain(name) {
      return this.fail(name, 'NXDOMAIN');
    },
    servfail(name) {
      return this.fail(name, 'SERVFAIL');
    },
    refused(name) {
      return this.fail(name, 'REFUSED');
    },
    drop(name) {
      return this.fail(name, 'drop');
    },
    nodata(name) {
      zone.set(key(name), {});
      return this;
    },
    wrongOwner(name, owner) {
      node(name).owner = key(owner);
      return this;
    },
    delay(name, ms) {
      node(name).delayMs = ms;
      return this;
    },
    remove(name) {
      zone.delete(key(name));
      return this;
    },
    reset() {
      zone.clear();
      counts.clear();
      log.length = 0;
    },
    mtaSts(domain, options = {}) {
      this.txt(`_mta-sts.${domain}`, [options.record ?? `v=STSv1; id=${options.id ?? '1'};`]);
      return this.a(`mta-sts.${domain}`, options.address ?? '127.0.0.1');
    },
    queries(name, type) {
      return counts.get(type === undefined ? key(name) : `${key(name)} ${type}`) ?? 0;
    },
    async close() {
      for (const t of timers) clearTimeout(t);
      for (const s of sockets) s.destroy();
      await Promise.all([
        new Promise<void>((resolve) => udpSocket.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
  return api;
}
