/**
 * Which IP addresses a policy fetch may connect to.
 *
 * A recipient domain chooses the address of its policy host, so without a check anyone who sends
 * us a recipient address could steer our fetcher into the local network (SSRF). By default only
 * globally routable unicast addresses are allowed; the classes follow the IANA IPv4 and IPv6
 * Special-Purpose Address Registries (RFC 6890 and updates). Pure: no I/O.
 */

/** What kind of address an IP is. Only `public` may be fetched from by default. */
export type AddressClass =
  | 'public'
  | 'unspecified' // 0.0.0.0/8, ::
  | 'loopback' // 127/8, ::1
  | 'private' // 10/8, 172.16/12, 192.168/16, fc00::/7, fec0::/10, 64:ff9b:1::/48
  | 'link-local' // 169.254/16, fe80::/10
  | 'shared' // 100.64/10 (carrier-grade NAT)
  | 'multicast' // 224/4, ff00::/8
  | 'broadcast' // 255.255.255.255
  | 'documentation' // 192.0.2/24, 198.51.100/24, 203.0.113/24, 2001:db8::/32, 3fff::/20
  | 'benchmarking' // 198.18/15, 2001:2::/48
  | 'reserved' // everything else not globally routable (192.0.0/24, 240/4, 100::/64, 2001::/23, outside 2000::/3, …)
  | 'invalid'; // not an IP address

type Range4 = readonly [base: number, prefix: number, cls: AddressClass];

function v4(a: number, b: number, c: number, d: number): number {
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0;
}

// First match wins; more specific ranges come first.
const RANGES4: readonly Range4[] = [
  [v4(255, 255, 255, 255), 32, 'broadcast'],
  [v4(0, 0, 0, 0), 8, 'unspecified'],
  [v4(10, 0, 0, 0), 8, 'private'],
  [v4(100, 64, 0, 0), 10, 'shared'],
  [v4(127, 0, 0, 0), 8, 'loopback'],
  [v4(169, 254, 0, 0), 16, 'link-local'],
  [v4(172, 16, 0, 0), 12, 'private'],
  [v4(192, 0, 0, 0), 24, 'reserved'],
  [v4(192, 0, 2, 0), 24, 'documentation'],
  [v4(192, 88, 99, 0), 24, 'reserved'], // deprecated 6to4 relay anycast (RFC 7526)
  [v4(192, 168, 0, 0), 16, 'private'],
  [v4(198, 18, 0, 0), 15, 'benchmarking'],
  [v4(198, 51, 100, 0), 24, 'documentation'],
  [v4(203, 0, 113, 0), 24, 'documentation'],
  [v4(224, 0, 0, 0), 4, 'multicast'],
  [v4(240, 0, 0, 0), 4, 'reserved'],
];

function inRange(addr: number, base: number, prefix: number): boolean {
  if (prefix === 0) return true;
  const mask = (0xffffffff << (32 - prefix)) >>> 0;
  return (addr & mask) >>> 0 === base;
}

function classify4(addr: number): AddressClass {
  for (const [base, prefix, cls] of RANGES4) if (inRange(addr, base, prefix)) return cls;
  return 'public';
}

const DEC_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;

/** Strict dotted-quad (no leading zeros, no short forms like `127.1`); null when not one. */
function parse4(s: string): number | null {
  const parts = s.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!DEC_OCTET.test(p)) return null;
    const v = Number(p);
    if (v > 255) return null;
    n = n * 256 + v;
  }
  return n;
}

