import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parsePolicy } from '../rfc8461/policy.js';
import type { Logger } from '../logger.js';
import type { DowngradeSign, Metrics, PolicyChange } from '../metrics/metrics.js';
import { noopMetrics } from '../metrics/metrics.js';
import { auditDowngrade, auditPolicyChange, policyChanges } from './policy-audit.js';

const policy = (mode: string, ...mx: string[]) =>
  parsePolicy(['version: STSv1', `mode: ${mode}`, ...mx.map((m) => `mx: ${m}`), 'max_age: 86400', ''].join('\n'));

function recorder(): {
  logger: Logger;
  lines: Array<[string, Record<string, unknown>, string]>;
  metrics: Metrics;
  counted: string[];
} {
  const lines: Array<[string, Record<string, unknown>, string]> = [];
  const at = (level: string) => (obj: object, msg?: string) =>
    void lines.push([level, obj as Record<string, unknown>, msg ?? '']);
  const logger: Logger = {
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  };
  const counted: string[] = [];
  const metrics: Metrics = {
    ...noopMetrics,
    policyChange: (c: PolicyChange) => void counted.push(`change ${c}`),
    downgradeSuspected: (s: DowngradeSign) => void counted.push(`downgrade ${s}`),
  };
  return { logger, lines, metrics, counted };
}

describe('policyChanges', () => {
  const rows: ReadonlyArray<
    [string, [string, ReturnType<typeof policy>], [string, ReturnType<typeof policy>], string[]]
  > = [
    ['same id, same policy', ['a', policy('enforce', 'mx.a.test')], ['a', policy('enforce', 'mx.a.test')], []],
    ['new id only', ['a', policy('enforce', 'mx.a.test')], ['b', policy('enforce', 'mx.a.test')], ['id']],
    ['mode', ['a', policy('enforce', 'mx.a.test')], ['b', policy('testing', 'mx.a.test')], ['id', 'mode']],
    [
      'mx added',
      ['a', policy('enforce', 'mx.a.test')],
      ['b', policy('enforce', 'mx.a.test', '*.b.test')],
      ['id', 'mx'],
    ],
    [
      'mx order and case do not count',
      ['a', policy('enforce', 'A.test', 'b.test')],
      ['a', policy('enforce', 'b.test', 'a.test')],
      [],
    ],
    ['everything', ['a', policy('enforce', 'a.test')], ['b', policy('none', 'c.test')], ['id', 'mode', 'mx']],
  ];
  for (const [what, [id0, p0], [id1, p1], expected] of rows) {
    it(what, () => {
      assert.deepEqual(policyChanges({ recordId: id0, policy: p0 }, { recordId: id1, policy: p1 }), expected);
    });
  }
});

describe('auditPolicyChange and auditDowngrade', () => {
  it('one info line naming what changed, one count per change; nothing when nothing changed', () => {
    const r = recorder();
    auditPolicyChange(
      r.logger,
      r.metrics,
      'a.test',
      { recordId: '1', policy: policy('enforce', 'mx1.a.test') },
      {
        recordId: '2',
        policy: policy('testing', 'mx2.a.test'),
      },
    );
    assert.equal(r.lines.length, 1);
    const [level, fields, msg] = r.lines[0] ?? [];
    assert.equal(level, 'info');
    assert.equal(msg, 'MTA-STS policy changed');
    assert.deepEqual(fields, {
      event: 'policy-changed',
      domain: 'a.test',
      changes: ['id', 'mode', 'mx'],
      id: { from: '1', to: '2' },
      mode: { from: 'enforce', to: 'testing' },
      mxAdded: ['mx2.a.test'],
      mxRemoved: ['mx1.a.test'],
    });
    assert.deepEqual(r.counted, ['change id', 'change mode', 'change mx']);
    auditPolicyChange(
      r.logger,
      r.metrics,
      'a.test',
      { recordId: '2', policy: policy('testing', 'mx2.a.test') },
      {
        recordId: '2',
        policy: policy('testing', 'mx2.a.test'),
      },
    );
    assert.equal(r.lines.length, 1);
  });

  it('a suspected downgrade is a warn line with its sign, and counted', () => {
    const r = recorder();
    auditDowngrade(r.logger, r.metrics, 'txt_vanished', { domain: 'a.test', mode: 'enforce' }, 'TXT gone');
    assert.deepEqual(r.lines, [
      ['warn', { event: 'downgrade-suspected', sign: 'txt_vanished', domain: 'a.test', mode: 'enforce' }, 'TXT gone'],
    ]);
    assert.deepEqual(r.counted, ['downgrade txt_vanished']);
  });
});
