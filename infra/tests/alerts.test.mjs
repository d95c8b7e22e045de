// infra/prometheus/alerts.yaml, checked offline: each expression parses with Prometheus's
// own PromQL grammar (@prometheus-io/lezer-promql, the one its web UI uses), names only
// metrics, labels and label values the origin's code exports (counters under increase()
// created at 0 at start), and each alert carries what an on-call person needs. Needs no
// running stack.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';
import { parse as parseYaml } from 'yaml';

const root = fileURLToPath(new URL('../..', import.meta.url));
const rules = parseYaml(readFileSync(`${root}/infra/prometheus/alerts.yaml`, 'utf8'));
const source = readdirSync(`${root}/origin/src`)
  .filter((f) => f.endsWith('.rs'))
  .map((f) => readFileSync(`${root}/origin/src/${f}`, 'utf8'))
  .join('\n');
const telemetry = readFileSync(`${root}/origin/src/telemetry.rs`, 'utf8');
const alerts = rules.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...r })));

/** The PromQL syntax tree of `expr`: its syntax errors, metrics, labels and label values. */
function promql(expr) {
  const found = { errors: [], metrics: new Set(), labels: new Set(), values: new Set(), by: new Set() };
  const text = (n) => expr.slice(n.from, n.to);
  parser.parse(expr).iterate({
    enter: (n) => {
      if (n.type.isError) found.errors.push(`at ${n.from}: "${expr.slice(n.from, n.from + 20)}"`);
      else if (n.name === 'Identifier' && n.node.parent?.name === 'VectorSelector') found.metrics.add(text(n));
      else if (n.name === 'LabelName' && n.node.parent?.name === 'GroupingLabels') found.by.add(text(n));
      else if (n.name === 'LabelName') found.labels.add(text(n));
      else if (n.name === 'StringLiteral') found.values.add(text(n).slice(1, -1));
    },
  });
  return found;
}

test('the alert rules file has groups of named rules', () => {
  assert.ok(alerts.length >= 8, `${alerts.length} alerts`);
  const names = alerts.map((a) => a.alert);
  assert.equal(new Set(names).size, names.length, 'alert names are unique');
});

/** What is wrong with alert `a`: one line per problem, none when it is sound. */
function problems(a) {
  const found = [];
  const expect = (ok, what) => ok || found.push(what);
  expect(/^Flashgate[A-Z][A-Za-z]+$/.test(a.alert ?? ''), `name ${a.alert}`);
  expect(['warning', 'critical'].includes(a.labels?.severity), `severity ${a.labels?.severity}`);
  expect(a.annotations?.summary && a.annotations?.description, 'summary and description');
  expect(a.for === undefined || /^\d+[smh]$/.test(a.for), `for: ${a.for} is not a duration`);
  const q = promql(a.expr ?? '');
  for (const e of q.errors) found.push(`PromQL syntax ${e}`);
  expect(q.metrics.size > 0, 'names no metric');
  for (const m of q.metrics) expect(m.startsWith('flashgate_') && source.includes(`"${m}"`), `metric ${m} is not exported`);
  for (const l of [...q.labels, ...q.by]) {
    // A label is set as `"name" => value` in a metrics macro, or with `Label::new("name", …)`.
    expect(source.includes(`"${l}" =>`) || source.includes(`Label::new("${l}"`), `label ${l} is not exported`);
  }
  for (const v of q.values) expect(source.includes(`"${v}"`), `label value ${v} is not exported`);
  // A counter under increase() must exist from the start (telemetry.rs, start_at_zero):
  // one that appears with its first event hides that event from increase().
  const atZero = (m) => expect(telemetry.includes(`("${m}"`), `${m} is not created at 0 (SERVE_COUNTERS, CONSUMER_COUNTERS)`);
  for (const [, m] of (a.expr ?? '').matchAll(/increase\(\s*(flashgate_[a-z_]+)/g)) atZero(m);
  // So must every counter of an expression that asks for a rate of 0 (nothing happening):
  // no series is not 0.
  if (/==\s*0\b/.test(a.expr ?? '')) [...q.metrics].filter((m) => m.endsWith('_total')).forEach(atZero);
  // An aggregated expression keeps only its `by` labels for the annotations' templates.
  const text = `${a.annotations?.summary} ${a.annotations?.description}`;
  for (const [, l] of text.matchAll(/\$labels\.([a-z_]+)/g)) expect(q.by.has(l), `{{ $labels.${l} }} without by (${l})`);
  return found;
}

test('the check finds what is wrong with an alert', () => {
  const sound = alerts[0];
  assert.deepEqual(problems(sound), []);
  const broken = {
    alert: 'flashgate_bad',
    expr: 'sum by (reason) (increase(flashgate_purchases_total{outcome="no_such_outcome", zone="x"}[5m])) + rate(flashgate_no_such_metric[5m]) >',
    for: '5 minutes',
    labels: { severity: 'page' },
    annotations: { summary: '{{ $labels.dependency }}' },
  };
  const idle = {
    ...sound,
    expr: 'max(flashgate_outbox_backlog) > 0 and sum(rate(flashgate_signature_rejections_total[5m])) == 0',
    annotations: { summary: 'stalled', description: 'nothing moves' },
  };
  assert.deepEqual(problems(idle), ['flashgate_signature_rejections_total is not created at 0 (SERVE_COUNTERS, CONSUMER_COUNTERS)']);
  const found = problems(broken).join('\n');
  for (const what of ['name flashgate_bad', 'severity page', 'summary and description', 'for: 5 minutes',
    'PromQL syntax', 'metric flashgate_no_such_metric', 'label zone', 'label value no_such_outcome',
    'flashgate_purchases_total is not created at 0', '$labels.dependency']) {
    assert.ok(found.includes(what), `finds "${what}" in:\n${found}`);
  }
});

for (const a of alerts) {
  test(`alert ${a.alert} (${a.group})`, () => assert.deepEqual(problems(a), []));
}
