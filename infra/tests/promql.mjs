// What the alert rules' and the dashboard's tests share: PromQL parsed with Prometheus's
// own grammar (@prometheus-io/lezer-promql, the one its web UI uses), and the metrics,
// labels and label values the code really exports, read from its source. Not a test
// itself (no `.test.mjs`): infra/tests/alerts.test.mjs and grafana.test.mjs import it.
import { readFileSync, readdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parser } from '@prometheus-io/lezer-promql';

export const root = fileURLToPath(new URL('../..', import.meta.url));

/** The text of every `.rs` file under `dir` (relative to the repository), joined. */
function rustSources(dir) {
  return readdirSync(`${root}/${dir}`, { recursive: true })
    .filter((f) => f.endsWith('.rs'))
    .sort()
    .map((f) => readFileSync(`${root}/${dir}/${f}`, 'utf8'))
    .join('\n');
}

/** The origin's code (`flashgate serve` and `flashgate consume`): the edge exports no
 * Prometheus metrics (its counters are in its own control API). */
export const source = rustSources('origin/src');
export const telemetry = readFileSync(`${root}/origin/src/telemetry.rs`, 'utf8');

/** Every metric name the code exports: `metrics::counter!/gauge!/histogram!("…"`,
 * `Counters::new("…"` and the start-at-zero lists of telemetry.rs. */
export const exported = new Set(
  [...source.matchAll(/(?:(?:counter|gauge|histogram)!|Counters::new)\(\s*"(flashgate_[a-z0-9_]+)"/g),
    ...telemetry.matchAll(/\(\s*"(flashgate_[a-z0-9_]+)",\s*&\[/g)].map((m) => m[1]),
);

/** The histograms among them (recorded with `histogram!`, exported with buckets, as
 * telemetry.rs sets buckets for every histogram): `_bucket`, `_sum`, `_count`, `le`. */
export const histograms = new Set(
  [...source.matchAll(/histogram!\(\s*"(flashgate_[a-z0-9_]+)"/g)].map((m) => m[1]),
);

/** The PromQL syntax tree of `expr`: its syntax errors, metrics, labels, `by` labels
 * and label values. */
export function promql(expr) {
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

/** The histogram a `_bucket`, `_sum` or `_count` series belongs to, if it is one. */
function histogramOf(metric) {
  const m = metric.match(/^(.*)_(bucket|sum|count)$/);
  return m && histograms.has(m[1]) ? m[1] : undefined;
}

/** What `q` (from promql()) names that the code does not export: one line per problem. */
export function exportProblems(q) {
  const found = [];
  const expect = (ok, what) => ok || found.push(what);
  for (const e of q.errors) found.push(`PromQL syntax ${e}`);
  expect(q.metrics.size > 0, 'names no metric');
  for (const m of q.metrics) {
    const histogram = histogramOf(m);
    expect(m.startsWith('flashgate_') && (histogram || (exported.has(m) && !histograms.has(m))),
      histograms.has(m) ? `metric ${m} is a histogram: name its _bucket, _sum or _count` : `metric ${m} is not exported`);
  }
  const buckets = [...q.metrics].some((m) => m.endsWith('_bucket') && histogramOf(m));
  for (const l of [...q.labels, ...q.by]) {
    if (l === 'le' && buckets) continue;
    // A label is set as `"name" => value` in a metrics macro, or with `Label::new("name", …)`.
    expect(source.includes(`"${l}" =>`) || source.includes(`Label::new("${l}"`), `label ${l} is not exported`);
  }
  for (const v of q.values) expect(source.includes(`"${v}"`), `label value ${v} is not exported`);
  return found;
}

/** The anchors GitHub gives the headings of a Markdown file (lower case, punctuation
 * dropped, spaces as hyphens, repeats numbered). */
export function anchors(markdown) {
  const seen = new Map();
  const out = new Set();
  for (const [, heading] of markdown.replace(/```[\s\S]*?```/g, '').matchAll(/^#{1,6}\s+(.+?)\s*#*\s*$/gm)) {
    const slug = heading.toLowerCase().replace(/`/g, '').replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-');
    const n = seen.get(slug) ?? 0;
    seen.set(slug, n + 1);
    out.add(n ? `${slug}-${n}` : slug);
  }
  return out;
}
