/**
 * The `mtastsdb` command as a user runs it: every command is a spawned child process on a real
 * SQLite file in a temp dir, discovering policies from the loopback DNS server and the HTTPS
 * policy host with the test CA. Runs from source (`npx tsx --test`, the child gets `--import tsx`)
 * and compiled (`node --test build/…`, the child runs build/src/cli/main.js).
 *
 * The cases are independent (each has its own data dir and its own fixture domains), so they run
 * concurrently; a semaphore keeps the number of child processes near the core count.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it, type TestContext } from 'node:test';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';
import pg from 'pg';
import { requireOrSkip } from '../helpers/ci.js';
import { startDnsServer, type DnsServer } from '../helpers/dns-server.js';
import { startHttpsHost, type HttpsHost } from '../helpers/https-host.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import { getTestCa } from '../helpers/test-ca.js';

// ---------------------------------------------------------------------------------------------
// Running the CLI

const here = fileURLToPath(import.meta.url);
const fromSource = here.endsWith('.ts');
/** The repository root (cwd of the children, so `--import tsx` resolves). */
const repo = resolve(dirname(here), fromSource ? '../..' : '../../..');
const entry = resolve(dirname(here), fromSource ? '../../src/cli/main.ts' : '../../src/cli/main.js');
const nodeArgs = fromSource ? ['--import', 'tsx', entry] : [entry];

interface Run {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

interface RunOptions {
  /** Text written to stdin (stdin is closed either way). */
  readonly input?: string;
  /** Extra environment variables (MTASTSDB_* from the parent are never inherited). */
  readonly env?: Readonly<Record<string, string>>;
  /** Called with the child once spawned (to signal it). */
  readonly onSpawn?: (child: ChildProcess) => void;
}

const slots = { free: Math.max(2, availableParallelism() * 2), waiting: [] as (() => void)[] };
async function acquire(): Promise<void> {
  if (slots.free > 0) {
    slots.free--;
    return;
  }
  await new Promise<void>((r) => slots.waiting.push(r));
}
function release(): void {
  const next = slots.waiting.shift();
  if (next !== undefined) next();
  else slots.free++;
}

function childEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('MTASTSDB_')) env[k] = v;
  return { ...env, ...extra };
}

