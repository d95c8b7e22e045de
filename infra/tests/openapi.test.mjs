// docs/openapi.yaml, checked offline against the code: it describes exactly the paths the
// origin's router and the edge's router serve (the edge's own /__edge controls aside),
// every reference resolves, and every operation names its answers. docs/api.md keeps every
// line of the shared contract page where that page is at hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { root } from './promql.mjs';

const spec = parseYaml(readFileSync(`${root}/docs/openapi.yaml`, 'utf8'));

/// The origin's routes: the paths of `router()` in origin/src/serve/router.rs.
function originPaths() {
  const src = readFileSync(`${root}/origin/src/serve/router.rs`, 'utf8');
  return [...src.matchAll(/\(\s*"(\/[^"]*)",\s*(?:get|post|put)\(/g)].map((m) => m[1]);
}

/// The edge's routes: its slice patterns over the path's segments (edge/src/lib.rs), each
/// named segment a `{event_id}` and each `"a" | "b"` one path per alternative.
function edgePaths() {
  const src = readFileSync(`${root}/edge/src/lib.rs`, 'utf8');
  const paths = new Set();
  for (const m of src.matchAll(/\(\[("api"[^\]]*)\],\s*Method::/g)) {
    let found = [''];
    for (const part of m[1].split(',').map((s) => s.trim())) {
      const names = part.startsWith('"')
        ? part.split('|').map((s) => s.trim().replaceAll('"', ''))
        : ['{event_id}'];
      found = found.flatMap((p) => names.map((n) => `${p}/${n}`));
    }
    found.forEach((p) => paths.add(p));
  }
  return [...paths];
}

test('the spec describes exactly the paths the origin and the edge serve', () => {
  const served = new Set([...originPaths(), ...edgePaths()]);
  assert.ok(served.size >= 10, `found only ${[...served]}`);
  const described = new Set(Object.keys(spec.paths));
  assert.deepEqual([...served].filter((p) => !described.has(p)).sort(), [], 'served, not described');
  assert.deepEqual([...described].filter((p) => !served.has(p)).sort(), [], 'described, not served');
});

test('the route readers find what they look for (a broken reader cannot pass)', () => {
  assert.ok(originPaths().includes('/admin/events/{event_id}/end'));
  assert.ok(edgePaths().includes('/api/events/{event_id}/purchase'));
  assert.ok(edgePaths().includes('/api/events/{event_id}/ticket'));
});

test('every reference resolves and every operation names its answers', () => {
  const refs = [];
  const walk = (node) => {
    if (Array.isArray(node)) node.forEach(walk);
    else if (node && typeof node === 'object') {
      for (const [k, v] of Object.entries(node)) {
        if (k === '$ref') refs.push(v);
        else walk(v);
      }
    }
  };
  walk(spec);
  for (const ref of refs) {
    const target = ref
      .replace(/^#\//, '')
      .split('/')
      .reduce((at, key) => at?.[key], spec);
    assert.ok(target, `unresolved ${ref}`);
  }
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ['get', 'post', 'put']) {
      if (!item[method]) continue;
      const codes = Object.keys(item[method].responses ?? {});
      assert.ok(codes.length > 0, `${method} ${path} names no answer`);
      assert.ok(item[method].summary, `${method} ${path} has no summary`);
    }
  }
});

const shared = `${root}/../shared/API.md`;
test('docs/api.md keeps every line of the shared contract', { skip: !existsSync(shared) && 'the shared page is not beside this checkout' }, () => {
  const ours = new Set(readFileSync(`${root}/docs/api.md`, 'utf8').split('\n'));
  const missing = readFileSync(shared, 'utf8')
    .split('\n')
    .filter((line) => !ours.has(line));
  assert.deepEqual(missing, []);
});
