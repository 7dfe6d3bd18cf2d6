// Lint: typescript-eslint's recommended rules plus the import direction of STYLE.md:
// cli, daemon -> socketmap -> decision -> cache -> store, discovery, fetch, dane -> rfc8461. Nothing imports cli/ or
// daemon/. The decision is pure: of the cache and DANE it reads only their state types.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

const up = (...dirs) => dirs.flatMap((d) => [`../${d}/*`, `../../${d}/*`, `../${d}/**`, `../../${d}/**`]);
const restrict = (files, groups, extra = []) => ({
  files,
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          ...(groups.length ? [{ group: groups, message: 'imports point down only (STYLE.md)' }] : []),
          ...extra,
        ],
      },
    ],
  },
});
const drivers = { group: ['better-sqlite3', 'pg'], message: 'only store files import database drivers' };

export default tseslint.config(
  { ignores: ['dist/', 'build/', 'node_modules/', 'data/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      'no-restricted-syntax': [
        'error',
        {
          selector: "CallExpression[callee.object.name='process'][callee.property.name='exit']",
          message: 'process.exit only in cli/main.ts',
        },
      ],
    },
  },
  { files: ['src/cli/main.ts', 'test/**', 'bench/**'], rules: { 'no-restricted-syntax': 'off' } },
  restrict(['src/rfc8461/**'], ['../*', '!../errors.js', '../../*'], [drivers]),
  restrict(
    ['src/discovery/**', 'src/fetch/**', 'src/dane/**'],
    up('cache', 'store', 'socketmap', 'daemon', 'cli', 'config'),
    [drivers],
  ),
  restrict(['src/store/**'], up('cache', 'socketmap', 'daemon', 'cli', 'config', 'discovery', 'fetch')),
  restrict(['src/cache/**'], up('socketmap', 'daemon', 'cli', 'config', 'decision'), [drivers]),
  restrict(
    ['src/decision/**'],
    [
      ...up('socketmap', 'daemon', 'cli', 'config', 'store', 'discovery', 'fetch', 'metrics', 'cache', 'dane'),
      '!../cache/types.js',
      '!../dane/dane-state.js',
    ],
    [drivers],
  ),
  restrict(['src/socketmap/**', 'src/metrics/**', 'src/config/**'], up('daemon', 'cli'), [drivers]),
  restrict(['src/daemon/**'], up('cli'), [drivers]),
);
