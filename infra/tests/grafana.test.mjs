// infra/grafana/flashgate.json, checked offline: a dashboard Grafana imports (panels with
// unique ids on a 24-column grid that do not overlap, a Prometheus datasource chosen by
// a variable rather than one installation's uid), whose every query parses with
// Prometheus's own PromQL grammar and names only metrics, labels and label values the
// code exports (the same look-up as the alert rules' test: promql.mjs), and that shows
// every metric the code exports, with p50 and p99 of each histogram. No Grafana here.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { exportProblems, exported, histograms, promql, root } from './promql.mjs';

const dashboard = JSON.parse(readFileSync(`${root}/infra/grafana/flashgate.json`, 'utf8'));
// Grafana's own variables, replaced before a query reaches Prometheus; parsed here as a
// range of that form.
const BUILTIN = { $__rate_interval: '1m', $__interval: '1m', $__range: '1h' };
const TYPES = new Set(['row', 'timeseries', 'stat', 'gauge', 'bargauge', 'table', 'heatmap', 'text']);

/** Every panel, those inside collapsed rows too. */
function allPanels(d) {
  return (d.panels ?? []).flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** The datasource variables of `d` as they are written in a panel (`${name}`). */
function datasourceVariables(d) {
  return new Set((d.templating?.list ?? [])
    .filter((v) => v.type === 'datasource' && v.query === 'prometheus')
    .map((v) => `\${${v.name}}`));
}

/** What is wrong with dashboard `d`: one line per problem, none when it is sound. */
function problems(d) {
  const found = [];
  const expect = (ok, what) => ok || found.push(what);
  expect(typeof d.title === 'string' && d.title, 'no title');
  expect(typeof d.uid === 'string' && /^[A-Za-z0-9_-]{1,40}$/.test(d.uid), `uid ${d.uid}`);
  expect(Number.isInteger(d.schemaVersion), 'no schemaVersion');
  expect(Array.isArray(d.panels) && d.panels.length > 0, 'no panels');
  const variables = datasourceVariables(d);
  expect(variables.size > 0, 'no datasource variable of type prometheus');
  const ids = new Set();
  const cells = new Map();
  for (const p of allPanels(d)) {
    const where = `panel ${p.id} "${p.title}"`;
    expect(Number.isInteger(p.id) && p.id > 0, `${where}: id`);
    expect(!ids.has(p.id), `${where}: id used twice`);
    ids.add(p.id);
    expect(TYPES.has(p.type), `${where}: type ${p.type}`);
    expect(p.title, `${where}: no title`);
    const g = p.gridPos ?? {};
    const grid = ['x', 'y', 'w', 'h'].every((k) => Number.isInteger(g[k]) && g[k] >= 0) && g.w > 0 && g.h > 0 && g.x + g.w <= 24;
    expect(grid, `${where}: gridPos ${JSON.stringify(p.gridPos)}`);
    if (grid) {
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          const other = cells.get(`${x},${y}`);
          if (other !== undefined && other !== p.id) found.push(`${where}: overlaps panel ${other}`);
          cells.set(`${x},${y}`, p.id);
        }
      }
    }
    if (p.type === 'row' || p.type === 'text') continue;
    expect(p.description, `${where}: no description`);
    const ds = (x) => x?.type === 'prometheus' && variables.has(x?.uid);
    expect(ds(p.datasource), `${where}: datasource ${JSON.stringify(p.datasource)} is not a variable`);
    expect(Array.isArray(p.targets) && p.targets.length > 0, `${where}: no targets`);
    const refs = new Set();
    for (const t of p.targets ?? []) {
      const tw = `${where} target ${t.refId}`;
      expect(/^[A-Z]$/.test(t.refId ?? '') && !refs.has(t.refId), `${tw}: refId`);
      refs.add(t.refId);
      expect(t.datasource === undefined || ds(t.datasource), `${tw}: datasource is not a variable`);
      expect(typeof t.expr === 'string' && t.expr, `${tw}: no expr`);
      let expr = t.expr ?? '';
      for (const v of expr.match(/\$\{?\w+\}?/g) ?? []) {
        expect(v in BUILTIN, `${tw}: variable ${v} is not one Grafana sets`);
        expr = expr.replaceAll(v, BUILTIN[v] ?? '1m');
      }
      const q = promql(expr);
      found.push(...exportProblems(q).map((e) => `${tw}: ${e}`));
      for (const [, l] of (t.legendFormat ?? '').matchAll(/\{\{\s*([a-z_]+)\s*\}\}/g)) {
        expect(q.by.has(l), `${tw}: legend {{${l}}} without by (${l})`);
      }
    }
  }
  return found;
}

