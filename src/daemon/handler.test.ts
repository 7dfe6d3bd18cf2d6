import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { StsState } from '../cache/types.js';
import { parseConfigText } from '../config/load-config.js';
import type { DaneState, DaneStateKind } from '../dane/dane-state.js';
import { silentLogger } from '../logger.js';
import { noopMetrics } from '../metrics/metrics.js';
import { parsePolicy } from '../rfc8461/policy.js';
import { createSocketmapHandler, type HandlerDane } from './handler.js';

const CONFIG = parseConfigText(
  [
    'dane:',
    '  resolver: 127.0.0.1:5353',
    'default_zone:',
    '  dane: prefer',
    'zones:',
    '  sts:',
    '    dane: "off"',
    '  rpt:',
    '    dane: prefer',
    '    tlsrpt: true',
  ].join('\n'),
);

const policyText = 'version: STSv1\nmode: enforce\nmx: mx.example.com\nmax_age: 86400\n';
const enforce = parsePolicy(policyText);
const testing = parsePolicy(policyText.replace('enforce', 'testing'));
const sts = (policy = enforce): StsState => ({
  kind: 'policy',
  domain: 'example.com',
  policy,
  policyText,
  source: 'fresh',
});

function world(options: { sts: StsState; dane?: DaneStateKind | 'off'; usable?: boolean }) {
  const asked: string[] = [];
  const levels: string[] = [];
  const dane: HandlerDane = {
    usable: () => options.usable ?? true,
    state: async (domain): Promise<DaneState> => {
      asked.push(domain);
      const kind = options.dane === 'off' || options.dane === undefined ? 'none' : options.dane;
      return { kind, ttlSeconds: 300, reason: kind === 'temp' ? 'SERVFAIL at _25._tcp.mx.example.com TLSA' : kind };
    },
  };
  const handler = createSocketmapHandler({
    db: { stsState: async () => options.sts },
    config: () => CONFIG,
    logger: silentLogger,
    metrics: { ...noopMetrics, daneAnswer: (l) => levels.push(l) },
    ...(options.dane !== 'off' ? { dane } : {}),
  });
  const ask = (key: string, map = 'postfix') => handler(map, key, new AbortController().signal);
  return { ask, asked, levels };
}

describe('socketmap handler with DANE', () => {
  // [DANE state, reply in a dane: prefer zone, metrics label]
  const rows: [DaneStateKind, string, string][] = [
    ['dane-only', 'OK dane-only', 'dane-only'],
    ['dane', 'OK dane', 'dane'],
    ['temp', 'TEMP DANE lookup failed: SERVFAIL at _25._tcp.mx.example.com TLSA', 'temp'],
    ['none', 'OK secure match=mx.example.com servername=hostname', 'secure'],
    ['unusable', 'OK secure match=mx.example.com servername=hostname', 'secure'],
  ];
  for (const [kind, reply, label] of rows) {
    it(`enforce + DANE ${kind} → ${reply}`, async () => {
      const w = world({ sts: sts(), dane: kind });
      assert.equal(await w.ask('example.com'), reply);
      assert.equal(await w.ask('Example.COM.'), reply, 'the memoised reply is the same');
      assert.deepEqual(w.asked, ['example.com', 'example.com']);
      assert.deepEqual(w.levels, [label, label]);
    });
  }

  it('DANE is not asked where it cannot change the answer: testing, none, temp, DANE-off zone, IP literal', async () => {
    for (const state of [
      sts(testing),
      { kind: 'none' } as const,
      { kind: 'temp', reason: 'x', storeUnreadable: false } as const,
    ]) {
      const w = world({ sts: state, dane: 'dane-only' });
      const r = await w.ask('example.com');
      assert.ok(!r.includes('dane'), r);
      assert.deepEqual(w.asked, []);
    }
    const w = world({ sts: sts(), dane: 'dane-only' });
    assert.equal(await w.ask('example.com', 'sts'), 'OK secure match=mx.example.com servername=hostname');
    assert.equal(await w.ask('[192.0.2.1]'), 'NOTFOUND ');
    assert.deepEqual(w.asked, []);
  });

  it('a resolver known not to validate: DANE not asked, MTA-STS answers', async () => {
    const w = world({ sts: sts(), dane: 'dane-only', usable: false });
    assert.equal(await w.ask('example.com'), 'OK secure match=mx.example.com servername=hostname');
    assert.deepEqual(w.asked, []);
  });

  it('no DANE side at all (no dane: section): MTA-STS answers', async () => {
    const w = world({ sts: sts(), dane: 'off' });
    assert.equal(await w.ask('example.com'), 'OK secure match=mx.example.com servername=hostname');
  });

  it('a tlsrpt zone: DANE answers carry no TLSRPT attributes; without DANE they are kept', async () => {
    assert.equal(await world({ sts: sts(), dane: 'dane-only' }).ask('example.com', 'rpt'), 'OK dane-only');
    const r = await world({ sts: sts(), dane: 'none' }).ask('example.com', 'rpt');
    assert.match(
      r,
      /^OK secure match=mx\.example\.com servername=hostname policy_type=sts policy_domain=example\.com /,
    );
  });

  it('a client gone during the DANE lookup gets TEMP client gone', async () => {
    const ac = new AbortController();
    const handler = createSocketmapHandler({
      db: { stsState: async () => sts() },
      config: () => CONFIG,
      logger: silentLogger,
      metrics: noopMetrics,
      dane: {
        usable: () => true,
        state: async () => {
          ac.abort();
          return { kind: 'temp', ttlSeconds: 0, reason: 'DANE lookup aborted' };
        },
      },
    });
    assert.equal(await handler('postfix', 'example.com', ac.signal), 'TEMP client gone');
  });
});

describe('socketmap handler debug line', () => {
  it('at debug level, one line per answer with domain, zone, answer, what it rested on and the time', async () => {
    const lines: Record<string, unknown>[] = [];
    const logger = {
      ...silentLogger,
      debug: (obj: object, msg?: string) => lines.push({ ...obj, msg }),
      isLevelEnabled: (level: string) => level === 'debug',
    };
    const handler = createSocketmapHandler({
      db: { stsState: async () => sts() },
      config: () => CONFIG,
      logger,
      metrics: noopMetrics,
      dane: { usable: () => true, state: async () => ({ kind: 'dane-only', ttlSeconds: 60, reason: 'x' }) },
    });
    assert.equal(
      await handler('sts', 'Example.com.', new AbortController().signal),
      'OK secure match=mx.example.com servername=hostname',
    );
    assert.equal(await handler('postfix', 'example.com', new AbortController().signal), 'OK dane-only');
    assert.equal(lines.length, 2);
    const [first, second] = lines;
    assert.deepEqual(
      { ...first, ms: typeof first?.ms },
      {
        msg: 'answered',
        key: 'Example.com.',
        domain: 'example.com',
        zone: 'sts',
        answer: 'OK secure match=mx.example.com servername=hostname',
        sts: 'enforce from fresh',
        ms: 'number',
      },
    );
    assert.equal(second?.dane, 'dane-only');
    assert.equal(second?.zone, 'default');
  });

  it('below debug level, no line is built', async () => {
    let built = 0;
    const logger = { ...silentLogger, debug: () => built++, isLevelEnabled: () => false };
    const handler = createSocketmapHandler({
      db: { stsState: async () => sts() },
      config: () => CONFIG,
      logger,
      metrics: noopMetrics,
    });
    await handler('postfix', 'example.com', new AbortController().signal);
    assert.equal(built, 0);
  });
});
