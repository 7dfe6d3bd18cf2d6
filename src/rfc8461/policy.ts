import { MtaStsError } from '../errors.js';
import { parseDomain } from './domain.js';
import type { Domain } from './domain.js';
import { MAX_AGE_DIGITS, MAX_MAX_AGE_SECONDS } from './limits.js';
import type { Extension } from './record.js';

/** RFC 8461 §5: what a sender does when no MX matches or TLS fails. */
export type Mode = 'enforce' | 'testing' | 'none';

/** One `mx:` line, RFC 8461 §3.2 and §4.1. `*.example.com` is `{ wildcard: true, domain: example.com }`. */
export interface MxPattern {
  readonly wildcard: boolean;
  readonly domain: Domain;
}

/** A parsed policy file (`/.well-known/mta-sts.txt`), RFC 8461 §3.2. */
export interface Policy {
  readonly version: 'STSv1';
  readonly mode: Mode;
  readonly mx: readonly MxPattern[];
  /** As published (1–10 digits); capped to 31557600 only when cached. */
  readonly maxAgeSeconds: number;
  readonly extensions: readonly Extension[];
}

const CR = 0x0d;
const SP = 0x20;
const HTAB = 0x09;
const COLON = 0x3a;

/** RFC 8461 §3.2: `sts-policy-ext-name = (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / ".")`. */
const EXT_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$/;
/** Keys with a meaning of their own; never extensions. */
const KNOWN_KEYS = new Set(['version', 'mode', 'max_age', 'mx']);

function isWsp(c: number): boolean {
  return c === SP || c === HTAB;
}

function isKeyChar(c: number): boolean {
  return (
    (c >= 0x61 && c <= 0x7a) ||
    (c >= 0x41 && c <= 0x5a) ||
    (c >= 0x30 && c <= 0x39) ||
    c === 0x5f /* _ */ ||
    c === 0x2d /* - */ ||
    c === 0x2e /* . */
  );
}

/**
 * RFC 8461 §3.2: `sts-policy-vchar = %x21-7E / UTF8-2 / UTF8-3 / UTF8-4`, with inner `%x20`.
 * We also allow HTAB inside a value (WSP); control characters (including a lone CR) never.
 */
function isValueChar(c: number): boolean {
  return c === HTAB || (c >= SP && c !== 0x7f);
}

function syntax(line: number, why: string, cause?: unknown): never {
  const where = line > 0 ? `line ${line}: ` : '';
  throw new MtaStsError(
    'ERR_MTASTS_POLICY_SYNTAX',
    `invalid MTA-STS policy: ${where}${why}`,
    cause === undefined ? {} : { cause },
  );
}

function show(s: string): string {
  return JSON.stringify(s.length > 100 ? `${s.slice(0, 100)}…` : s);
}

/**
 * RFC 8461 §3.2: `sts-policy-mx-value = ["*."] Domain`. Never an IP literal (parseDomain rejects
 * them), never `*` alone, never a `*` anywhere but as the whole left-most label.
 *
 * RFC 8461 §3.2 names RFC 5321's `Domain`, i.e. A-labels. We also accept U-labels (and upper case,
 * and one trailing dot) and keep the name in A-label form, because the policy file is UTF-8 text
 * (§3.2 allows UTF-8 in extension values) and §4.1 compares names in A-label form anyway: a U-label
 * is unambiguous once it passes UTS-46, and rejecting it would void the whole policy, which only
 * helps a downgrade. A U-label that fails IDNA is rejected.
 */
function parseMxPattern(value: string, line: number): MxPattern {
  const wildcard = value.startsWith('*.');
  try {
    return { wildcard, domain: parseDomain(wildcard ? value.slice(2) : value) };
  } catch (err) {
    syntax(line, `invalid mx pattern ${show(value)}`, err);
  }
}

/**
 * Parses a policy body (`/.well-known/mta-sts.txt`), RFC 8461 §3.2.
 *
 * Choices where the RFC is loose, and why:
 * - Lines end in LF or CRLF (§3.2 `sts-policy-term`); the last line may lack one. A bare CR is an
 *   error. Empty and whitespace-only lines are ignored: the grammar has none, but they carry no
 *   meaning and appear in hand-written files; rejecting them would only void real policies.
 * - `key: value`: whitespace after the colon and at the end of the line is the grammar's; we also
 *   allow it before the colon. A line that starts with whitespace is an error (it might be meant as
 *   a continuation, which the format does not have). Keys are case-sensitive (`%s"mode"`), so
 *   `Mode: enforce` is an extension and the policy then lacks `mode`.
 * - The first occurrence wins for every field except `mx` (§3.2); a later duplicate is dropped but
 *   must still be a well-formed line. Extension keys follow the same rule.
 * - `max_age` is 1–10 digits (§3.2), so `0` is accepted as published; `+1`, `-1`, `1e3` and 11 digits
 *   are errors. The value is kept as published; see {@link effectiveMaxAgeSeconds} for the cap.
 * - `mx` is required unless the mode is `none`; duplicate `mx` lines are kept, in order.
 * - Size: RFC 8461 §3.3's 64 KiB cap belongs to the fetcher, which enforces it while streaming. The
 *   parser takes any length (it is linear in its input) so that `parsePolicy(formatPolicy(p))` holds
 *   for every policy: formatting a 64 KiB LF policy with CRLF makes it a little longer.
 * - A leading byte-order mark is an error (a UTF-8 decoder such as `TextDecoder` strips it).
 *
 * @throws MtaStsError `ERR_MTASTS_POLICY_SYNTAX`, with the line number in the message.
 */
