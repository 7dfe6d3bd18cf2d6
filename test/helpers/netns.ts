/**
 * A network namespace for tests and benchmarks that run a daemon which uses the system resolver and
 * port 443 (postfix-mta-sts-resolver): `ip netns add`, a veth pair to this namespace, and
 * `/etc/netns/<name>/resolv.conf` naming the host side, which `ip netns exec` mounts over
 * /etc/resolv.conf for what runs inside. The fixtures (test/helpers/dns-server.ts on port 53,
 * an HTTPS host on port 443) listen on {@link Netns.hostAddress} in the caller's process; the daemon
 * runs inside and listens on {@link Netns.address}; clients reach it over the veth pair. No traffic
 * leaves the pair. Needs root and iproute2 (see {@link netnsAvailable}).
 *
 * ```ts
 * const ns = await createNetns();
 * const dns = await startDnsServer({ host: ns.hostAddress, port: 53 });
 * const child = spawn(...ns.command('/usr/bin/mta-sts-daemon', ['-c', cfg]));
 * await ns.close();
 * ```
 */
import { execFile, execFileSync } from 'node:child_process';
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** A namespace, its veth pair and its resolv.conf; {@link Netns.close} removes all three. */
export interface Netns {
  readonly name: string;
  /** The namespace's side of the veth pair: where daemons inside listen. */
  readonly address: string;
  /** This namespace's side: where the fixtures listen, and the namespace's name server. */
  readonly hostAddress: string;
  /** `[file, args]` that runs `file args…` inside the namespace, exec'd in place (same PID). */
  command(file: string, args?: readonly string[]): [string, string[]];
  /**
   * Adds another address on this side (10.232.N.k, k = 1, 2, …), routed from inside over the pair:
   * a listener here that the namespace reaches on a port of its own choosing (an MX host on 25).
   */
  addHostAddress(): Promise<string>;
  /** PIDs of the processes running inside the namespace. */
  pids(): Promise<number[]>;
  /** Deletes the namespace (and with it the veth pair) and its /etc/netns directory. */
  close(): Promise<void>;
}

/** True when this process can create namespaces (root, `ip` on the PATH). */
export function netnsAvailable(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('ip', ['netns', 'list'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Subnets of the form 10.231.N.0/30 already on this host's interfaces (another namespace's pair). */
async function usedSubnets(): Promise<Set<number>> {
  const { stdout } = await run('ip', ['-o', '-4', 'addr']);
  const used = new Set<number>();
  for (const m of stdout.matchAll(/inet 10\.231\.(\d+)\./g)) used.add(Number(m[1]));
  return used;
}

/** Creates a namespace with a veth pair (10.231.N.1 here, 10.231.N.2 inside) and its resolv.conf. */
export async function createNetns(): Promise<Netns> {
  const used = await usedSubnets();
  const start = process.pid % 250;
  let n = -1;
  for (let i = 0; i < 250 && n < 0; i++) if (!used.has((start + i) % 250)) n = (start + i) % 250;
  if (n < 0) throw new Error('netns: no free 10.231.N.0/30 subnet');
  // Interface names are at most 15 characters.
  const tag = `mt${process.pid % 100_000}x${n}`;
  const name = `mtastsdb-${tag}`;
  const hostIf = `${tag}h`;
  const nsIf = `${tag}n`;
  const hostAddress = `10.231.${n}.1`;
  const address = `10.231.${n}.2`;
  const inside = (...args: string[]) => run('ip', ['netns', 'exec', name, ...args]);
  await run('ip', ['netns', 'add', name]);
  try {
    await run('ip', ['link', 'add', hostIf, 'type', 'veth', 'peer', 'name', nsIf]);
    await run('ip', ['link', 'set', nsIf, 'netns', name]);
    await run('ip', ['addr', 'add', `${hostAddress}/30`, 'dev', hostIf]);
    await run('ip', ['link', 'set', hostIf, 'up']);
    await inside('ip', 'addr', 'add', `${address}/30`, 'dev', nsIf);
    await inside('ip', 'link', 'set', nsIf, 'up');
    await inside('ip', 'link', 'set', 'lo', 'up');
    mkdirSync(`/etc/netns/${name}`, { recursive: true });
    // trust-ad: glibc passes the resolver's AD bit on to programs that ask for it (Postfix's DANE).
    writeFileSync(
      `/etc/netns/${name}/resolv.conf`,
      `nameserver ${hostAddress}\noptions attempts:2 timeout:5 trust-ad\n`,
    );
  } catch (err) {
    await destroy(name, hostIf);
    throw err;
  }
  let aliases = 0;
  return {
    name,
    address,
    hostAddress,
    command: (file, args = []) => ['ip', ['netns', 'exec', name, file, ...args]],
    async addHostAddress() {
      const alias = `10.232.${n}.${++aliases}`;
      await run('ip', ['addr', 'add', `${alias}/32`, 'dev', hostIf]);
      await inside('ip', 'route', 'add', `${alias}/32`, 'via', hostAddress);
      return alias;
    },
    async pids() {
      const { stdout } = await run('ip', ['netns', 'pids', name]);
      return stdout
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map(Number);
    },
    close: () => destroy(name, hostIf),
  };
}

async function destroy(name: string, hostIf: string): Promise<void> {
  // Deleting the namespace deletes the pair; the host side is removed too in case the move failed.
  await run('ip', ['netns', 'delete', name]).catch(() => {});
  await run('ip', ['link', 'delete', hostIf]).catch(() => {});
  rmSync(`/etc/netns/${name}`, { recursive: true, force: true });
}