/** The metrics a dashboard queries, and the quantiles it shows of each histogram. */
function shown(d) {
  const metrics = new Set();
  const quantiles = new Set();
  for (const p of allPanels(d)) {
    for (const t of p.targets ?? []) {
      for (const [, m] of (t.expr ?? '').matchAll(/\b(flashgate_[a-z0-9_]+)/g)) metrics.add(m.replace(/_(bucket|sum|count)$/, ''));
      for (const [, q, m] of (t.expr ?? '').matchAll(/histogram_quantile\(\s*([0-9.]+)\s*,[^]*?\b(flashgate_[a-z0-9_]+)_bucket/g)) quantiles.add(`${m} ${q}`);
    }
  }
  return { metrics, quantiles };
}

test('the dashboard is sound', () => assert.deepEqual(problems(dashboard), []));

test('the dashboard shows every metric the code exports, with p50 and p99 of each histogram', () => {
  assert.ok(exported.size >= 15, `the look-up found ${exported.size} metrics in the code`);
  const { metrics, quantiles } = shown(dashboard);
  assert.deepEqual([...exported].filter((m) => !metrics.has(m)), [], 'metrics missing from the dashboard');
  const missing = [...histograms].flatMap((h) => ['0.5', '0.99'].map((q) => `${h} ${q}`)).filter((x) => !quantiles.has(x));
  assert.deepEqual(missing, [], 'quantiles missing');
});

test('the check finds what is wrong with a dashboard', () => {
  const sound = dashboard.panels.find((p) => p.type === 'timeseries');
  const broken = {
    ...sound,
    id: sound.id,
    title: 'broken',
    gridPos: { x: 0, y: 1, w: 8, h: 4 },
    datasource: { type: 'prometheus', uid: 'P1809F7CD0C75ACF3' },
    targets: [
      { refId: 'A', expr: 'sum by (zone) (rate(flashgate_no_such_metric[$__rate_interval]))', legendFormat: '{{pod}}' },
      { refId: 'A', expr: 'sum(rate(flashgate_purchases_total{outcome="no_such_outcome"}[$window])) >' },
      { refId: 'C', expr: 'histogram_quantile(0.99, sum by (le) (rate(flashgate_reserve_seconds[5m])))' },
    ],
  };
  const offGrid = { ...sound, id: 999, gridPos: { x: 20, y: 100, w: 8, h: 4 } };
  const found = problems({ ...dashboard, panels: [...dashboard.panels, broken, offGrid] }).join('\n');
  for (const what of ['id used twice', 'panel 999 "Purchases by outcome": gridPos', 'overlaps panel',
    'datasource {"type":"prometheus","uid":"P1809F7CD0C75ACF3"} is not a variable', 'metric flashgate_no_such_metric is not exported',
    'label zone is not exported', 'legend {{pod}} without by (pod)', 'refId', 'variable $window',
    'label value no_such_outcome', 'PromQL syntax', 'flashgate_reserve_seconds is a histogram']) {
    assert.ok(found.includes(what), `finds "${what}" in:\n${found}`);
  }
  // Without the variable, the panels' `${datasource}` names nothing.
  const unbound = problems({ ...dashboard, templating: { list: [] } });
  assert.equal(unbound[0], 'no datasource variable of type prometheus');
  assert.ok(unbound.includes(`panel ${sound.id} "${sound.title}": datasource {"type":"prometheus","uid":"\${datasource}"} is not a variable`), unbound.join('\n'));
});
