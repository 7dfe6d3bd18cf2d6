import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { DAEMON_HEAP_GROWING_PERCENT, tuneDaemonHeap } from './heap-tuning.js';

describe('daemon heap tuning', () => {
  it('sets the growing factor and reports it with the heap flags already given', () => {
    assert.deepEqual(tuneDaemonHeap(['--max-semi-space-size=4', '--enable-source-maps'], ''), [
      '--max-semi-space-size=4',
      `--heap-growing-percent=${DAEMON_HEAP_GROWING_PERCENT}`,
    ]);
  });

  it("keeps the operator's --heap-growing-percent from the command line or NODE_OPTIONS", () => {
    assert.deepEqual(tuneDaemonHeap(['--heap-growing-percent=50'], ''), ['--heap-growing-percent=50']);
    assert.deepEqual(tuneDaemonHeap([], '--optimize-for-size --heap-growing-percent=10'), [
      '--optimize-for-size',
      '--heap-growing-percent=10',
    ]);
  });
});
