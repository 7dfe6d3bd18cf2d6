import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { manPage, renderManPage } from './man-page.js';

const here = dirname(fileURLToPath(import.meta.url));
// src/cli from source, build/src/cli compiled: the repository root is two or three levels up.
const root = here.includes(`${'/'}build${'/'}`) ? join(here, '..', '..', '..') : join(here, '..', '..');

describe('man page mtastsdb(1)', () => {
  it('the checked-in man/mtastsdb.1 is what the CLI help generates (npm run man)', () => {
    assert.equal(readFileSync(join(root, 'man', 'mtastsdb.1'), 'utf8'), renderManPage(), 'run npm run man');
  });

  it('has a section for every command and every global option, exit statuses included', () => {
    const page = renderManPage();
    for (const c of [
      'serve',
      'lookup',
      'get',
      'query',
      'list',
      'show',
      'refresh',
      'delete',
      'purge',
      'export',
      'import',
    ]) {
      assert.match(page, new RegExp(`^\\.SS "mtastsdb ${c}\\b`, 'm'), c);
    }
    for (const o of [
      '\\-\\-config',
      '\\-\\-store',
      '\\-\\-data\\-dir',
      '\\-\\-from\\-postfix\\-mta\\-sts\\-resolver',
    ]) {
      assert.ok(page.includes(o), o);
    }
    assert.match(page, /^\.SH EXIT STATUS\n\.PP\n0 ok, .*8 no store where the command looked, 9 serve cannot listen/m);
  });

  it('escapes roff: backslashes, leading dots, examples kept verbatim', () => {
    const prog = new Command('x').description('X: tool');
    prog.addCommand(
      new Command('y')
        .description('Use a\\b here.\n\n.not a request\n\n  x y --z\n  x y\n\nAfter.')
        .option('--z', 'zed'),
    );
    const page = manPage(prog, '1.0', []);
    assert.match(page, /\.PP\nUse a\\eb here\.\n\.PP\n\\&\.not a request\n/);
    assert.match(page, /\.PP\n\.RS\n\.nf\nx y --z\nx y\n\.fi\n\.RE\n\.PP\nAfter\./);
    assert.match(page, /\\fB\\-\\-z\\fR\nzed/);
  });
});
