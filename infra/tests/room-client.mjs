// What the room's end-to-end files share (room.test.mjs, room-draw.test.mjs): a client of
// the worker under `wrangler dev` as a browser calls it, the origin's purchase counter, and
// the published draw's verifier.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { join } from 'node:path';

import { env, root } from './stack.mjs';

// How an entrant is named in the published entries (core::room::draw::entrant).
export const entrant = (event, user) => createHash('sha256').update(`flashgate room entrant v1\n${event}\n${user}`).digest('hex');
export const verifier = (args) => spawnSync(join(root, 'target/debug/flashgate'), ['room', 'verify', ...args], { encoding: 'utf8', timeout: 60_000 });

// Runs `fn` over `items`, `width` at a time; the answers in the items' order.
export async function pool(items, width, fn) {
  const out = new Array(items.length);
  let next = 0;
  await Promise.all(Array.from({ length: width }, async () => {
    while (next < items.length) {
      const i = next;
      next += 1;
      out[i] = await fn(items[i], i);
    }
  }));
  return out;
}

export const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-room-e2e';
export const OTHER_UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15 flashgate-room-e2e';
const PURCHASE_ROUTE = '/api/events/{event_id}/purchase';

export const call = (method, path, opts) => callAt(env.EDGE_URL, method, path, opts);

export async function callAt(base, method, path, { token, ticket, receipt, ua = UA, body } = {}) {
  const h = { 'user-agent': ua, accept: 'application/json', 'accept-language': 'zh-CN,zh;q=0.9' };
  if (token) h.authorization = `Bearer ${token}`;
  if (ticket) h['x-ticket'] = ticket;
  if (receipt) h['x-room-receipt'] = receipt;
  if (body !== undefined) h['content-type'] = 'application/json';
  const r = await fetch(`${base}${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json, headers: r.headers };
}

// Purchases the origin has seen, whatever their answer.
export async function originPurchases() {
  const text = await (await fetch(`${env.ORIGIN_URL}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^flashgate_http_requests_total\{(.*)\} ([0-9.e+]+)$/gm)) {
    if (m[1].includes(`route="${PURCHASE_ROUTE}"`) && m[1].includes('method="POST"')) n += Number(m[2]);
  }
  return n;
}

// An event with room settings of its own; returns its start (unix ms).
export async function putRoomEvent(id, stock, startsInMs, room) {
  const now = Date.now();
  const r = await fetch(`${env.ORIGIN_URL}/admin/events/${id}`, {
    method: 'PUT',
    headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: `room ${id}`, stock, room,
      starts_at: new Date(now + startsInMs).toISOString(), ends_at: new Date(now + 3_600_000).toISOString(),
    }),
  });
  assert.equal(r.status, 201, await r.text());
  return now + startsInMs;
}

export function sql(query) {
  return execFileSync('mariadb', ['--no-defaults', '-h127.0.0.1', `-P${env.MYSQL_PORT}`, '-uroot', '-N', '-B', 'flashgate', '-e', query]).toString().trim();
}

export const enter = (event, user, opts = {}) => call('POST', `/api/events/${event}/room`, { token: user.token, body: {}, ...opts });
export const purchase = (event, user, opts) => call('POST', `/api/events/${event}/purchase`, { token: user.token, body: {}, ...opts });
export const ticketFor = async (event, user, ua = UA) => {
  const t = await call('POST', `/api/events/${event}/ticket`, { token: user.token, body: {}, ua });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return t.body.ticket;
};