/** Runs `mtastsdb <args>` and collects its output. */
async function mtastsdb(args: readonly string[], options: RunOptions = {}): Promise<Run> {
  await acquire();
  try {
    return await new Promise<Run>((resolveRun, reject) => {
      const child = spawn(process.execPath, [...nodeArgs, ...args], {
        cwd: repo,
        env: childEnv(options.env),
        stdio: ['pipe', 'pipe', 'pipe'],
        timeout: 30_000,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.stdin.on('error', () => {});
      child.stdin.end(options.input ?? '');
      child.on('error', reject);
      const started = Date.now();
      if (process.env.CLI_TEST_DEBUG === '1') console.log(`# start ${child.pid}: ${args.join(' ')}`);
      child.on('close', (status) => {
        if (process.env.CLI_TEST_DEBUG === '1')
          console.log(`# ${Date.now() - started} ms ${child.pid}: ${args.join(' ')}`);
        resolveRun({ status, stdout, stderr });
      });
      options.onSpawn?.(child);
    });
  } finally {
    release();
  }
}

function shellQuote(arg: string): string {
  return `'${arg.replace(/'/g, `'\\''`)}'`;
}

/**
 * Runs `mtastsdb <from…> | mtastsdb <to…>` (or `| <shell command>`) in bash, as a user types it.
 * Returns the producer's exit status and stderr, and the consumer's run.
 */
async function pipeline(
  from: readonly string[],
  to: readonly string[] | { readonly shell: string },
): Promise<[Run, Run]> {
  const cmd = (args: readonly string[]): string => [process.execPath, ...nodeArgs, ...args].map(shellQuote).join(' ');
  const consumerCmd = 'shell' in to ? to.shell : cmd(to);
  const script =
    `${cmd(from)} 2>"$ERRFILE" | ${consumerCmd}; s=("\${PIPESTATUS[@]}"); ` +
    'echo "${s[0]}" >"$STATUSFILE"; exit "${s[1]}"';
  const dir = await mkdtemp(join(tmp, 'pipe-'));
  const errFile = join(dir, 'producer.err');
  const statusFile = join(dir, 'producer.status');
  await acquire();
  await acquire();
  let consumer: Run;
  try {
    consumer = await new Promise<Run>((res, rej) => {
      const child = spawn('bash', ['-c', script], {
        cwd: repo,
        env: childEnv({ ERRFILE: errFile, STATUSFILE: statusFile }),
        stdio: ['ignore', 'pipe', 'pipe'],
        timeout: 30_000,
      });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (s: string) => (stdout += s));
      child.stderr.setEncoding('utf8').on('data', (s: string) => (stderr += s));
      child.on('error', rej);
      child.on('close', (status) => res({ status, stdout, stderr }));
    });
  } finally {
    release();
    release();
  }
  const producer: Run = {
    status: Number((await readFile(statusFile, 'utf8')).trim()),
    stdout: '',
    stderr: await readFile(errFile, 'utf8'),
  };
  return [producer, consumer];
}

/** Asserts the exit status, with the output in the message when it differs. */
function assertStatus(run: Run, status: number): void {
  assert.equal(
    run.status,
    status,
    `exit ${run.status}, expected ${status}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`,
  );
}

/** Asserts a failure: exactly one stderr line `CODE: …` matching `message`, and the status. */
function assertFailure(run: Run, status: number, code: string, message?: RegExp): void {
  assertStatus(run, status);
  const lines = run.stderr.split('\n').filter((l) => l !== '');
  assert.equal(lines.length, 1, `one stderr line expected, got: ${run.stderr}`);
  assert.ok(lines[0]?.startsWith(`${code}: `), `expected ${code}: …, got: ${run.stderr}`);
  if (message !== undefined) assert.match(lines[0] ?? '', message);
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

// ---------------------------------------------------------------------------------------------
// Fixtures

let tmp: string;
let dns: DnsServer;
let https: HttpsHost;
let caFile: string;
const dirs: string[] = [];

/** A fresh data dir for one case. */
async function dataDir(): Promise<string> {
  const d = await mkdtemp(join(tmp, 'data-'));
  dirs.push(d);
  return d;
}

/** The options that point the CLI at the fixtures. */
function net(): string[] {
  return [
    '--dns-server',
    dns.address,
    '--ca',
    caFile,
    '--policy-port',
    String(https.port),
    '--allow-private-addresses',
    '--timeout',
    '5',
  ];
}

const policyText = (mode: string, mx: readonly string[], maxAge = 86400): string =>
  `version: STSv1\r\nmode: ${mode}\r\n${mx.map((m) => `mx: ${m}\r\n`).join('')}max_age: ${maxAge}\r\n`;

/** Publishes `domain` with a TXT id and a policy on the fixtures. */
function publish(domain: string, id: string, text: string): void {
  dns.mtaSts(domain, { id });
  https.policy(domain, text);
}

const GOOD = policyText('enforce', ['mx1.good.test', '*.good.test']);

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mtastsdb-cli-'));
  const ca = await getTestCa();
  [dns, https] = await Promise.all([startDnsServer(), startHttpsHost({ ca })]);
  caFile = join(tmp, 'ca.pem');
  await writeFile(caFile, ca.certPem);

  publish('good.test', 'good1', GOOD);
  publish('testing.test', 't1', policyText('testing', ['mx.testing.test']));
  publish('none.test', 'n1', 'version: STSv1\r\nmode: none\r\nmax_age: 86400\r\n');
  dns.mtaSts('nopolicy.test', { id: 'np1' }); // TXT, but the policy host answers 404
  publish('badpolicy.test', 'bp1', 'version: STSv1\r\nmode: sometimes\r\nmx: mx.badpolicy.test\r\nmax_age: 60\r\n');
  dns.txt('_mta-sts.multi.test', ['v=STSv1; id=a;', 'v=STSv1; id=b;']).a('mta-sts.multi.test', '127.0.0.1');
  dns.servfail('_mta-sts.servfail.test');
  publish('badcert.test', 'bc1', GOOD);
  https.policy('badcert.test', GOOD, { cert: 'wrong-name' });
  publish('xn--bcher-kva.test', 'idn1', policyText('enforce', ['mx.xn--bcher-kva.test']));
  dns.drop('_mta-sts.slow.test');
});

after(async () => {
  await Promise.all([dns?.close(), https?.close()]);
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Records with chosen dates, written with `import` (the only way to set dates from outside).

const HOUR = 3600_000;
const DAY = 24 * HOUR;

function line(
  domain: string,
  o: {
    mode?: string;
    lastUse: number;
    validEnd: number;
    lastUpdate?: number;
    backoff?: boolean;
    id?: string;
    mx?: string[];
  },
): string {
  const now = Date.now();
  const text =
    o.backoff === true
      ? 'version: STSv1\r\nmode: none\r\nmax_age: 300\r\n'
      : // max_age covers validEnd, as for a record the cache wrote (import checks it).
        policyText(
          o.mode ?? 'enforce',
          o.mx ?? [`mx.${domain}`],
          Math.max(86400, Math.ceil((o.validEnd - (o.lastUpdate ?? -HOUR)) / 1000)),
        );
  return JSON.stringify({
    domain,
    inserted: new Date(now - 300 * DAY).toISOString(),
    validEnd: new Date(now + o.validEnd).toISOString(),
    lastUpdate: new Date(now + (o.lastUpdate ?? -HOUR)).toISOString(),
    lastUse: new Date(now + o.lastUse).toISOString(),
    backoff: o.backoff === true,
    recordId: o.id ?? (o.backoff === true ? '' : 'id1'),
    policyText: text,
  });
}

/** Four records: in lastUse order fresh, back (backoff), expired, old (unused 200 days, testing). */
function seedLines(): string {
  return [
    line('old.test', { mode: 'testing', lastUse: -200 * DAY, validEnd: 100 * DAY }),
    line('expired.test', { lastUse: -2 * DAY, validEnd: -DAY, lastUpdate: -10 * DAY }),
    line('fresh.test', { lastUse: -HOUR, validEnd: DAY }),
    line('back.test', { backoff: true, lastUse: -3 * HOUR, validEnd: 5 * 60_000, lastUpdate: -60_000 }),
  ].join('\n');
}

/** A data dir with an empty store (read-only commands refuse a missing one). */
async function emptyStore(): Promise<string> {
  const dir = await dataDir();
  assertStatus(await mtastsdb(['--data-dir', dir, 'import'], { input: '' }), 0);
  return dir;
}

async function seeded(): Promise<string> {
  const dir = await dataDir();
  const run = await mtastsdb(['--data-dir', dir, 'import'], { input: `${seedLines()}\n` });
  assertStatus(run, 0);
  return dir;
}

// ---------------------------------------------------------------------------------------------

const COMMANDS = [
  'serve',
  'lookup',
  'dane',
  'get',
  'query',
  'list',
  'show',
  'refresh',
  'delete',
  'purge',
  'export',
  'import',
];

describe('mtastsdb CLI', { concurrency: true }, () => {
  it('--help of the program lists every command and the exit statuses; --version prints the version', async () => {
    const [help, version, helpCmd] = await Promise.all([
      mtastsdb(['--help']),
      mtastsdb(['--version']),
      mtastsdb(['help', 'list']),
    ]);
    assertStatus(help, 0);
    assert.match(help.stdout, /^Usage: mtastsdb \[options\] \[command\]/);
    for (const c of COMMANDS) assert.match(help.stdout, new RegExp(`^  ${c}\\b`, 'm'), c);
    for (const o of [
      '--store',
      '--data-dir',
      '--dns-server',
      '--ca',
      '--policy-port',
      '--allow-private-addresses',
      '--timeout',
      '--log-level',
    ]) {
      assert.ok(help.stdout.includes(o), o);
    }
    assert.match(help.stdout, /Exit status: 0 ok/);
    assert.equal(help.stderr, '');
    assertStatus(version, 0);
    assert.match(version.stdout, /^\d+\.\d+\.\d+\n$/);
    assertStatus(helpCmd, 0);
    assert.match(helpCmd.stdout, /^Usage: mtastsdb list/);
  });

  it('--help of every command', async () => {
    const runs = await Promise.all(COMMANDS.map((c) => mtastsdb([c, '--help'])));
    runs.forEach((run, i) => {
      const c = COMMANDS[i] ?? '';
      assertStatus(run, 0);
      assert.match(run.stdout, new RegExp(`^Usage: mtastsdb ${c} `), c);
      assert.equal(run.stderr, '', c);
    });
    // Commands that print data offer --json.
    for (const c of ['lookup', 'dane', 'get', 'list', 'show', 'refresh', 'delete', 'purge', 'import']) {
      assert.match(runs[COMMANDS.indexOf(c)]?.stdout ?? '', /--json/, c);
    }
  });

  it('usage errors exit 2 with one ERR_MTASTS_USAGE line', async () => {
    const dir = await dataDir();
    const cases: [string[], RegExp][] = [
      [['bogus'], /unknown command 'bogus'/],
      [['list', '--bogus'], /unknown option '--bogus'/],
      [['lookup'], /missing required argument 'domain'/],
      [['lookup', 'a.test', 'b.test'], /too many arguments/],
      [['list', '--mode', 'strict'], /--mode/],
      [['--timeout', 'soon', 'list'], /--timeout/],
      [['--dns-server', 'dns.example', 'list'], /--dns-server/],
      // c-ares would abort the process on port 0 (a native assertion, exit 134).
      [['--dns-server', '127.0.0.1:0', 'lookup', 'good.test'], /--dns-server.*port 1-65535/],
      [['--dns-server', '127.0.0.1:70000', 'lookup', 'good.test'], /--dns-server.*port 1-65535/],
      [['--dns-server', '999.1.1.1', 'lookup', 'good.test'], /--dns-server/],
      [['--ca', join(tmp, 'missing.pem'), 'lookup', 'good.test'], /cannot read --ca file/],
      [['dane', 'good.test', '--resolver', 'localhost:53'], /host:port|IP address/],
    ];
    const runs = await Promise.all(cases.map(([args]) => mtastsdb(['--data-dir', dir, ...args])));
    runs.forEach((run, i) => assertFailure(run, 2, 'ERR_MTASTS_USAGE', cases[i]?.[1]));

    const none = await mtastsdb([]);
    assertStatus(none, 2);
    assert.match(none.stderr, /^Usage: mtastsdb/);
    assert.equal(none.stdout, '');
  });

  it('an invalid domain exits 2 with the ERR_MTASTS_DOMAIN line, before any store or network', async () => {
    const dir = join(tmp, 'never-created');
    const runs = await Promise.all(
      ['lookup', 'dane', 'get', 'show', 'refresh'].map((c) => mtastsdb(['--data-dir', dir, ...net(), c, 'bad..test'])),
    );
    for (const run of runs) {
      assertFailure(run, 2, 'ERR_MTASTS_DOMAIN', /^ERR_MTASTS_DOMAIN: invalid domain "bad\.\.test"/);
    }
    const ip = await mtastsdb(['--data-dir', dir, 'show', '192.0.2.1']);
    assertFailure(ip, 2, 'ERR_MTASTS_DOMAIN', /IP literal/);
    assert.equal(existsSync(dir), false);
    assert.equal(dns.queries('_mta-sts.bad..test'), 0);
  });

  it('lookup prints the record id, mode, max_age, mx and policy text; --json parses', async () => {
    const [human, json, idn] = await Promise.all([
      mtastsdb([...net(), 'lookup', 'Good.Test.']),
      mtastsdb([...net(), 'lookup', '--json', 'good.test']),
      mtastsdb([...net(), 'lookup', 'bücher.test']),
    ]);
    assertStatus(human, 0);
    assert.equal(
      human.stdout,
      'domain:    good.test\n' +
        'record id: good1\n' +
        'mode:      enforce\n' +
        'max_age:   86400 (1d)\n' +
        'mx:        mx1.good.test\n' +
        '           *.good.test\n' +
        'policy:\n' +
        '  version: STSv1\n  mode: enforce\n  mx: mx1.good.test\n  mx: *.good.test\n  max_age: 86400\n',
    );
    assert.equal(human.stderr, '');
    assertStatus(json, 0);
    assert.deepEqual(JSON.parse(json.stdout), {
      domain: 'good.test',
      record: { id: 'good1', extensions: [] },
      policy: {
        version: 'STSv1',
        mode: 'enforce',
        mx: ['mx1.good.test', '*.good.test'],
        maxAgeSeconds: 86400,
        extensions: [],
      },
      policyText: GOOD,
    });
    assertStatus(idn, 0);
    assert.match(idn.stdout, /^domain: +bücher\.test\n/);
    assert.match(idn.stdout, /^mx: +mx\.xn--bcher-kva\.test$/m);
  });

  it('lookup exit statuses follow the outcome', async () => {
    const cases: [string, number, string][] = [
      ['nosts.test', 3, 'ERR_MTASTS_NO_RECORD'],
      ['nopolicy.test', 3, 'ERR_MTASTS_NO_POLICY'],
      ['badpolicy.test', 5, 'ERR_MTASTS_POLICY_SYNTAX'],
      ['multi.test', 5, 'ERR_MTASTS_MULTIPLE_RECORDS'],
      ['servfail.test', 4, 'ERR_MTASTS_DNS'],
      ['badcert.test', 4, 'ERR_MTASTS_POLICY_FETCH'],
    ];
    const runs = await Promise.all(cases.map(([d]) => mtastsdb([...net(), 'lookup', d])));
    runs.forEach((run, i) => {
      const [d, status, code] = cases[i] ?? ['', 0, ''];
      assertFailure(run, status, code);
      assert.equal(run.stdout === '', d === 'nosts.test' || d === 'multi.test' || d === 'servfail.test', d);
    });
    // The TXT record found before a failed fetch is shown.
    assert.match(runs[1]?.stdout ?? '', /^record id: np1$/m);
    const json = await mtastsdb([...net(), 'lookup', '--json', 'nopolicy.test']);
    assertStatus(json, 3);
    assert.deepEqual(JSON.parse(json.stdout), {
      domain: 'nopolicy.test',
      record: { id: 'np1', extensions: [] },
      policy: null,
      error: {
        code: 'ERR_MTASTS_NO_POLICY',
        message: (JSON.parse(json.stdout) as { error: { message: string } }).error.message,
      },
    });
  });

  it('lookup refuses loopback policy hosts unless allowed; the environment sets port and permission', async () => {
    const base = ['--dns-server', dns.address, '--ca', caFile, '--timeout', '5'];
    const [refused, byEnv] = await Promise.all([
      mtastsdb([...base, '--policy-port', String(https.port), 'lookup', 'good.test']),
      mtastsdb([...base, 'lookup', 'good.test'], {
        env: { MTASTSDB_ALLOW_PRIVATE_ADDRESSES: '1', MTASTSDB_POLICY_PORT: String(https.port) },
      }),
    ]);
    assertStatus(refused, 4);
    assert.match(refused.stderr, /^ERR_MTASTS_POLICY_FETCH: .*\n$/);
    assertStatus(byEnv, 0);
    assert.match(byEnv.stdout, /^mode: +enforce$/m);
  });

  it('get goes through the cache like the daemon, then show and list see the record', async () => {
    const dir = await dataDir();
    const get = await mtastsdb(['--data-dir', dir, ...net(), 'get', '--json', 'good.test']);
    assertStatus(get, 0);
    const out = JSON.parse(get.stdout) as {
      domain: string;
      policy: { mode: string; mx: string[] };
      fresh: boolean;
      report: {
        policy: { type: string; domain: string; mxHost: string[]; string: string[] };
        failureDetails: unknown[];
      };
      record: { recordId: string; policyText: string; backoff: boolean };
    };
    assert.equal(out.domain, 'good.test');
    assert.equal(out.policy.mode, 'enforce');
    assert.deepEqual(out.policy.mx, ['mx1.good.test', '*.good.test']);
    assert.equal(out.fresh, true);
    assert.equal(out.report.policy.type, 'sts');
    assert.equal(out.report.policy.domain, 'good.test');
    assert.deepEqual(out.report.policy.mxHost, ['mx1.good.test', '*.good.test']);
    assert.deepEqual(out.report.failureDetails, []);
    assert.equal(out.record.recordId, 'good1');
    assert.equal(out.record.policyText, GOOD);

    const [human, show, list] = await Promise.all([
      mtastsdb(['--data-dir', dir, ...net(), 'get', 'good.test']),
      mtastsdb(['--data-dir', dir, 'show', 'good.test']),
      mtastsdb(['--data-dir', dir, 'list']),
    ]);
    assertStatus(human, 0);
    assert.match(human.stdout, /^mode: +enforce$/m);
    assert.match(human.stdout, /^fresh: +yes$/m);
    assert.match(human.stdout, /^record id: +good1$/m);
    assert.match(human.stdout, /^tlsrpt: +sts$/m);
    assertStatus(show, 0);
    assert.match(show.stdout, /^domain: +good\.test$/m);
    assert.match(show.stdout, /^record id: +good1$/m);
    assert.match(show.stdout, /^backoff: +no$/m);
    assert.match(show.stdout, /^valid until: +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ$/m);
    assert.ok(
      show.stdout.endsWith(
        'policy:\n  version: STSv1\n  mode: enforce\n  mx: mx1.good.test\n  mx: *.good.test\n  max_age: 86400\n',
      ),
    );
    assertStatus(list, 0);
    assert.match(list.stdout, /^DOMAIN +MODE +VALID UNTIL +LAST USE +RECORD ID +BACKOFF\n/);
    assert.match(list.stdout, /^good\.test +enforce +\S+ \S+ +\S+ \S+ +good1 +no$/m);
  });

  it('get: no policy exits 3, a failed fetch stores a backoff record and exits 7, a DNS failure exits 4', async () => {
    const dir = await dataDir();
    const [nosts, nopolicy, servfail] = await Promise.all([
      mtastsdb(['--data-dir', dir, ...net(), 'get', 'nosts.test']),
      mtastsdb(['--data-dir', dir, ...net(), 'get', '--json', 'nopolicy.test']),
      mtastsdb(['--data-dir', dir, ...net(), 'get', 'servfail.test']),
    ]);
    assertFailure(nosts, 3, 'ERR_MTASTS_NO_POLICY', /nosts\.test/);
    assert.match(nosts.stdout, /^policy: +none$/m);
    assertFailure(nopolicy, 7, 'ERR_MTASTSDB_BACKOFF', /nopolicy\.test/);
    const out = JSON.parse(nopolicy.stdout) as { policy: null; report: { failureDetails: { resultType: string }[] } };
    assert.equal(out.policy, null);
    assert.ok(out.report.failureDetails.length > 0);
    assertFailure(servfail, 4, 'ERR_MTASTS_DNS');

    const [backoff, show, again] = await Promise.all([
      mtastsdb(['--data-dir', dir, 'list', '--backoff', '--json']),
      mtastsdb(['--data-dir', dir, 'show', 'nopolicy.test']),
      mtastsdb(['--data-dir', dir, ...net(), 'get', 'nopolicy.test']),
    ]);
    assertStatus(backoff, 0);
    assert.deepEqual(
      jsonLines(backoff.stdout).map((r) => [r.domain, r.backoff]),
      [['nopolicy.test', true]],
    );
    assertStatus(show, 0);
    assert.match(show.stdout, /^backoff: +yes/m);
    assertFailure(again, 7, 'ERR_MTASTSDB_BACKOFF');
    assert.match(again.stdout, /^policy: +none \(backoff/m);
  });

  it('a store that cannot be opened exits 6 with the store error line', async () => {
    const file = join(tmp, 'not-a-directory');
    await writeFile(file, 'x');
    const [list, corrupt] = await Promise.all([
      mtastsdb(['--data-dir', join(file, 'sub'), 'list']),
      (async () => {
        const dir = await dataDir();
        await writeFile(join(dir, 'mtasts.db'), 'this is not an SQLite database, just text '.repeat(200));
        return mtastsdb(['--data-dir', dir, 'show', 'good.test']);
      })(),
    ]);
    assertStatus(list, 6);
    assert.match(list.stderr, /^ERR_MTASTSDB_STORE\w*: .*\n$/);
    assertStatus(corrupt, 6);
    assert.match(corrupt.stderr, /^ERR_MTASTSDB_STORE\w*: .*\n$/);
  });

  it('--store and MTASTSDB_STORE select the store; an unknown scheme is a configuration error (2)', async () => {
    const dir = await dataDir();
    const store = `sqlite:${join(dir, 'elsewhere.db')}`;
    const imported = await mtastsdb(['--store', store, 'import'], {
      input: `${line('store.test', { lastUse: -HOUR, validEnd: DAY })}\n`,
    });
    assertStatus(imported, 0);
    const [byEnv, dataDirOnly, bad] = await Promise.all([
      mtastsdb(['list', '--json'], { env: { MTASTSDB_STORE: store } }),
      mtastsdb(['--data-dir', dir, 'list', '--json']),
      mtastsdb(['--store', 'redis://127.0.0.1/0', 'list']),
    ]);
    assert.deepEqual(
      jsonLines(byEnv.stdout).map((r) => r.domain),
      ['store.test'],
    );
    assert.deepEqual(jsonLines(dataDirOnly.stdout), []);
    assertFailure(bad, 2, 'ERR_MTASTS_CONFIG', /unsupported store URL scheme/);
  });

  it('show of a domain not in the cache exits 3', async () => {
    const dir = await emptyStore();
    const [human, json] = await Promise.all([
      mtastsdb(['--data-dir', dir, 'show', 'absent.test']),
      mtastsdb(['--data-dir', dir, 'show', '--json', 'absent.test']),
    ]);
    assertFailure(human, 3, 'ERR_MTASTSDB_NOT_FOUND', /absent\.test/);
    assertFailure(json, 3, 'ERR_MTASTSDB_NOT_FOUND');
    assert.equal(human.stdout, '');
  });

  it('list: newest last use first, filters, limit, --json lines', async () => {
    const dir = await seeded();
    const run = (...args: string[]): Promise<Run> => mtastsdb(['--data-dir', dir, 'list', ...args]);
    const [all, json, expired, backoff, testing, unused, limit, none, combined] = await Promise.all([
      run(),
      run('--json'),
      run('--expired', '--json'),
      run('--backoff', '--json'),
      run('--mode', 'testing', '--json'),
      run('--unused-days', '30', '--json'),
      run('--limit', '2', '--json'),
      run('--mode', 'none', '--json'),
      run('--mode', 'enforce', '--unused-days', '1', '--json'),
    ]);
    assertStatus(all, 0);
    const rows = all.stdout.trimEnd().split('\n');
    assert.match(rows[0] ?? '', /^DOMAIN +MODE +VALID UNTIL +LAST USE +RECORD ID +BACKOFF$/);
    assert.deepEqual(
      rows.slice(1).map((r) => r.split(/ +/)[0]),
      ['fresh.test', 'back.test', 'expired.test', 'old.test'],
    );
    assert.match(rows[2] ?? '', /^back\.test +none .* - +yes$/);
    const domains = (r: Run): unknown[] => {
      assertStatus(r, 0);
      return jsonLines(r.stdout).map((x) => x.domain);
    };
    assert.deepEqual(domains(json), ['fresh.test', 'back.test', 'expired.test', 'old.test']);
    const first = jsonLines(json.stdout)[0] ?? {};
    assert.equal(first.policyText, undefined);
    assert.deepEqual(Object.keys(first), [
      'domain',
      'inserted',
      'validEnd',
      'lastUpdate',
      'lastUse',
      'backoff',
      'recordId',
      'policy',
    ]);
    assert.deepEqual(domains(expired), ['expired.test']);
    assert.deepEqual(domains(backoff), ['back.test']);
    assert.deepEqual(domains(testing), ['old.test']);
    assert.deepEqual(domains(unused), ['old.test']);
    assert.deepEqual(domains(limit), ['fresh.test', 'back.test']);
    assert.deepEqual(domains(none), ['back.test']);
    assert.deepEqual(domains(combined), ['expired.test']);
  });

  it('delete removes one record and exits 3 when there is none', async () => {
    const dir = await seeded();
    const first = await mtastsdb(['--data-dir', dir, 'delete', 'fresh.test']);
    assertStatus(first, 0);
    assert.equal(first.stdout, 'deleted 1 record\n');
    const [again, json, show] = await Promise.all([
      mtastsdb(['--data-dir', dir, 'delete', 'fresh.test']),
      mtastsdb(['--data-dir', dir, 'delete', '--json', 'old.test']),
      mtastsdb(['--data-dir', dir, 'show', 'fresh.test']),
    ]);
    assertFailure(again, 3, 'ERR_MTASTSDB_NOT_FOUND', /fresh\.test/);
    assert.equal(again.stdout, 'deleted 0 records\n');
    assertStatus(json, 0);
    assert.deepEqual(JSON.parse(json.stdout), { deleted: 1 });
    assertStatus(show, 3);
  });

  it('purge deletes expired and long-unused records and prints counts', async () => {
    const [a, b] = await Promise.all([seeded(), seeded()]);
    const [expiredOnly, defaults] = await Promise.all([
      mtastsdb(['--data-dir', a, 'purge', '--expired', '--json']),
      mtastsdb(['--data-dir', b, 'purge']),
    ]);
    assertStatus(expiredOnly, 0);
    assert.equal((JSON.parse(expiredOnly.stdout) as { deleted: number }).deleted, 1);
    assertStatus(defaults, 0);
    assert.match(defaults.stdout, /^purged 2 records/);
    const [listA, listB] = await Promise.all([
      mtastsdb(['--data-dir', a, 'list', '--json']),
      mtastsdb(['--data-dir', b, 'list', '--json']),
    ]);
    const unused = await mtastsdb(['--data-dir', a, 'purge', '--unused-days', '100', '--json']);
    assert.deepEqual(
      jsonLines(listA.stdout).map((r) => r.domain),
      ['fresh.test', 'back.test', 'old.test'],
    );
    assert.deepEqual(
      jsonLines(listB.stdout).map((r) => r.domain),
      ['fresh.test', 'back.test'],
    );
    assertStatus(unused, 0);
    assert.equal((JSON.parse(unused.stdout) as { deleted: number }).deleted, 1);
  });

  it('refresh re-checks the TXT id and fetches a changed policy; summary and --json', async () => {
    const dir = await dataDir();
    publish('refresh.test', 'r1', policyText('enforce', ['mx1.refresh.test']));
    publish('same.test', 's1', policyText('testing', ['mx.same.test']));
    const gets = await Promise.all(
      ['refresh.test', 'same.test'].map((d) => mtastsdb(['--data-dir', dir, ...net(), 'get', d])),
    );
    for (const g of gets) assertStatus(g, 0);
    const changed = policyText('enforce', ['mx2.refresh.test']);
    publish('refresh.test', 'r2', changed);
    const [json, human] = await Promise.all([
      mtastsdb(['--data-dir', dir, ...net(), 'refresh', '--json', 'refresh.test']),
      mtastsdb(['--data-dir', dir, ...net(), 'refresh', 'same.test']),
    ]);
    assertStatus(json, 0);
    assert.deepEqual(JSON.parse(json.stdout), {
      checked: 1,
      unchanged: 0,
      updated: 1,
      failed: 0,
      deleted: 0,
      skipped: 0,
    });
    assertStatus(human, 0);
    assert.equal(human.stdout, 'checked 1: 1 unchanged, 0 updated, 0 failed, 0 deleted\n');
    // No progress line when stderr is not a terminal.
    assert.equal(human.stderr, '');
    const [show, due] = await Promise.all([
      mtastsdb(['--data-dir', dir, 'show', '--json', 'refresh.test']),
      mtastsdb(['--data-dir', dir, ...net(), 'refresh', '--json']),
    ]);
    const rec = JSON.parse(show.stdout) as { recordId: string; policyText: string };
    assert.equal(rec.recordId, 'r2');
    assert.equal(rec.policyText, changed);
    // Nothing is due (both were updated just now).
    assertStatus(due, 0);
    assert.deepEqual(JSON.parse(due.stdout), {
      checked: 0,
      unchanged: 0,
      updated: 0,
      failed: 0,
      deleted: 0,
      skipped: 0,
    });
    // A second explicit refresh right after the first is done, not "being refreshed elsewhere":
    // each refresh releases its lease when it ends.
    const again = await mtastsdb(['--data-dir', dir, ...net(), 'refresh', '--json', 'refresh.test']);
    assertStatus(again, 0);
    assert.deepEqual(JSON.parse(again.stdout), {
      checked: 1,
      unchanged: 1,
      updated: 0,
      failed: 0,
      deleted: 0,
      skipped: 0,
    });
  });

  it('query prints what the daemon would answer Postfix', async () => {
    const dir = await emptyStore();
    const config = join(dir, 'mtastsdb.yml');
    await writeFile(
      config,
      'zones:\n  report:\n    tlsrpt: true\n  strict:\n    strict_testing: true\n    require_sni: false\n',
    );
    const q = (...args: string[]): Promise<Run> =>
      mtastsdb(['--data-dir', dir, ...net(), 'query', '-c', config, ...args]);
    const [good, port, testing, strict, none, nosts, ip, tlsrpt] = await Promise.all([
      q('good.test'),
      q('[GOOD.test]:25'),
      q('testing.test'),
      q('--name', 'strict', 'testing.test'),
      q('none.test'),
      q('nosts.test'),
      q('192.0.2.1'),
      q('--name', 'report', 'good.test'),
    ]);
    for (const r of [good, port, testing, strict, none, nosts, ip, tlsrpt]) assertStatus(r, 0);
    assert.equal(good.stdout, 'OK secure match=mx1.good.test:.good.test servername=hostname\n');
    assert.equal(port.stdout, good.stdout);
    assert.equal(testing.stdout, 'NOTFOUND \n');
    assert.equal(strict.stdout, 'OK secure match=mx.testing.test\n');
    assert.equal(none.stdout, 'NOTFOUND \n');
    assert.equal(nosts.stdout, 'NOTFOUND \n');
    assert.equal(ip.stdout, 'NOTFOUND \n');
    assert.equal(
      tlsrpt.stdout,
      'OK secure match=mx1.good.test:.good.test servername=hostname policy_type=sts policy_domain=good.test ' +
        'mx_host_pattern=mx1.good.test mx_host_pattern=*.good.test { policy_string = version: STSv1 } ' +
        '{ policy_string = mode: enforce } { policy_string = mx: mx1.good.test } { policy_string = mx: *.good.test } ' +
        '{ policy_string = max_age: 86400 }\n',
    );
    // It went through the cache: the record is there now.
    assertStatus(await mtastsdb(['--data-dir', dir, 'show', 'good.test']), 0);
  });

  it('import validates every line: the first bad line stops with its number; --skip-invalid and --dry-run', async () => {
    const [a, b, c] = await Promise.all([dataDir(), dataDir(), dataDir()]);
    const good1 = line('one.test', { lastUse: -HOUR, validEnd: DAY });
    const good3 = line('three.test', { lastUse: -HOUR, validEnd: DAY });
    const bad = line('two.test', { lastUse: -HOUR, validEnd: DAY }).replace('"two.test"', '"two..test"');
    const input = `${good1}\n${bad}\n${good3}\n`;
    const [stop, skip, dry, notJson] = await Promise.all([
      mtastsdb(['--data-dir', a, 'import'], { input }),
      mtastsdb(['--data-dir', b, 'import', '--skip-invalid', '--json'], { input }),
      mtastsdb(['--data-dir', c, 'import', '--dry-run'], { input }),
      mtastsdb(['--data-dir', c, 'import'], { input: '{"domain": "x.test",\n' }),
    ]);
    assertFailure(stop, 2, 'ERR_MTASTS_USAGE', /^ERR_MTASTS_USAGE: line 2: domain: invalid domain "two\.\.test"/);
    assert.equal(stop.stdout, 'imported 1 records, 0 skipped (cached copy newer), 0 invalid\n');
    assertStatus(skip, 0);
    assert.deepEqual(JSON.parse(skip.stdout), { imported: 2, older: 0, invalid: 1 });
    assert.match(skip.stderr, /^ERR_MTASTS_USAGE: line 2: domain: invalid domain/);
    assertStatus(dry, 2);
    assert.equal(dry.stdout, '2 valid, 1 invalid records (dry run, nothing written)\n');
    assert.equal(
      dry.stderr,
      'ERR_MTASTS_USAGE: line 2: domain: invalid domain "two..test": empty label\n' +
        'ERR_MTASTS_USAGE: 1 invalid line, the first is line 2\n',
    );
    assertFailure(notJson, 2, 'ERR_MTASTS_USAGE', /^ERR_MTASTS_USAGE: line 1: not JSON/);

    const [listA, listB, listC] = await Promise.all(
      [a, b, c].map((d) => mtastsdb(['--data-dir', d, 'list', '--json'])),
    );
    assert.deepEqual(
      jsonLines(listA?.stdout ?? '').map((r) => r.domain),
      ['one.test'],
    );
    assert.deepEqual(
      jsonLines(listB?.stdout ?? '')
        .map((r) => r.domain)
        .sort(),
      ['one.test', 'three.test'],
    );
    assert.deepEqual(jsonLines(listC?.stdout ?? ''), []);
  });

  it('import refuses impossible times per line: a day that does not exist, the year 9999, validEnd past max_age, a back-off record with a policy', async () => {
    const dir = await dataDir();
    const ok = line('ok.test', { lastUse: -HOUR, validEnd: DAY });
    const edit = (domain: string, change: Record<string, unknown>): string =>
      JSON.stringify({ ...(JSON.parse(line(domain, { lastUse: -HOUR, validEnd: DAY })) as object), ...change });
    const input = [
      ok,
      edit('feb30.test', { lastUse: '2026-02-30T00:00:00.000Z' }),
      edit('future.test', { lastUpdate: '9999-12-31T00:00:00.000Z', validEnd: '9999-12-31T00:00:00.000Z' }),
      edit('long.test', { validEnd: '9999-12-31T00:00:00.000Z' }),
      edit('back.test', { backoff: true }),
      '',
    ].join('\n');
    const dry = await mtastsdb(['--data-dir', dir, 'import', '--dry-run'], { input });
    assertStatus(dry, 2);
    assert.equal(dry.stdout, '1 valid, 4 invalid records (dry run, nothing written)\n');
    const errs = dry.stderr.trim().split('\n');
    assert.match(errs[0] ?? '', /^ERR_MTASTS_USAGE: line 2: lastUse is not a valid date: 2026-02-30/);
    assert.match(errs[1] ?? '', /^ERR_MTASTS_USAGE: line 3: lastUpdate 9999-12-31T00:00:00.000Z is in the future/);
    assert.match(
      errs[2] ?? '',
      /^ERR_MTASTS_USAGE: line 4: validEnd 9999-12-31T00:00:00.000Z is later than lastUpdate/,
    );
    assert.match(errs[3] ?? '', /^ERR_MTASTS_USAGE: line 5: backoff is true but the policy is mode enforce/);
    const skip = await mtastsdb(['--data-dir', dir, 'import', '--skip-invalid', '--json'], { input });
    assertStatus(skip, 0);
    assert.deepEqual(JSON.parse(skip.stdout), { imported: 1, older: 0, invalid: 4 });
    const listed = await mtastsdb(['--data-dir', dir, 'list', '--json']);
    assert.deepEqual(
      jsonLines(listed.stdout).map((r) => r.domain),
      ['ok.test'],
    );
  });

  it('import: newest wins by lastUpdate; reads a file argument', async () => {
    const dir = await dataDir();
    const current = line('nw.test', { lastUse: -HOUR, validEnd: DAY, lastUpdate: -HOUR, id: 'current' });
    const older = line('nw.test', {
      lastUse: -HOUR,
      validEnd: DAY,
      lastUpdate: -2 * HOUR,
      id: 'older',
      mx: ['old.nw.test'],
    });
    const newer = line('nw.test', {
      lastUse: -HOUR,
      validEnd: DAY,
      lastUpdate: -60_000,
      id: 'newer',
      mx: ['new.nw.test'],
    });
    const file = join(dir, 'records.jsonl');
    await writeFile(file, `${current}\r\n${older}\r\n`);
    const first = await mtastsdb(['--data-dir', dir, 'import', file]);
    assertStatus(first, 0);
    assert.equal(first.stdout, 'imported 1 records, 1 skipped (cached copy newer), 0 invalid\n');
    assert.equal(
      (JSON.parse((await mtastsdb(['--data-dir', dir, 'show', '--json', 'nw.test'])).stdout) as { recordId: string })
        .recordId,
      'current',
    );
    const second = await mtastsdb(['--data-dir', dir, 'import', '--json'], { input: `${newer}\n` });
    assert.deepEqual(JSON.parse(second.stdout), { imported: 1, older: 0, invalid: 0 });
    const show = JSON.parse((await mtastsdb(['--data-dir', dir, 'show', '--json', 'nw.test'])).stdout) as {
      recordId: string;
      policy: { mx: string[] };
    };
    assert.equal(show.recordId, 'newer');
    assert.deepEqual(show.policy.mx, ['new.nw.test']);
    const missing = await mtastsdb(['--data-dir', dir, 'import', join(dir, 'missing.jsonl')]);
    assertFailure(missing, 2, 'ERR_MTASTS_USAGE', /cannot read/);
  });

  it('export | import moves a SQLite cache into another SQLite cache', async () => {
    const [src, dst] = await Promise.all([seeded(), dataDir()]);
    const exported = await mtastsdb(['--data-dir', src, 'export']);
    assertStatus(exported, 0);
    const records = jsonLines(exported.stdout);
    assert.deepEqual(
      records.map((r) => r.domain),
      ['fresh.test', 'back.test', 'expired.test', 'old.test'],
    );
    for (const r of records) {
      assert.deepEqual(Object.keys(r), [
        'domain',
        'inserted',
        'validEnd',
        'lastUpdate',
        'lastUse',
        'backoff',
        'recordId',
        'policy',
        'policyText',
      ]);
      assert.match(String(r.lastUse), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const [, imported] = await pipeline(['--data-dir', src, 'export'], ['--data-dir', dst, 'import']);
    assertStatus(imported, 0);
    assert.equal(imported.stdout, 'imported 4 records, 0 skipped (cached copy newer), 0 invalid\n');
    const again = await mtastsdb(['--data-dir', dst, 'export']);
    assert.equal(again.stdout, exported.stdout);
  });

  it('export | head: a reader that goes away ends the export quietly with status 0', async () => {
    const dir = await dataDir();
    // Enough records (about 240 KB) that the export is still writing when head exits: EPIPE.
    const lines = Array.from({ length: 400 }, (_, i) =>
      line(`big${i}.test`, { lastUse: -i * 1000, validEnd: DAY, mx: [`mx.${'a'.repeat(60)}.big${i}.test`] }),
    );
    assertStatus(await mtastsdb(['--data-dir', dir, 'import'], { input: `${lines.join('\n')}\n` }), 0);
    const [producer, head] = await pipeline(['--data-dir', dir, 'export'], { shell: 'head -n 1' });
    assertStatus(head, 0);
    assert.equal(jsonLines(head.stdout).length, 1);
    assert.equal(producer.status, 0, producer.stderr);
    assert.equal(producer.stderr, '');
  });

  it('export | import --store postgres://… moves a SQLite cache into PostgreSQL', async (t: TestContext) => {
    const base = process.env.MTASTSDB_TEST_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test';
    const admin = new pg.Client({ connectionString: base, connectionTimeoutMillis: 2000 });
    let reachable = true;
    try {
      await admin.connect();
    } catch {
      reachable = false;
    }
    if (!requireOrSkip(t, reachable, `PostgreSQL not reachable at ${base}`)) return;
    const name = `mtastsdb_cli_${randomBytes(6).toString('hex')}`;
    await admin.query(`CREATE DATABASE ${name}`);
    try {
      const url = new URL(base);
      url.pathname = `/${name}`;
      const store = url.toString();
      const src = await seeded();
      const exported = await mtastsdb(['--data-dir', src, 'export']);
      const [producer, consumer] = await pipeline(['--data-dir', src, 'export'], ['--store', store, 'import']);
      assertStatus(producer, 0);
      assertStatus(consumer, 0);
      assert.equal(consumer.stdout, 'imported 4 records, 0 skipped (cached copy newer), 0 invalid\n');
      const [fromPg, listPg, showPg] = await Promise.all([
        mtastsdb(['export'], { env: { MTASTSDB_STORE: store } }),
        mtastsdb(['--store', store, 'list', '--expired', '--json']),
        mtastsdb(['--store', store, 'show', 'fresh.test']),
      ]);
      assertStatus(fromPg, 0);
      assert.equal(fromPg.stdout, exported.stdout);
      assert.deepEqual(
        jsonLines(listPg.stdout).map((r) => r.domain),
        ['expired.test'],
      );
      assertStatus(showPg, 0);
    } finally {
      await admin.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`).catch(() => undefined);
      await admin.end();
    }
  });

  it('import and refresh show progress on a terminal (a pty from script(1))', async (t: TestContext) => {
    if (!requireOrSkip(t, existsSync('/usr/bin/script'), 'script(1) from util-linux is not installed')) return;
    const dir = await dataDir();
    const file = join(dir, 'many.jsonl');
    const lines = Array.from({ length: 2000 }, (_, i) => line(`tty${i}.test`, { lastUse: -i * 1000, validEnd: DAY }));
    await writeFile(file, `${lines.join('\n')}\n`);
    const inTty = async (args: readonly string[]): Promise<Run> => {
      const cmd = [process.execPath, ...nodeArgs, '--data-dir', dir, ...args].map(shellQuote).join(' ');
      await acquire();
      try {
        return await new Promise<Run>((res, rej) => {
          const child = spawn('script', ['-qec', cmd, '/dev/null'], {
            cwd: repo,
            env: childEnv(),
            stdio: ['ignore', 'pipe', 'pipe'],
            timeout: 30_000,
          });
          let stdout = '';
          child.stdout.setEncoding('utf8').on('data', (x: string) => (stdout += x));
          child.on('error', rej);
          child.on('close', (status) => res({ status, stdout, stderr: '' }));
        });
      } finally {
        release();
      }
    };
    const imported = await inTty(['import', file]);
    assertStatus(imported, 0);
    // Progress redrawn in place with \r (stderr and stdout share the terminal), then erased.
    assert.match(imported.stdout, /^\rimported 1 records \(\d+%\)\r/);
    assert.ok(imported.stdout.endsWith('\rimported 2000 records, 0 skipped (cached copy newer), 0 invalid\r\n'));
    const refreshed = await inTty([...net(), 'refresh', 'good.test', 'testing.test']);
    assertStatus(refreshed, 0);
    assert.match(refreshed.stdout, /^\rrefreshing: 0\/2/);
    assert.match(
      refreshed.stdout,
      /\rrefreshing: 2\/2 *\r +\rchecked 2: 0 unchanged, 2 updated, 0 failed, 0 deleted\r\n$/,
    );
  });

  it('serve runs the daemon through the same entry: answers Postfix, SIGTERM exits 0', async () => {
    const dir = await dataDir();
    let port = 0;
    let reply = '';
    const run = await mtastsdb(['--data-dir', dir, ...net(), 'serve', '--port', '0', '--log-format', 'json'], {
      onSpawn: (child) => {
        let buf = '';
        child.stdout?.on('data', (chunk: Buffer | string) => {
          buf += chunk.toString();
          const m = /"port":(\d+)/.exec(buf);
          if (port !== 0 || m === null || !buf.includes('socketmap server listening')) return;
          port = Number(m[1]);
          void (async () => {
            const client = await SocketmapClient.open({ host: '127.0.0.1', port });
            reply = await client.query('postfix', 'good.test');
            client.close();
            child.kill('SIGTERM');
          })();
        });
      },
    });
    assertStatus(run, 0);
    assert.equal(reply, 'OK secure match=mx1.good.test:.good.test servername=hostname');
    assert.equal(run.stderr, '');
    assert.match(run.stdout, /"msg":"stopped"/);
  });

  it('SIGINT cancels a running command: exit 130', async () => {
    const run = await mtastsdb(['--dns-server', dns.address, '--timeout', '20', 'lookup', 'slow.test'], {
      onSpawn: (child) => {
        // Signal once the query is in flight (the DNS server never answers it).
        const poll = setInterval(() => {
          if (dns.queries('_mta-sts.slow.test') === 0) return;
          clearInterval(poll);
          child.kill('SIGINT');
        }, 20);
        child.on('close', () => clearInterval(poll));
      },
    });
    assertFailure(run, 130, 'ERR_MTASTS_ABORTED', /interrupted/);
  });
});

