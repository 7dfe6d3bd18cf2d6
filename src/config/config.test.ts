import { existsSync } from 'node:fs';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { isMtaStsError } from '../errors.js';
import { loadConfig, parseConfigText } from './load-config.js';
import { DEFAULT_ZONE, zoneFor } from './schema.js';

// The repository root, whether this runs from src/ (tsx) or from the compiled build/src/.
const repo = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = dirname(dir);
  return dir;
})();

describe('configuration defaults', () => {
  it('an empty file gives postfix-mta-sts-resolver defaults plus ours', () => {
    for (const text of ['', '---\n', '# only a comment\n']) {
      const c = parseConfigText(text);
      assert.equal(c.host, '127.0.0.1');
      assert.equal(c.port, 8461);
      assert.equal(c.reusePort, true);
      assert.equal(c.shutdownTimeoutSeconds, 20);
      assert.equal(c.cacheGraceSeconds, 60);
      assert.deepEqual(c.memoryCache, { entries: 10_000, ttlSeconds: 5 });
      assert.deepEqual(c.defaultZone, DEFAULT_ZONE);
      assert.deepEqual(c.defaultZone, {
        strictTesting: false,
        timeoutSeconds: 4,
        requireSni: true,
        tlsrpt: false,
        tempOnError: false,
        dane: 'off',
      });
      assert.equal(c.cache.type, 'sqlite');
      assert.equal(c.store, undefined);
      assert.equal(c.dataDir, './data');
      assert.equal(c.proactivePolicyFetching.enabled, true);
      assert.equal(c.proactivePolicyFetching.intervalSeconds, 86400);
      assert.equal(c.proactivePolicyFetching.graceRatio, 2);
      assert.deepEqual(c.metrics, { enabled: false, host: '127.0.0.1', port: 9461 });
      assert.deepEqual(c.logging, { format: 'json', level: 'info' });
      assert.equal(c.limits.maxInFlightPerConnection, 128);
      assert.equal(c.limits.idleTimeoutSeconds, 300);
      assert.equal(c.limits.frameTimeoutSeconds, 10);
      assert.equal(c.limits.requestLimit, 1024);
      assert.equal(c.limits.maxInFlightDiscoveries, 256);
      assert.equal(c.limits.discoveryReservePercent, 25);
      assert.equal(c.limits.discoveryDomainSharePercent, 5);
      assert.ok(Object.isFrozen(c) && Object.isFrozen(c.defaultZone) && Object.isFrozen(c.limits));
    }
  });

  it('zones fall back to the built-in defaults, not to default_zone (as postfix-mta-sts-resolver)', () => {
    const c = parseConfigText('default_zone:\n  strict_testing: true\nzones:\n  postfix:\n    require_sni: false\n');
    assert.equal(c.defaultZone.strictTesting, true);
    assert.deepEqual(zoneFor(c, 'postfix'), { ...DEFAULT_ZONE, requireSni: false });
    assert.equal(zoneFor(c, 'unknown'), c.defaultZone);
    assert.equal(zoneFor(c, 'constructor'), c.defaultZone);
  });

  it('memory_cache: entries and ttl as written; 0 turns it off', () => {
    assert.deepEqual(parseConfigText('memory_cache:\n  entries: 500\n  ttl: 2.5\n').memoryCache, {
      entries: 500,
      ttlSeconds: 2.5,
    });
    assert.deepEqual(parseConfigText('memory_cache:\n  ttl: 0\n').memoryCache, { entries: 10_000, ttlSeconds: 0 });
  });

  it('reads the YAML 1.1 forms PyYAML reads: octal mode, yes/no', () => {
    const c = parseConfigText('path: /run/mta-sts.sock\nmode: 0666\nreuse_port: no\ndefault_zone:\n  tlsrpt: yes\n');
    assert.equal(c.path, '/run/mta-sts.sock');
    assert.equal(c.mode, 0o666);
    assert.equal(c.reusePort, false);
    assert.equal(c.defaultZone.tlsrpt, true);
    assert.equal(parseConfigText('path: /x\nmode: "0660"\n').mode, 0o660);
  });

  const stores: ReadonlyArray<[string, string | undefined, string]> = [
    [
      'cache:\n  type: sqlite\n  options:\n    filename: /var/lib/mta-sts/cache.db\n',
      '/var/lib/mta-sts/cache.db',
      'sqlite',
    ],
    ['cache:\n  type: postgres\n  options:\n    dsn: postgres://u@db/mta\n', 'postgres://u@db/mta', 'postgres'],
    ['cache:\n  type: internal\n  options:\n    cache_size: 10000\n', ':memory:', 'internal'],
    ['cache:\n  type: sqlite\n', undefined, 'sqlite'],
    ['store: postgres://x@h/d\ncache:\n  type: sqlite\n  options:\n    filename: a.db\n', 'postgres://x@h/d', 'sqlite'],
  ];
  for (const [text, store, type] of stores) {
    it(`cache section → store ${String(store)}`, () => {
      const c = parseConfigText(text);
      assert.equal(c.store, store);
      assert.equal(c.cache.type, type);
    });
  }
});

