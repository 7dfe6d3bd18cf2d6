/**
 * Writes man/mtastsdb.1 from the CLI's own help (`npm run man`); `--check` only compares and exits
 * 1 when the checked-in page is out of date.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { renderManPage } from '../src/cli/man-page.js';

const file = join(dirname(fileURLToPath(import.meta.url)), '..', 'man', 'mtastsdb.1');
const page = renderManPage();
if (process.argv.includes('--check')) {
  const current = readFileSync(file, 'utf8');
  if (current !== page) {
    console.error(`${file} is out of date: run npm run man`);
    process.exitCode = 1;
  }
} else {
  writeFileSync(file, page);
  console.log(`wrote ${file}`);
}
