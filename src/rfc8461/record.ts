import { MtaStsError } from '../errors.js';
import { MAX_RECORD_ID_CHARS } from './limits.js';

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

const VERSION_FIELD = 'v=STSv1';
const SEMI = 0x3b;
const EQUALS = 0x3d;
const SP = 0x20;
const HTAB = 0x09;

/** RFC 8461 §3.1: `sts-id = %s"id=" 1*32(ALPHA / DIGIT)`. */
const ID = /^[A-Za-z0-9]{1,32}$/;
/** RFC 8461 §3.1: `sts-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`. */
const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** RFC 8461 §3.1: `sts-ext-value = 1*(%x21-3A / %x3C / %x3E-7E)`: visible ASCII except `;` and `=`. */
const EXT_VALUE = /^[\x21-\x3a\x3c\x3e-\x7e]+$/;

function isWsp(c: number): boolean {
  return c === SP || c === HTAB;
}

function isAlnum(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a);
}

function isExtNameChar(c: number): boolean {
  return isAlnum(c) || c === 0x5f /* _ */ || c === 0x2d /* - */ || c === 0x2e; /* . */
}

function isExtValueChar(c: number): boolean {
  return c >= 0x21 && c <= 0x7e && c !== SEMI && c !== EQUALS;
}

/** A value quoted for an error message, cut short: records come from the network. */
function show(s: unknown): string {
  const t = String(s);
  return JSON.stringify(t.length > 80 ? `${t.slice(0, 80)}…` : t);
}

function syntax(txt: string, pos: number, why: string): never {
  throw new MtaStsError('ERR_MTASTS_RECORD_SYNTAX', `invalid MTA-STS record at offset ${pos}: ${why}: ${show(txt)}`);
}

/**
 * Parses one TXT record (its character-strings already joined).
 * Returns `null` when the text is not an MTA-STS record (does not start with `v=STSv1`).
 *
 * Choices where RFC 8461 §3.1 is loose, and why:
 * - The record is ours when its first token (up to the first `;` or whitespace) is exactly
 *   `v=STSv1`. So `v=STSv10`, `v=STSv1.1` and ` v=STSv1` (leading whitespace) are someone else's
 *   TXT record and give `null`: §3.1 says records that do not begin with `v=STSv1;` are discarded.
 *   Keys are case-sensitive (`%s"…"` in the ABNF), so `V=stsv1` is `null` too.
 * - Whitespace (SP/HTAB) is allowed around every `;`, including before the trailing `;` and after
 *   it, and at the end of the record. The ABNF allows it only around inner `;`, but trailing
 *   spaces are common in published records and carry no meaning.
 * - A repeated field: the first one counts and the later ones are dropped (they must still be
 *   well-formed fields). This holds for `id`, for a second `v=`, and for extension keys. Keys are
 *   case-sensitive, so `ID=x` is an extension, not the id.
 *
 * @throws MtaStsError `ERR_MTASTS_RECORD_SYNTAX` when it starts like one but breaks RFC 8461 §3.1.
 */
