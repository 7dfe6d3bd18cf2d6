#!/usr/bin/env node
/**
 * The `mtastsdb` command. This is the one place that ends the process: every outcome becomes an
 * exit status from ./exit-codes.ts, and every failure one stderr line `CODE: message`.
 */
import { systemClock } from '../clock.js';
import type { CliRuntime } from './context.js';
import { EXIT, failureOf } from './exit-codes.js';
import { buildProgram } from './program.js';

async function main(): Promise<number> {
  const controller = new AbortController();
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    // First signal: cancel what is running and close the store cleanly. Second: leave at once.
    if (interrupted) process.exit(EXIT.INTERRUPTED);
    interrupted = true;
    controller.abort(new Error(`received ${signal}`));
  };
  // `mtastsdb export | head` closes the pipe early: stop quietly, as Unix tools do.
  let pipeClosed = false;
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code !== 'EPIPE') throw err;
    pipeClosed = true;
    controller.abort(err);
  });

  const runtime: CliRuntime = {
    env: process.env,
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
    signal: controller.signal,
    clock: systemClock,
  };
  const program = buildProgram(runtime);
  // The daemon (serve) handles SIGTERM/SIGINT/SIGHUP itself; every other command is cancelled here.
  program.hook('preAction', (_root, action) => {
    if (action.name() === 'serve') return;
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
  try {
    await program.parseAsync(process.argv);
    return interrupted ? EXIT.INTERRUPTED : EXIT.OK;
  } catch (err) {
    if (pipeClosed) return EXIT.OK;
    const { status, line } = failureOf(err, interrupted);
    if (status === EXIT.INTERNAL && process.env.MTASTSDB_DEBUG === '1') console.error(err);
    if (line !== undefined) process.stderr.write(`${line}\n`);
    return status;
  }
}

const status = await main();
// Let stdout drain (a pipe may still hold output) before ending the process.
if (process.stdout.destroyed || !process.stdout.writable) process.exit(status);
else process.stdout.write('', () => process.exit(status));
