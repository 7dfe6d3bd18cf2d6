// The socketmap load generator of bench/socketmap-bench.ts, and the key sets it asks for. The load
// runs in a child process of its own (bench/helpers/socketmap-worker.ts) so that, on a 2-core
// machine, the client's event loop does not share a process (and its GC pauses) with the DNS and
// HTTPS fixtures of the bench: the daemon and the client each get a core. The child is also where
// a store is filled with many records, so that the bench process keeps none of them.
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parsePolicy } from '../../src/rfc8461/policy.js';
import type { PolicyRecord } from '../../src/store/policy-store.js';
import { SocketmapClient } from '../../test/helpers/socketmap-client.js';
import { relateAnswers } from './answers.js';
import type { TlsFloorResult, TlsFloorSpec } from './tls-floor.js';

/** Which keys a load asks for, and what the right answer to each is. Plain data: it crosses to the child. */
export type KeySpec =
  /** `example.com` again and again; every answer counts as right (the constant-answer ceiling). */
  | { readonly kind: 'constant' }
  /**
   * {@link fixtureDomain}(zone, i) for i = 0…count-1 in turn, served by the bench's fixtures
   * (policyFor); the right answer is {@link okFor}, or `OK dane-only` with `answer: 'dane-only'`
   * (the `dane` zone's domains asked through a map that prefers DANE).
   */
  | {
      readonly kind: 'fixture';
      readonly zone: FixtureZone;
      readonly count: number;
      readonly answer?: 'secure' | 'dane-only';
    }
  /** Domains of {@link storeRecord} drawn uniformly at random (xorshift from `seed`) out of `count`. */
  | { readonly kind: 'store'; readonly count: number; readonly seed: number };

/** What one load produced. */
export interface LoadResult {
  readonly answers: number;
  readonly seconds: number;
  readonly p50ms: number;
  readonly p99ms: number;
  readonly wrong: number;
  /** The first wrong answer with its key, for diagnosis. */
  readonly firstWrong?: { readonly key: string; readonly reply: string; readonly expected: string };
}

/** A load: `connections` clients with one request outstanding each (as Postfix's client). */
export interface LoadSpec {
  readonly port: number;
  readonly host?: string;
  readonly connections: number;
  /** Bound in time… */
  readonly seconds: number;
  /** …and in requests. */
  readonly maxRequests: number;
  readonly keys: KeySpec;
  /** The socketmap map name every request asks (default `postfix`). */
  readonly map?: string;
  /** Count an answer as right when only the order of its `match=` patterns differs (./answers.ts). */
  readonly matchAsSet?: boolean;
}

/** The bench fixtures' sets of domains. */
export type FixtureZone = 'warm' | 'cold' | 'dane';

/** A domain of the bench's fixtures: `w<i>.warm.test`, `c<i>.cold.test`, `d<i>.dane.test`. */
export const fixtureDomain = (zone: FixtureZone, i: number): string => `${zone.charAt(0)}${i}.${zone}.test`;
/** The fixtures' policy of a domain (bench/socketmap-bench.ts serves it over HTTPS), and the answer. */
export const policyFor = (d: string): string =>
  `version: STSv1\r\nmode: enforce\r\nmx: mx.${d}\r\nmx: *.mx.${d}\r\nmax_age: 604800\r\n`;
export const okFor = (d: string): string => `OK secure match=mx.${d}:.mx.${d} servername=hostname`;
/** The answer for a domain with MTA-STS enforce and usable TLSA records at every MX, where DANE is preferred. */
const DANE_ONLY_REPLY = 'OK dane-only';

/** A domain of the many-records store. */
export const storeDomain = (i: number): string => `d${i}.example${i % 97}.test`;

/** max_age of the many-records store's policies (14 days). */
const STORE_MAX_AGE_SECONDS = 1_209_600;

function storePolicyText(i: number): string {
  const d = `example${i % 97}.test`;
  return (
    `version: STSv1\r\nmode: enforce\r\nmx: mx1.d${i}.${d}\r\nmx: mx2.d${i}.${d}\r\n` +
    `mx: *.backup.${d}\r\nmx: mx4.mailhost${i % 13}.test\r\nmax_age: ${STORE_MAX_AGE_SECONDS}\r\n`
  );
}

/**
 * A typical record (the shape of bench/store-bench.ts: a 4-mx enforce policy, CRLF, text unique to
 * the domain), valid from `now` for max_age. `lastUpdate` is `now`, so a daemon with `cache_grace`
 * answers it without DNS; `lastUse` is a day earlier, so the first hit of each domain is a deferred
 * `lastUse` write, as after a restart.
 */
export function storeRecord(i: number, now: number): PolicyRecord {
  const text = storePolicyText(i);
  return {
    domain: storeDomain(i),
    inserted: new Date(now),
    validEnd: new Date(now + STORE_MAX_AGE_SECONDS * 1000),
    lastUpdate: new Date(now),
    lastUse: new Date(now - 86_400_000),
    backoff: false,
    recordId: `20260101T${i}`,
    policy: parsePolicy(text),
    policyText: text,
  };
}

/** The daemon's answer for {@link storeRecord}(i) (mx patterns in policy order, `*.x` as `.x`). */
export function storeReply(i: number): string {
  const d = `example${i % 97}.test`;
  return `OK secure match=mx1.d${i}.${d}:mx2.d${i}.${d}:.backup.${d}:mx4.mailhost${i % 13}.test servername=hostname`;
}