describe('mtastsdb CLI: no store created by reading, no store opened without listening', { concurrency: true }, () => {
  it('read-only and maintenance commands on a missing store exit 8 naming the path, and create nothing', async () => {
    const parent = await dataDir();
    const missing = join(parent, 'typo');
    const args: string[][] = [
      ['list'],
      ['show', 'good.test'],
      ['export'],
      ['query', 'good.test'],
      ['delete', 'good.test'],
      ['purge'],
      ['purge', '--dry-run'],
      ['refresh'],
    ];
    const runs = await Promise.all(args.map((a) => mtastsdb(['--data-dir', missing, ...net(), ...a])));
    runs.forEach((run, i) => {
      assertFailure(run, 8, 'ERR_MTASTSDB_STORE_MISSING', new RegExp(`${join(missing, 'mtasts.db')}.*--data-dir`));
      assert.equal(run.stdout, '', args[i]?.join(' '));
    });
    assert.equal(existsSync(missing), false, 'no directory was created');
    assert.deepEqual(readdirSync(parent), []);
    // Commands that write the cache create it, as the daemon does.
    assertStatus(await mtastsdb(['--data-dir', missing, ...net(), 'get', 'good.test']), 0);
    assert.equal(existsSync(join(missing, 'mtasts.db')), true);
  });

  it('an empty file or an SQLite file without our tables is no store; a resolver cache gets the import command', async () => {
    const dir = await dataDir();
    const empty = join(dir, 'empty.db');
    await writeFile(empty, '');
    const resolverFile = join(dir, 'cache.db');
    const db = new Database(resolverFile);
    db.exec('create table sts_policy_cache (domain text, ts integer, pol_id text, pol_body text)');
    db.close();
    const [e, r] = await Promise.all([
      mtastsdb(['--store', `sqlite:${empty}`, 'list']),
      mtastsdb(['--store', `sqlite:${resolverFile}`, 'export']),
    ]);
    assertFailure(e, 8, 'ERR_MTASTSDB_STORE_MISSING', /empty file; from --store/);
    assertFailure(
      r,
      8,
      'ERR_MTASTSDB_STORE_MISSING',
      new RegExp(`no mtastsdb tables.*mtastsdb import --from-postfix-mta-sts-resolver ${resolverFile}`),
    );
    // Nothing was added to the file: still only the resolver's table.
    const after = new Database(resolverFile, { readonly: true });
    const tables = after.prepare("select name from sqlite_schema where type = 'table'").pluck().all();
    after.close();
    assert.deepEqual(tables, ['sts_policy_cache']);
  });

  it("commands find the daemon's store as the daemon does: -c, MTASTSDB_CONFIG, then flags win", async () => {
    const dir = await seeded();
    const other = join(await dataDir(), 'elsewhere');
    const config = join(await dataDir(), 'mtastsdb.yml');
    await writeFile(config, `data_dir: ${dir}\n`);
    const storeConfig = join(await dataDir(), 'store.yml');
    await writeFile(storeConfig, `cache:\n  type: sqlite\n  options:\n    filename: ${join(other, 'x.db')}\n`);
    const domains = (run: Run): unknown[] => jsonLines(run.stdout).map((r) => r.domain);
    const [byFlag, byEnv, flagWins, envDirWins, fromCache] = await Promise.all([
      mtastsdb(['-c', config, 'list', '--json']),
      mtastsdb(['list', '--json'], { env: { MTASTSDB_CONFIG: config } }),
      mtastsdb(['-c', config, '--data-dir', other, 'list']),
      mtastsdb(['-c', config, 'list'], { env: { MTASTSDB_DATA_DIR: other } }),
      mtastsdb(['-c', storeConfig, 'show', 'fresh.test']),
    ]);
    assertStatus(byFlag, 0);
    assert.deepEqual(domains(byFlag), ['fresh.test', 'back.test', 'expired.test', 'old.test']);
    assertStatus(byEnv, 0);
    assert.deepEqual(domains(byEnv), domains(byFlag));
    assertFailure(flagWins, 8, 'ERR_MTASTSDB_STORE_MISSING', new RegExp(`from --data-dir ${other}\\)`));
    assertFailure(envDirWins, 8, 'ERR_MTASTSDB_STORE_MISSING', /from MTASTSDB_DATA_DIR\)/);
    assertFailure(
      fromCache,
      8,
      'ERR_MTASTSDB_STORE_MISSING',
      new RegExp(`x\\.db .*from store/cache in ${storeConfig}\\)`),
    );
    assert.equal(existsSync(other), false);
  });

  it('serve: a port in use, an address not on this host, a socket in a missing directory exit 9 with one line and create nothing', async () => {
    const busy = createServer();
    await new Promise<void>((r) => busy.listen(0, '127.0.0.1', r));
    const busyPort = (busy.address() as { port: number }).port;
    const parent = await dataDir();
    const data = join(parent, 'data');
    try {
      const serve = (...a: string[]): Promise<Run> =>
        mtastsdb(['--data-dir', data, 'serve', '--log-format', 'text', ...a]);
      const metricsConfig = join(parent, 'metrics.yml');
      await writeFile(metricsConfig, `metrics:\n  enabled: true\n  port: ${busyPort}\n`);
      const [inUse, notHere, noDir, metrics] = await Promise.all([
        serve('--port', String(busyPort)),
        serve('--host', '192.0.2.1', '--port', '8461'),
        serve('--path', join(parent, 'no', 'such', 'dir', 'mta-sts.sock')),
        mtastsdb(['--data-dir', data, '-c', metricsConfig, 'serve', '--port', '0']),
      ]);
      assertFailure(
        inUse,
        9,
        'ERR_MTASTS_LISTEN',
        new RegExp(`127\\.0\\.0\\.1:${busyPort}: the address is already in use \\(EADDRINUSE\\)$`),
      );
      assertFailure(
        notHere,
        9,
        'ERR_MTASTS_LISTEN',
        /192\.0\.2\.1:8461: the address is not on this host \(EADDRNOTAVAIL\)$/,
      );
      assertFailure(
        noDir,
        9,
        'ERR_MTASTS_LISTEN',
        /mta-sts\.sock: the directory \S+\/no\/such\/dir does not exist \(ENOENT\)$/,
      );
      assertFailure(
        metrics,
        9,
        'ERR_MTASTS_LISTEN',
        new RegExp(`metrics 127\\.0\\.0\\.1:${busyPort}: the address is already in use`),
      );
      for (const run of [inUse, notHere, noDir, metrics]) {
        assert.doesNotMatch(run.stdout, /\n\s+at |"stack"|error/i, `no stack and no error log line: ${run.stdout}`);
      }
      assert.deepEqual(readdirSync(parent), ['metrics.yml'], 'no data directory, no store, no socket');
    } finally {
      busy.close();
    }
  });

  it('purge --dry-run prints what would be deleted and deletes nothing', async () => {
    const dir = await seeded();
    const [human, json, expiredOnly] = await Promise.all([
      mtastsdb(['--data-dir', dir, 'purge', '--dry-run']),
      mtastsdb(['--data-dir', dir, 'purge', '--dry-run', '--json']),
      mtastsdb(['--data-dir', dir, 'purge', '--dry-run', '--expired']),
    ]);
    assertStatus(human, 0);
    const lines = human.stdout.trimEnd().split('\n');
    assert.match(lines[0] ?? '', /^expired\.test {2}expired {2}valid until \S+ \S+ {2}last use /);
    assert.match(lines[1] ?? '', /^old\.test {2}unused {2}/);
    assert.equal(lines[2], 'would purge 2 records (expired or unused for 180 days; dry run, nothing deleted)');
    assertStatus(json, 0);
    assert.deepEqual(
      jsonLines(json.stdout).map((r) => [r.domain, r.reasons]),
      [
        ['expired.test', ['expired']],
        ['old.test', ['unused']],
      ],
    );
    assert.match(expiredOnly.stdout, /^expired\.test .*\nwould purge 1 record \(expired; dry run/);
    const list = await mtastsdb(['--data-dir', dir, 'list', '--json']);
    assert.equal(jsonLines(list.stdout).length, 4, 'nothing deleted');
    const real = await mtastsdb(['--data-dir', dir, 'purge', '--json']);
    assert.deepEqual(JSON.parse(real.stdout), { deleted: 2 }, 'the dry run listed what purge deletes');
  });

  it('refresh --from-file warms the cache from a list (file or stdin); an invalid name stops before any lookup', async () => {
    const dir = await dataDir();
    const list = join(dir, 'domains.txt');
    await writeFile(list, '# domains we send to\ngood.test\n\ntesting.test  # a comment\nGOOD.test.\nnopolicy.test\n');
    const fromFile = await mtastsdb(['--data-dir', dir, ...net(), 'refresh', '--from-file', list, '--json']);
    assertStatus(fromFile, 0);
    assert.deepEqual(JSON.parse(fromFile.stdout), {
      checked: 3,
      unchanged: 0,
      updated: 2,
      failed: 1,
      deleted: 0,
      skipped: 0,
    });
    const fromStdin = await mtastsdb(['--data-dir', dir, ...net(), 'refresh', '--from-file', '-'], {
      input: 'none.test\r\ngood.test\r\n',
    });
    assertStatus(fromStdin, 0);
    assert.match(fromStdin.stdout, /^checked 2: 1 unchanged, 1 updated, 0 failed, 0 deleted\n$/);
    const listed = await mtastsdb(['--data-dir', dir, 'list', '--json']);
    assert.deepEqual(
      jsonLines(listed.stdout)
        .map((r) => r.domain)
        .sort(),
      ['good.test', 'none.test', 'nopolicy.test', 'testing.test'],
    );
    const bad = join(dir, 'bad.txt');
    await writeFile(bad, 'fresh1.test\nnot a domain\n');
    const fresh = await dataDir();
    const invalid = await mtastsdb(['--data-dir', fresh, ...net(), 'refresh', '--from-file', bad]);
    assertFailure(invalid, 2, 'ERR_MTASTS_USAGE', new RegExp(`${bad} line 2: `));
    assert.equal(dns.queries('_mta-sts.fresh1.test'), 0, 'no lookup before the whole list is valid');
    const unreadable = await mtastsdb(['--data-dir', fresh, 'refresh', '--from-file', join(dir, 'nope.txt')]);
    assertFailure(unreadable, 2, 'ERR_MTASTS_USAGE', /cannot read .*nope\.txt/);
  });
});
