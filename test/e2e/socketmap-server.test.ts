import assert from 'node:assert/strict';
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { noopMetrics } from '../../src/metrics/metrics.js';
import { encodeNetstring } from '../../src/socketmap/netstring.js';
import { reusePortSupported, startSocketmapServer } from '../../src/socketmap/server.js';
import type { SocketmapHandler, SocketmapServer, SocketmapServerOptions } from '../../src/socketmap/server.js';
import { SocketmapClient } from '../helpers/socketmap-client.js';
import type { SocketmapTarget } from '../helpers/socketmap-client.js';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A handler that echoes `name|key`, after an optional delay chosen from the key. */
const echo: SocketmapHandler = async (name, key) => {
  const m = /delay=(\d+)/.exec(key);
  if (m) await sleep(Number(m[1]));
  return `OK ${name}|${key}`;
};

function target(server: SocketmapServer): SocketmapTarget {
  const a = server.address;
  return 'path' in a ? { path: a.path } : { host: '127.0.0.1', port: a.port };
}

const started: SocketmapServer[] = [];
async function start(options: Partial<SocketmapServerOptions> = {}): Promise<SocketmapServer> {
  const s = await startSocketmapServer({ listen: { host: '127.0.0.1', port: 0 }, handler: echo, ...options });
  started.push(s);
  return s;
}

/** Resolves true when the connection closes within `ms` without the server sending any byte. */
function closesSilently(client: SocketmapClient, ms = 2000): Promise<boolean> {
  return Promise.race([client.closed.then(() => client.replies.length === 0), sleep(ms).then(() => false)]);
}

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'mtastsdb-socketmap-'));
});
after(async () => {
  // Servers of failed tests too: a leftover listener would keep the test process alive.
  await Promise.all(started.map((s) => s.close(0)));
  await rm(dir, { recursive: true, force: true });
});

for (const transport of ['tcp', 'unix'] as const) {
  describe(`socketmap server over ${transport}`, () => {
    let server: SocketmapServer;
    before(async () => {
      server = await start(
        transport === 'unix' ? { listen: { path: join(dir, `sm-${process.pid}.sock`), mode: 0o660 } } : {},
      );
    });
    after(() => server.close(1000));

    it('answers one request', async () => {
      const c = await SocketmapClient.open(target(server));
      assert.equal(await c.query('postfix', 'example.com'), 'OK postfix|example.com');
      c.destroy();
    });

    for (const size of [1, 16, 4096]) {
      it(`answers 60 pipelined requests written in ${size}-byte chunks, in order`, async () => {
        const c = await SocketmapClient.open(target(server));
        const keys = Array.from({ length: 60 }, (_, i) => `d${i}.example.test delay=${(i * 7) % 13}`);
        const wire = Buffer.concat(keys.map((k) => encodeNetstring(`zone${size} ${k}`)));
        const answers = Promise.all(keys.map(() => c.expect()));
        await c.writeChunked(wire, size);
        assert.deepEqual(
          await answers,
          keys.map((k) => `OK zone${size}|${k}`),
        );
        c.destroy();
      });
    }

    it('keeps the connection after a request without a space (answers NOTFOUND)', async () => {
      const c = await SocketmapClient.open(target(server));
      assert.equal(await c.request('nospace'), 'NOTFOUND ');
      assert.equal(await c.request(Buffer.from([0x61, 0x20, 0xff])), 'NOTFOUND ');
      assert.equal(await c.query('postfix', 'a.test'), 'OK postfix|a.test');
      c.destroy();
    });

    it('closes a connection that sends a malformed frame, without a reply, others unaffected', async () => {
      const good = await SocketmapClient.open(target(server));
      const bad = await SocketmapClient.open(target(server));
      const slow = good.query('postfix', 'slow.test delay=150');
      bad.socket.write('GET / HTTP/1.0\r\n\r\n');
      assert.equal(await closesSilently(bad), true);
      assert.equal(await slow, 'OK postfix|slow.test delay=150');
      assert.equal(await good.query('postfix', 'after.test'), 'OK postfix|after.test');
      good.destroy();
    });

    it('answers the requests framed before a malformed frame, then closes', async () => {
      const c = await SocketmapClient.open(target(server));
      c.socket.write(
        Buffer.concat([encodeNetstring('p one.test delay=30'), encodeNetstring('p two.test'), Buffer.from('3:abc;')]),
      );
      await c.closed;
      assert.deepEqual(c.replies, ['OK p|one.test delay=30', 'OK p|two.test']);
    });

    it('closes a connection whose request is over the 1024-byte limit', async () => {
      const c = await SocketmapClient.open(target(server));
      c.socket.write(encodeNetstring(`postfix ${'a'.repeat(1017)}`));
      assert.equal(await closesSilently(c), true);
      const ok = await SocketmapClient.open(target(server));
      const key = 'b'.repeat(1016);
      assert.equal(await ok.query('postfix', key), `OK postfix|${key}`);
      ok.destroy();
    });

    it('answers a request whose client half-closes right after sending', async () => {
      const c = await SocketmapClient.open(target(server));
      const p = c.query('postfix', 'half.test delay=50');
      c.socket.end();
      assert.equal(await p, 'OK postfix|half.test delay=50');
      await c.closed;
    });
  });
}

