import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { classifyAddress, isPublicAddress, type AddressClass } from './address-policy.js';

const CASES: readonly (readonly [string, AddressClass])[] = [
  // IPv4 public
  ['8.8.8.8', 'public'],
  ['1.1.1.1', 'public'],
  ['93.184.216.34', 'public'],
  ['9.255.255.255', 'public'],
  ['11.0.0.0', 'public'],
  ['100.63.255.255', 'public'],
  ['100.128.0.0', 'public'],
  ['126.255.255.255', 'public'],
  ['128.0.0.0', 'public'],
  ['169.253.255.255', 'public'],
  ['169.255.0.0', 'public'],
  ['172.15.255.255', 'public'],
  ['172.32.0.0', 'public'],
  ['192.0.1.1', 'public'],
  ['192.167.255.255', 'public'],
  ['192.169.0.0', 'public'],
  ['198.17.255.255', 'public'],
  ['198.20.0.0', 'public'],
  ['223.255.255.255', 'public'],
  // IPv4 special
  ['0.0.0.0', 'unspecified'],
  ['0.1.2.3', 'unspecified'],
  ['10.0.0.0', 'private'],
  ['10.255.255.255', 'private'],
  ['100.64.0.0', 'shared'],
  ['100.127.255.255', 'shared'],
  ['127.0.0.1', 'loopback'],
  ['127.255.255.254', 'loopback'],
  ['169.254.0.1', 'link-local'],
  ['169.254.169.254', 'link-local'],
  ['172.16.0.0', 'private'],
  ['172.31.255.255', 'private'],
  ['192.0.0.8', 'reserved'],
  ['192.0.2.1', 'documentation'],
  ['192.88.99.1', 'reserved'],
  ['192.168.0.1', 'private'],
  ['192.168.255.255', 'private'],
  ['198.18.0.1', 'benchmarking'],
  ['198.19.255.255', 'benchmarking'],
  ['198.51.100.7', 'documentation'],
  ['203.0.113.9', 'documentation'],
  ['224.0.0.1', 'multicast'],
  ['239.255.255.255', 'multicast'],
  ['240.0.0.1', 'reserved'],
  ['255.255.255.254', 'reserved'],
  ['255.255.255.255', 'broadcast'],
  // IPv6 public
  ['2001:4860:4860::8888', 'public'],
  ['2606:4700:4700::1111', 'public'],
  ['2a00:1450:4001:82b::200e', 'public'],
  ['2001:200::1', 'public'],
  ['3ffe::1', 'public'],
  ['2000::1', 'public'],
  ['3fff:1000::1', 'public'],
  ['2002:808:808::1', 'public'], // 6to4 of 8.8.8.8
  ['64:ff9b::808:808', 'public'], // NAT64 of 8.8.8.8
  ['::ffff:8.8.8.8', 'public'],
  ['::ffff:808:808', 'public'],
  ['2001:4860:4860:0:0:0:0:8888', 'public'],
  ['2001:4860:4860::8888%eth0', 'public'],
  // IPv6 special
  ['::', 'unspecified'],
  ['0:0:0:0:0:0:0:0', 'unspecified'],
  ['::1', 'loopback'],
  ['0:0:0:0:0:0:0:1', 'loopback'],
  ['::ffff:127.0.0.1', 'loopback'],
  ['::FFFF:7f00:1', 'loopback'],
  ['::ffff:10.1.2.3', 'private'],
  ['::ffff:169.254.1.1', 'link-local'],
  ['::ffff:0.0.0.0', 'unspecified'],
  ['::ffff:192.168.1.1', 'private'],
  ['::ffff:100.64.0.1', 'shared'],
  ['::127.0.0.1', 'reserved'], // IPv4-compatible (deprecated)
  ['::2', 'reserved'],
  ['::ffff:0:7f00:1', 'reserved'],
  ['64:ff9b::7f00:1', 'loopback'],
  ['64:ff9b::10.0.0.1', 'private'],
  ['64:ff9b:1::1', 'private'],
  ['100::1', 'reserved'],
  ['2001::1', 'reserved'], // Teredo
  ['2001:db8::1', 'documentation'],
  ['2001:2::1', 'benchmarking'],
  ['2002:7f00:1::1', 'loopback'], // 6to4 of 127.0.0.1
  ['2002:a00:1::', 'private'],
  ['3fff::1', 'documentation'],
  ['3fff:fff::1', 'documentation'],
  ['fc00::1', 'private'],
  ['fd12:3456:789a::1', 'private'],
  ['fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff', 'private'],
  ['fe80::1', 'link-local'],
  ['fe80::1%lo', 'link-local'],
  ['febf::1', 'link-local'],
  ['fec0::1', 'private'],
  ['ff02::1', 'multicast'],
  ['ff05::1:3', 'multicast'],
  ['1::', 'reserved'],
  ['4000::1', 'reserved'],
  ['e000::1', 'reserved'],
  // Not addresses
  ['', 'invalid'],
  ['localhost', 'invalid'],
  ['example.test', 'invalid'],
  ['127.1', 'invalid'],
  ['0x7f.0.0.1', 'invalid'],
  ['127.000.000.001', 'invalid'],
  ['010.0.0.1', 'invalid'],
  ['256.0.0.1', 'invalid'],
  ['1.2.3.4.5', 'invalid'],
  ['1.2.3', 'invalid'],
  [' 1.2.3.4', 'invalid'],
  ['1.2.3.4 ', 'invalid'],
  ['2130706433', 'invalid'],
  [':::1', 'invalid'],
  ['1::2::3', 'invalid'],
  ['1:2:3:4:5:6:7:8:9', 'invalid'],
  ['1:2:3:4:5:6:7', 'invalid'],
  ['12345::1', 'invalid'],
  ['g::1', 'invalid'],
  [':1::', 'invalid'],
  ['1:', 'invalid'],
  ['::1.2.3', 'invalid'],
  ['::1.2.3.4:5', 'invalid'],
  ['[::1]', 'invalid'],
  ['1:2:3:4:5:6:7:1.2.3.4', 'invalid'],
];

test('classifyAddress', async (t) => {
  for (const [ip, want] of CASES) {
    await t.test(`${JSON.stringify(ip)} → ${want}`, () => {
      assert.equal(classifyAddress(ip), want);
      assert.equal(isPublicAddress(ip), want === 'public');
    });
  }
});

test('classifyAddress agrees with node:net on what is an address', () => {
  for (const [ip, cls] of CASES) {
    if (ip.includes('%')) continue; // node:net accepts zone ids too; we strip them
    assert.equal(cls !== 'invalid', net.isIP(ip) !== 0, ip);
  }
});

test('every IPv4 /8 boundary classifies without throwing and loopback/private never count as public', () => {
  for (let a = 0; a < 256; a++) {
    for (const rest of ['0.0.0', '255.255.255', '16.0.1', '168.1.1']) {
      const ip = `${a}.${rest}`;
      const cls = classifyAddress(ip);
      assert.notEqual(cls, 'invalid', ip);
      if (a === 10 || a === 127 || a === 0 || a >= 224) assert.equal(isPublicAddress(ip), false, ip);
      // The IPv4-mapped IPv6 form always classifies the same.
      assert.equal(classifyAddress(`::ffff:${ip}`), cls, `::ffff:${ip}`);
    }
  }
});

test('non-string input is invalid, not a crash', () => {
  assert.equal(classifyAddress(undefined as unknown as string), 'invalid');
  assert.equal(classifyAddress(127 as unknown as string), 'invalid');
});
