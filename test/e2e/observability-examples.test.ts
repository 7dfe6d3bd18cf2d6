// examples/grafana and examples/prometheus against a running daemon: every mtastsdb_* metric the
// dashboard and the alert rules use is in the daemon's /metrics, and promtool accepts the rules.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { parseConfigText } from '../../src/config/load-config.js';
import { startDaemon } from '../../src/daemon/daemon.js';
import { silentLogger } from '../../src/logger.js';
import { requireOrSkip } from '../helpers/ci.js';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, here.includes('/build/') ? '../../..' : '../..');
const rulesFile = join(root, 'examples', 'prometheus', 'mtastsdb-rules.yml');
const dashboardFile = join(root, 'examples', 'grafana', 'mtastsdb-dashboard.json');

/** The mtastsdb_* series names an expression uses. */
function metricNames(expr: string): string[] {
  return [...expr.matchAll(/\bmtastsdb_[a-z_]+/g)].map((m) => m[0]);
}

describe('dashboard and alert rules', () => {
  it('use only metrics a running daemon exports', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'mtastsdb-obs-'));
    const config = parseConfigText(`port: 0\ndata_dir: ${dir}\nmetrics:\n  enabled: true\n  port: 0\n`);
    const daemon = await startDaemon({ config, logger: silentLogger });
    try {
      const text = await (await fetch(`http://127.0.0.1:${daemon.metricsAddress?.port}/metrics`)).text();
      const exported = new Set(
        [...text.matchAll(/^# TYPE (\S+) (\S+)/gm)].flatMap((m) => {
          const name = m[1] as string;
          return m[2] === 'histogram' ? [name, `${name}_bucket`, `${name}_sum`, `${name}_count`] : [name];
        }),
      );
      assert.ok(exported.has('mtastsdb_socketmap_queries_total'), 'the daemon exports its metrics');

      const dashboard = JSON.parse(await readFile(dashboardFile, 'utf8')) as {
        panels: { title: string; targets: { expr: string }[] }[];
      };
      const rules = await readFile(rulesFile, 'utf8');
      const exprs = [
        ...dashboard.panels.flatMap((p) => p.targets.map((t) => t.expr)),
        ...[...rules.matchAll(/^\s+expr: (.+)$/gm)].map((m) => m[1] as string),
      ];
      assert.ok(dashboard.panels.length >= 8 && exprs.length >= 14, 'the examples have panels and rules');
      // The alerts operators asked for, each on the series that shows it.
      for (const [alert, series] of [
        ['MtastsdbRefresherFailing', 'mtastsdb_refreshes_total'],
        ['MtastsdbStoreErrors', 'mtastsdb_gets_total'],
        ['MtastsdbSuspectedDowngrades', 'mtastsdb_downgrades_suspected_total'],
        ['MtastsdbDiscoverySaturated', 'mtastsdb_discoveries_limited_total'],
        ['MtastsdbDaneResolverNotValidating', 'mtastsdb_dane_resolver_validating'],
      ]) {
        assert.match(rules, new RegExp(`alert: ${alert}\\n(?:.*\\n){0,4}?\\s+expr: .*${series}`), alert);
      }
      const used = new Set(exprs.flatMap(metricNames));
      assert.ok(used.size >= 8);
      for (const name of used) assert.ok(exported.has(name), `${name} is used but not exported`);
    } finally {
      await daemon.close();
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('promtool check rules accepts the alert rules', async (t) => {
    if (!requireOrSkip(t, existsSync('/usr/bin/promtool'), 'promtool (Debian package prometheus) is not installed'))
      return;
    const { stdout } = await promisify(execFile)('promtool', ['check', 'rules', rulesFile], { timeout: 60_000 });
    assert.match(stdout, /SUCCESS: \d+ rules found/);
  });
});
