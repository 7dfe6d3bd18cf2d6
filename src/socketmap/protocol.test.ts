import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import { Domain, parseDomain } from '../rfc8461/domain.js';
import type { Mode, MxPattern, Policy } from '../rfc8461/policy.js';
import { formatReply, normalizeKey, parseRequest } from './protocol.js';
import type { ReplyOutcome, ReplyZone } from './protocol.js';

function mx(pattern: string): MxPattern {
  return pattern.startsWith('*.')
    ? { wildcard: true, domain: parseDomain(pattern.slice(2)) }
    : { wildcard: false, domain: parseDomain(pattern) };
}

function policy(mode: Mode, patterns: string[], maxAgeSeconds = 86400): Policy {
  return { version: 'STSv1', mode, mx: patterns.map(mx), maxAgeSeconds, extensions: [] };
}

const DEFAULT_ZONE: ReplyZone = { strictTesting: false, requireSni: true, tlsrpt: false, tempOnError: false };
const zone = (o: Partial<ReplyZone> = {}): ReplyZone => ({ ...DEFAULT_ZONE, ...o });
const found = (p: Policy, domain = 'example.com', policyText?: string): ReplyOutcome =>
  policyText === undefined ? { kind: 'policy', domain, policy: p } : { kind: 'policy', domain, policy: p, policyText };

const PEER_TLSRPT_TEXT =
  'mx: mx1.example.com\r\nmx: *.example.net\r\nversion: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n';

// Expected replies. Where postfix-mta-sts-resolver gives the same answer for the situation, the
// string is its exact output (tests/refdata*.tsv and responder.py, see
// shared/notes/postfix-socketmap.md); `ours` marks where we deliberately differ.
const replies: ReadonlyArray<{ name: string; outcome: ReplyOutcome; zone: ReplyZone; reply: string; ours?: string }> = [
  {
    name: 'enforce, default zone (refdata good.loc)',
    outcome: found(policy('enforce', ['mail.loc']), 'good.loc'),
    zone: zone(),
    reply: 'OK secure match=mail.loc servername=hostname',
  },
  {
    name: 'enforce, require_sni off (refdata_nosni)',
    outcome: found(policy('enforce', ['mail.loc']), 'good.loc'),
    zone: zone({ requireSni: false }),
    reply: 'OK secure match=mail.loc',
  },
  {
    name: 'testing, default zone (refdata testing.loc)',
    outcome: found(policy('testing', ['mail.loc']), 'testing.loc'),
    zone: zone(),
    reply: 'NOTFOUND ',
  },
  {
    name: 'testing, strict_testing (refdata_strict)',
    outcome: found(policy('testing', ['mail.loc']), 'testing.loc'),
    zone: zone({ strictTesting: true }),
    reply: 'OK secure match=mail.loc servername=hostname',
  },
  {
    name: 'none (refdata valid-none.loc)',
    outcome: found(policy('none', [])),
    zone: zone({ strictTesting: true }),
    reply: 'NOTFOUND ',
  },
  { name: 'no policy (refdata no-record.loc)', outcome: { kind: 'none' }, zone: zone(), reply: 'NOTFOUND ' },
  {
    name: 'temporary failure, temp_on_error off',
    outcome: { kind: 'temp-error', reason: 'DNS SERVFAIL' },
    zone: zone(),
    reply: 'NOTFOUND ',
  },
  {
    name: 'temporary failure, temp_on_error on',
    outcome: { kind: 'temp-error', reason: 'DNS SERVFAIL' },
    zone: zone({ tempOnError: true }),
    reply: 'TEMP DNS SERVFAIL',
    ours: 'the peer never answers TEMP',
  },
  {
    name: 'temp reason sanitised',
    outcome: { kind: 'temp-error', reason: 'bad\r\n\x00reason ü' },
    zone: zone({ tempOnError: true }),
    reply: 'TEMP bad reason',
    ours: 'control characters never reach Postfix',
  },
  {
    name: 'wildcard written as .x',
    outcome: found(policy('enforce', ['*.mail.example.com'])),
    zone: zone({ requireSni: false }),
    reply: 'OK secure match=.mail.example.com',
  },
  {
    name: 'mx order kept and de-duplicated',
    outcome: found(policy('enforce', ['mx2.example.com', 'mx1.example.com', 'MX2.example.com.', '*.example.net'])),
    zone: zone(),
    reply: 'OK secure match=mx2.example.com:mx1.example.com:.example.net servername=hostname',
    ours: 'the peer passes mx through set(): order lost',
  },
  {
    name: 'IDN mx in A-label form',
    outcome: found(policy('enforce', ['mx.bücher.example'])),
    zone: zone({ requireSni: false }),
    reply: 'OK secure match=mx.xn--bcher-kva.example',
  },
  {
    name: 'tlsrpt: the peer example, byte for byte (mx lines served first)',
    outcome: found(policy('enforce', ['mx1.example.com', '*.example.net']), 'example.com', PEER_TLSRPT_TEXT),
    zone: zone({ tlsrpt: true }),
    reply:
      'OK secure match=mx1.example.com:.example.net servername=hostname policy_type=sts policy_domain=example.com ' +
      'mx_host_pattern=mx1.example.com mx_host_pattern=*.example.net { policy_string = mx: mx1.example.com } ' +
      '{ policy_string = mx: *.example.net } { policy_string = version: STSv1 } { policy_string = mode: enforce } ' +
      '{ policy_string = max_age: 86400 }',
  },
  {
    name: 'tlsrpt: policy strings in served order, blank and unsafe lines left out',
    outcome: found(
      policy('enforce', ['mx.example.com']),
      'example.com',
      'version: STSv1\nmode: enforce\n\n  mx: mx.example.com  \nx-ext: a}b { c\nmax_age: 604800\n',
    ),
    zone: zone({ tlsrpt: true, requireSni: false }),
    reply:
      'OK secure match=mx.example.com policy_type=sts policy_domain=example.com mx_host_pattern=mx.example.com ' +
      '{ policy_string = version: STSv1 } { policy_string = mode: enforce } { policy_string = mx: mx.example.com } ' +
      '{ policy_string = max_age: 604800 }',
    ours: 'the peer puts mx strings first; braces could inject attributes',
  },
  {
    name: 'tlsrpt without policy text',
    outcome: found(policy('enforce', ['mx.example.com'])),
    zone: zone({ tlsrpt: true }),
    reply:
      'OK secure match=mx.example.com servername=hostname policy_type=sts policy_domain=example.com mx_host_pattern=mx.example.com',
  },
  {
    name: 'tlsrpt with strict testing',
    outcome: found(policy('testing', ['mx.example.com']), 'example.com', 'version: STSv1\nmode: testing\n'),
    zone: zone({ tlsrpt: true, strictTesting: true, requireSni: false }),
    reply:
      'OK secure match=mx.example.com policy_type=sts policy_domain=example.com mx_host_pattern=mx.example.com ' +
      '{ policy_string = version: STSv1 } { policy_string = mode: testing }',
  },
  {
    name: 'enforce with no usable mx pattern',
    outcome: found({ ...policy('enforce', []), mx: [{ wildcard: false, domain: new Domain('bad host', '') }] }),
    zone: zone(),
    reply: 'TEMP MTA-STS policy has no usable mx pattern',
    ours: 'the peer passes any mx text through',
  },
  {
    name: 'invalid pattern text dropped, valid kept',
    outcome: found({
      ...policy('enforce', ['mx.example.com']),
      mx: [{ wildcard: false, domain: new Domain('1.2.3.4:25', '') }, mx('mx.example.com')],
    }),
    zone: zone({ requireSni: false }),
    reply: 'OK secure match=mx.example.com',
    ours: 'the peer passes any mx text through',
  },
];

