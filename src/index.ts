// Public API: named re-exports only.
export { MtaStsError, isMtaStsError, ERROR_CODES } from './errors.js';
export type { ErrorCode, ErrorDetails } from './errors.js';
export { systemClock } from './clock.js';
export type { Clock } from './clock.js';
export type { Logger } from './logger.js';
export { silentLogger } from './logger.js';
export { Domain, parseDomain } from './rfc8461/domain.js';
export { parseRecord, formatRecord } from './rfc8461/record.js';
export type { StsRecord, Extension } from './rfc8461/record.js';
export { parsePolicy, formatPolicy, formatMxPattern, effectiveMaxAgeSeconds, policyLines } from './rfc8461/policy.js';
export type { Policy, Mode, MxPattern } from './rfc8461/policy.js';
export { policyMatches, mxPatternMatches } from './rfc8461/mx-match.js';
export * as limits from './rfc8461/limits.js';
export type { DnsResolver, NodeResolverOptions } from './discovery/resolver.js';
export { createNodeResolver, DEFAULT_DNS_TIMEOUT_MS } from './discovery/node-resolver.js';
export { lookupRecord } from './discovery/lookup-record.js';
export type { LookupRecordOptions } from './discovery/lookup-record.js';
export type { PolicyFetcher, FetchedPolicy, FetchPolicyOptions } from './fetch/fetcher.js';
export { fetchPolicy, createHttpsFetcher, POLICY_PATH } from './fetch/https-fetcher.js';
export { getPolicy } from './fetch/get-policy.js';
export type { GetPolicyOptions, DiscoveredPolicy } from './fetch/get-policy.js';
export { isPublicAddress, classifyAddress } from './fetch/address-policy.js';
export type { AddressClass } from './fetch/address-policy.js';
export type { PolicyStore, PolicyRecord, ListOptions, ListOrder } from './store/policy-store.js';
export { openStore, resolveStoreTarget, parseStoreSpec } from './store/open-store.js';
export type { OpenStoreSpec, StoreTarget } from './store/open-store.js';
export { openSqliteStore } from './store/sqlite-store.js';
export type { SqliteStore, SqliteStoreOptions } from './store/sqlite-store.js';
export { openPostgresStore } from './store/postgres-store.js';
export type { PostgresStore, PostgresStoreOptions } from './store/postgres-store.js';
export type { Metrics } from './metrics/metrics.js';
export { noopMetrics } from './metrics/metrics.js';
export type { TlsrptResult, TlsrptFailureDetails, TlsrptResultType, TlsrptPolicyType } from './cache/tlsrpt.js';
export { MtaStsDb } from './cache/mtastsdb.js';
export { DEFAULT_LAST_USE_RESOLUTION_SECONDS } from './cache/tunables.js';
export type { GetOptions, StsStateOptions } from './cache/mtastsdb.js';
export type {
  GetOutcome,
  MtaStsDbOptions,
  PolicyDatabase,
  PolicySource,
  PurgeOptions,
  RefresherOptions,
  RefreshSummary,
  StsState,
} from './cache/types.js';
export { BACKOFF_REASON, FALLBACK_SUFFIX } from './cache/tlsrpt-report.js';
/** The Go package's API (`init`, `get`, `upsert`, `policyRecords`, `close`, `ErrNotFound`, `ErrBackoff`) on one default database. */
export * as mtastsdb from './cache/module-api.js';
export {
  encodeNetstring,
  decodeNetstrings,
  NetstringDecoder,
  DEFAULT_REQUEST_LIMIT,
  POSTFIX_REPLY_LIMIT,
} from './socketmap/netstring.js';
export type { NetstringDecoderOptions, NetstringErrorReason } from './socketmap/netstring.js';
export { decide, formatDecision, needsDane } from './decision/decide.js';
export type { Decision, DecisionZone, TlsrptAttributes } from './decision/decide.js';
export type { DaneState, DaneStateKind } from './dane/dane-state.js';
export { createDnssecClient } from './dane/dnssec-client.js';
export { lookupDane } from './dane/discover.js';
export type { DaneHost, DaneReport, DaneTlsaRecord, LookupDaneOptions } from './dane/discover.js';
export { isUsableTlsa } from './dane/tlsa.js';
export { DaneStateCache } from './dane/state-cache.js';
export type { DaneStateCacheOptions } from './dane/state-cache.js';
export type {
  DnssecAnswer,
  DnssecClient,
  DnssecClientOptions,
  DnssecFailureReason,
  DnssecQueryType,
} from './dane/dnssec-client.js';
export { parseRequest, normalizeKey, formatReply, NOTFOUND_REPLY } from './socketmap/protocol.js';
export type { SocketmapRequest, NormalizedKey, ReplyOutcome, ReplyZone } from './socketmap/protocol.js';
export { startSocketmapServer } from './socketmap/server.js';
export type { SocketmapHandler, SocketmapListen, SocketmapServer, SocketmapServerOptions } from './socketmap/server.js';
export { loadConfig, parseConfigText } from './config/load-config.js';
export type { ConfigOverrides, LoadConfigOptions } from './config/load-config.js';
export { validateConfig, zoneFor, DEFAULT_ZONE } from './config/schema.js';
export type { Config, ZoneConfig, RateLimitConfig, LoggingConfig, LogLevelName } from './config/schema.js';
