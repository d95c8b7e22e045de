// infra/prometheus/alerts.yaml, checked offline: each expression parses with Prometheus's
// own PromQL grammar (@prometheus-io/lezer-promql, the one its web UI uses), names only
// metrics, labels and label values the origin's code exports (counters under increase()
// created at 0 at start), and each alert carries what an on-call person needs, down to
// its section of docs/runbook.md. Needs no running stack. The parsing and the look-up
// in the code are shared with the dashboard's test (promql.mjs).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { anchors, exportProblems, promql, root, telemetry } from './promql.mjs';

const rules = parseYaml(readFileSync(`${root}/infra/prometheus/alerts.yaml`, 'utf8'));
const alerts = rules.groups.flatMap((g) => g.rules.map((r) => ({ group: g.name, ...r })));
// Each alert's runbook_url points at its section of docs/runbook.md.
const RUNBOOK = 'https://github.com/flashgate/flashgate/blob/main/docs/runbook.md#';
const runbook = anchors(readFileSync(`${root}/docs/runbook.md`, 'utf8'));

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
  const url = a.annotations?.runbook_url ?? '';
  expect(url.startsWith(RUNBOOK) && runbook.has(url.slice(RUNBOOK.length)),
    `runbook_url ${url || '(none)'} is not a section of docs/runbook.md`);
  const q = promql(a.expr ?? '');
  found.push(...exportProblems(q));
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
    annotations: { summary: '{{ $labels.dependency }}', runbook_url: `${RUNBOOK}no-such-section` },
  };
  const idle = {
    ...sound,
    expr: 'max(flashgate_outbox_backlog) > 0 and sum(rate(flashgate_signature_rejections_total[5m])) == 0',
    annotations: { ...sound.annotations, summary: 'stalled', description: 'nothing moves' },
  };
  assert.deepEqual(problems(idle), ['flashgate_signature_rejections_total is not created at 0 (SERVE_COUNTERS, CONSUMER_COUNTERS)']);
  const found = problems(broken).join('\n');
  for (const what of ['name flashgate_bad', 'severity page', 'summary and description', 'for: 5 minutes',
    'PromQL syntax', 'metric flashgate_no_such_metric', 'label zone', 'label value no_such_outcome',
    'flashgate_purchases_total is not created at 0', '$labels.dependency',
    'runbook_url https://github.com/flashgate/flashgate/blob/main/docs/runbook.md#no-such-section']) {
    assert.ok(found.includes(what), `finds "${what}" in:\n${found}`);
  }
});

for (const a of alerts) {
  test(`alert ${a.alert} (${a.group})`, () => assert.deepEqual(problems(a), []));
}
