// The npm package as a user gets it: `npm pack` of a fresh build. The tarball holds what the README
// links, the LICENSE and the man page, and no tests; and its published types compile in a strict
// consumer with skipLibCheck: false that has only the package's dependencies installed (no
// devDependencies such as @types/better-sqlite3).
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, here.includes('/build/') ? '../..' : '..');
const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');

interface PackFile {
  readonly path: string;
}

let tmp: string;
let files: string[];

before(async () => {
  tmp = await mkdtemp(join(tmpdir(), 'mtastsdb-pack-'));
  // What `npm run build` makes, so the tarball is the one a release would publish.
  await run(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { cwd: root, timeout: 300_000 });
  const { stdout } = await run('npm', ['pack', '--json', '--pack-destination', tmp], {
    cwd: root,
    timeout: 120_000,
  });
  const [pack] = JSON.parse(stdout) as { filename: string; files: PackFile[] }[];
  assert.ok(pack !== undefined);
  files = pack.files.map((f) => f.path);
  await run('tar', ['-xzf', join(tmp, pack.filename), '-C', tmp], { timeout: 60_000 });
});

after(async () => {
  if (tmp !== undefined) await rm(tmp, { recursive: true, force: true });
});

describe('npm package', () => {
  it('the tarball holds LICENSE, the man page, docs/, examples/ and every file the README links; no tests', async () => {
    for (const f of [
      'LICENSE',
      'README.md',
      'man/mtastsdb.1',
      'dist/index.js',
      'dist/index.d.ts',
      'dist/cli/main.js',
    ]) {
      assert.ok(files.includes(f), `${f} in the tarball`);
    }
    const readme = await readFile(join(root, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\(([^)#:]+)(?:#[^)]*)?\)/g)].map((m) => m[1] as string);
    assert.ok(linked.length >= 5, 'the README links files');
    for (const f of linked) assert.ok(files.includes(f), `README links ${f}: in the tarball`);
    assert.deepEqual(
      files.filter((f) => /\.test\./.test(f)),
      [],
    );
    const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { man?: string[]; license?: string };
    assert.deepEqual(pkg.man, ['./man/mtastsdb.1']);
    assert.equal(pkg.license, 'MIT');
    assert.match(await readFile(join(root, 'LICENSE'), 'utf8'), /^MIT License\n/);
  });

  it('the published types compile in a strict consumer with skipLibCheck: false', async () => {
    const app = join(tmp, 'consumer');
    const modules = join(app, 'node_modules');
    await mkdir(join(modules, '@types'), { recursive: true });
    // The package as installed, its dependencies that ship types, and @types/node: nothing else.
    // A copy, not a link: TypeScript resolves a linked package's imports from its real path.
    await cp(join(tmp, 'package'), join(modules, 'mtastsdb'), { recursive: true });
    // What `npm install mtastsdb` brings: the package's dependencies (none of its devDependencies).
    const { dependencies = {} } = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
    };
    for (const dep of Object.keys(dependencies)) {
      await mkdir(dirname(join(modules, dep)), { recursive: true });
      await symlink(join(root, 'node_modules', dep), join(modules, dep));
    }
    await symlink(join(root, 'node_modules', '@types', 'node'), join(modules, '@types', 'node'));
    await symlink(join(root, 'node_modules', 'undici-types'), join(modules, 'undici-types')).catch(() => {});
    await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
    await writeFile(
      join(app, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          skipLibCheck: false,
          noEmit: true,
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          target: 'ES2022',
          types: ['node'],
        },
        include: ['app.ts'],
      }),
    );
    await writeFile(
      join(app, 'app.ts'),
      [
        "import * as api from 'mtastsdb';",
        "import { MtaStsDb, parsePolicy, policyMatches, isMtaStsError, mtastsdb, type ErrorCode } from 'mtastsdb';",
        "const p = parsePolicy('version: STSv1\\nmode: enforce\\nmx: *.example.net\\nmax_age: 86400\\n');",
        "const ok: boolean = policyMatches(p, 'mx1.example.net');",
        "const code: ErrorCode = 'ERR_MTASTSDB_STORE_MISSING';",
        'export async function f(): Promise<void> {',
        "  const db = await MtaStsDb.open({ path: ':memory:' });",
        '  try {',
        "    await db.get('example.com');",
        '  } catch (err) {',
        '    if (isMtaStsError(err, code)) console.log(ok, err.code);',
        '  } finally {',
        '    await db.close();',
        '  }',
        '}',
        'console.log(Object.keys(api).length, typeof mtastsdb.get);',
        '',
      ].join('\n'),
    );
    const result = await run(process.execPath, [tsc, '-p', join(app, 'tsconfig.json')], {
      cwd: app,
      timeout: 300_000,
    }).then(
      () => ({ code: 0, out: '' }),
      (err: { code?: number; stdout?: string; stderr?: string }) => ({
        code: err.code ?? 1,
        out: `${err.stdout ?? ''}${err.stderr ?? ''}`,
      }),
    );
    assert.equal(result.code, 0, `tsc in the consumer:\n${result.out}`);
  });
});
