/**
 * A second, throw-away Postfix instance for delivery tests: its own config directory (main.cf,
 * master.cf), queue and data directories and log file in a temporary directory, started with
 * `postfix -c DIR start` inside a network namespace and stopped (and every process of it gone) by
 * {@link PostfixInstance.stop}. Mail is injected with `sendmail -C DIR`; outcomes are read from its
 * own log (`maillog_file` through the `postlog` service, Postfix ≥ 3.4), per recipient.
 *
 * The instance only sends: master.cf has no smtpd listener and `mydestination` is empty, so every
 * recipient goes out over SMTP to its MX.
 */
import { execFile, spawn, spawnSync } from 'node:child_process';
import { chmod, chown, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Netns } from './netns.js';

const run = promisify(execFile);

const POSTFIX = '/usr/sbin/postfix';
const SENDMAIL = '/usr/sbin/sendmail';
const COMMAND_TIMEOUT_MS = 30_000;
const LOG_POLL_MS = 100;

/** Why this machine cannot run a Postfix instance, or undefined when it can. */
export function postfixMissing(): string | undefined {
  const r = spawnSync('/usr/sbin/postconf', ['-d', 'mail_version'], { encoding: 'utf8' });
  if (r.error !== undefined || r.status !== 0) return 'postfix (Debian package postfix) is not installed';
  const m = /mail_version = (\d+)\.(\d+)/.exec(r.stdout);
  if (m === null || Number(m[1]) * 100 + Number(m[2]) < 304)
    return `postfix ≥ 3.4 needed for maillog_file: ${r.stdout}`;
  return undefined;
}

/** How the instance is set up. */
export interface PostfixOptions {
  readonly netns: Netns;
  /** `smtp_tls_CAfile`: the CA the client trusts. */
  readonly caFile: string;
  /** `smtp_tls_policy_maps`, e.g. `socketmap:inet:127.0.0.1:8461:postfix`. */
  readonly policyMaps: string;
  /** More main.cf lines (later lines win). */
  readonly mainCf?: readonly string[];
}

/** One recipient's outcome, from the log line `to=<rcpt>, … status=…`. */
export interface Delivery {
  readonly status: 'sent' | 'deferred' | 'bounced';
  readonly dsn: string;
  readonly line: string;
}

/** The running instance. */
export interface PostfixInstance {
  readonly configDir: string;
  /** Queues one message from `from` to `to` (sendmail -C). */
  send(from: string, to: string): Promise<void>;
  /** The first outcome logged for `rcpt`, waiting at most `ms`. */
  delivery(rcpt: string, ms?: number): Promise<Delivery>;
  /** The whole log so far. */
  log(): Promise<string>;
  /** Stops the instance; nothing of it is left running. Removes its directory. */
  stop(): Promise<void>;
}

// Every service chroot-less (column 5 "n"): the instance reads the namespace's /etc/resolv.conf.
const MASTER_CF = `
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
`.trimStart();

function mainCf(base: string, options: PostfixOptions): string {
  return [
    'compatibility_level = 3.6',
    `queue_directory = ${join(base, 'queue')}`,
    `data_directory = ${join(base, 'data')}`,
    'mail_owner = postfix',
    'setgid_group = postdrop',
    `maillog_file = ${join(base, 'maillog')}`,
    `maillog_file_prefixes = ${base}`,
    'myhostname = client.mtastsdb.test',
    'myorigin = $myhostname',
    'mydestination =',
    'relayhost =',
    'alias_maps =',
    'alias_database =',
    // Only 127.0.0.1 counts as "this host": MX addresses elsewhere are never a mail loop.
    'inet_interfaces = loopback-only',
    'inet_protocols = ipv4',
    'smtp_address_preference = ipv4',
    'smtp_tls_security_level = may',
    `smtp_tls_CAfile = ${options.caFile}`,
    `smtp_tls_policy_maps = ${options.policyMaps}`,
    'smtp_tls_loglevel = 1',
    'smtp_connection_cache_on_demand = no',
    'smtp_connect_timeout = 5s',
    'smtp_helo_timeout = 10s',
    'queue_run_delay = 2s',
    'minimal_backoff_time = 2s',
    'maximal_backoff_time = 4s',
    'delay_warning_time = 0',
    ...(options.mainCf ?? []),
    '',
  ].join('\n');
}