export function parseRecord(txt: string): StsRecord | null {
  if (typeof txt !== 'string' || !txt.startsWith(VERSION_FIELD)) return null;
  const n = txt.length;
  let pos = VERSION_FIELD.length;
  // RFC 8461 §3.1: `sts-version = %s"v=STSv1"` followed by `*WSP ";"`: the version token ends here.
  if (pos < n) {
    const c = txt.charCodeAt(pos);
    if (c !== SEMI && !isWsp(c)) return null;
  }

  let id: string | undefined;
  const extensions: Extension[] = [];
  let seenExt: Set<string> | undefined;
  let fields = 0;

  for (;;) {
    while (pos < n && isWsp(txt.charCodeAt(pos))) pos++;
    if (pos === n) break;
    // RFC 8461 §3.1: fields are separated by `*WSP %x3B *WSP`.
    if (txt.charCodeAt(pos) !== SEMI) syntax(txt, pos, "expected ';' between fields");
    pos++;
    while (pos < n && isWsp(txt.charCodeAt(pos))) pos++;
    if (pos === n) break; // RFC 8461 §3.1: a trailing `;` is allowed.

    const nameStart = pos;
    while (pos < n && isExtNameChar(txt.charCodeAt(pos))) pos++;
    if (pos === nameStart) {
      syntax(txt, pos, txt.charCodeAt(pos) === SEMI ? 'empty field' : 'expected a field name');
    }
    const key = txt.slice(nameStart, pos);
    // RFC 8461 §3.1: sts-ext-name starts with a letter or digit and has at most 32 characters.
    if (!EXT_NAME.test(key)) syntax(txt, nameStart, `invalid field name ${show(key)}`);
    if (pos === n || txt.charCodeAt(pos) !== EQUALS) syntax(txt, pos, `expected '=' after ${show(key)}`);
    pos++;
    const valueStart = pos;
    while (pos < n && isExtValueChar(txt.charCodeAt(pos))) pos++;
    if (pos === valueStart) syntax(txt, pos, `field ${show(key)} has an empty or invalid value`);
    const value = txt.slice(valueStart, pos);
    fields++;

    if (key === 'id') {
      if (id !== undefined) continue; // first one counts
      // RFC 8461 §3.1: `sts-id = %s"id=" 1*32(ALPHA / DIGIT)`.
      if (!ID.test(value)) {
        syntax(txt, valueStart, `id must be 1-${MAX_RECORD_ID_CHARS} letters or digits, got ${show(value)}`);
      }
      id = value;
    } else if (key === 'v') {
      continue; // a repeated version field: the first (v=STSv1) counts
    } else {
      seenExt ??= new Set();
      if (seenExt.has(key)) continue; // first one counts
      seenExt.add(key);
      extensions.push({ key, value });
    }
  }

  // RFC 8461 §3.1: `1*(... sts-field)`; the id field is REQUIRED.
  if (fields === 0) syntax(txt, pos, 'no fields after v=STSv1');
  if (id === undefined) syntax(txt, pos, 'missing id field');
  return { version: 'STSv1', id, extensions };
}

function unformattable(why: string): never {
  throw new MtaStsError('ERR_MTASTS_RECORD_SYNTAX', `cannot format MTA-STS record: ${why}`);
}

/**
 * Formats a record as `v=STSv1; id=X;` followed by ` key=value;` per extension, so that
 * `parseRecord(formatRecord(r))` deep-equals `r`.
 *
 * @throws MtaStsError `ERR_MTASTS_RECORD_SYNTAX` when the record cannot be written in RFC 8461 §3.1
 *   syntax or would not read back the same (bad id, bad extension name or value, an extension named
 *   `id` or `v`, a repeated extension key).
 */
export function formatRecord(record: StsRecord): string {
  if (record.version !== 'STSv1') unformattable(`unknown version ${show(record.version)}`);
  if (typeof record.id !== 'string' || !ID.test(record.id)) {
    unformattable(`id must be 1-${MAX_RECORD_ID_CHARS} letters or digits, got ${show(record.id)}`);
  }
  let out = `${VERSION_FIELD}; id=${record.id};`;
  const seen = new Set<string>();
  for (const { key, value } of record.extensions) {
    if (typeof key !== 'string' || !EXT_NAME.test(key)) unformattable(`invalid extension name ${show(key)}`);
    if (key === 'id' || key === 'v') unformattable(`extension name ${show(key)} is reserved`);
    if (seen.has(key)) unformattable(`repeated extension ${show(key)}`);
    seen.add(key);
    if (typeof value !== 'string' || !EXT_VALUE.test(value)) {
      unformattable(`invalid value for extension ${show(key)}: ${show(value)}`);
    }
    out += ` ${key}=${value};`;
  }
  return out;
}
