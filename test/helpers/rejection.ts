import assert from 'node:assert/strict';
import { isMtaStsError, type MtaStsError } from '../../src/errors.js';

/** The MtaStsError `p` rejects with; fails the test when it resolves or rejects with anything else. */
export async function mtaStsRejection(p: Promise<unknown>): Promise<MtaStsError> {
  try {
    await p;
  } catch (err) {
    assert.ok(isMtaStsError(err), `expected an MtaStsError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a rejection');
}