/** Writes the instance's files and starts it inside `options.netns`. */
export async function startPostfix(options: PostfixOptions): Promise<PostfixInstance> {
  const base = await mkdtemp(join(tmpdir(), 'mtastsdb-postfix-'));
  const configDir = join(base, 'conf');
  const logFile = join(base, 'maillog');
  // The postfix user walks into the queue and data directories.
  await chmod(base, 0o755);
  await mkdir(configDir);
  await mkdir(join(base, 'queue'));
  await mkdir(join(base, 'data'));
  const { stdout: uid } = await run('id', ['-u', 'postfix']);
  await chown(join(base, 'data'), Number(uid.trim()), -1);
  await writeFile(join(configDir, 'main.cf'), mainCf(base, options));
  await writeFile(join(configDir, 'master.cf'), MASTER_CF);

  const [file, args] = options.netns.command(POSTFIX, ['-c', configDir, 'start']);
  try {
    await run(file, args, { timeout: COMMAND_TIMEOUT_MS });
  } catch (err) {
    const log = await readFile(logFile, 'utf8').catch(() => '');
    await rm(base, { recursive: true, force: true });
    throw new Error(`postfix -c ${configDir} start failed: ${(err as Error).message}\n${log}`);
  }

  const log = (): Promise<string> => readFile(logFile, 'utf8').catch(() => '');
  return {
    configDir,
    log,
    send(from, to) {
      return new Promise((resolve, reject) => {
        const child = spawn(SENDMAIL, ['-C', configDir, '-f', from, '--', to], { stdio: ['pipe', 'ignore', 'pipe'] });
        let stderr = '';
        const timer = setTimeout(() => child.kill('SIGKILL'), COMMAND_TIMEOUT_MS);
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('error', reject);
        child.on('exit', (code) => {
          clearTimeout(timer);
          if (code === 0) resolve();
          else reject(new Error(`sendmail exited ${code}: ${stderr}`));
        });
        child.stdin.end(`From: <${from}>\r\nTo: <${to}>\r\nSubject: mtastsdb delivery test\r\n\r\nHello.\r\n`);
      });
    },
    async delivery(rcpt, ms = 30_000) {
      const re = new RegExp(
        `to=<${rcpt.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}>,.*dsn=(\\S+), status=(sent|deferred|bounced).*`,
      );
      const deadline = Date.now() + ms;
      for (;;) {
        const m = re.exec(await log());
        if (m !== null) return { dsn: m[1] as string, status: m[2] as Delivery['status'], line: m[0] };
        if (Date.now() > deadline)
          throw new Error(`no delivery status for ${rcpt} within ${ms} ms; log:\n${await log()}`);
        await new Promise((r) => setTimeout(r, LOG_POLL_MS));
      }
    },
    async stop() {
      await run(POSTFIX, ['-c', configDir, 'stop'], { timeout: COMMAND_TIMEOUT_MS }).catch(() => {});
      // Whatever is still inside the namespace was started by this instance (or the caller): end it.
      for (let i = 0; i < 50; i++) {
        const left = await postfixPids(options.netns, configDir);
        if (left.length === 0) break;
        if (i === 20) for (const pid of left) process.kill(pid, 'SIGKILL');
        await new Promise((r) => setTimeout(r, 100));
      }
      await rm(base, { recursive: true, force: true });
    },
  };
}

/** PIDs in the namespace that belong to the instance with `configDir` (its master and children). */
async function postfixPids(netns: Netns, configDir: string): Promise<number[]> {
  const out: number[] = [];
  for (const pid of await netns.pids()) {
    const env = await readFile(`/proc/${pid}/environ`, 'latin1').catch(() => '');
    const cmd = await readFile(`/proc/${pid}/cmdline`, 'latin1').catch(() => '');
    if (env.includes(`MAIL_CONFIG=${configDir}`) || cmd.includes(configDir)) out.push(pid);
  }
  return out;
}