// Each bad configuration must fail at start with ERR_MTASTS_CONFIG naming the key.
const bad: ReadonlyArray<{ text: string; key: string; why: string }> = [
  { text: 'prot: 8461\n', key: 'prot', why: 'unknown top-level key' },
  { text: 'port: "8461"\n', key: 'port', why: 'string for a number' },
  { text: 'port: 70000\n', key: 'port', why: 'port out of range' },
  { text: 'port: 84.61\n', key: 'port', why: 'fractional port' },
  { text: 'host: 127\n', key: 'host', why: 'number for a string' },
  { text: 'host: ""\n', key: 'host', why: 'empty host' },
  { text: 'reuse_port: maybe\n', key: 'reuse_port', why: 'not a boolean' },
  { text: 'shutdown_timeout: -1\n', key: 'shutdown_timeout', why: 'negative' },
  { text: 'cache_grace: [1]\n', key: 'cache_grace', why: 'a list' },
  { text: 'memory_cache: 5\n', key: 'memory_cache', why: 'a number for a mapping' },
  { text: 'memory_cache:\n  size: 5\n', key: 'memory_cache.size', why: 'unknown key' },
  { text: 'memory_cache:\n  entries: -1\n', key: 'memory_cache.entries', why: 'negative' },
  { text: 'memory_cache:\n  entries: 1.5\n', key: 'memory_cache.entries', why: 'fractional' },
  { text: 'memory_cache:\n  ttl: 7200\n', key: 'memory_cache.ttl', why: 'above an hour' },
  { text: 'mode: 0666\n', key: 'mode', why: 'mode without path' },
  { text: 'path: /x\nmode: rw\n', key: 'mode', why: 'mode not octal' },
  { text: 'path: /x\nmode: 99999\n', key: 'mode', why: 'mode too large' },
  { text: 'cache: sqlite\n', key: 'cache', why: 'cache not a mapping' },
  { text: 'cache:\n  type: memcached\n', key: 'cache.type', why: 'unknown cache type' },
  { text: 'cache:\n  type: redis\n', key: 'cache.type', why: 'redis unsupported' },
  { text: 'cache:\n  type: postgres\n', key: 'cache.options.dsn', why: 'postgres without dsn' },
  {
    text: 'cache:\n  type: postgres\n  options:\n    dsn: mysql://x\n',
    key: 'cache.options.dsn',
    why: 'not a postgres URL',
  },
  { text: 'cache:\n  type: sqlite\n  options:\n    filname: x\n', key: 'cache.options.filname', why: 'typo in option' },
  { text: 'cache:\n  type: sqlite\n  options:\n    threads: 0\n', key: 'cache.options.threads', why: 'zero threads' },
  {
    text: 'proactive_policy_fetching:\n  enabled: 1\n',
    key: 'proactive_policy_fetching.enabled',
    why: 'number for bool',
  },
  {
    text: 'proactive_policy_fetching:\n  interval: 0\n',
    key: 'proactive_policy_fetching.interval',
    why: 'zero interval',
  },
  {
    text: 'proactive_policy_fetching:\n  concurrency_limit: 2.5\n',
    key: 'proactive_policy_fetching.concurrency_limit',
    why: 'fractional concurrency',
  },
  {
    text: 'proactive_policy_fetching:\n  grace_ratio: 0\n',
    key: 'proactive_policy_fetching.grace_ratio',
    why: 'zero ratio',
  },
  { text: 'default_zone:\n  timeout: 0\n', key: 'default_zone.timeout', why: 'zero timeout' },
  { text: 'default_zone:\n  strict: true\n', key: 'default_zone.strict', why: 'unknown zone key' },
  { text: 'default_zone: []\n', key: 'default_zone', why: 'zone is a list' },
  { text: 'zones:\n  postfix:\n    timeout: fast\n', key: 'zones.postfix.timeout', why: 'string timeout in a zone' },
  { text: 'zones:\n  postfix:\n    tlsrpt: "true"\n', key: 'zones.postfix.tlsrpt', why: 'quoted boolean' },
  { text: 'zones:\n  postfix: 1\n', key: 'zones.postfix', why: 'zone is a number' },
  { text: 'zones: [a, b]\n', key: 'zones', why: 'zones is a list' },
  { text: 'data_dir: 5\n', key: 'data_dir', why: 'number for a path' },
  { text: 'store: ""\n', key: 'store', why: 'empty store' },
  { text: 'logging:\n  format: xml\n', key: 'logging.format', why: 'unknown log format' },
  { text: 'logging:\n  level: verbose\n', key: 'logging.level', why: 'unknown log level' },
  { text: 'metrics:\n  enabled: on\n  port: -5\n', key: 'metrics.port', why: 'negative metrics port' },
  { text: 'metrics:\n  path: /metrics\n', key: 'metrics.path', why: 'unknown metrics key' },
  { text: 'limits:\n  max_connections: 0\n', key: 'limits.max_connections', why: 'zero connections' },
  { text: 'limits:\n  idle_timeout: 0\n', key: 'limits.idle_timeout', why: 'no idle time at all' },
  { text: 'limits:\n  frame_timeout: .inf\n', key: 'limits.frame_timeout', why: 'an infinite frame timeout' },
  {
    text: 'limits:\n  max_in_flight_per_connection: -1\n',
    key: 'limits.max_in_flight_per_connection',
    why: 'negative queue',
  },
  { text: 'limits:\n  request_limit: 8\n', key: 'limits.request_limit', why: 'request limit too small' },
  {
    text: 'limits:\n  fetch_rate_per_domain:\n    rate: 0\n',
    key: 'limits.fetch_rate_per_domain.rate',
    why: 'zero rate',
  },
  {
    text: 'limits:\n  fetch_rate_global:\n    burst: 0.5\n',
    key: 'limits.fetch_rate_global.burst',
    why: 'fractional burst',
  },
  { text: 'limits:\n  max_fetches: 3\n', key: 'limits.max_fetches', why: 'unknown limit' },
  {
    text: 'limits:\n  discovery_reserve_percent: 95\n',
    key: 'limits.discovery_reserve_percent',
    why: 'a reserve leaving new domains almost nothing',
  },
  {
    text: 'limits:\n  discovery_reserve_percent: -1\n',
    key: 'limits.discovery_reserve_percent',
    why: 'a negative reserve',
  },
  {
    text: 'limits:\n  discovery_reserve_percent: "25%"\n',
    key: 'limits.discovery_reserve_percent',
    why: 'a reserve as text',
  },
  {
    text: 'limits:\n  discovery_domain_share_percent: 0\n',
    key: 'limits.discovery_domain_share_percent',
    why: 'no share at all',
  },
  {
    text: 'limits:\n  discovery_domain_share_percent: 101\n',
    key: 'limits.discovery_domain_share_percent',
    why: 'a share over the whole',
  },
  { text: 'default_zone:\n  dane: prefer\n', key: 'default_zone.dane', why: 'dane: prefer without a dane section' },
  { text: 'zones:\n  mx:\n    dane: prefer\n', key: 'zones.mx.dane', why: 'a zone with dane: prefer, no dane section' },
  { text: 'dane: {}\ndefault_zone:\n  dane: always\n', key: 'default_zone.dane', why: 'unknown dane level' },
  { text: 'dane: 1\n', key: 'dane', why: 'dane not a mapping' },
  { text: 'dane:\n  resolvers: 127.0.0.1:53\n', key: 'dane.resolvers', why: 'unknown dane key' },
  { text: 'dane:\n  resolver: localhost:53\n', key: 'dane.resolver', why: 'resolver not an IP address' },
  { text: 'dane:\n  resolver: 127.0.0.1\n', key: 'dane.resolver', why: 'resolver without a port' },
  { text: 'dane:\n  resolver: 127.0.0.1:0\n', key: 'dane.resolver', why: 'resolver port 0' },
  { text: 'dane:\n  resolver: 192.0.2.1:53\n', key: 'dane.resolver', why: 'remote resolver not allowed' },
  { text: 'dane:\n  resolver: "[2001:db8::1]:53"\n', key: 'dane.resolver', why: 'remote IPv6 resolver' },
  {
    text: 'dane:\n  resolver: 192.0.2.1:53\n  allow_remote_resolver: "yes"\n',
    key: 'dane.allow_remote_resolver',
    why: 'quoted boolean',
  },
  { text: 'dane:\n  timeout: 0\n', key: 'dane.timeout', why: 'zero DANE timeout' },
  { text: 'dane:\n  timeout: 120\n', key: 'dane.timeout', why: 'DANE timeout above a minute' },
  { text: 'dane:\n  probe: "not a name"\n', key: 'dane.probe', why: 'probe not a DNS name' },
  { text: 'dane:\n  probe: ""\n', key: 'dane.probe', why: 'empty probe' },
  { text: '- a\n- b\n', key: '', why: 'document is a list' },
  { text: 'port: 1\nport: 2\n', key: '', why: 'duplicate key' },
  // Every number is bounded: a value no limit could mean is refused here, naming the key.
  { text: 'limits:\n  max_connections: 1e300\n', key: 'limits.max_connections', why: 'astronomical limit' },
  {
    text: 'limits:\n  max_in_flight_discoveries: 1e12\n',
    key: 'limits.max_in_flight_discoveries',
    why: 'astronomical limit',
  },
  {
    text: 'limits:\n  fetch_rate_global:\n    rate: 1e300\n',
    key: 'limits.fetch_rate_global.rate',
    why: 'astronomical rate',
  },
  {
    text: 'limits:\n  fetch_rate_per_domain:\n    burst: 1e300\n',
    key: 'limits.fetch_rate_per_domain.burst',
    why: 'astronomical burst',
  },
  { text: 'shutdown_timeout: .inf\n', key: 'shutdown_timeout', why: 'infinity' },
  { text: 'cache_grace: .nan\n', key: 'cache_grace', why: 'not a number' },
  {
    text: 'proactive_policy_fetching:\n  interval: 1e300\n',
    key: 'proactive_policy_fetching.interval',
    why: 'astronomical interval',
  },
  {
    text: 'proactive_policy_fetching:\n  grace_ratio: .inf\n',
    key: 'proactive_policy_fetching.grace_ratio',
    why: 'infinity',
  },
  {
    text: 'cache:\n  type: sqlite\n  options:\n    timeout: 1e300\n',
    key: 'cache.options.timeout',
    why: 'astronomical timeout',
  },
  { text: 'host: [unclosed\n', key: '', why: 'YAML syntax error' },
];

