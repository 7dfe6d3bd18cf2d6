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
 *
 * For DNSSEC clients it also serves MX, TLSA and SOA records, sets the AD bit per name (`ad`), puts
 * the zone's SOA in the authority section of negative answers, records the EDNS0 size and the
 * DO/AD/RD/CD flags of every query, forces TC=1 (`truncate`) and sends spoofed replies before the
 * real one (`spoof`).
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
  mx?: { preference: number; exchange: string }[];
  tlsa?: packet.TlsaData[];
}

/** Per-name settings that survive `nodata()` (which replaces the records of a name). */
interface Extra {
  /** AD bit for this name and every name below it, unless a closer name says otherwise. */
  ad?: boolean;
  /** This name is a zone apex with this SOA: it is served for SOA queries and in negative answers below it. */
  soa?: { ttl: number; minimum: number };
  /** TTL of every record owned by this name (default 60). */
  ttl?: number;
  /** Spoofed UDP replies sent before the real one. */
  spoof?: readonly Spoof[];
  /** Every UDP answer is sent with TC=1 and no records. */
  truncate?: boolean;
}

/**
 * A spoofed UDP reply (an NXDOMAIN with AD set and a forged A record) sent just before the real one:
 * with the wrong id, for another question, or from another source port.
 */
export type Spoof = 'id' | 'question' | 'port';

