/**
 * The cache's tunables, in one place, with their units. RFC-given limits live in
 * `rfc8461/limits.ts`; these are our choices (mox's where it has one).
 */

// --- get: network bounds (mox's)
/** Bound of a discovery (TXT lookup and policy fetch) for a domain not cached: mox's one minute. */
export const DISCOVERY_TIMEOUT_MS = 60_000;
/** Bound of the TXT check of a cached policy: mox's 30 s. */
export const TXT_CHECK_TIMEOUT_MS = 30_000;
/** Bound of the fetch of a policy announced by a new TXT id (the fetcher's own default is 60 s too). */
export const REFETCH_TIMEOUT_MS = 60_000;
/** Domains whose last failed fetch of a new TXT id is remembered (for the RFC 8461 §3.3 five-minute wait). */
export const MAX_REFETCH_FAILURES = 10_000;
/** Estimated bytes of one remembered failure (domain, id, the error and its cause). */
export const REFETCH_FAILURE_BYTES = 1024;

// --- discovery limits (see discovery-admission.ts; the daemon sets them from `limits.*`)
/** A refusal by the discovery limits is logged at most this often per cap, ms (a flood must not flood the log). */
export const DISCOVERY_LIMIT_LOG_INTERVAL_MS = 60_000;

// --- clocks
/**
 * How far ahead of our clock a stored time may be and still be believed (clocks of a fleet
 * disagree a little). A `lastUpdate` beyond it was written by a clock running ahead: stale.
 */
export const CLOCK_SKEW_MS = 5 * 60_000;

// --- policies fetched but not stored (read-only or full disk, a read-only replica)
/** Domains whose fetched policy is kept in memory because the store refused it. */
export const MAX_UNSTORED_POLICIES = 10_000;
/** Bound of the memory those records take, estimated bytes. */
export const MAX_UNSTORED_POLICY_BYTES = 32 * 1024 * 1024;
/** An unstored record is offered to the store again at most this often, ms. */
export const UNSTORED_RETRY_MS = 30_000;

// --- stsState: the answer's deadline and the store-unreadable fallback
/** Floor of the time the cache-only read gets after the answer's own deadline was spent. */
export const STORE_READ_FLOOR_MS = 1000;
// The deadline ticker's period, DEADLINE_TICK_MS, is in src/deadline.ts (DANE uses it too).
/** Default number of domains whose last answered policy is remembered for an unreadable store. */
export const DEFAULT_REMEMBERED_POLICIES = 10_000;
/** Default bound of the memory those policies take, estimated bytes (a policy is usually under 1 KiB). */
export const DEFAULT_REMEMBERED_POLICY_BYTES = 32 * 1024 * 1024;

// --- lastUse batching
/** Deferred `lastUse` writes are flushed after at most this long… */
export const USE_FLUSH_MS = 1000;
/** …or once this many domains are waiting. */
export const USE_FLUSH_ENTRIES = 1000;
/** With this many uses waiting, a lookup that adds one waits for the flush in progress. */
export const USE_BACKPRESSURE_ENTRIES = 10 * USE_FLUSH_ENTRIES;
/** If the store keeps refusing `lastUse` writes, at most this many wait in memory. */
export const MAX_PENDING_USES = 100_000;
/**
 * Default resolution of `lastUse`: a hit within this many seconds of the stored `lastUse` is not
 * written again. `lastUse` serves the 180-day eviction and the listing order, for which a minute is
 * precise enough; writing it on every hit would make every lookup a random row write (measured:
 * 25–50 µs per row in SQLite, more than the lookup itself).
 */
export const DEFAULT_LAST_USE_RESOLUTION_SECONDS = 60;

// --- memory copy of records
/** Default of `memoryCache.entries`. */
export const DEFAULT_MEMORY_CACHE_ENTRIES = 10_000;

// --- refresher
/** The refreshes of one pass are spread over this long (mox: 3 hours). */
export const REFRESH_SPREAD_SECONDS = 3 * 3600;
/** Upper bound of one record's refresh (TXT lookup plus fetch), as mox's one minute. */
export const REFRESH_STEP_TIMEOUT_MS = 60_000;
/** Default lease of a claimed record: long enough for a step, short enough to recover from a dead node. */
export const DEFAULT_LEASE_SECONDS = 600;
/** Default number of records refreshed (or purged) at once: one pool for passes, refresh by name and purge. */
export const DEFAULT_REFRESH_CONCURRENCY = 4;
/** Default number of records read, shuffled and worked through at a time. */
export const DEFAULT_REFRESH_BATCH = 1000;
/** Records processed between two yields to the event loop. */
export const REFRESH_YIELD_EVERY_RECORDS = 64;

// --- logging
/**
 * A store failure logged once is logged again at most this often, ms, with the count held back: a
 * full or read-only disk fails every write, and a line per lookup would bury everything else.
 */
export const STORE_ERROR_LOG_INTERVAL_MS = 60_000;
/** A suspected downgrade of one domain is logged again at most this often, ms (it recurs per lookup). */
export const DOWNGRADE_LOG_INTERVAL_MS = 10 * 60_000;
/** Domains whose last downgrade line is remembered (for the interval above). */
export const DOWNGRADE_LOG_DOMAINS = 10_000;

// --- deleting unused records (the refresher's pass)
/**
 * A pass never deletes more than this share of the store as unused: a daily pass deletes the few
 * domains whose last use crossed the 180-day line that day; "most of the cache" means the clock
 * is wrong (a forward step), and deleting it would lose what protects deliveries (RFC 8461 §10).
 */
export const UNUSED_DELETE_MAX_SHARE = 0.5;
/**
 * A wall clock that moved this much more (or less) than the monotonic clock since the previous
 * pass has stepped, ms: that pass deletes nothing as unused.
 */
export const CLOCK_STEP_TOLERANCE_MS = 10 * 60_000;