describe('bad configurations fail naming the key', () => {
  it('a non-finite number is described as what YAML gave, not as null', () => {
    assert.throws(
      () => parseConfigText('shutdown_timeout: .inf\n', 'test.yml'),
      /shutdown_timeout: expected a number from 0 to 3600, got number Infinity/,
    );
  });

  for (const c of bad) {
    it(`${c.why}: ${c.key === '' ? '(document)' : c.key}`, () => {
      assert.throws(
        () => parseConfigText(c.text, 'test.yml'),
        (err: unknown) => {
          assert.ok(isMtaStsError(err, 'ERR_MTASTS_CONFIG'), String(err));
          assert.equal(err.details.key, c.key);
          assert.ok(err.message.startsWith('test.yml: '), err.message);
          if (c.key !== '') assert.ok(err.message.includes(c.key), err.message);
          return true;
        },
      );
    });
  }
});

describe('the dane section', () => {
  it('absent: no resolver, every zone off', () => {
    const c = parseConfigText('zones:\n  a:\n    tlsrpt: true\n');
    assert.equal(c.dane, undefined);
    assert.equal(zoneFor(c, 'a').dane, 'off');
  });
  it('empty: the defaults (127.0.0.1:53, 2 s, probe ".")', () => {
    const c = parseConfigText('dane: {}\n');
    assert.deepEqual(c.dane, { resolver: '127.0.0.1:53', timeoutSeconds: 2, probe: '.', allowRemoteResolver: false });
  });
  it('as written, with prefer in the default zone and a zone', () => {
    const c = parseConfigText(
      'dane:\n  resolver: "[::1]:5353"\n  timeout: 0.5\n  probe: dane.test\n' +
        'default_zone:\n  dane: prefer\nzones:\n  rpt:\n    tlsrpt: true\n    dane: prefer\n  plain: {}\n',
    );
    assert.deepEqual(c.dane, {
      resolver: '[::1]:5353',
      timeoutSeconds: 0.5,
      probe: 'dane.test',
      allowRemoteResolver: false,
    });
    assert.equal(c.defaultZone.dane, 'prefer');
    assert.equal(zoneFor(c, 'rpt').dane, 'prefer');
    assert.equal(zoneFor(c, 'plain').dane, 'off');
  });
  it('dane: off written bare (YAML reads it as false) or quoted is off', () => {
    for (const v of ['off', '"off"', 'false']) {
      const c = parseConfigText(`dane: {}\ndefault_zone:\n  dane: prefer\nzones:\n  mx:\n    dane: ${v}\n`);
      assert.equal(zoneFor(c, 'mx').dane, 'off', v);
      assert.equal(c.defaultZone.dane, 'prefer');
    }
    assert.throws(() => parseConfigText('dane: {}\ndefault_zone:\n  dane: on\n'), /default_zone\.dane/);
  });
  it('a remote resolver only with allow_remote_resolver: true', () => {
    const c = parseConfigText('dane:\n  resolver: 192.0.2.1:53\n  allow_remote_resolver: true\n');
    assert.equal(c.dane?.resolver, '192.0.2.1:53');
    assert.equal(c.dane?.allowRemoteResolver, true);
  });
});