/** The key of request i and its right answer (undefined: anything is right). */
function keyFunction(spec: KeySpec): (i: number) => { key: string; expected: string | undefined } {
  switch (spec.kind) {
    case 'constant':
      return () => ({ key: 'example.com', expected: undefined });
    case 'fixture':
      return (i) => {
        const d = fixtureDomain(spec.zone, i % spec.count);
        return { key: d, expected: spec.answer === 'dane-only' ? DANE_ONLY_REPLY : okFor(d) };
      };
    case 'store': {
      let x = spec.seed >>> 0 || 1;
      return () => {
        // xorshift32: deterministic, so runs ask for the same sample.
        x ^= x << 13;
        x >>>= 0;
        x ^= x >>> 17;
        x ^= x << 5;
        x >>>= 0;
        const k = x % spec.count;
        return { key: storeDomain(k), expected: storeReply(k) };
      };
    }
  }
}

function percentile(sorted: Float64Array, p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((sorted.length * p) / 100))] as number;
}

/** Runs a load in this process (the child's job; the bench calls {@link loadInChild}). */
export async function runLoad(spec: LoadSpec): Promise<LoadResult> {
  const { port, connections, seconds, maxRequests } = spec;
  const host = spec.host ?? '127.0.0.1';
  const clients = await Promise.all(Array.from({ length: connections }, () => SocketmapClient.open({ host, port })));
  for (const c of clients) c.keepReplies = false;
  const keyOf = keyFunction(spec.keys);
  const map = spec.map ?? 'postfix';
  const latencies = new Float64Array(Math.min(maxRequests, 5_000_000));
  let next = 0;
  let answered = 0;
  let wrong = 0;
  let firstWrong: LoadResult['firstWrong'];
  const started = process.hrtime.bigint();
  const deadline = started + BigInt(Math.round(seconds * 1e9));
  await Promise.all(
    clients.map(async (c) => {
      for (;;) {
        if (next >= maxRequests || process.hrtime.bigint() >= deadline) return;
        const { key, expected } = keyOf(next++);
        const t0 = process.hrtime.bigint();
        const reply = await c.query(map, key);
        const dt = Number(process.hrtime.bigint() - t0) / 1e6;
        if (answered < latencies.length) latencies[answered] = dt;
        answered++;
        if (
          expected !== undefined &&
          reply !== expected &&
          !(spec.matchAsSet && relateAnswers(reply, expected) === 'same-set')
        ) {
          wrong++;
          firstWrong ??= { key, reply, expected };
        }
      }
    }),
  );
  const secs = Number(process.hrtime.bigint() - started) / 1e9;
  for (const c of clients) c.destroy();
  const lat = latencies.subarray(0, Math.min(answered, latencies.length)).sort();
  return {
    answers: answered,
    seconds: secs,
    p50ms: percentile(lat, 50),
    p99ms: percentile(lat, 99),
    wrong,
    ...(firstWrong !== undefined ? { firstWrong } : {}),
  };
}

/** Fills the SQLite file `path` with records 0…count-1 of {@link storeRecord}, valid from `now`. */
export interface FillSpec {
  readonly path: string;
  readonly count: number;
  readonly now: number;
}

/** What a fill did. */
export interface FillResult {
  readonly records: number;
  readonly seconds: number;
}

/** A command for the child process. */
export type WorkerCommand =
  | ({ readonly cmd: 'load' } & LoadSpec)
  | ({ readonly cmd: 'fill' } & FillSpec)
  | ({ readonly cmd: 'tls-floor' } & TlsFloorSpec);

const here = dirname(fileURLToPath(import.meta.url));

/** Runs `command` in a fresh Node process (compiled JS when this file is compiled, tsx otherwise). */
function inChild<T>(command: WorkerCommand, timeoutMs: number): Promise<T> {
  const compiled = fileURLToPath(import.meta.url).endsWith('.js');
  const script = join(here, compiled ? 'socketmap-worker.js' : 'socketmap-worker.ts');
  const args = compiled ? [script] : ['--import', 'tsx', script];
  const child = spawn(process.execPath, [...args, JSON.stringify(command)], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`bench worker (${command.cmd}) did not finish within ${timeoutMs} ms`));
    }, timeoutMs);
    child.once('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      const last = out.trim().split('\n').pop() ?? '';
      if (code !== 0) reject(new Error(`bench worker (${command.cmd}) exited ${code ?? signal}: ${out}`));
      else {
        try {
          resolve(JSON.parse(last) as T);
        } catch {
          reject(new Error(`bench worker (${command.cmd}) printed no result: ${out}`));
        }
      }
    });
  });
}

/** Runs a load in a child process; the figures are the child's (its clock, its latencies). */
export function loadInChild(spec: LoadSpec): Promise<LoadResult> {
  // Connecting, the bound in time and a margin for the process start.
  return inChild<LoadResult>({ cmd: 'load', ...spec }, spec.seconds * 1000 + 60_000);
}

/** Fills a SQLite store in a child process (its memory is not the bench's). */
/** The bare-client ceiling of cold discovery (./tls-floor.ts) in a child process. */
export function tlsFloorInChild(spec: TlsFloorSpec, timeoutMs = 600_000): Promise<TlsFloorResult> {
  return inChild({ cmd: 'tls-floor', ...spec }, timeoutMs);
}

export function fillInChild(spec: FillSpec, timeoutMs = 600_000): Promise<FillResult> {
  return inChild<FillResult>({ cmd: 'fill', ...spec }, timeoutMs);
}
