/**
 * DANE through the whole chain: Postfix's `postmap -q` against a real `mtastsdb serve`, which asks
 * a real validating unbound over a real signed zone (the DNSSEC lab) and fetches MTA-STS policies
 * from the loopback HTTPS host. Every lab domain also publishes an `enforce` MTA-STS policy, so
 * each answer shows which protection wins (RFC 8461 §2: MTA-STS never overrides DANE).
 */
import assert from 'node:assert/strict';
import { execFile, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import type { TestContext } from 'node:test';
import { parseConfigText } from '../../src/config/load-config.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import { createNodeResolver } from '../../src/discovery/node-resolver.js';
import { captureLogger, policyText } from '../helpers/cache-fixture.js';
import { requireOrSkip } from '../helpers/ci.js';
import { dnssecLabMissing, LAB_DOMAINS, LAB_MX, SHORT_TTL_SECONDS, startDnssecLab } from '../helpers/dnssec-lab.js';
import type { DnssecLab } from '../helpers/dnssec-lab.js';
import { startHttpsHost } from '../helpers/https-host.js';
import type { HttpsHost } from '../helpers/https-host.js';
import { spawnServe } from '../helpers/serve-process.js';
import type { ServeProcess } from '../helpers/serve-process.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { getTestCa } from '../helpers/test-ca.js';

function findPostmap(): string | undefined {
  for (const p of ['/usr/sbin/postmap', '/usr/local/sbin/postmap']) {
    if (spawnSync(p, ['-c', '/nonexistent', '-q', 'x', 'static:y']).error === undefined) return p;
  }
  return undefined;
}
const postmap = findPostmap();
const missing =
  dnssecLabMissing ?? (postmap === undefined ? 'postmap (Debian package postfix) is not installed' : undefined);

/** The MX names each lab domain's MTA-STS policy lists. */
const POLICY_MX: Readonly<Record<string, readonly string[]>> = {
  [LAB_DOMAINS.mandatory]: [LAB_MX.secure],
  [LAB_DOMAINS.alias]: [LAB_MX.secure],
  [LAB_DOMAINS.implicit]: [LAB_DOMAINS.implicit],
  [LAB_DOMAINS.partial]: [LAB_MX.secure, LAB_MX.noTlsa],
  [LAB_DOMAINS.nullmx]: [LAB_MX.secure],
  [LAB_DOMAINS.pkix]: [LAB_MX.pkix],
  [LAB_DOMAINS.bogus]: [LAB_MX.bogus],
  [LAB_DOMAINS.tohoster]: [LAB_MX.unsigned],
  [LAB_DOMAINS.hosted]: [LAB_MX.secure],
  [LAB_DOMAINS.short]: [LAB_MX.short],
};

/** The answer MTA-STS alone gives a lab domain (its `enforce` policy). */
function stsAnswer(domain: string): string {
  return `secure match=${(POLICY_MX[domain] ?? []).join(':')} servername=hostname`;
}

interface PostmapResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

let lab: DnssecLab | undefined;
let https: HttpsHost | undefined;
let dir: string;
let caFile: string;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mtastsdb-dane-daemon-'));
  await writeFile(join(dir, 'main.cf'), '# empty: postmap only needs the file to exist\n');
  if (missing !== undefined) return;
  lab = await startDnssecLab();
  const ca = await getTestCa();
  https = await startHttpsHost({ ca });
  caFile = join(dir, 'ca.pem');
  await writeFile(caFile, ca.certPem);
  for (const [domain, mx] of Object.entries(POLICY_MX)) https.policy(domain, policyText('enforce', mx, 86400));
});

after(async () => {
  await https?.close();
  await lab?.close();
  await rm(dir, { recursive: true, force: true });
});

function need(t: TestContext): DnssecLab | undefined {
  return requireOrSkip(t, missing === undefined, missing ?? '') ? lab : undefined;
}

