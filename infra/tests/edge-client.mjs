// Helpers of the edge end-to-end tests (edge.test.mjs, edge-guards.test.mjs): a browser-like
// client of the worker under `wrangler dev`, and the origin's request counter that proves
// which answers never reached the origin.
import assert from 'node:assert/strict';

import { env, users as mint, putEvent as put } from './stack.mjs';

export const BROWSER = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-edge-e2e',
  accept: 'application/json',
  'accept-language': 'zh-CN,zh;q=0.9',
};
export const PURCHASE_ROUTE = '/api/events/{event_id}/purchase';
export const users = (count) => mint(count, 'edge');
export async function putEvent(id, stock, startsInMs, endsInMs) {
  await put(id, stock, startsInMs, endsInMs, `edge ${id}`);
  return id;
}

// One request to the edge. `headers` are added to (or, with '' values, blank out) the
// browser-like defaults; `raw` sends the body as is.
export async function call(method, path, { token, ticket, body, raw, headers = {}, ip } = {}) {
  const h = { ...BROWSER };
  if (token) h.authorization = `Bearer ${token}`;
  if (ticket) h['x-ticket'] = ticket;
  if (body !== undefined) h['content-type'] = 'application/json';
  if (ip) h['cf-connecting-ip'] = ip;
  Object.assign(h, headers);
  const r = await fetch(`${env.EDGE_URL}${path}`, {
    method, headers: h, body: raw ?? (body === undefined ? undefined : JSON.stringify(body)),
  });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json, headers: r.headers };
}

export const purchase = (event, opts) => call('POST', `/api/events/${event}/purchase`, { body: {}, ...opts });
export const ticketFor = async (event, user, opts = {}) => {
  const t = await call('POST', `/api/events/${event}/ticket`, { token: user.token, body: {}, ...opts });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return t.body.ticket;
};

export async function stats() {
  const r = await fetch(`${env.EDGE_URL}/__edge/stats`);
  assert.equal(r.status, 200);
  return r.json();
}

// The origin's request counter: { `${method} ${route} ${status}`: n }.
export async function originCounts() {
  const text = await (await fetch(`${env.ORIGIN_URL}/metrics`)).text();
  const counts = {};
  for (const line of text.split('\n')) {
    const m = line.match(/^flashgate_http_requests_total\{(.*)\} ([0-9.e+]+)$/);
    if (!m) continue;
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.route === '/metrics') continue; // the scrapes themselves
    counts[`${labels.method} ${labels.route} ${labels.status}`] = Number(m[2]);
  }
  return counts;
}
export const sum = (counts, pred = () => true) => Object.entries(counts).filter(([k]) => pred(k)).reduce((a, [, v]) => a + v, 0);
export const purchases = (counts) => sum(counts, (k) => k.startsWith(`POST ${PURCHASE_ROUTE} `));

// Runs `fn` and checks that the origin saw no purchase (with `{ all: true }`: no request
// at all) meanwhile. The stack is private to the test run and test files run one at a time.
export async function withoutOrigin(what, fn, { all = false } = {}) {
  const before = await originCounts();
  const result = await fn();
  const after = await originCounts();
  if (all) assert.equal(sum(after), sum(before), `${what}: the origin saw a request`);
  assert.equal(purchases(after), purchases(before), `${what}: the origin saw a purchase`);
  return result;
}

export function assertRateLimited(r, what) {
  assert.equal(r.status, 429, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.status, 'rate_limited');
  assert.equal(r.body.message, '活动火爆, 请稍后再试');
  assert.ok(Number(r.headers.get('retry-after')) >= 1, `${what}: Retry-After`);
}