export function parsePolicy(text: string): Policy {
  if (typeof text !== 'string') syntax(0, 'not a string');
  const n = text.length;
  if (n === 0) syntax(0, 'empty policy');

  let version: 'STSv1' | undefined;
  let mode: Mode | undefined;
  let maxAgeSeconds = -1;
  const mx: MxPattern[] = [];
  const extensions: Extension[] = [];
  let seenExt: Set<string> | undefined;

  let pos = 0;
  let line = 0;
  while (pos < n) {
    line++;
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = n;
    // RFC 8461 §3.2: `sts-policy-term = LF / CRLF`.
    let end = eol;
    if (eol < n && end > pos && text.charCodeAt(end - 1) === CR) end--;
    const start = pos;
    pos = eol + 1;

    // Blank lines are ignored (see above).
    let k = start;
    while (k < end && isWsp(text.charCodeAt(k))) k++;
    if (k === end) continue;
    if (k !== start) syntax(line, 'line starts with whitespace');

    while (k < end && isKeyChar(text.charCodeAt(k))) k++;
    if (k === start) syntax(line, `expected "key: value", got ${show(text.slice(start, end))}`);
    const key = text.slice(start, k);
    while (k < end && isWsp(text.charCodeAt(k))) k++;
    if (k === end || text.charCodeAt(k) !== COLON) {
      syntax(line, `expected "key: value", got ${show(text.slice(start, end))}`);
    }
    k++;
    // RFC 8461 §3.2: `sts-policy-field-delim = ":" *WSP`, and `*WSP` after the field.
    while (k < end && isWsp(text.charCodeAt(k))) k++;
    let vEnd = end;
    while (vEnd > k && isWsp(text.charCodeAt(vEnd - 1))) vEnd--;
    for (let i = k; i < vEnd; i++) {
      if (!isValueChar(text.charCodeAt(i))) {
        syntax(line, `control character 0x${text.charCodeAt(i).toString(16).padStart(2, '0')} in value`);
      }
    }
    if (vEnd === k) syntax(line, `empty value for ${show(key)}`);
    const value = text.slice(k, vEnd);

    switch (key) {
      case 'version':
        if (version !== undefined) break; // first occurrence wins
        // RFC 8461 §3.2: `sts-policy-version-value = %s"STSv1"`.
        if (value !== 'STSv1') syntax(line, `unsupported version ${show(value)}`);
        version = value;
        break;
      case 'mode':
        if (mode !== undefined) break;
        // RFC 8461 §3.2: `sts-policy-mode-value = %s"testing" / %s"enforce" / %s"none"`.
        if (value !== 'enforce' && value !== 'testing' && value !== 'none') syntax(line, `invalid mode ${show(value)}`);
        mode = value;
        break;
      case 'max_age': {
        if (maxAgeSeconds >= 0) break;
        // RFC 8461 §3.2: `sts-policy-max-age-value = 1*10(DIGIT)`.
        if (value.length > MAX_AGE_DIGITS) syntax(line, `max_age has more than ${MAX_AGE_DIGITS} digits`);
        let age = 0;
        for (let i = 0; i < value.length; i++) {
          const d = value.charCodeAt(i) - 0x30;
          if (d < 0 || d > 9) syntax(line, `max_age must be digits, got ${show(value)}`);
          age = age * 10 + d;
        }
        maxAgeSeconds = age;
        break;
      }
      case 'mx':
        // RFC 8461 §3.2: mx is the one field that repeats; every pattern counts, in order.
        mx.push(parseMxPattern(value, line));
        break;
      default:
        // RFC 8461 §3.2: other fields are extensions, kept in order.
        if (!EXT_NAME.test(key)) syntax(line, `invalid field name ${show(key)}`);
        seenExt ??= new Set();
        if (seenExt.has(key)) break;
        seenExt.add(key);
        extensions.push({ key, value });
    }
  }

  // RFC 8461 §3.2: version, mode and max_age are required; mx unless the mode is none.
  if (version === undefined) syntax(0, 'missing version');
  if (mode === undefined) syntax(0, 'missing mode');
  if (maxAgeSeconds < 0) syntax(0, 'missing max_age');
  if (mx.length === 0 && mode !== 'none') syntax(0, `mode ${mode} needs at least one mx`);
  return { version, mode, mx, maxAgeSeconds, extensions };
}

/**
 * The number of seconds a policy may be cached: its `max_age`, capped to 31557600 (RFC 8461 §3.2:
 * "max_age … up to a maximum of 31557600"). The parser keeps the published value; the cache calls this.
 */
