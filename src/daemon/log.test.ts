import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { MtaStsError } from '../errors.js';
import { createDaemonLogger, serializeError } from './log.js';

function capture(format: 'json' | 'text'): { lines: string[]; log: ReturnType<typeof createDaemonLogger> } {
  const lines: string[] = [];
  const log = createDaemonLogger({ format, level: 'info', output: { write: (s: string) => lines.push(s) } });
  return { lines, log };
}

describe('daemon log lines', () => {
  it('a coded error is its code, message and cause: one line, no stack', () => {
    const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:443'), { code: 'ECONNREFUSED' });
    const err = new MtaStsError('ERR_MTASTS_POLICY_FETCH', 'fetching the policy of a.test failed', { cause });
    assert.deepEqual(serializeError(err), {
      code: 'ERR_MTASTS_POLICY_FETCH',
      message: 'fetching the policy of a.test failed',
      cause: 'ECONNREFUSED: connect ECONNREFUSED 127.0.0.1:443',
    });
    for (const format of ['json', 'text'] as const) {
      const { lines, log } = capture(format);
      log.logger.info({ err, domain: 'a.test' }, 'MTA-STS policy fetch failed; backing off');
      log.flush();
      assert.equal(lines.length, 1, format);
      const line = lines[0] ?? '';
      assert.equal(line.split('\n').length, 2, `${format}: one line: ${line}`);
      assert.doesNotMatch(line, /stack|\bat /, format);
      assert.match(line, /ERR_MTASTS_POLICY_FETCH/, format);
    }
  });

  it('anything else is a bug: the stack stays', () => {
    const { lines, log } = capture('json');
    log.logger.error({ err: new TypeError('x is not a function') }, 'unexpected');
    log.flush();
    const entry = JSON.parse(lines[0] ?? '{}') as { err?: { type?: string; stack?: string } };
    assert.equal(entry.err?.type, 'TypeError');
    assert.match(entry.err?.stack ?? '', /TypeError: x is not a function\n\s+at /);
  });
});
