// The end of a run (k6's handleSummary): a short text summary on stdout, and, with
// SUMMARY_DIR set (infra/k6/run.sh sets it), the same text in summary.txt and the numbers
// in summary.json. summary.json keeps the shape of k6's --summary-export (`metrics.<name>`
// holds the values: `count`, `rate`, `p(99)`, ...), which check-invariants.py and the
// benches read; each threshold is `{expression: {ok}}`.
import { env } from './lib.js';

const TRENDS = ['page', 'asset', 'event', 'ticket', 'purchase', 'order'];
const COUNTS = [
  ['buyers', 'fg_buyers'], ['resolved', 'fg_buyers_resolved'], ['unresolved', 'fg_buyers_unresolved'],
  ['202', 'fg_purchase_queued'], ['200', 'fg_purchase_already'], ['409', 'fg_purchase_sold_out'],
  ['503', 'fg_purchase_busy'], ['429', 'fg_purchase_rate_limited'], ['425', 'fg_purchase_not_started'],
  ['403', 'fg_purchase_forbidden'], ['410', 'fg_purchase_ended'],
];

const values = (data, name) => (data.metrics[name] || {}).values || {};
const fmt = (x) => (typeof x !== 'number' ? '-' : Number.isInteger(x) ? String(x) : x.toFixed(x < 10 ? 3 : 1));

// The statistic a threshold expression tests (`p(99)<1000` → `p(99)`).
const statOf = (expr, metric) => {
  const hit = /^\s*([a-z]+(?:\([0-9.]+\))?)/.exec(expr);
  if (hit && hit[1] in metric.values) return hit[1];
  return Object.keys(metric.values)[0];
};

function checks(group, out) {
  (group.checks || []).forEach((c) => out.push(c));
  (group.groups || []).forEach((g) => checks(g, out));
  return out;
}

export function summaryText(data) {
  const lines = [];
  const failed = [];
  lines.push('THRESHOLDS');
  Object.keys(data.metrics).sort().forEach((name) => {
    const metric = data.metrics[name];
    if (!metric.thresholds) return;
    lines.push(`    ${name}`);
    Object.entries(metric.thresholds).forEach(([expr, t]) => {
      const stat = statOf(expr, metric);
      lines.push(`    ${t.ok ? '✓' : '✗'} '${expr}' ${stat}=${fmt(metric.values[stat])}`);
      if (!t.ok) failed.push(`${name} ${expr}`);
    });
  });
  const all = checks(data.root_group, []);
  const bad = all.filter((c) => c.fails > 0);
  const passes = all.reduce((n, c) => n + c.passes, 0);
  lines.push('', `CHECKS ${passes} passed, ${all.reduce((n, c) => n + c.fails, 0)} failed`);
  bad.forEach((c) => lines.push(`    ✗ ${c.name}: ${c.fails} of ${c.passes + c.fails} failed`));
  lines.push('', 'PURCHASES');
  lines.push(`    ${COUNTS.map(([label, n]) => `${label}=${fmt(values(data, n).count || 0)}`).join(' ')}`);
  lines.push('', 'LATENCY (ms)      med     p(95)   p(99)   max');
  TRENDS.forEach((t) => {
    const v = values(data, `fg_latency_${t}`);
    if (v.max === undefined) return;
    const cells = [v.med, v['p(95)'], v['p(99)'], v.max].map((x) => fmt(x).padEnd(7));
    lines.push(`    ${t.padEnd(13)} ${cells.join(' ').trimEnd()}`);
  });
  const reqs = values(data, 'http_reqs');
  const its = values(data, 'iterations');
  lines.push('', `RUN ${fmt(data.state.testRunDurationMs / 1000)} s, ${fmt(reqs.count || 0)} requests `
    + `(${fmt(reqs.rate || 0)}/s), ${fmt(its.count || 0)} iterations, `
    + `transport errors ${fmt(values(data, 'fg_transport_error').passes || 0)}, `
    + `max VUs ${fmt(values(data, 'vus_max').max || 0)}`);
  lines.push(failed.length ? `FAILED thresholds: ${failed.join('; ')}` : 'every threshold passed');
  return `${lines.join('\n')}\n`;
}

// k6's data with each metric's values at the top of the metric, as --summary-export wrote.
export function flatSummary(data) {
  const metrics = {};
  Object.entries(data.metrics).forEach(([name, m]) => {
    metrics[name] = { type: m.type, contains: m.contains, ...m.values };
    if (m.thresholds) metrics[name].thresholds = m.thresholds;
  });
  return { state: data.state, root_group: data.root_group, metrics };
}

export function handleSummary(data) {
  const text = summaryText(data);
  const out = { stdout: text };
  const dir = env('SUMMARY_DIR', '');
  if (dir) {
    out[`${dir}/summary.txt`] = text;
    out[`${dir}/summary.json`] = JSON.stringify(flatSummary(data), null, 1);
  }
  return out;
}
