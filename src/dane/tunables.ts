/**
 * The DANE lookup's tunables, in one place, with their units. RFC-given values are marked as such;
 * the rest are our choices (postfix-tlspol's where it has one).
 */

// --- the DNSSEC client
/** Default bound of one query (UDP and its TCP retry together): postfix-tlspol's 2 s. */
export const DANE_QUERY_TIMEOUT_MS = 2000;
/** EDNS0 UDP payload size we advertise: the DNS Flag Day 2020 value, avoiding IP fragmentation. */
export const EDNS_UDP_PAYLOAD_BYTES = 1232;
/** Upper bound of a DNS message over TCP (the 2-octet length prefix, RFC 1035 §4.2.2). */
export const TCP_MESSAGE_MAX_BYTES = 65_535;

// --- discovery
/** MX hosts whose addresses and TLSA records are looked up at once (postfix-tlspol's 4). */
export const DANE_HOST_CONCURRENCY = 4;
// CNAME hops: `MAX_CNAME_HOPS` (8) of rfc8461/limits.ts, the same bound as MTA-STS discovery and Postfix.

// --- the state cache
/** Shortest time a DANE state is kept, seconds: a 0-TTL answer must not make every reply query DNS. */
export const DANE_STATE_MIN_TTL_SECONDS = 60;
/**
 * Longest time a DANE state is kept, seconds: a cached `dane-only` that outlives the TLSA records
 * makes Postfix defer, so it is rechecked at least hourly.
 */
export const DANE_STATE_MAX_TTL_SECONDS = 3600;
/** Default number of domains whose DANE state is kept in memory. */
export const DANE_STATE_CACHE_MAX_ENTRIES = 10_000;

// --- the resolver probe
/** Time between resolver probes, ms: 5 minutes, so a resolver that stops validating is noticed soon. */
export const DANE_PROBE_INTERVAL_MS = 5 * 60_000;