describe('socketmap server behaviour', () => {
  it('processes pipelined requests concurrently but answers in request order', async () => {
    let active = 0;
    let maxActive = 0;
    const server = await start({
      handler: async (_n, key) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await sleep(Number(key) % 2 === 0 ? 40 : 5);
        active--;
        return `R${key}`;
      },
    });
    const c = await SocketmapClient.open(target(server));
    const keys = Array.from({ length: 40 }, (_, i) => String(i));
    const replies = await Promise.all(keys.map((k) => c.query('p', k)));
    assert.deepEqual(
      replies,
      keys.map((k) => `R${k}`),
    );
    assert.ok(maxActive > 10, `requests ran concurrently (max ${maxActive})`);
    c.destroy();
    await server.close(1000);
  });

  it('stops reading a connection at the in-flight limit (backpressure) and answers everything', async () => {
    let active = 0;
    let maxActive = 0;
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const server = await start({
      maxInFlightPerConnection: 8,
      handler: async (_n, key) => {
        active++;
        maxActive = Math.max(maxActive, active);
        await gate;
        active--;
        return `R${key}`;
      },
    });
    const c = await SocketmapClient.open(target(server));
    const n = 5000;
    const replies = Promise.all(Array.from({ length: n }, () => c.expect()));
    // One write holding all 5,000 requests: far more than one read, far more than the limit.
    c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeNetstring(`p ${i}`))));
    await sleep(200);
    assert.equal(maxActive, 8, 'never more than maxInFlightPerConnection handlers at once');
    release();
    const got = await replies;
    assert.equal(got.length, n);
    assert.equal(got[0], 'R0');
    assert.equal(got[n - 1], `R${n - 1}`);
    assert.ok(got.every((r, i) => r === `R${i}`));
    assert.equal(maxActive, 8);
    c.destroy();
    await server.close(1000);
  });

  it('stops reading while the client does not read its replies (write backpressure)', async () => {
    let handled = 0;
    const big = `OK ${'x'.repeat(60_000)}`;
    const server = await start({
      handler: async () => {
        handled++;
        return big;
      },
    });
    const c = await SocketmapClient.open(target(server));
    c.keepReplies = false;
    c.socket.pause(); // a client that never reads
    const n = 3000;
    c.socket.write(Buffer.concat(Array.from({ length: n }, (_, i) => encodeNetstring(`p k${i}`))));
    await sleep(300);
    const stalled = handled;
    assert.ok(stalled < n, `server stopped taking requests (${stalled} of ${n} handled)`);
    const all = Promise.all(Array.from({ length: n }, () => c.expect()));
    c.socket.resume();
    const got = await all;
    assert.equal(got.length, n);
    assert.equal(handled, n);
    c.destroy();
    await server.close(1000);
  });

  it('aborts the in-flight work of a client that disconnects abruptly, others unaffected', async () => {
    const aborted: string[] = [];
    const server = await start({
      handler: (_n, key, signal) =>
        new Promise((resolve) => {
          if (key.startsWith('hang')) {
            signal.addEventListener('abort', () => {
              aborted.push(key);
              resolve('never sent');
            });
          } else {
            setTimeout(() => resolve(`R${key}`), 20);
          }
        }),
    });
    const leaver = await SocketmapClient.open(target(server));
    const stayer = await SocketmapClient.open(target(server));
    void leaver.query('p', 'hang1').catch(() => {});
    void leaver.query('p', 'hang2').catch(() => {});
    const p = stayer.query('p', 'fine');
    await sleep(30);
    leaver.socket.resetAndDestroy(); // an abrupt disconnect (RST), as when Postfix's process dies
    assert.equal(await p, 'Rfine');
    await sleep(50);
    assert.deepEqual(aborted.sort(), ['hang1', 'hang2']);
    assert.equal(server.connectionCount(), 1);
    stayer.destroy();
    await server.close(1000);
  });

  it('answers TEMP when the handler rejects', async () => {
    const server = await start({ handler: () => Promise.reject(new Error('boom')) });
    const c = await SocketmapClient.open(target(server));
    assert.equal(await c.query('p', 'x.test'), 'TEMP internal error');
    c.destroy();
    await server.close(1000);
  });

  it('never sends a reply over 100,000 bytes', async () => {
    const server = await start({ handler: async () => `OK ${'y'.repeat(100_000)}` });
    const c = await SocketmapClient.open(target(server));
    assert.equal(await c.query('p', 'x.test'), 'TEMP reply too long');
    c.destroy();
    await server.close(1000);
  });

  it('serves 200 concurrent clients with 25 pipelined requests each', async () => {
    const server = await start();
    const clients = await Promise.all(Array.from({ length: 200 }, () => SocketmapClient.open(target(server))));
    const results = await Promise.all(
      clients.map((c, ci) =>
        Promise.all(Array.from({ length: 25 }, (_, i) => c.query(`z${ci}`, `k${i}.test delay=${(ci + i) % 5}`))),
      ),
    );
    for (const [ci, r] of results.entries()) {
      assert.deepEqual(
        r,
        Array.from({ length: 25 }, (_, i) => `OK z${ci}|k${i}.test delay=${(ci + i) % 5}`),
      );
    }
    assert.equal(server.connectionCount(), 200);
    for (const c of clients) c.destroy();
    await server.close(1000);
  });

  it('at maxConnections, a new connection closes the one quiet longest; with all busy it is refused', async () => {
    const closed: string[] = [];
    const metrics = { ...noopMetrics, connectionClosed: (reason: string) => void closed.push(reason) };
    const server = await start({ maxConnections: 2, metrics });
    const a = await SocketmapClient.open(target(server));
    const b = await SocketmapClient.open(target(server));
    assert.equal(await a.query('p', 'a'), 'OK p|a');
    await sleep(20);
    assert.equal(await b.query('p', 'b'), 'OK p|b');
    // a has been quiet longest: the third connection takes its place and is answered.
    const c = await SocketmapClient.open(target(server));
    assert.equal(await c.query('p', 'c'), 'OK p|c');
    await a.closed;
    assert.deepEqual(closed, ['evicted']);
    assert.equal(await b.query('p', 'b2'), 'OK p|b2');
    // Both open connections busy (a slow request each): a new one is refused, the busy ones answered.
    const slowB = b.query('p', 'slow delay=400');
    const slowC = c.query('p', 'slow delay=400');
    await sleep(50);
    const d = await SocketmapClient.open(target(server));
    assert.equal(await closesSilently(d), true);
    assert.deepEqual(closed, ['evicted', 'limit']);
    assert.deepEqual(await Promise.all([slowB, slowC]), ['OK p|slow delay=400', 'OK p|slow delay=400']);
    for (const x of [b, c]) x.destroy();
    await server.close(1000);
  });

  it('idle timeout: a quiet connection is closed; one with a request being answered is not', async () => {
    const closed: string[] = [];
    const metrics = { ...noopMetrics, connectionClosed: (reason: string) => void closed.push(reason) };
    const server = await start({ idleTimeoutMs: 200, metrics });
    const quiet = await SocketmapClient.open(target(server));
    const busy = await SocketmapClient.open(target(server));
    assert.equal(await quiet.query('p', 'q'), 'OK p|q');
    const slow = busy.query('p', 'slow delay=500');
    await quiet.closed;
    assert.deepEqual(closed, ['idle']);
    assert.equal(await slow, 'OK p|slow delay=500', 'a slow answer is not cut by the idle timeout');
    assert.equal(busy.isClosed, false);
    await busy.closed;
    assert.deepEqual(closed, ['idle', 'idle'], 'then quiet for 200 ms: closed too');
    await server.close(1000);
  });

  it('frame timeout: a frame must be complete within it of its first byte, however it trickles', async () => {
    const closed: string[] = [];
    const metrics = { ...noopMetrics, connectionClosed: (reason: string) => void closed.push(reason) };
    const server = await start({ frameTimeoutMs: 300, idleTimeoutMs: 60_000, metrics });
    const slow = await SocketmapClient.open(target(server));
    const t0 = Date.now();
    // One byte every 50 ms keeps the socket active (no idle timeout) but never finishes the frame.
    const frame = encodeNetstring('p trickle.example.test');
    const trickle = slow.writeChunked(frame.subarray(0, frame.length - 1), 1, 50).catch(() => {});
    await slow.closed;
    const took = Date.now() - t0;
    assert.deepEqual(closed, ['frame_timeout']);
    assert.ok(took >= 250 && took < 2000, `closed after ${took} ms`);
    await trickle;
    // A whole frame sent in pieces within the timeout is answered.
    const ok = await SocketmapClient.open(target(server));
    const reply = ok.expect();
    await ok.writeChunked(encodeNetstring('p pieces.example.test'), 4, 20);
    assert.equal(await reply, 'OK p|pieces.example.test');
    ok.destroy();
    await server.close(1000);
  });

  it('on close: stops accepting, answers requests in flight, then ends connections', async () => {
    const server = await start();
    const t = target(server) as { host: string; port: number };
    const clients = await Promise.all(Array.from({ length: 10 }, () => SocketmapClient.open(t)));
    const pending = clients.flatMap((c, ci) =>
      Array.from({ length: 5 }, (_, i) => c.query('p', `c${ci}r${i}.test delay=${100 + i * 20}`)),
    );
    await sleep(20);
    const started = Date.now();
    const closed = server.close(5000);
    const replies = await Promise.all(pending);
    assert.equal(replies.length, 50);
    assert.ok(replies.every((r) => r.startsWith('OK p|c')));
    await closed;
    assert.ok(Date.now() - started < 2000, 'closed once the answers were out, not at the grace limit');
    await Promise.all(clients.map((c) => c.closed));
    await assert.rejects(SocketmapClient.open(t), { code: 'ECONNREFUSED' });
  });

  it('on close: destroys connections whose work outlives the grace period, aborting it', async () => {
    let aborts = 0;
    const server = await start({
      handler: (_n, _k, signal) =>
        new Promise((resolve) =>
          signal.addEventListener('abort', () => {
            aborts++;
            resolve('x');
          }),
        ),
    });
    const c = await SocketmapClient.open(target(server));
    const p = c.query('p', 'hang.test').catch((e: Error) => e.message);
    await sleep(20);
    const started = Date.now();
    await server.close(300);
    const took = Date.now() - started;
    assert.ok(took >= 280 && took < 1500, `bounded by the grace period (${took} ms)`);
    assert.equal(await p, 'connection closed');
    assert.equal(aborts, 1);
  });
});