export function effectiveMaxAgeSeconds(policy: Pick<Policy, 'maxAgeSeconds'>): number {
  return Math.min(policy.maxAgeSeconds, MAX_MAX_AGE_SECONDS);
}

/**
 * The policy's lines as served, without their terminators (LF or CRLF) and without blank lines
 * (empty or whitespace only, which the parser ignores). This is RFC 8460 §4.4.1 `policy-string`
 * for TLSRPT and the `policy_string` of Postfix's socketmap reply.
 */
export function policyLines(text: string): string[] {
  const lines: string[] = [];
  const n = text.length;
  let pos = 0;
  while (pos < n) {
    let eol = text.indexOf('\n', pos);
    if (eol < 0) eol = n;
    let end = eol;
    if (eol < n && end > pos && text.charCodeAt(end - 1) === CR) end--;
    let k = pos;
    while (k < end && isWsp(text.charCodeAt(k))) k++;
    if (k < end) lines.push(text.slice(pos, end));
    pos = eol + 1;
  }
  return lines;
}

function unformattable(why: string): never {
  throw new MtaStsError('ERR_MTASTS_POLICY_SYNTAX', `cannot format MTA-STS policy: ${why}`);
}

function checkExtValue(key: string, value: unknown): void {
  if (typeof value !== 'string' || value === '') unformattable(`empty value for extension ${show(key)}`);
  if (isWsp(value.charCodeAt(0)) || isWsp(value.charCodeAt(value.length - 1))) {
    unformattable(`value of extension ${show(key)} starts or ends with whitespace`);
  }
  for (let i = 0; i < value.length; i++) {
    if (!isValueChar(value.charCodeAt(i))) unformattable(`control character in value of extension ${show(key)}`);
  }
}

/**
 * Formats a policy so that `parsePolicy(formatPolicy(p))` deep-equals `p`: CRLF lines in the order
 * version, mode, mx…, max_age, extensions. mx patterns are written in A-label form.
 *
 * @throws MtaStsError `ERR_MTASTS_POLICY_SYNTAX` when the policy cannot be written in RFC 8461 §3.2
 *   syntax or would not read back the same (bad mode or max_age, no mx outside mode none, an mx
 *   Domain that is not what parseDomain makes of its A-label, a bad, reserved or repeated extension).
 */
export function formatPolicy(policy: Policy): string {
  if (policy.version !== 'STSv1') unformattable(`unknown version ${show(String(policy.version))}`);
  const { mode } = policy;
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') unformattable(`invalid mode ${show(String(mode))}`);
  const age = policy.maxAgeSeconds;
  if (!Number.isSafeInteger(age) || age < 0 || String(age).length > MAX_AGE_DIGITS) {
    unformattable(`max_age must be an integer of 1-${MAX_AGE_DIGITS} digits, got ${String(age)}`);
  }
  if (policy.mx.length === 0 && mode !== 'none') unformattable(`mode ${mode} needs at least one mx`);

  let out = `version: STSv1\r\nmode: ${mode}\r\n`;
  for (const p of policy.mx) {
    let parsed: Domain;
    try {
      parsed = parseDomain(p.domain.ascii);
    } catch (err) {
      throw new MtaStsError('ERR_MTASTS_POLICY_SYNTAX', `cannot format MTA-STS policy: invalid mx domain`, {
        cause: err,
      });
    }
    if (parsed.ascii !== p.domain.ascii || parsed.unicode !== p.domain.unicode) {
      unformattable(`mx domain ${show(p.domain.ascii)} is not normalised (use parseDomain)`);
    }
    out += `mx: ${formatMxPattern(p)}\r\n`;
  }
  out += `max_age: ${age}\r\n`;
  const seen = new Set<string>();
  for (const { key, value } of policy.extensions) {
    if (typeof key !== 'string' || !EXT_NAME.test(key)) unformattable(`invalid extension name ${show(String(key))}`);
    if (KNOWN_KEYS.has(key)) unformattable(`extension name ${show(key)} is reserved`);
    if (seen.has(key)) unformattable(`repeated extension ${show(key)}`);
    seen.add(key);
    checkExtValue(key, value);
    out += `${key}: ${value}\r\n`;
  }
  return out;
}

/** The pattern as written in a policy: `*.example.com` or `mx.example.com` (A-label form). */
export function formatMxPattern(p: MxPattern): string {
  return p.wildcard ? `*.${p.domain.ascii}` : p.domain.ascii;
}

/**
 * The policy's text: `text` as served when known (non-empty), else the policy written out
 * ({@link formatPolicy}, or, for a policy it refuses, the fields line by line, since a cached
 * record, a report or a reply must never fail for want of the served text). The one place a
 * policy text is rebuilt.
 */
export function policyTextOf(policy: Policy, text?: string): string {
  if (text !== undefined && text !== '') return text;
  try {
    return formatPolicy(policy);
  } catch {
    let s = `version: ${policy.version}\nmode: ${policy.mode}\n`;
    for (const mx of policy.mx) s += `mx: ${formatMxPattern(mx)}\n`;
    s += `max_age: ${policy.maxAgeSeconds}\n`;
    for (const e of policy.extensions) s += `${e.key}: ${e.value}\n`;
    return s;
  }
}