/** A query the server received. */
export interface QueryLogEntry {
  readonly name: string;
  readonly type: string;
  readonly transport: 'udp' | 'tcp';
  /** The EDNS0 UDP payload size of the query's OPT record, or undefined without one. */
  readonly ednsUdpSize: number | undefined;
  /** The DO bit of the OPT record (RFC 3225). */
  readonly dnssecOk: boolean;
  /** The AD, RD and CD bits of the query header. */
  readonly ad: boolean;
  readonly rd: boolean;
  readonly cd: boolean;
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
  /** Sets the MX records of `name`, as `"10 mx.example"` (`"0 ."` is a Null MX, RFC 7505). */
  mx(name: string, ...records: string[]): this;
  /** Sets the TLSA records of `name` (e.g. `_25._tcp.mx.example`), as `"3 1 1 <hex>"`. */
  tlsa(name: string, ...records: string[]): this;
  /**
   * Makes `name` a zone apex: SOA queries for it get this SOA, and NXDOMAIN/NODATA answers for names
   * at or below it carry it in the authority section (RFC 2308 §3). Defaults: TTL 300, MINIMUM 120.
   */
  soa(name: string, options?: { ttl?: number; minimum?: number }): this;
  /**
   * Sets the AD bit of answers for `name` and every name below it (like a signed zone; a closer
   * name's setting wins, like an unsigned delegation). Error rcodes other than NXDOMAIN never carry AD.
   */
  ad(name: string, on?: boolean): this;
  /** Sets the TTL of every record owned by `name` (default 60 s). */
  ttl(name: string, seconds: number): this;
  /** Answers every UDP query for `name` with TC=1 and no records, so the client retries over TCP. */
  truncate(name: string, on?: boolean): this;
  /** Sends these spoofed UDP replies before each real answer for `name` (see {@link Spoof}). */
  spoof(name: string, ...kinds: Spoof[]): this;
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
  /** Spoofed replies sent so far (see `spoof`). */
  spoofsSent: number;
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
  const extras = new Map<string, Extra>();
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
  const extra = (name: string): Extra => {
    const k = key(name);
    let e = extras.get(k);
    if (e === undefined) extras.set(k, (e = {}));
    return e;
  };
  /** The closest name at or above `name` (label by label) whose extra settings define `pick`. */
  function closest<T>(name: string, pick: (e: Extra) => T | undefined): { name: string; value: T } | undefined {
    for (let n = key(name); ; n = n.slice(n.indexOf('.') + 1)) {
      const v = extras.get(n);
      const value = v === undefined ? undefined : pick(v);
      if (value !== undefined) return { name: n, value };
      if (!n.includes('.')) return undefined;
    }
  }
  const ttlOf = (name: string): number => extras.get(key(name))?.ttl ?? 60;
  const soaFor = (name: string): packet.Answer[] => {
    const apex = closest(name, (e) => e.soa);
    if (apex === undefined) return [];
    const data = { mname: `ns.${apex.name}`, rname: `hostmaster.${apex.name}`, serial: 1, refresh: 3600 };
    return [
      {
        type: 'SOA',
        name: apex.name,
        ttl: apex.value.ttl,
        data: { ...data, retry: 600, expire: 86400, minimum: apex.value.minimum },
      },
    ];
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
    const opt = query.additionals?.find((r): r is packet.OptAnswer => r.type === 'OPT');
    log.push({
      name: qname,
      type: q.type,
      transport,
      ednsUdpSize: opt?.udpPayloadSize,
      dnssecOk: opt?.flag_do === true,
      ad: query.flag_ad,
      rd: query.flag_rd,
      cd: query.flag_cd,
    });
    counts.set(qname, (counts.get(qname) ?? 0) + 1);
    counts.set(`${qname} ${q.type}`, (counts.get(`${qname} ${q.type}`) ?? 0) + 1);

    const adFlag = closest(qname, (e) => e.ad)?.value === true ? packet.AUTHENTIC_DATA : 0;
    const first = zone.get(qname);
    if (first?.failure === 'drop') return null;
    if (first?.failure === 'NXDOMAIN' || first === undefined) {
      return packet.encode({ ...base, flags: flags | adFlag | RCODE.NXDOMAIN, authorities: soaFor(qname) });
    }
    if (first.failure !== undefined) return packet.encode({ ...base, flags: flags | RCODE[first.failure] });

    const answers: packet.Answer[] = [];
    let rcode = 0;
    let name = qname;
    let n: Node = first;
    for (let hops = 0; ; hops++) {
      const owner = n.owner ?? name;
      if (n.cname !== undefined) {
        answers.push({ type: 'CNAME', name: owner, ttl: ttlOf(name), data: n.cname.target });
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
      const ttl = ttlOf(name);
      if (q.type === 'TXT') for (const r of n.txt ?? []) answers.push({ type: 'TXT', name: owner, ttl, data: r });
      if (q.type === 'A') for (const r of n.a ?? []) answers.push({ type: 'A', name: owner, ttl, data: r });
      if (q.type === 'AAAA') for (const r of n.aaaa ?? []) answers.push({ type: 'AAAA', name: owner, ttl, data: r });
      if (q.type === 'MX') for (const r of n.mx ?? []) answers.push({ type: 'MX', name: owner, ttl, data: r });
      if (q.type === 'TLSA') for (const r of n.tlsa ?? []) answers.push({ type: 'TLSA', name: owner, ttl, data: r });
      if (q.type === 'SOA' && extras.get(name)?.soa !== undefined) answers.push(...soaFor(name));
      break;
    }
    // RFC 2308 §3: a negative answer (NXDOMAIN at the end of a chain, or NODATA) carries the zone's SOA.
    const negative = rcode === RCODE.NXDOMAIN || answers.length === 0;
    const authorities = rcode === 0 || rcode === RCODE.NXDOMAIN ? (negative ? soaFor(name) : []) : [];
    const secure = rcode === 0 || rcode === RCODE.NXDOMAIN ? adFlag : 0;
    const full = packet.encode({ ...base, flags: flags | rcode | secure, answers, authorities });
    const truncated = extras.get(qname)?.truncate === true;
    if (transport === 'udp' && (full.length > UDP_LIMIT || truncated)) {
      return packet.encode({ ...base, flags: flags | rcode | secure | packet.TRUNCATED_RESPONSE });
    }
    if (full.length > 0xffff) {
      // dns-packet does not compress names; an answer no DNS message can carry is a test bug.
      process.stderr.write(`dns-server: answer for ${qname} is ${full.length} octets (> 65535); sent SERVFAIL\n`);
      return packet.encode({ ...base, flags: flags | RCODE.SERVFAIL });
    }
    return full;
  }

  /** Sends the spoofed replies set for the query's name; true when it sent any. */
  function sendSpoofs(query: packet.DecodedPacket, to: dgram.RemoteInfo, udp: dgram.Socket): boolean {
    const q = query.questions?.[0];
    const kinds = q === undefined ? undefined : extras.get(key(q.name))?.spoof;
    if (q === undefined || kinds === undefined || kinds.length === 0) return false;
    for (const kind of kinds) {
      const id = kind === 'id' ? ((query.id ?? 0) + 1) & 0xffff : (query.id ?? 0);
      const question = kind === 'question' ? { ...q, name: `spoofed.${q.name}` } : q;
      const forged = packet.encode({
        type: 'response',
        id,
        flags: packet.RECURSION_AVAILABLE | packet.AUTHENTIC_DATA | RCODE.NXDOMAIN,
        questions: [question],
        answers: [{ type: 'A', name: question.name, ttl: 86400, data: '192.0.2.66' }],
      });
      (kind === 'port' ? spoofer : udp).send(forged, to.port, to.address);
      api.spoofsSent++;
    }
    return true;
  }

  function respond(msg: Buffer, transport: 'udp' | 'tcp', send: (b: Buffer) => void, udp?: dgram.RemoteInfo): void {
    let query: packet.DecodedPacket;
    try {
      query = packet.decode(msg);
    } catch {
      return;
    }
    const reply = answer(query, transport);
    if (reply === null) return;
    // The real reply waits a little so the spoofed ones surely arrive first.
    const spoofed = udp !== undefined && sendSpoofs(query, udp, udpSocket);
    const delayMs = (zone.get(key(query.questions?.[0]?.name ?? ''))?.delayMs ?? 0) + (spoofed ? 20 : 0);
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
      respond(msg, 'udp', (b) => u.send(b, rinfo.port, rinfo.address), rinfo);
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
  // Sends the replies spoofed "from another source port".
  const spoofer = dgram.createSocket('udp4');
  spoofer.on('error', () => {});
  spoofer.bind(0, host);
  await once(spoofer, 'listening');

  const api: DnsServer = {
    address: `${host}:${port}`,
    port,
    chaseLimit: 16,
    spoofsSent: 0,
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
    mx(name, ...records) {
      node(name).mx = records.map((r) => {
        const [preference, exchange] = r.trim().split(/\s+/);
        return { preference: Number(preference), exchange: exchange ?? '' };
      });
      return this;
    },
    tlsa(name, ...records) {
      node(name).tlsa = records.map((r) => {
        const [usage, selector, matchingType, hex] = r.trim().split(/\s+/);
        const certificate = Buffer.from(hex ?? '', 'hex');
        return { usage: Number(usage), selector: Number(selector), matchingType: Number(matchingType), certificate };
      });
      return this;
    },
    soa(name, options = {}) {
      node(name);
      extra(name).soa = { ttl: options.ttl ?? 300, minimum: options.minimum ?? 120 };
      return this;
    },
    ad(name, on = true) {
      extra(name).ad = on;
      return this;
    },
    ttl(name, seconds) {
      extra(name).ttl = seconds;
      return this;
    },
    truncate(name, on = true) {
      extra(name).truncate = on;
      return this;
    },
    spoof(name, ...kinds) {
      extra(name).spoof = kinds;
      return this;
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
      extras.delete(key(name));
      return this;
    },
    reset() {
      zone.clear();
      extras.clear();
      this.spoofsSent = 0;
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
        new Promise<void>((resolve) => spoofer.close(() => resolve())),
        new Promise<void>((resolve) => tcp.close(() => resolve())),
      ]);
    },
  };
  return api;
}