describe('loadConfig', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'mtastsdb-config-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  it('reads the file, then the environment, then flags', async () => {
    const file = join(dir, 'a.yml');
    await writeFile(file, 'host: 127.0.0.2\nport: 1000\ndata_dir: /from/file\nlogging:\n  level: warn\n');
    const fromFile = await loadConfig({ file, env: {} });
    assert.deepEqual(
      [fromFile.host, fromFile.port, fromFile.dataDir, fromFile.logging.level],
      ['127.0.0.2', 1000, '/from/file', 'warn'],
    );
    const env = { MTASTSDB_PORT: '2000', MTASTSDB_DATA_DIR: '/from/env', MTASTSDB_LOG_LEVEL: 'debug' };
    const fromEnv = await loadConfig({ file, env });
    assert.deepEqual(
      [fromEnv.host, fromEnv.port, fromEnv.dataDir, fromEnv.logging.level],
      ['127.0.0.2', 2000, '/from/env', 'debug'],
    );
    const fromFlags = await loadConfig({
      file,
      env,
      overrides: { port: 3000, dataDir: '/from/flag', store: ':memory:' },
    });
    assert.deepEqual([fromFlags.port, fromFlags.dataDir, fromFlags.store], [3000, '/from/flag', ':memory:']);
    assert.ok(Object.isFrozen(fromFlags));
  });

  it('MTASTSDB_CONFIG names the file; no file means defaults', async () => {
    const file = join(dir, 'b.yml');
    await writeFile(file, 'port: 4000\n');
    assert.equal((await loadConfig({ env: { MTASTSDB_CONFIG: file } })).port, 4000);
    assert.equal((await loadConfig({ env: {} })).port, 8461);
  });

  it('a host/port override means TCP even when the file names a Unix socket', async () => {
    const file = join(dir, 'c.yml');
    await writeFile(file, 'path: /run/x.sock\nmode: 0660\n');
    const unix = await loadConfig({ file, env: {} });
    assert.equal(unix.path, '/run/x.sock');
    assert.equal(unix.mode, 0o660);
    const tcp = await loadConfig({ file, env: {}, overrides: { port: 0 } });
    assert.equal(tcp.path, undefined);
    assert.equal(tcp.port, 0);
  });

  const badEnv: ReadonlyArray<[Record<string, string>, string]> = [
    [{ MTASTSDB_PORT: 'http' }, 'MTASTSDB_PORT'],
    [{ MTASTSDB_PORT: '99999' }, 'MTASTSDB_PORT'],
    [{ MTASTSDB_LOG_LEVEL: 'loud' }, 'MTASTSDB_LOG_LEVEL'],
    [{ MTASTSDB_LOG_FORMAT: 'xml' }, 'MTASTSDB_LOG_FORMAT'],
  ];
  for (const [env, key] of badEnv) {
    it(`rejects a bad ${key}`, async () => {
      await assert.rejects(loadConfig({ env }), (err: unknown) => {
        assert.ok(isMtaStsError(err, 'ERR_MTASTS_CONFIG'));
        assert.equal(err.details.key, key);
        return true;
      });
    });
  }

  it('a missing file is a config error', async () => {
    await assert.rejects(loadConfig({ file: join(dir, 'missing.yml'), env: {} }), (err: unknown) => {
      assert.ok(isMtaStsError(err, 'ERR_MTASTS_CONFIG'));
      assert.match(err.message, /ENOENT/);
      return true;
    });
  });

  it('the sample configuration in examples/ is valid', async () => {
    const c = await loadConfig({ file: join(repo, 'examples', 'mta-sts-daemon.yml'), env: {} });
    assert.equal(c.port, 8461);
    assert.ok(Object.keys(c.zones).length > 0);
    assert.equal(c.limits.discoveryReservePercent, 25);
    assert.equal(c.limits.discoveryDomainSharePercent, 5);
    const unit = await readFile(join(repo, 'examples', 'mtastsdb.service'), 'utf8');
    assert.match(unit, /ExecStart=.*mtastsdb serve -c \/etc\/mta-sts-daemon\.yml/);
    assert.match(unit, /ExecReload=\/bin\/kill -HUP \$MAINPID/);
  });
});