function postmapQuery(key: string, map: string): Promise<PostmapResult> {
  return new Promise((resolve) => {
    execFile(postmap as string, ['-c', dir, '-q', key, map], { timeout: 20_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

const here = fileURLToPath(import.meta.url);
const fromSource = here.endsWith('.ts');
const cliEntry = join(dirname(here), '..', '..', 'src', 'cli', fromSource ? 'main.ts' : 'main.js');

/** Runs `mtastsdb <args>` as a user does. */
function cli(args: readonly string[]): Promise<PostmapResult> {
  const argv = [...(fromSource ? ['--import', 'tsx'] : []), cliEntry, ...args];
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      argv,
      { timeout: 30_000, cwd: join(dirname(here), '..', '..', ...(fromSource ? [] : ['..'])) },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === 'number' ? err.code : -1;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A `serve` process whose DANE asks `daneResolver` and whose MTA-STS asks the validating resolver. */
async function serveWith(l: DnssecLab, name: string, daneResolver: string): Promise<ServeProcess> {
  const config = join(dir, `${name}.yml`);
  await writeFile(
    config,
    [
      'host: 127.0.0.1',
      'port: 0',
      `store: ${JSON.stringify(join(dir, `${name}.db`))}`,
      'proactive_policy_fetching:\n  enabled: false',
      'metrics:\n  enabled: true\n  host: 127.0.0.1\n  port: 0',
      // The lab has no root: the probe asks the signed zone's apex, which must validate.
      `dane:\n  resolver: ${daneResolver}\n  timeout: 2\n  probe: dane.test`,
      'default_zone:\n  dane: prefer',
      'zones:\n  rpt:\n    tlsrpt: true\n    dane: prefer\n  nodane:\n    dane: off\n  temp:\n    temp_on_error: true\n    dane: prefer',
      '',
    ].join('\n'),
  );
  return spawnServe(
    ['-c', config, '--dns-server', l.validating, '--ca', caFile, '--policy-port', String(https?.port)],
    { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1' },
  );
}

async function stop(serve: ServeProcess | undefined): Promise<void> {
  if (serve === undefined) return;
  serve.child.kill('SIGTERM');
  await Promise.race([serve.exited, new Promise((r) => setTimeout(r, 5000))]);
  serve.child.kill('SIGKILL');
}

async function metricsPortOf(serve: ServeProcess): Promise<number> {
  const line = await serve.waitFor(/metrics endpoint listening/);
  const port = (JSON.parse(line) as { address?: { port?: number } }).address?.port;
  assert.ok(typeof port === 'number' && port > 0, line);
  return port;
}

async function scrape(port: number, path: string): Promise<{ status: number; body: string }> {
  const r = await fetch(`http://127.0.0.1:${port}${path}`);
  return { status: r.status, body: await r.text() };
}

/** The value of the sample `name{labels}` (exact label text), or NaN. */
function sample(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line === undefined ? NaN : Number(line.slice(series.length + 1));
}

describe('postmap against mtastsdb serve with a validating resolver (RFC 7672 over RFC 8461)', () => {
  let serve: ServeProcess | undefined;
  let metricsPort = 0;
  let map: (name: string) => string;

  before(async () => {
    if (lab === undefined) return;
    serve = await serveWith(lab, 'validating', lab.validating);
    metricsPort = await metricsPortOf(serve);
    map = (name) => `socketmap:inet:127.0.0.1:${serve?.port}:${name}`;
  });
  after(() => stop(serve));

  const table: ReadonlyArray<readonly [string, string, string]> = [
    ['mandatory DANE', LAB_DOMAINS.mandatory, 'dane-only'],
    ['mandatory DANE through a CNAME at the domain', LAB_DOMAINS.alias, 'dane-only'],
    ['mandatory DANE on an implicit MX (secure NODATA)', LAB_DOMAINS.implicit, 'dane-only'],
    ['an MX set partly covered by TLSA', LAB_DOMAINS.partial, 'dane'],
    ['an insecure MX RRset naming a DANE host', LAB_DOMAINS.hosted, 'dane'],
    ['only unusable (PKIX-EE) TLSA', LAB_DOMAINS.pkix, stsAnswer(LAB_DOMAINS.pkix)],
    ['a Null MX', LAB_DOMAINS.nullmx, stsAnswer(LAB_DOMAINS.nullmx)],
    ['an MX host in an unsigned zone', LAB_DOMAINS.tohoster, stsAnswer(LAB_DOMAINS.tohoster)],
  ];
  for (const [what, domain, expected] of table) {
    it(`${what} (${domain}) → ${expected}`, async (t) => {
      if (need(t) === undefined) return;
      const r = await postmapQuery(domain, map('postfix'));
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, `${expected}\n`);
    });
  }

  it('a bogus TLSA signature → TEMP (Postfix defers), never the MTA-STS answer, with or without temp_on_error', async (t) => {
    if (need(t) === undefined) return;
    for (const zone of ['postfix', 'temp']) {
      const r = await postmapQuery(LAB_DOMAINS.bogus, map(zone));
      assert.notEqual(r.code, 0, `${zone}: ${r.stdout}`);
      assert.equal(r.stdout, '', zone);
      assert.match(r.stderr, /DANE|DNSSEC|TLSA/i, zone);
    }
  });

  it('a tlsrpt zone answers a bare dane-only (no TLSRPT attributes on a DANE level)', async (t) => {
    if (need(t) === undefined) return;
    const r = await postmapQuery(LAB_DOMAINS.mandatory, map('rpt'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'dane-only\n');
    const sts = await postmapQuery(LAB_DOMAINS.pkix, map('rpt'));
    assert.match(sts.stdout, /^secure match=mxpkix\.dane\.test servername=hostname policy_type=sts /);
  });

  it('a zone with dane: off keeps the MTA-STS answer for a DANE domain', async (t) => {
    if (need(t) === undefined) return;
    const r = await postmapQuery(LAB_DOMAINS.mandatory, map('nodane'));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, `${stsAnswer(LAB_DOMAINS.mandatory)}\n`);
  });

  it('a cached enforce policy whose host now fails: DANE still wins', async (t) => {
    if (need(t) === undefined || https === undefined) return;
    const first = await postmapQuery(LAB_DOMAINS.short, map('postfix'));
    assert.equal(first.stdout, 'dane-only\n');
    https.behave(LAB_DOMAINS.short, { status: 500 });
    try {
      const again = await postmapQuery(LAB_DOMAINS.short, map('postfix'));
      assert.equal(again.code, 0, again.stderr);
      assert.equal(again.stdout, 'dane-only\n');
    } finally {
      https.policy(LAB_DOMAINS.short, policyText('enforce', POLICY_MX[LAB_DOMAINS.short] ?? [], 86400));
    }
  });

  it('metrics: resolver validating 1, lookups by state, answers by level; /healthz ok', async (t) => {
    if (need(t) === undefined) return;
    await postmapQuery(LAB_DOMAINS.mandatory, map('postfix'));
    const { body } = await scrape(metricsPort, '/metrics');
    assert.equal(sample(body, 'mtastsdb_dane_resolver_validating'), 1);
    assert.ok(sample(body, 'mtastsdb_dane_lookups_total{state="dane-only"}') >= 3, body);
    assert.ok(sample(body, 'mtastsdb_dane_lookups_total{state="dane"}') >= 2, body);
    assert.ok(sample(body, 'mtastsdb_dane_lookups_total{state="temp"}') >= 1, body);
    assert.ok(sample(body, 'mtastsdb_dane_answers_total{level="dane-only"}') >= 4, body);
    assert.ok(sample(body, 'mtastsdb_dane_answers_total{level="temp"}') >= 1, body);
    const health = await scrape(metricsPort, '/healthz');
    assert.deepEqual(health, { status: 200, body: 'ok\n' });
  });
});

describe('postmap against mtastsdb serve with a resolver that does not validate', () => {
  let serve: ServeProcess | undefined;
  let metricsPort = 0;

  before(async () => {
    if (lab === undefined) return;
    serve = await serveWith(lab, 'nonvalidating', lab.nonValidating);
    metricsPort = await metricsPortOf(serve);
  });
  after(() => stop(serve));

  it('answers MTA-STS only (never dane-only), exports validating 0, reports /healthz degraded', async (t) => {
    const l = need(t);
    if (l === undefined || serve === undefined) return;
    await serve.waitFor(/DANE is off: the resolver does not validate/);
    const map = `socketmap:inet:127.0.0.1:${serve.port}:postfix`;
    for (const domain of [LAB_DOMAINS.mandatory, LAB_DOMAINS.partial, LAB_DOMAINS.bogus]) {
      const r = await postmapQuery(domain, map);
      assert.equal(r.code, 0, `${domain}: ${r.stderr}`);
      assert.equal(r.stdout, `${stsAnswer(domain)}\n`, domain);
    }
    const { body } = await scrape(metricsPort, '/metrics');
    assert.equal(sample(body, 'mtastsdb_dane_resolver_validating'), 0);
    assert.ok(!(sample(body, 'mtastsdb_dane_lookups_total{state="dane-only"}') > 0), body);
    const health = await scrape(metricsPort, '/healthz');
    assert.equal(health.status, 200);
    assert.match(health.body, /^degraded: .*does not validate/);
  });
});

describe('DANE state lifetime (the daemon in process, the lab resolver)', () => {
  it(`a state is asked again once its DNS TTL (${SHORT_TTL_SECONDS} s) has passed, not before`, async (t) => {
    const l = need(t);
    if (l === undefined || https === undefined) return;
    const daemon = await startDaemon({
      config: parseConfigText(
        'host: 127.0.0.1\nport: 0\nstore: ":memory:"\nproactive_policy_fetching:\n  enabled: false\n' +
          `dane:\n  resolver: ${l.validating}\n  probe: dane.test\ndefault_zone:\n  dane: prefer\n`,
      ),
      logger: captureLogger(),
      resolver: createNodeResolver({ servers: [l.validating] }),
      fetchOptions: { ca: (await getTestCa()).certPem, port: https.port, allowPrivateAddresses: true },
      // No floor: the lifetime is the TTL from the DNS answers.
      daneStateTtlSeconds: { min: 0, max: 3600 },
    });
    const client = await SocketmapClient.open(daemon.address as { host: string; port: number });
    try {
      const lookups = async (): Promise<number> => {
        const text = await daemon.metrics.registry.metrics();
        return sample(text, 'mtastsdb_dane_lookups_total{state="dane-only"}') || 0;
      };
      const ask = async (domain: string): Promise<string> => client.query('postfix', domain);
      // The resolver hands out the TTL it has left: let an earlier test's answers run out first.
      await new Promise((r) => setTimeout(r, SHORT_TTL_SECONDS * 1000 + 500));
      assert.equal(await ask(LAB_DOMAINS.short), 'OK dane-only');
      assert.equal(await ask(LAB_DOMAINS.mandatory), 'OK dane-only');
      const afterFirst = await lookups();
      assert.equal(afterFirst, 2);
      // Within the TTL: the kept state answers, no lookup.
      assert.equal(await ask(LAB_DOMAINS.short), 'OK dane-only');
      assert.equal(await lookups(), 2);
      await new Promise((r) => setTimeout(r, SHORT_TTL_SECONDS * 1000 + 500));
      // The short state has expired and is looked up again; dane.test's (300 s) has not.
      assert.equal(await ask(LAB_DOMAINS.short), 'OK dane-only');
      assert.equal(await ask(LAB_DOMAINS.mandatory), 'OK dane-only');
      assert.equal(await lookups(), 3);
    } finally {
      client.close();
      await daemon.close();
    }
  });
});

describe('mtastsdb dane and mtastsdb query over the lab', () => {
  it('dane <domain>: MX hosts, DNSSEC status, TLSA records with usability, the state', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const r = await cli(['dane', LAB_DOMAINS.mandatory, '--resolver', l.validating, '--probe', 'dane.test']);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^domain: +dane\.test$/m);
    assert.match(r.stdout, /^mx: +1 host\(s\), DNSSEC-secure MX RRset$/m);
    assert.match(
      r.stdout,
      /^host: +mx\.dane\.test \(preference 10\): secure address, _25\._tcp\.mx\.dane\.test secure$/m,
    );
    assert.ok(r.stdout.includes(`3 1 1 ${l.tlsaHex} (usable)`), r.stdout);
    assert.match(r.stdout, /^state: +dane-only: mandatory DANE/m);
  });

  it('dane --json: unusable TLSA and an implicit MX, as data', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const pkix = await cli(['dane', LAB_DOMAINS.pkix, '--json', '--resolver', l.validating, '--probe', 'dane.test']);
    assert.equal(pkix.code, 0, pkix.stderr);
    const p = JSON.parse(pkix.stdout) as {
      state: { kind: string };
      mxSecure: boolean;
      hosts: Array<{ host: string; tlsa: Array<{ usage: number; usable: boolean }> }>;
    };
    assert.equal(p.state.kind, 'unusable');
    assert.equal(p.mxSecure, true);
    assert.deepEqual(
      p.hosts.map((h) => [h.host, h.tlsa.map((x) => [x.usage, x.usable])]),
      [[LAB_MX.pkix, [[1, false]]]],
    );
    const implicit = await cli([
      'dane',
      LAB_DOMAINS.implicit,
      '--json',
      '--resolver',
      l.validating,
      '--probe',
      'dane.test',
    ]);
    const i = JSON.parse(implicit.stdout) as { implicitMx: boolean; state: { kind: string } };
    assert.deepEqual([i.implicitMx, i.state.kind], [true, 'dane-only']);
  });

  it('dane: a bogus TLSA exits 4 (temporary); a resolver that does not validate exits 4 and says so', async (t) => {
    const l = need(t);
    if (l === undefined) return;
    const bogus = await cli(['dane', LAB_DOMAINS.bogus, '--resolver', l.validating, '--probe', 'dane.test']);
    assert.equal(bogus.code, 4, bogus.stderr);
    assert.match(bogus.stdout, /^state: +temp:/m);
    assert.match(bogus.stderr, /ERR_DANE_DNS.*SERVFAIL/);
    const plain = await cli(['dane', LAB_DOMAINS.mandatory, '--resolver', l.nonValidating, '--probe', 'dane.test']);
    assert.equal(plain.code, 4);
    assert.equal(plain.stdout, '');
    assert.match(plain.stderr, /ERR_DANE_DNS.*does not validate DNSSEC/);
  });

  it("query: the DANE-aware reply from the daemon's configuration and cache", async (t) => {
    if (need(t) === undefined) return;
    // The validating daemon above has stopped; its configuration and store remain.
    const config = join(dir, 'validating.yml');
    const common = ['-c', config, '--ca', caFile, '--policy-port', String(https?.port), '--allow-private-addresses'];
    const q = await cli(['query', LAB_DOMAINS.mandatory, ...common, '--dns-server', lab?.validating ?? '']);
    assert.equal(q.code, 0, q.stderr);
    assert.equal(q.stdout, 'OK dane-only\n');
    const off = await cli(['query', LAB_DOMAINS.mandatory, '--name', 'nodane', ...common]);
    assert.equal(off.stdout, `OK ${stsAnswer(LAB_DOMAINS.mandatory)}\n`);
    const bogus = await cli(['query', LAB_DOMAINS.bogus, ...common, '--dns-server', lab?.validating ?? '']);
    assert.equal(bogus.code, 0, bogus.stderr);
    assert.match(bogus.stdout, /^TEMP /);
  });
});
