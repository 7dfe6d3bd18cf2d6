import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CommanderError } from 'commander';
import { ERROR_CODES, MtaStsError, type ErrorCode } from '../errors.js';
import { EXIT, EXIT_BY_CODE, exitStatusOf, failureOf } from './exit-codes.js';

describe('exit statuses', () => {
  it('maps every error code to a documented status', () => {
    const documented = new Set<number>(Object.values(EXIT));
    for (const code of ERROR_CODES) {
      assert.ok(documented.has(exitStatusOf(code)), code);
    }
    assert.deepEqual(Object.keys(EXIT_BY_CODE).sort(), [...ERROR_CODES].sort());
  });

  const table: [ErrorCode, number][] = [
    ['ERR_MTASTS_USAGE', 2],
    ['ERR_MTASTS_CONFIG', 2],
    ['ERR_MTASTS_DOMAIN', 2],
    ['ERR_MTASTS_NO_RECORD', 3],
    ['ERR_MTASTS_NO_POLICY', 3],
    ['ERR_MTASTSDB_NOT_FOUND', 3],
    ['ERR_MTASTS_DNS', 4],
    ['ERR_DANE_DNS', 4],
    ['ERR_MTASTS_POLICY_FETCH', 4],
    ['ERR_MTASTS_RECORD_SYNTAX', 5],
    ['ERR_MTASTS_POLICY_SYNTAX', 5],
    ['ERR_MTASTS_MULTIPLE_RECORDS', 5],
    ['ERR_MTASTSDB_STORE', 6],
    ['ERR_MTASTSDB_STORE_CORRUPT', 6],
    ['ERR_MTASTSDB_BACKOFF', 7],
    ['ERR_MTASTSDB_STORE_MISSING', 8],
    ['ERR_MTASTS_LISTEN', 9],
    ['ERR_MTASTS_INTERNAL', 1],
  ];
  for (const [code, status] of table) {
    it(`${code} → ${status}`, () => {
      assert.equal(exitStatusOf(code), status);
      const f = failureOf(new MtaStsError(code, 'something\nhappened'), false);
      assert.deepEqual(f, { status, line: `${code}: something happened` });
    });
  }

  it('commander usage errors → 2 with one ERR_MTASTS_USAGE line', () => {
    const err = new CommanderError(
      1,
      'commander.unknownOption',
      "error: unknown option '--bogus'\n(Did you mean --json?)",
    );
    assert.deepEqual(failureOf(err, false), {
      status: 2,
      line: "ERR_MTASTS_USAGE: unknown option '--bogus' (Did you mean --json?)",
    });
  });

  it('--help and --version → 0 without a line; help for a missing command → 2', () => {
    assert.deepEqual(failureOf(new CommanderError(0, 'commander.helpDisplayed', '(outputHelp)'), false), { status: 0 });
    assert.deepEqual(failureOf(new CommanderError(0, 'commander.version', '1.0.0'), false), { status: 0 });
    assert.deepEqual(failureOf(new CommanderError(1, 'commander.help', '(outputHelp)'), false), { status: 2 });
  });

  it('anything else is internal (1); an interrupted run is 130', () => {
    assert.deepEqual(failureOf(new TypeError('x is undefined'), false), {
      status: 1,
      line: 'ERR_MTASTS_INTERNAL: x is undefined',
    });
    assert.equal(failureOf(new MtaStsError('ERR_MTASTS_ABORTED', 'aborted'), true).status, 130);
  });
});
