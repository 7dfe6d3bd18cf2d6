import type { TestContext } from 'node:test';

/** True when running in CI, where a missing server must fail the run instead of skipping. */
export const inCI = process.env.CI === 'true' || process.env.CI === '1';

/**
 * Call when a test needs something this machine lacks. In CI it throws (the test fails loudly);
 * elsewhere it skips the test and prints why.
 */
export function requireOrSkip(t: TestContext, available: boolean, why: string): boolean {
  if (available) return true;
  if (inCI) throw new Error(`required in CI but missing: ${why}`);
  console.log(`# skipped: ${why}`);
  t.skip(why);
  return false;
}
