import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { ManualClock } from '../../test/helpers/manual-clock.js';
import { createTextLogger } from './logger.js';
import { formatDate, formatFields, formatSeconds, indentText, Progress } from './output.js';

function sink(isTTY: boolean): {
  text: string;
  isTTY: boolean;
  write(s: string): boolean;
  once(): void;
  removeListener(): void;
} {
  return {
    text: '',
    isTTY,
    write(s: string) {
      this.text += s;
      return true;
    },
    once() {},
    removeListener() {},
  };
}

describe('output helpers', () => {
  it('formats dates in UTC without milliseconds', () => {
    assert.equal(formatDate(new Date('2026-03-04T05:06:07.890Z')), '2026-03-04 05:06:07Z');
  });

  const durations: [number, string][] = [
    [86400, '1d'],
    [31557600, '8766h'],
    [3600, '1h'],
    [300, '5m'],
    [301, '301s'],
    [0, '0s'],
  ];
  for (const [s, text] of durations) {
    it(`formats ${s} s as ${text}`, () => assert.equal(formatSeconds(s), text));
  }

  it('aligns fields and continues list values on their own lines', () => {
    assert.equal(
      formatFields([
        ['domain', 'example.test'],
        ['mx', ['a.test', '*.b.test']],
        ['none', []],
      ]),
      'domain: example.test\nmx:     a.test\n        *.b.test\nnone:   -\n',
    );
  });

  it('indents CRLF text', () => {
    assert.equal(indentText('a: 1\r\nb: 2\r\n'), '  a: 1\n  b: 2\n');
  });

  it('progress redraws with \\r on a terminal at most every 100 ms and clears itself', () => {
    const out = sink(true);
    const clock = new ManualClock(0);
    void clock.set(1000);
    const p = new Progress(out, clock);
    p.update('1/3');
    p.update('2/3'); // same instant: skipped
    void clock.set(1100);
    p.update('3/3');
    p.clear();
    assert.equal(out.text, '\r1/3\r3/3\r   \r');
  });

  it('progress forced updates always draw; nothing at all when not a terminal', () => {
    const tty = sink(true);
    const clock = new ManualClock(5000);
    const p = new Progress(tty, clock);
    p.update('long text');
    p.update('x', true);
    assert.equal(tty.text, '\rlong text\rx        ');
    const pipe = sink(false);
    const q = new Progress(pipe, clock);
    q.update('1/1', true);
    q.clear();
    assert.equal(pipe.text, '');
  });
});

describe('text logger', () => {
  it('writes level: message key=value lines at or above its level', () => {
    const out = sink(false);
    const log = createTextLogger(out, 'warn').child({ domain: 'example.test' });
    log.info({ a: 1 }, 'hidden');
    log.warn({ reason: 'TXT record vanished', n: 2 }, 'possible downgrade');
    log.error({ err: Object.assign(new Error('boom'), { code: 'ERR_X' }) });
    assert.equal(
      out.text,
      'warn: possible downgrade domain=example.test reason="TXT record vanished" n=2\n' +
        'error: domain=example.test err="ERR_X: boom"\n',
    );
  });

  it('silent logs nothing', () => {
    const out = sink(false);
    createTextLogger(out, 'silent').error({}, 'x');
    assert.equal(out.text, '');
  });
});
