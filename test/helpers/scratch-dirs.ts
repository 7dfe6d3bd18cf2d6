/** Scratch directories for a test file, removed when its tests are done. */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after } from 'node:test';

/**
 * Returns a maker of fresh directories `<tmpdir>/<prefix>XXXXXX`. Call it at the top level of a test
 * file: every directory it made is removed after the file's tests.
 */
export function scratchDirs(prefix: string): () => Promise<string> {
  const made: string[] = [];
  after(async () => {
    for (const d of made) await rm(d, { recursive: true, force: true });
  });
  return async () => {
    const dir = await mkdtemp(join(tmpdir(), prefix));
    made.push(dir);
    return dir;
  };
}