describe('formatReply', () => {
  for (const c of replies) {
    it(`${c.name}${c.ours ? ` (ours: ${c.ours})` : ''}`, () => {
      assert.equal(formatReply(c.outcome, c.zone), c.reply);
    });
  }

  it('the tlsrpt peer example is 350 bytes', () => {
    const c = replies.find((r) => r.name.startsWith('tlsrpt: the peer example'));
    assert.equal(Buffer.byteLength(c?.reply ?? ''), 350);
  });

  describe("Postfix's 100,000-byte reply limit", () => {
    // 3,000 distinct patterns of ~24 bytes: the match list alone fits, the TLSRPT extras do not.
    const many = Array.from({ length: 3000 }, (_, i) => `mx${i}.mail.example.com`);
    const text = many.map((h) => `mx: ${h}`).join('\n');
    const big = policy('enforce', many);

    it('drops policy_string first', () => {
      // 1,500 patterns: match list + mx_host_pattern fit (~94 KB), the policy strings do not.
      const half = many.slice(0, 1500);
      const halfText = half.map((h) => `mx: ${h}`).join('\n');
      const r = formatReply(found(policy('enforce', half), 'example.com', halfText), zone({ tlsrpt: true }));
      assert.ok(Buffer.byteLength(r) <= 100_000);
      assert.ok(r.endsWith('mx_host_pattern=mx1499.mail.example.com'));
      assert.equal(r.includes('policy_string'), false);
    });

    it('then all TLSRPT extras', () => {
      const r = formatReply(found(big, 'example.com', text), zone({ tlsrpt: true }));
      assert.ok(Buffer.byteLength(r) <= 100_000);
      assert.ok(r.startsWith('OK secure match=mx0.mail.example.com:'));
      assert.ok(r.endsWith('mx2999.mail.example.com servername=hostname'));
      assert.equal(r.includes('policy_type'), false);
    });

    it('then answers TEMP', () => {
      const huge = policy(
        'enforce',
        Array.from({ length: 5000 }, (_, i) => `mx${i}.a-rather-long-mail-host-name.example.com`),
      );
      assert.equal(formatReply(found(huge), zone()), 'TEMP MTA-STS policy too large for Postfix');
    });
  });
});