describe('socketmap server on a Unix socket', () => {
  it('applies the file mode', async () => {
    const path = join(dir, 'mode.sock');
    const server = await start({ listen: { path, mode: 0o600 } });
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    await server.close(100);
  });

  it('removes a stale socket file left by a dead daemon', async () => {
    const path = join(dir, 'stale.sock');
    // A socket file with no listener: bind, then kill the listener without unlinking.
    const old = createServer();
    await new Promise<void>((r) => old.listen(path, r));
    // Closing a Node server unlinks the file; recreate the stale file the hard way with a child.
    const { spawnSync } = await import('node:child_process');
    await new Promise<void>((r) => old.close(() => r()));
    const py = spawnSync('python3', [
      '-c',
      `import socket,os; s=socket.socket(socket.AF_UNIX); s.bind(${JSON.stringify(path)}); os._exit(0)`,
    ]);
    if (py.status !== 0) return; // no python: nothing to simulate
    assert.ok((await stat(path)).isSocket());
    const server = await start({ listen: { path } });
    const c = await SocketmapClient.open({ path });
    assert.equal(await c.query('p', 'x.test'), 'OK p|x.test');
    c.destroy();
    await server.close(100);
  });

  it('refuses a path held by a live server or a regular file', async () => {
    const path = join(dir, 'live.sock');
    const first = await start({ listen: { path } });
    await assert.rejects(start({ listen: { path } }), { code: 'ERR_MTASTS_CONFIG' });
    const probe = connect(path);
    await new Promise((r) => probe.once('connect', r));
    probe.destroy();
    await first.close(100);
    const file = join(dir, 'regular');
    await writeFile(file, 'x');
    await assert.rejects(start({ listen: { path: file } }), (err: { code?: string; details?: { key?: string } }) => {
      assert.equal(err.code, 'ERR_MTASTS_CONFIG');
      assert.equal(err.details?.key, 'path');
      return true;
    });
  });
});

describe('reusePort', () => {
  const cases: ReadonlyArray<[string, boolean]> = [
    ['20.20.2', false],
    ['22.11.0', false],
    ['22.12.0', true],
    ['23.0.0', false],
    ['23.1.0', true],
    ['24.0.0', true],
  ];
  for (const [v, expected] of cases) {
    it(`Node ${v}: ${expected ? 'supported' : 'ignored'}`, () => assert.equal(reusePortSupported(v), expected));
  }

  it('starts with reusePort on this Node (used or ignored with a log line)', async () => {
    const lines: string[] = [];
    const log = (_o: object, msg?: string): void => void lines.push(msg ?? '');
    const logger = { debug: log, info: log, warn: log, error: log, child: () => logger };
    const server = await start({ reusePort: true, logger });
    if (!reusePortSupported()) assert.ok(lines.some((l) => l.includes('reuse_port')));
    await server.close(100);
  });
});
