// What every end-to-end test file needs from the stack that `./dev test` starts (or
// `./dev up`, with FLASHGATE_E2E_DIR pointing at its dir): its settings, demo users and
// events made through the origin's admin API, and waiting on a condition with a deadline.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

const dir = process.env.FLASHGATE_E2E_DIR;
assert.ok(dir, 'FLASHGATE_E2E_DIR is set by ./dev test');

/** The stack's directory (its settings, logs and wrangler's dev registry). */
export const stackDir = dir;

/** The stack's settings (EDGE_URL, ORIGIN_URL, ADMIN_TOKEN, AUTH_SECRET, MYSQL_PORT, ...). */
export const env = Object.fromEntries(
  readFileSync(`${dir}/env`, 'utf8').trim().split('\n').map((l) => {
    const i = l.indexOf('=');
    return [l.slice(0, i), l.slice(i + 1)];
  }),
);

/** The checkout. */
export const root = new URL('../..', import.meta.url).pathname;

/** Unique per test process: event ids and user ids of this run never meet another's. */
export const run = `${Date.now().toString(36)}${process.pid.toString(36)}`;

let batch = 0;

/** `count` fresh users `{id, token}`, minted by `flashgate users` (under `secret`). */
export function users(count, tag = 'u', secret = env.AUTH_SECRET) {
  batch += 1;
  const csv = execFileSync(`${root}/target/debug/flashgate`, ['users', '--count', String(count), '--prefix', `${tag}${run}n${batch}u`], {
    env: { ...process.env, FLASHGATE_AUTH_SECRET: secret },
  }).toString();
  return csv.trim().split('\n').slice(1).map((row) => {
    const [id, token] = row.split(',');
    return { id, token };
  });
}

/** Creates event `id` through the admin API; returns its start (unix ms). */
export async function putEvent(id, stock, startsInMs, endsInMs, name = `e2e ${id}`) {
  const now = Date.now();
  const r = await fetch(`${env.ORIGIN_URL}/admin/events/${id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name, stock,
      starts_at: new Date(now + startsInMs).toISOString(), ends_at: new Date(now + endsInMs).toISOString(),
    }),
  });
  assert.equal(r.status, 201, await r.text());
  return now + startsInMs;
}

/**
 * Sets knobs of the running worker through its dev-only `/__edge/dev/overrides` (vars
 * by name), or clears them all with `null`.
 */
export async function overrides(knobs) {
  const r = await fetch(`${env.EDGE_URL}/__edge/dev/overrides`, {
    method: knobs ? 'PUT' : 'DELETE',
    headers: { 'content-type': 'application/json' },
    body: knobs ? JSON.stringify(knobs) : undefined,
  });
  assert.equal(r.status, 200, await r.text());
}

/** Polls `fn` until it returns something truthy (returned), or fails after `ms`. */
export async function eventually(what, ms, fn, every = 200) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, every));
  }
}