describe('parseRequest', () => {
  const ok: ReadonlyArray<{ input: Buffer | string; name: string; key: string }> = [
    { input: 'postfix example.com', name: 'postfix', key: 'example.com' },
    { input: 'postfix [mx.example.com]:25', name: 'postfix', key: '[mx.example.com]:25' },
    { input: 'zone key with spaces', name: 'zone', key: 'key with spaces' },
    { input: 'postfix bücher.example', name: 'postfix', key: 'bücher.example' },
    { input: 'postfix  example.com', name: 'postfix', key: ' example.com' },
  ];
  for (const c of ok) {
    it(`parses ${JSON.stringify(String(c.input))}`, () => {
      const buf = typeof c.input === 'string' ? Buffer.from(c.input, 'utf8') : c.input;
      assert.deepEqual(parseRequest(buf), { name: c.name, key: c.key });
    });
  }

  const bad: ReadonlyArray<{ name: string; input: Buffer }> = [
    { name: 'empty', input: Buffer.alloc(0) },
    { name: 'no space', input: Buffer.from('postfix') },
    { name: 'empty name', input: Buffer.from(' example.com') },
    { name: 'empty key', input: Buffer.from('postfix ') },
    { name: 'invalid UTF-8', input: Buffer.from([0x70, 0x20, 0xff, 0xfe]) },
    { name: 'truncated UTF-8', input: Buffer.from([0x70, 0x20, 0xc3]) },
  ];
  for (const c of bad) {
    it(`rejects: ${c.name}`, () => {
      assert.throws(
        () => parseRequest(c.input),
        (err: unknown) => isMtaStsError(err, 'ERR_MTASTS_SOCKETMAP_REQUEST'),
      );
    });
  }
});

describe('normalizeKey', () => {
  const cases: ReadonlyArray<{ key: string; domain?: string; skip?: string }> = [
    { key: 'example.com', domain: 'example.com' },
    { key: 'Example.COM', domain: 'example.com' },
    { key: 'example.com.', domain: 'example.com' },
    { key: '  example.com  ', domain: 'example.com' },
    { key: '[mx.example.com]', domain: 'mx.example.com' },
    { key: '[mx.example.com]:25', domain: 'mx.example.com' },
    { key: 'mx.example.com:587', domain: 'mx.example.com' },
    { key: '[MX.Example.com.]:25', domain: 'mx.example.com' },
    { key: 'BÜCHER.example', domain: 'bücher.example' },
    { key: 'xn--bcher-kva.example', domain: 'xn--bcher-kva.example' },
    { key: '.example.com', skip: 'parent-domain' },
    { key: '.no-record.loc', skip: 'parent-domain' },
    { key: '127.0.0.1', skip: 'ip-literal' },
    { key: '[127.0.0.1]', skip: 'ip-literal' },
    { key: '[127.0.0.1]:25', skip: 'ip-literal' },
    { key: '127.0.0.1:25', skip: 'ip-literal' },
    { key: '::1', skip: 'ip-literal' },
    { key: '2001:db8::1', skip: 'ip-literal' },
    { key: '[ipv6:2001:db8::1]', skip: 'ip-literal' },
    { key: '[2001:db8::1]:25', skip: 'ip-literal' },
    { key: 'fe80::1%eth0', skip: 'ip-literal' },
    { key: '127.1', skip: 'ip-literal' },
    { key: '0x7f.1', skip: 'ip-literal' },
    { key: '', skip: 'empty' },
    { key: '   ', skip: 'empty' },
    { key: '.', skip: 'empty' },
    { key: '[]', skip: 'empty' },
    { key: ':25', skip: 'empty' },
    { key: 'a..', skip: 'not-a-domain' },
    { key: 'a..b', skip: 'not-a-domain' },
    { key: 'F .', domain: 'f' },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.key)} → ${c.domain ?? `skip (${c.skip})`}`, () => {
      const r = normalizeKey(c.key);
      if (c.domain !== undefined) assert.deepEqual(r, { kind: 'domain', domain: c.domain });
      else assert.deepEqual(r, { kind: 'skip', reason: c.skip });
    });
  }
});
