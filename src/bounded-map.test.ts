import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BoundedMap } from './bounded-map.js';

describe('BoundedMap', () => {
  it('evicts the oldest set entries past the entry bound; setting again makes an entry the newest', () => {
    const m = new BoundedMap<string, number>(3);
    for (const k of ['a', 'b', 'c']) m.set(k, 1);
    m.set('a', 2);
    m.set('d', 3);
    assert.equal(m.size, 3);
    assert.equal(m.get('b'), undefined, 'b was the oldest');
    assert.deepEqual([m.get('a'), m.get('c'), m.get('d')], [2, 1, 3]);
  });

  it('evicts the oldest past the byte bound; an entry bigger than the bound is refused and replaces nothing', () => {
    const m = new BoundedMap<string, string>(100, 1000);
    m.set('a', 'x', 400);
    m.set('b', 'y', 400);
    m.set('c', 'z', 400);
    assert.deepEqual([m.get('a'), m.get('b'), m.get('c')], [undefined, 'y', 'z']);
    assert.equal(m.set('b', 'huge', 1001), false);
    assert.equal(m.get('b'), undefined, 'the old value of a refused key is gone');
    m.set('d', 'w', 600);
    assert.deepEqual([m.get('c'), m.get('d')], ['z', 'w'], 'bytes of deleted entries were given back');
  });

  it('replace keeps the place and the bytes of an entry held, and adds nothing', () => {
    const m = new BoundedMap<string, number>(2, 100);
    m.set('a', 1, 60);
    m.set('b', 2, 40);
    assert.equal(m.replace('a', 10), true);
    assert.equal(m.replace('x', 1), false);
    assert.equal(m.get('x'), undefined);
    m.set('c', 3, 0);
    assert.deepEqual([m.get('a'), m.get('b'), m.get('c')], [undefined, 2, 3], 'a stayed the oldest');
    assert.equal(m.set('d', 4, 60), true);
    assert.equal(m.get('b'), undefined, 'b, now the oldest, evicted past two entries');
  });

  it('keeps nothing with a bound of 0 entries; delete and clear free the bytes', () => {
    const none = new BoundedMap<string, number>(0);
    assert.equal(none.set('a', 1), false);
    assert.equal(none.size, 0);
    const m = new BoundedMap<string, number>(10, 100);
    m.set('a', 1, 100);
    assert.equal(m.delete('a'), true);
    assert.equal(m.delete('a'), false);
    assert.equal(m.set('b', 2, 100), true);
    m.clear();
    assert.equal(m.set('c', 3, 100), true);
    assert.equal(m.size, 1);
  });
});
