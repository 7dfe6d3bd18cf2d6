/**
 * A real DNSSEC world on loopback, built at test time: a zone `dane.test` signed with ldns
 * (ECDSAP256SHA256 KSK + ZSK, NSEC), an unsigned child `unsigned.dane.test` (no DS: a proven
 * insecure delegation), both served by nsd; a validating unbound with the zone's trust anchor and
 * a non-validating unbound, both stubbing `dane.test` to the nsd.
 *
 * ```ts
 * if (!requireOrSkip(t, dnssecLabMissing === undefined, dnssecLabMissing ?? '')) return;
 * const lab = await startDnssecLab();
 * // lab.validating / lab.nonValidating are "127.0.0.1:<port>" for --dns-server and dane.resolver
 * await lab.close();
 * ```
 *
 * Every lab picks its own free high ports on 127.0.0.1 (test files run in parallel), waits a bounded
 * time for each server to answer, stops them by PID and removes its directory.
 *
 * Names (`LAB_DOMAINS`): every test domain also has `_mta-sts.<d> TXT "v=STSv1; id=<id>"` and
 * `mta-sts.<d> A 127.0.0.1`, so MTA-STS resolves through the same resolver to the loopback HTTPS
 * policy host (`test/helpers/https-host.ts`). `short.dane.test` is `dane.test`'s twin with every TTL
 * `SHORT_TTL_SECONDS`, for state-expiry tests.
 */
import { execFile, spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import { accessSync, constants } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createDnssecClient } from '../../src/dane/dnssec-client.js';

const run = promisify(execFile);

/** The test domains and what DANE makes of them (RFC 7672 §2.2). */
export const LAB_DOMAINS = {
  /** Secure MX, secure address, usable TLSA: mandatory DANE. */
  mandatory: 'dane.test',
  /** A CNAME at the domain to `dane.test`. */
  alias: 'alias.dane.test',
  /** No MX, secure NODATA: implicit MX, usable TLSA. */
  implicit: 'implicit.dane.test',
  /** Two MX hosts, one without TLSA: opportunistic DANE. */
  partial: 'partial.dane.test',
  /** RFC 7505 Null MX. */
  nullmx: 'nullmx.dane.test',
  /** Only PKIX-EE(1) TLSA: all unusable (RFC 7672 §3.1.3). */
  pkix: 'pkix.dane.test',
  /** TLSA altered after signing: bogus, SERVFAIL at the validating resolver. */
  bogus: 'bogus.dane.test',
  /** Secure MX RRset naming a host in the unsigned zone. */
  tohoster: 'tohoster.dane.test',
  /** Insecure MX RRset (unsigned zone) naming a secure DANE host. */
  hosted: 'hosted.unsigned.dane.test',
  /** Mandatory DANE with every TTL `SHORT_TTL_SECONDS`. */
  short: 'short.dane.test',
} as const;

/** The TTL of every record of `short.dane.test`, seconds. */
export const SHORT_TTL_SECONDS = 2;

/** The MX host names, for MTA-STS policies (`mx:` lines). */
export const LAB_MX = {
  secure: 'mx.dane.test',
  noTlsa: 'mx2.dane.test',
  pkix: 'mxpkix.dane.test',
  bogus: 'mxbogus.dane.test',
  unsigned: 'mx.unsigned.dane.test',
  short: 'mxshort.dane.test',
} as const;

/** The `id=` of every `_mta-sts` record in the lab. */
export const LAB_STS_ID = 'lab1';

/** Bound of each server's start-up, milliseconds. */
const READY_TIMEOUT_MS = 10_000;
/** Bound of each server's shutdown after SIGTERM, then SIGKILL, milliseconds. */
const STOP_TIMEOUT_MS = 5_000;

const BINARIES = ['nsd', 'unbound', 'ldns-keygen', 'ldns-signzone', 'openssl'] as const;
const BIN_DIRS = ['/usr/sbin', '/usr/bin', '/usr/local/sbin', '/usr/local/bin', '/sbin', '/bin'];

function findBinary(name: string): string | undefined {
  for (const dir of BIN_DIRS) {
    try {
      accessSync(join(dir, name), constants.X_OK);
      return join(dir, name);
    } catch {
      // try the next directory
    }
  }
  return undefined;
}

const paths = new Map(BINARIES.map((b) => [b, findBinary(b)]));

/** Why the lab cannot run here (missing binaries, Debian packages `nsd unbound ldnsutils openssl`), or undefined. */
export const dnssecLabMissing: string | undefined = (() => {
  const missing = BINARIES.filter((b) => paths.get(b) === undefined);
  return missing.length === 0
    ? undefined
    : `DNSSEC lab needs ${missing.join(', ')} (Debian packages nsd unbound ldnsutils openssl)`;
})();

function bin(name: (typeof BINARIES)[number]): string {
  const p = paths.get(name);
  if (p === undefined) throw new Error(dnssecLabMissing);
  return p;
}

