// infra/prometheus/alerts.yaml, checked offline: each expression parses with Prometheus's
// own PromQL grammar (@prometheus-io/lezer-promql, the one its web UI uses), names only
// metrics, labels and label values the origin's code exports, and each alert carries what
// an on-call person needs. Needs no running stack.
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

test('the grammar check itself finds a broken expression and a foreign metric', () => {
  assert.ok(promql('sum(rate(flashgate_relay_orders_total[5m]) >').errors.length > 0);
  assert.ok(!source.includes('"flashgate_no_such_metric"'));
});

for (const a of alerts) {
  test(`alert ${a.alert} (${a.group})`, () => {
    assert.match(a.alert, /^Flashgate[A-Z][A-Za-z]+$/);
    assert.ok(['warning', 'critical'].includes(a.labels?.severity), `severity: ${a.labels?.severity}`);
    assert.ok(a.annotations?.summary && a.annotations?.description, 'summary and description');
    if (a.for !== undefined) assert.match(a.for, /^\d+[smh]$/, 'for: a Prometheus duration');

    const q = promql(a.expr);
    assert.deepEqual(q.errors, [], `PromQL syntax of ${a.expr}`);
    assert.ok(q.metrics.size > 0, 'names a metric');
    for (const m of q.metrics) {
      assert.match(m, /^flashgate_/, `${m}: one of flashgate's metrics`);
      assert.ok(source.includes(`"${m}"`), `${m} is exported by origin/src`);
    }
    for (const l of [...q.labels, ...q.by]) {
      // A label is set as `"name" => value` in a metrics macro, or with `Label::new("name", …)`.
      assert.ok(source.includes(`"${l}" =>`) || source.includes(`Label::new("${l}"`), `label ${l} is exported`);
    }
    for (const v of q.values) assert.ok(source.includes(`"${v}"`), `label value ${v} is exported`);
    // An aggregated expression keeps only its `by` labels for the annotations' templates.
    const text = `${a.annotations.summary} ${a.annotations.description}`;
    for (const [, l] of text.matchAll(/\$labels\.([a-z_]+)/g)) {
      assert.ok(q.by.has(l), `{{ $labels.${l} }} needs by (${l}) in the expression`);
    }
  });
}
