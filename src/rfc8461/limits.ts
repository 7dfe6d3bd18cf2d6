/** Named limits from RFC 8461 and the DNS. */

/** RFC 8461 §3.3: the policy body must not exceed 64 KiB. */
export const MAX_POLICY_BYTES = 64 * 1024;
/** RFC 8461 §3.3: senders should time out the policy fetch after a reasonable time; we use 60 s. */
export const DEFAULT_FETCH_TIMEOUT_MS = 60_000;
/** RFC 8461 §3.2: max_age is at most 31557600 seconds (about one year); larger values are capped. */
export const MAX_MAX_AGE_SECONDS = 31_557_600;
/** RFC 8461 §3.2: max_age is 1–10 digits. */
export const MAX_AGE_DIGITS = 10;
/** RFC 8461 §3.1: the id field is 1–32 alphanumeric characters. */
export const MAX_RECORD_ID_CHARS = 32;
/** After a failed policy fetch we do not try again for five minutes (mox semantics). */
export const BACKOFF_SECONDS = 300;
/** Refresher: records not updated for this long are refreshed. */
export const REFRESH_AFTER_SECONDS = 12 * 3600;
/** Refresher: runs once a day. */
export const REFRESH_INTERVAL_SECONDS = 24 * 3600;
/** Refresher: records unused this long are deleted. */
export const UNUSED_DELETE_SECONDS = 180 * 24 * 3600;
/** RFC 1035 §2.3.4: a label is at most 63 octets. */
export const MAX_LABEL_OCTETS = 63;
/** RFC 1035 §2.3.4 (255 on the wire, 253 in text without the trailing dot). */
export const MAX_DOMAIN_OCTETS = 253;
/** How many CNAMEs lookupRecord follows itself when a resolver answers with only a CNAME. */
export const MAX_CNAME_HOPS = 8;