/** A port free for both UDP and TCP on 127.0.0.1 (tries a bounded number of candidates). */
async function freePort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const udp = createSocket('udp4');
    udp.bind(0, '127.0.0.1');
    await once(udp, 'listening');
    const port = udp.address().port;
    const tcp = createServer();
    const ok = await new Promise<boolean>((resolve) => {
      tcp.once('error', () => resolve(false));
      tcp.listen(port, '127.0.0.1', () => resolve(true));
    });
    if (ok) await new Promise<void>((r) => tcp.close(() => r()));
    udp.close();
    if (ok) return port;
  }
  throw new Error('no free UDP+TCP port on 127.0.0.1');
}

/** The running lab. */
export interface DnssecLab {
  /** The validating unbound, `127.0.0.1:<port>`. */
  readonly validating: string;
  /** The non-validating unbound (module-config "iterator", no trust anchor), `127.0.0.1:<port>`. */
  readonly nonValidating: string;
  /** The nsd serving both zones, `127.0.0.1:<port>`. */
  readonly authoritative: string;
  /** The DANE-EE SPKI SHA2-256 digest (hex) every TLSA `3 1 1` in the lab carries. */
  readonly tlsaHex: string;
  /** Its working directory (removed by `close`). */
  readonly dir: string;
  /** Stops the servers by PID and removes the directory. */
  close(): Promise<void>;
}

function stsNames(domain: string, origin: string, ttl?: number): string {
  const rel = domain === origin ? '' : `.${domain.slice(0, -origin.length - 1)}`;
  const t = ttl === undefined ? '' : ` ${ttl}`;
  return `_mta-sts${rel}${t} TXT "v=STSv1; id=${LAB_STS_ID}"\nmta-sts${rel}${t} A 127.0.0.1\n`;
}

function signedZone(h: string): string {
  const s = SHORT_TTL_SECONDS;
  const sts = (Object.values(LAB_DOMAINS) as string[])
    .filter((d) => !d.endsWith('.unsigned.dane.test') && d !== LAB_DOMAINS.short)
    .map((d) => stsNames(d, 'dane.test'))
    .join('');
  return `$ORIGIN dane.test.
$TTL 300
@        SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 120
@        NS  ns.dane.test.
ns       A   127.0.0.1
@        MX  10 mx.dane.test.
mx       A   192.0.2.25
mx       AAAA 2001:db8::25
_25._tcp.mx TLSA 3 1 1 ${h}
partial  MX  10 mx.dane.test.
partial  MX  20 mx2.dane.test.
mx2      A   192.0.2.26
implicit A   192.0.2.27
_25._tcp.implicit TLSA 3 1 1 ${h}
nullmx   MX  0 .
pkix     MX  10 mxpkix.dane.test.
mxpkix   A   192.0.2.28
_25._tcp.mxpkix TLSA 1 1 1 ${h}
bogus    MX  10 mxbogus.dane.test.
mxbogus  A   192.0.2.29
_25._tcp.mxbogus TLSA 3 1 1 ${h}
alias    CNAME dane.test.
tohoster MX  10 mx.unsigned.dane.test.
unsigned NS  ns.dane.test.
short    ${s} MX 10 mxshort.dane.test.
mxshort  ${s} A  192.0.2.31
_25._tcp.mxshort ${s} TLSA 3 1 1 ${h}
${stsNames(LAB_DOMAINS.short, 'dane.test', s)}${sts}`;
}

function unsignedZone(h: string): string {
  return `$ORIGIN unsigned.dane.test.
$TTL 300
@        SOA ns.dane.test. hostmaster.dane.test. 1 3600 600 86400 120
@        NS  ns.dane.test.
@        MX  10 mx.unsigned.dane.test.
mx       A   192.0.2.30
_25._tcp.mx TLSA 3 1 1 ${h}
hosted   MX  10 mx.dane.test.
${stsNames(LAB_DOMAINS.hosted, 'unsigned.dane.test')}`;
}

function nsdConf(dir: string, port: number): string {
  return `server:
  ip-address: 127.0.0.1@${port}
  do-ip6: no
  server-count: 1
  username: ""
  chroot: ""
  database: ""
  zonesdir: "${dir}"
  zonelistfile: "${dir}/nsd.zonelist"
  xfrdfile: "${dir}/nsd.xfrd.state"
  xfrdir: "${dir}"
  pidfile: "${dir}/nsd.pid"
  logfile: "${dir}/nsd.log"
remote-control:
  control-enable: no
zone:
  name: dane.test
  zonefile: dane.test.zone.signed
zone:
  name: unsigned.dane.test
  zonefile: unsigned.dane.test.zone
`;
}

function unboundConf(dir: string, name: string, port: number, authPort: number, validating: boolean): string {
  return `server:
  interface: 127.0.0.1
  port: ${port}
  do-ip6: no
  do-daemonize: no
  num-threads: 1
  username: ""
  chroot: ""
  directory: "${dir}"
  pidfile: "${dir}/${name}.pid"
  logfile: "${dir}/${name}.log"
  use-syslog: no
  val-log-level: 2
  access-control: 127.0.0.0/8 allow
  # the stub is on 127.0.0.1; unbound never asks loopback otherwise
  do-not-query-localhost: no
  # unbound answers *.test NXDOMAIN itself otherwise (RFC 6761)
  local-zone: "test." nodefault
  module-config: "${validating ? 'validator iterator' : 'iterator'}"
${validating ? `  trust-anchor-file: "${dir}/trust-anchor.ds"\n` : ''}  cache-max-ttl: 300
  cache-max-negative-ttl: 60
remote-control:
  control-enable: no
stub-zone:
  name: "dane.test"
  stub-addr: 127.0.0.1@${authPort}
`;
}

