import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..');

/** `serve` flags for DNS that never answers (the discard port on loopback): answers come from the cache or fail. */
export const DEAD_DNS_FLAGS: readonly string[] = ['--dns-server', '127.0.0.1:9', '--timeout', '1'];

/**
 * Writes a `serve` configuration file at `path`: socketmap on 127.0.0.1 at a free port, the store
 * at `store`, then `lines` (YAML, as given). Returns `path`.
 */
export async function writeServeConfig(path: string, store: string, lines: readonly string[]): Promise<string> {
  await writeFile(path, ['host: 127.0.0.1', 'port: 0', `store: ${JSON.stringify(store)}`, ...lines, ''].join('\n'));
  return path;
}

/** A `mtastsdb serve` child process and what it logged. */
export interface ServeProcess {
  readonly child: ChildProcess;
  /** The socketmap port it listens on (from its "listening" log line). */
  readonly port: number;
  /** Every stdout line (JSON log entries). */
  readonly lines: string[];
  /** Resolves with the exit code. */
  readonly exited: Promise<number | null>;
  /** Waits for a log line matching `re` (bounded). */
  waitFor(re: RegExp, ms?: number): Promise<string>;
}

/**
 * Spawns the daemon (`serve` with `args`, port 0 unless given) and waits until it listens.
 * Runs from the compiled build when this file is compiled, through tsx otherwise. `launcher` is a
 * command that execs the daemon in its place (e.g. `ip netns exec <name>`: the child's PID stays
 * the daemon's).
 */
export async function spawnServe(
  args: readonly string[],
  env: NodeJS.ProcessEnv = {},
  execArgv: readonly string[] = [],
  launcher: readonly string[] = [],
): Promise<ServeProcess> {
  const compiled = fileURLToPath(import.meta.url).endsWith('.js');
  // The real entry point, as a user runs it (`mtastsdb serve …`).
  const script = join(here, '..', '..', 'src', 'cli', compiled ? 'main.js' : 'main.ts');
  const nodeArgs = compiled ? [...execArgv, script] : [...execArgv, '--import', 'tsx', script];
  const argv = [...launcher, process.execPath, ...nodeArgs, 'serve', ...args];
  const child = spawn(argv[0] as string, argv.slice(1), {
    cwd: repo,
    env: { ...process.env, MTASTSDB_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
  let buf = '';
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  child.stdout?.on('data', (d: Buffer) => {
    buf += d.toString();
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      lines.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    }
  });
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const waitFor = (re: RegExp, ms = 15_000): Promise<string> => {
    const seen = lines.find((l) => re.test(l));
    if (seen !== undefined) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no log line ${re} within ${ms} ms; stderr: ${stderr}`)), ms);
      waiters.push({
        re,
        resolve: (l) => {
          clearTimeout(timer);
          resolve(l);
        },
      });
      void exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`serve exited (${code}) before ${re}; stderr: ${stderr}`));
      });
    });
  };
  const listening = await waitFor(/socketmap server listening/);
  const entry = JSON.parse(listening) as { address?: { port?: number } };
  return { child, port: entry.address?.port ?? 0, lines, exited, waitFor };
}
