import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  admission,
  DiscoveryAdmission,
  discoveryCaps,
  registrableDomain,
  type DiscoveryCaps,
  type DiscoveryLimitReason,
  type DiscoveryPurpose,
} from './discovery-admission.js';

describe('discoveryCaps', () => {
  const cases: Array<[string, number, number, number, DiscoveryCaps]> = [
    ['defaults (256, 25 %, 5 %)', 256, 25, 5, { total: 256, unreserved: 192, perDomain: 12 }],
    ['reserve rounds down', 10, 25, 5, { total: 10, unreserved: 8, perDomain: 2 }],
    ['one slot: no reserve, share = the slot', 1, 25, 5, { total: 1, unreserved: 1, perDomain: 1 }],
    ['no reserve', 100, 0, 10, { total: 100, unreserved: 100, perDomain: 10 }],
    ['share 0 → 2', 100, 25, 0, { total: 100, unreserved: 75, perDomain: 2 }],
    ['share 100 → total', 40, 90, 100, { total: 40, unreserved: 4, perDomain: 40 }],
  ];
  for (const [name, total, reserve, share, want] of cases) {
    it(name, () => {
      assert.deepEqual(discoveryCaps({ maxInFlight: total, reservePercent: reserve, domainSharePercent: share }), want);
    });
  }
});

describe('admission', () => {
  const caps: DiscoveryCaps = { total: 8, unreserved: 6, perDomain: 2 };
  const cases: Array<[string, number, number, DiscoveryPurpose, DiscoveryLimitReason | null]> = [
    ['empty: new admitted', 0, 0, 'new', null],
    ['new below the reserve', 5, 1, 'new', null],
    ['new at the reserve → reserved', 6, 0, 'new', 'reserved'],
    ['cached uses the reserve', 6, 0, 'cached', null],
    ['refresh uses the reserve', 7, 0, 'refresh', null],
    ['cached at the total → in_flight', 8, 0, 'cached', 'in_flight'],
    ['refresh at the total → in_flight', 8, 0, 'refresh', 'in_flight'],
    ['new at the total → in_flight (checked first)', 8, 2, 'new', 'in_flight'],
    ['domain at its share → domain_share', 3, 2, 'new', 'domain_share'],
    ['the share binds cached lookups too', 3, 2, 'cached', 'domain_share'],
    ['the share binds the refresher too', 3, 2, 'refresh', 'domain_share'],
    ['share before reserve', 6, 2, 'new', 'domain_share'],
    ['one below the share', 3, 1, 'new', null],
  ];
  for (const [name, total, domain, purpose, want] of cases) {
    it(name, () => assert.equal(admission({ total, domain }, purpose, caps), want));
  }
});

describe('registrableDomain', () => {
  const cases: Array<[string, string]> = [
    ['example.com', 'example.com'],
    ['a.b.example.com', 'example.com'],
    ['x1.attacker.test', 'attacker.test'],
    ['mail.example.co.uk', 'example.co.uk'],
    ['example.co.uk', 'example.co.uk'],
    ['deep.sub.example.com.au', 'example.com.au'],
    ['a.example.ac.jp', 'example.ac.jp'],
    // `com` under a three-letter TLD is an ordinary label.
    ['a.example.com.com', 'com.com'],
    // Unknown second-level labels: two labels.
    ['a.b.example.uk', 'example.uk'],
    ['localhost', 'localhost'],
    ['com', 'com'],
    ['xn--bcher-kva.example', 'xn--bcher-kva.example'],
  ];
  for (const [name, want] of cases) it(`${name} → ${want}`, () => assert.equal(registrableDomain(name), want));
});

describe('DiscoveryAdmission', () => {
  it('counts per registrable domain, refuses at the caps, and frees on release', () => {
    const a = new DiscoveryAdmission({ maxInFlight: 8, reservePercent: 25, domainSharePercent: 0 });
    const first = a.enter('a.evil.test', 'new');
    const second = a.enter('b.evil.test', 'new');
    assert.ok(first.admitted && second.admitted);
    assert.deepEqual(a.enter('c.evil.test', 'new'), { admitted: false, reason: 'domain_share' });
    assert.deepEqual(a.enter('c.evil.test', 'cached'), { admitted: false, reason: 'domain_share' });
    const others = ['one.test', 'two.test', 'three.test', 'four.test'].map((d) => a.enter(d, 'new'));
    assert.ok(others.every((o) => o.admitted));
    assert.equal(a.inFlight, 6);
    assert.deepEqual(a.enter('five.test', 'new'), { admitted: false, reason: 'reserved' });
    const cached = a.enter('cached.test', 'cached');
    const refresh = a.enter('refresh.test', 'refresh');
    assert.ok(cached.admitted && refresh.admitted);
    assert.deepEqual(a.enter('more.test', 'refresh'), { admitted: false, reason: 'in_flight' });
    first.release();
    first.release(); // twice: counted once
    assert.equal(a.inFlight, 7);
    assert.ok(a.enter('c.evil.test', 'cached').admitted, 'the share has room again');
    assert.equal(a.inFlight, 8);
  });

  it('a released domain leaves no count behind', () => {
    const a = new DiscoveryAdmission({ maxInFlight: 2, reservePercent: 0, domainSharePercent: 100 });
    for (let i = 0; i < 1000; i++) {
      const e = a.enter(`n${i}.d${i}.test`, 'new');
      assert.ok(e.admitted);
      e.release();
    }
    assert.equal(a.inFlight, 0);
    const x = a.enter('x.test', 'new');
    const y = a.enter('y.test', 'new');
    assert.ok(x.admitted && y.admitted);
    assert.deepEqual(a.enter('z.test', 'cached'), { admitted: false, reason: 'in_flight' });
  });
});