/** Waits (bounded) until `server` answers `ns.dane.test A` with NOERROR. */
async function waitReady(
  server: string,
  child: ChildProcess,
  label: string,
  log: () => Promise<string>,
): Promise<void> {
  const client = createDnssecClient({ server, timeoutMs: 300 });
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) break;
    try {
      const a = await client.query('ns.dane.test', 'A');
      if (a.rcode === 'NOERROR' && a.answers.length > 0) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${label} at ${server} not ready within ${READY_TIMEOUT_MS} ms: ${await log()}`);
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** Builds, signs and serves the lab zones; call `close()` when done (also on failure paths). */
export async function startDnssecLab(): Promise<DnssecLab> {
  const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-dnssec-lab-'));
  const children: ChildProcess[] = [];
  const close = async (): Promise<void> => {
    await Promise.all(children.map(stop));
    await rm(dir, { recursive: true, force: true });
  };
  try {
    const sh = (cmd: string, args: string[]) => run(cmd, args, { cwd: dir, timeout: 30_000 });
    // A throw-away MX key; DANE-EE(3) SPKI(1) SHA2-256(1) digest of its public key.
    await sh(bin('openssl'), ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', 'mx.key']);
    await sh(bin('openssl'), ['pkey', '-in', 'mx.key', '-pubout', '-outform', 'DER', '-out', 'mx.spki']);
    const { createHash } = await import('node:crypto');
    const tlsaHex = createHash('sha256')
      .update(await readFile(join(dir, 'mx.spki')))
      .digest('hex');

    await writeFile(join(dir, 'dane.test.zone'), signedZone(tlsaHex));
    await writeFile(join(dir, 'unsigned.dane.test.zone'), unsignedZone(tlsaHex));
    const keygen = (extra: string[]) =>
      sh(bin('ldns-keygen'), ['-r', '/dev/urandom', '-a', 'ECDSAP256SHA256', ...extra, 'dane.test']);
    const ksk = (await keygen(['-k'])).stdout.trim();
    const zsk = (await keygen([])).stdout.trim();
    await sh(bin('ldns-signzone'), ['-o', 'dane.test', '-f', 'dane.test.zone.signed', 'dane.test.zone', ksk, zsk]);
    await writeFile(join(dir, 'trust-anchor.ds'), await readFile(join(dir, `${ksk}.ds`)));
    // Break one signature: alter the mxbogus TLSA digest and keep its RRSIG.
    const signed = await readFile(join(dir, 'dane.test.zone.signed'), 'utf8');
    const broken = signed.replace(
      /^(_25\._tcp\.mxbogus\.dane\.test\.\s+\d+\s+IN\s+TLSA\s+3 1 1 )[0-9a-f]{8}/m,
      '$1deadbeef',
    );
    if (broken === signed) throw new Error('could not alter the mxbogus TLSA record in the signed zone');
    await writeFile(join(dir, 'dane.test.zone.signed'), broken);

    const [authPort, valPort, novalPort] = [await freePort(), await freePort(), await freePort()];
    await writeFile(join(dir, 'nsd.conf'), nsdConf(dir, authPort));
    await writeFile(join(dir, 'unbound.conf'), unboundConf(dir, 'unbound', valPort, authPort, true));
    await writeFile(join(dir, 'unbound-noval.conf'), unboundConf(dir, 'unbound-noval', novalPort, authPort, false));

    const start = async (cmd: string, args: string[], server: string, label: string, logFile: string) => {
      const child = spawn(cmd, args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
      let err = '';
      child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
      children.push(child);
      await waitReady(server, child, label, async () => {
        const text = await readFile(join(dir, logFile), 'utf8').catch(() => '');
        return `${err}${text}`.slice(-2000);
      });
    };
    const authoritative = `127.0.0.1:${authPort}`;
    const validating = `127.0.0.1:${valPort}`;
    const nonValidating = `127.0.0.1:${novalPort}`;
    await start(bin('nsd'), ['-d', '-c', join(dir, 'nsd.conf')], authoritative, 'nsd', 'nsd.log');
    await Promise.all([
      start(bin('unbound'), ['-d', '-c', join(dir, 'unbound.conf')], validating, 'unbound', 'unbound.log'),
      start(
        bin('unbound'),
        ['-d', '-c', join(dir, 'unbound-noval.conf')],
        nonValidating,
        'unbound (non-validating)',
        'unbound-noval.log',
      ),
    ]);
    return { validating, nonValidating, authoritative, tlsaHex, dir, close };
  } catch (err) {
    await close();
    throw err;
  }
}
