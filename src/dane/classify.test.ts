import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Answer } from 'dns-packet';
import { bareName, classify, negativeTtlSeconds, type ClassifiableAnswer } from './classify.js';

const soa = (name: string, ttl: number, minimum: number): Answer => ({
  type: 'SOA',
  name,
  ttl,
  data: { mname: `ns.${name}`, rname: `hostmaster.${name}`, minimum },
});
const a = (name: string, ttl = 300, data = '192.0.2.1'): Answer => ({ type: 'A', name, ttl, data });
const cname = (name: string, target: string, ttl = 300): Answer => ({ type: 'CNAME', name, ttl, data: target });
const reply = (rcode: string, ad: boolean, answers: Answer[] = [], authorities: Answer[] = []): ClassifiableAnswer => ({
  rcode,
  ad,
  answers,
  authorities,
});

describe('classify: rcode + AD', () => {
  const table: [string, ClassifiableAnswer, string, boolean][] = [
    ['records with AD', reply('NOERROR', true, [a('mx.example')]), 'secure', false],
    ['NODATA with AD', reply('NOERROR', true, [], [soa('example', 300, 120)]), 'secure-nodata', true],
    ['NXDOMAIN with AD', reply('NXDOMAIN', true, [], [soa('example', 300, 120)]), 'secure-nxdomain', true],
    ['records without AD', reply('NOERROR', false, [a('mx.example')]), 'insecure', false],
    ['NODATA without AD', reply('NOERROR', false), 'insecure', true],
    ['NXDOMAIN without AD', reply('NXDOMAIN', false), 'insecure', true],
    ['SERVFAIL (bogus)', reply('SERVFAIL', false), 'temp', false],
    ['SERVFAIL with AD set anyway', reply('SERVFAIL', true), 'temp', false],
    ['REFUSED', reply('REFUSED', false), 'temp', false],
    ['FORMERR', reply('FORMERR', false), 'temp', false],
    ['NOTIMP', reply('NOTIMP', false), 'temp', false],
    ['an unknown rcode', reply('RCODE_11', true), 'temp', false],
    ['NXDOMAIN with records of the type', reply('NXDOMAIN', true, [a('mx.example')]), 'temp', false],
  ];
  for (const [what, answer, status, negative] of table) {
    it(`${what} → ${status}`, () => {
      const c = classify(answer, 'mx.example', 'A');
      assert.equal(c.status, status);
      assert.equal(c.negative, negative);
      if (status === 'temp') assert.equal(c.records.length, 0);
    });
  }
  it('temp names the rcode', () => {
    assert.equal(classify(reply('SERVFAIL', false), 'x.example', 'A').problem, 'SERVFAIL');
  });
});

describe('classify: owner names and CNAME chains', () => {
  it('ignores records owned by another name', () => {
    const c = classify(
      reply('NOERROR', true, [a('other.example'), a('MX.Example.', 60, '192.0.2.9')]),
      'mx.example',
      'A',
    );
    assert.equal(c.status, 'secure');
    assert.deepEqual(
      c.records.map((r) => (r.type === 'A' ? r.data : '')),
      ['192.0.2.9'],
    );
    assert.equal(c.ttlSeconds, 60);
  });

  it('only records of another owner → NODATA, not an answer', () => {
    const c = classify(reply('NOERROR', true, [a('evil.example')]), 'mx.example', 'A');
    assert.equal(c.status, 'secure-nodata');
  });

  it('follows a chain to the target; the lowest CNAME TTL caps the TTL', () => {
    const c = classify(
      reply('NOERROR', true, [
        cname('mx.example', 'b.example', 100),
        cname('b.example', 'host.provider.example', 50),
        a('host.provider.example', 300),
      ]),
      'mx.example.',
      'A',
    );
    assert.equal(c.status, 'secure');
    assert.deepEqual(c.chain, ['mx.example', 'b.example', 'host.provider.example']);
    assert.equal(c.records.length, 1);
    assert.equal(c.ttlSeconds, 50);
    assert.equal(c.cnameTtlSeconds, 50);
  });

  it('a record at a name off the chain does not count', () => {
    const c = classify(reply('NOERROR', true, [cname('mx.example', 'b.example'), a('mx.example')]), 'mx.example', 'A');
    assert.equal(c.status, 'secure-nodata');
    assert.deepEqual(c.chain, ['mx.example', 'b.example']);
  });

  it('8 hops are followed, a 9th is temp', () => {
    const hops = (n: number): Answer[] => [
      ...Array.from({ length: n }, (_, i) => cname(`h${i}.example`, `h${i + 1}.example`)),
      a(`h${n}.example`),
    ];
    assert.equal(classify(reply('NOERROR', true, hops(8)), 'h0.example', 'A').status, 'secure');
    const nine = classify(reply('NOERROR', true, hops(9)), 'h0.example', 'A');
    assert.equal(nine.status, 'temp');
    assert.equal(nine.problem, 'CNAME chain longer than 8');
  });

  it('a loop is temp', () => {
    const c = classify(
      reply('NOERROR', true, [cname('a.example', 'b.example'), cname('b.example', 'A.example.')]),
      'a.example',
      'A',
    );
    assert.equal(c.status, 'temp');
    assert.equal(c.problem, 'CNAME loop');
  });

  it('a CNAME question reads the CNAME itself', () => {
    const c = classify(reply('NOERROR', true, [cname('a.example', 'b.example', 70)]), 'a.example', 'CNAME');
    assert.equal(c.status, 'secure');
    assert.deepEqual(c.chain, ['a.example']);
    assert.equal(c.ttlSeconds, 70);
  });

  it('NXDOMAIN at the end of a chain: the target does not exist', () => {
    const c = classify(
      reply('NXDOMAIN', true, [cname('a.example', 'gone.example', 30)], [soa('example', 300, 120)]),
      'a.example',
      'A',
    );
    assert.equal(c.status, 'secure-nxdomain');
    assert.equal(c.ttlSeconds, 30);
  });
});

describe('negative TTL (RFC 2308 §5)', () => {
  const table: [string, Answer[], string, number][] = [
    ['SOA TTL lower', [soa('example', 60, 120)], 'x.example', 60],
    ['MINIMUM lower', [soa('example', 300, 120)], 'x.example', 120],
    ['the SOA of another zone does not count', [soa('other.example', 10, 10)], 'x.example', 0],
    ['the SOA of the name itself', [soa('x.example', 50, 90)], 'x.example', 50],
    ['no SOA', [], 'x.example', 0],
  ];
  for (const [what, authorities, name, ttl] of table) {
    it(`${what} → ${ttl}`, () => assert.equal(negativeTtlSeconds(authorities, name), ttl));
  }
  it('a NODATA answer takes it', () => {
    assert.equal(classify(reply('NOERROR', true, [], [soa('example', 3600, 120)]), 'x.example', 'MX').ttlSeconds, 120);
  });
});

it('bareName: lower case, no trailing dot', () => {
  assert.equal(bareName('MX.Example.'), 'mx.example');
  assert.equal(bareName('.'), '');
});
