// The ceiling of the socketmap benchmarks: a Node server that parses netstrings and answers a
// constant, as plain JS in a process of its own (same client, same run as the daemon it bounds).
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';

const CONSTANT_SERVER = `
const net = require('node:net');
const reply = Buffer.from('44:OK secure match=mail.loc servername=hostname,');
const server = net.createServer((s) => {
  let buf = Buffer.alloc(0);
  s.on('data', (d) => {
    buf = buf.length ? Buffer.concat([buf, d]) : d;
    for (;;) {
      const colon = buf.indexOf(58);
      if (colon < 0) break;
      const len = Number(buf.subarray(0, colon).toString());
      if (buf.length < colon + len + 2) break;
      buf = buf.subarray(colon + len + 2);
      s.write(reply);
    }
  });
  s.on('error', () => {});
});
server.listen(0, process.argv[1] || '127.0.0.1', () => console.log(JSON.stringify({ port: server.address().port })));
`;

/** A running constant-answer server. */
export interface ConstantServer {
  readonly child: ChildProcess;
  readonly host: string;
  readonly port: number;
}

/**
 * Starts the constant-answer server on `host` (default 127.0.0.1). `launcher` is a command that
 * execs it in place (`ip netns exec <name>`), so the child's PID is the server's.
 */
export async function startConstantServer(
  host = '127.0.0.1',
  launcher: readonly string[] = [],
): Promise<ConstantServer> {
  const argv = [...launcher, process.execPath, '-e', CONSTANT_SERVER, host];
  const child = spawn(argv[0] as string, argv.slice(1), { stdio: ['ignore', 'pipe', 'inherit'] });
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout?.once('data', (d: Buffer) => resolve((JSON.parse(d.toString()) as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`constant server exited ${code}`)));
  });
  return { child, host, port };
}
