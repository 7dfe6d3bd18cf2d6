import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RepeatGate, repeatedFields } from './repeat-gate.js';

describe('RepeatGate', () => {
  it('passes the first line of a kind, holds repeats for the interval, then passes one with the count', () => {
    let t = 0;
    const gate = new RepeatGate(1000, 10, () => t);
    assert.equal(gate.pass('store'), 0);
    assert.equal(gate.pass('store'), undefined);
    assert.equal(gate.pass('store'), undefined);
    assert.equal(gate.pass('other'), 0, 'kinds are separate');
    t = 999;
    assert.equal(gate.pass('store'), undefined);
    t = 1000;
    assert.equal(gate.pass('store'), 3, 'three were held back');
    assert.equal(gate.pass('store'), undefined);
    t = 5000;
    assert.equal(gate.pass('store'), 1);
  });

  it('keeps at most maxKinds kinds: a forgotten kind passes again', () => {
    const t = 0;
    const gate = new RepeatGate(1000, 2, () => t);
    assert.equal(gate.pass('a'), 0);
    assert.equal(gate.pass('b'), 0);
    assert.equal(gate.pass('c'), 0);
    assert.equal(gate.pass('a'), 0, 'a was the oldest and was forgotten');
    assert.equal(gate.pass('c'), undefined);
  });

  it('repeatedFields: a count only when something was held back', () => {
    assert.deepEqual(repeatedFields(0), {});
    assert.deepEqual(repeatedFields(4), { repeated: 4 });
  });
});
