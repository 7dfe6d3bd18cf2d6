import { MtaStsError } from '../errors.js';

/** A `key=value` (record) or `key: value` (policy) field that RFC 8461 does not define, kept in order. */
export interface Extension {
  readonly key: string;
  readonly value: string;
}

/** The `_mta-sts` TXT record, RFC 8461 §3.1. */
export interface StsRecord {
  readonly version: 'STSv1';
  /** 1–32 alphanumerics; a change tells senders to fetch the policy again. */
  readonly id: string;
  readonly extensions: readonly Extension[];
}

/**
 * Parses one TXT record (its character-strings already joined).
 * Returns `null` when the text is not an MTA-STS record (does not start with `v=STSv1`).
 *
 * @throws MtaStsError `ERR_MTASTS_RECORD_SYNTAX` when it starts like one but breaks RFC 8461 §3.1.
 */
export function parseRecord(txt: string): StsRecord | null {
  void txt;
  throw new MtaStsError('ERR_MTASTS_INTERNAL', 'parseRecord: not implemented');
}

/** Formats a record so that `parseRecord(formatRecord(r))` deep-equals `r`. */
export function formatRecord(record: StsRecord): string {
  void record;
  throw new MtaStsError('ERR_MTASTS_INTERNAL', 'formatRecord: not implemented');
}