/** Eight 16-bit groups; null when `s` is not an IPv6 address. A `%zone` suffix is ignored. */
function parse6(input: string): number[] | null {
  let s = input;
  const pct = s.indexOf('%');
  if (pct >= 0) s = s.slice(0, pct);
  if (s.length === 0 || s.length > 45 || !/^[0-9a-fA-F:.]+$/.test(s)) return null;
  // A trailing dotted quad stands for the last two groups (RFC 4291 §2.2).
  let quad: number[] = [];
  if (s.includes('.')) {
    const i = s.lastIndexOf(':');
    const four = parse4(s.slice(i + 1));
    if (i < 0 || four === null) return null;
    quad = [four >>> 16, four & 0xffff];
    s = s.slice(0, i + 1);
    if (!s.endsWith('::')) s = s.slice(0, -1);
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const groups = (h: string): number[] =>
    h === '' ? [] : h.split(':').map((g) => (/^[0-9a-fA-F]{1,4}$/.test(g) ? parseInt(g, 16) : NaN));
  const head = groups(halves[0] ?? '');
  const tail = halves.length === 2 ? groups(halves[1] ?? '') : [];
  if ([...head, ...tail].some(Number.isNaN)) return null;
  const given = head.length + tail.length + quad.length;
  if (halves.length === 2 ? given > 7 : given !== 8) return null;
  return [...head, ...new Array<number>(8 - given).fill(0), ...tail, ...quad];
}

function classify6(g: number[]): AddressClass {
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded4 = ((g6 << 16) | g7) >>> 0;
  const zeroTo = (n: number): boolean => g.slice(0, n).every((x) => x === 0);
  if (zeroTo(8)) return 'unspecified';
  if (zeroTo(7) && g7 === 1) return 'loopback';
  // ::ffff:a.b.c.d — an IPv4-mapped address connects to that IPv4 address.
  if (zeroTo(5) && g5 === 0xffff) return classify4(embedded4);
  // ::a.b.c.d (deprecated IPv4-compatible) and ::ffff:0:a.b.c.d (SIIT).
  if (zeroTo(6) || (zeroTo(4) && g4 === 0xffff && g5 === 0)) return 'reserved';
  // 64:ff9b::/96 NAT64 well-known prefix: reaches the embedded IPv4 address.
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return classify4(embedded4);
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 1) return 'private'; // 64:ff9b:1::/48 local-use NAT64
  if (g0 === 0x100 && g1 === 0 && g2 === 0 && g3 === 0) return 'reserved'; // 100::/64 discard-only
  if (g0 === 0x2001 && g1 === 0xdb8) return 'documentation';
  if (g0 === 0x2001 && g1 === 2 && g2 === 0) return 'benchmarking';
  if (g0 === 0x2001 && g1 < 0x200) return 'reserved'; // 2001::/23 IETF protocol assignments (incl. Teredo)
  // 2002::/16 6to4: reaches the IPv4 address in bits 16–47.
  if (g0 === 0x2002) return classify4(((g1 << 16) | g2) >>> 0);
  if (g0 === 0x3fff && (g1 & 0xf000) === 0) return 'documentation'; // 3fff::/20 (RFC 9637)
  if ((g0 & 0xfe00) === 0xfc00) return 'private'; // fc00::/7 unique local
  if ((g0 & 0xffc0) === 0xfe80) return 'link-local'; // fe80::/10
  if ((g0 & 0xffc0) === 0xfec0) return 'private'; // fec0::/10 deprecated site-local
  if ((g0 & 0xff00) === 0xff00) return 'multicast';
  // Only 2000::/3 is allocated as global unicast.
  if ((g0 & 0xe000) !== 0x2000) return 'reserved';
  return 'public';
}

/** Classifies an IPv4 (strict dotted quad) or IPv6 address string. */
export function classifyAddress(ip: string): AddressClass {
  if (typeof ip !== 'string') return 'invalid';
  const four = parse4(ip);
  if (four !== null) return classify4(four);
  if (!ip.includes(':')) return 'invalid';
  const six = parse6(ip);
  return six === null ? 'invalid' : classify6(six);
}

/**
 * True when `ip` is a globally routable unicast address, the only kind a policy fetch connects to
 * by default. Loopback, private, link-local, unspecified, CGNAT, multicast, documentation,
 * benchmarking and reserved ranges are refused, as are IPv4-mapped, NAT64 and 6to4 IPv6 forms of
 * them.
 */
export function isPublicAddress(ip: string): boolean {
  return classifyAddress(ip) === 'public';
}
