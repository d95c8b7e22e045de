// The edge room end to end (docs/room.md): the wasm worker under `wrangler dev`, its
// Durable Object per event, in front of the real origin. The room is off by default;
// this file turns it on for the running worker through the dev-only
// `/__edge/dev/overrides` (as edge.test.mjs sets its knobs) and always clears it. The
// origin's request counter proves which purchases never reached it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { env, run, users as mint, putEvent, eventually } from './stack.mjs';

const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-room-e2e';
const OTHER_UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15 flashgate-room-e2e';
const PURCHASE_ROUTE = '/api/events/{event_id}/purchase';

async function call(method, path, { token, ticket, receipt, ua = UA, body } = {}) {
  const h = { 'user-agent': ua, accept: 'application/json', 'accept-language': 'zh-CN,zh;q=0.9' };
  if (token) h.authorization = `Bearer ${token}`;
  if (ticket) h['x-ticket'] = ticket;
  if (receipt) h['x-room-receipt'] = receipt;
  if (body !== undefined) h['content-type'] = 'application/json';
  const r = await fetch(`${env.EDGE_URL}${path}`, { method, headers: h, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json, headers: r.headers };
}

async function overrides(knobs) {
  const r = await fetch(`${env.EDGE_URL}/__edge/dev/overrides`, {
    method: knobs ? 'PUT' : 'DELETE',
    headers: { 'content-type': 'application/json' },
    body: knobs ? JSON.stringify(knobs) : undefined,
  });
  assert.equal(r.status, 200, await r.text());
}
after(() => overrides(null));

// Purchases the origin has seen, whatever their answer.
async function originPurchases() {
  const text = await (await fetch(`${env.ORIGIN_URL}/metrics`)).text();
  let n = 0;
  for (const m of text.matchAll(/^flashgate_http_requests_total\{(.*)\} ([0-9.e+]+)$/gm)) {
    if (m[1].includes(`route="${PURCHASE_ROUTE}"`) && m[1].includes('method="POST"')) n += Number(m[2]);
  }
  return n;
}

const join = (event, user, opts = {}) => call('POST', `/api/events/${event}/room`, { token: user.token, body: {}, ...opts });
const purchase = (event, user, opts) => call('POST', `/api/events/${event}/purchase`, { token: user.token, body: {}, ...opts });
const ticketFor = async (event, user, ua = UA) => {
  const t = await call('POST', `/api/events/${event}/ticket`, { token: user.token, body: {}, ua });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return t.body.ticket;
};

test('the room is off by default: its path is unknown', async () => {
  await overrides(null);
  const r = await call('GET', '/api/events/demo/room');
  assert.equal(r.status, 404);
  assert.equal(r.body.error, 'not_found');
});

test('join once, positions in arrival order, receipts gate the purchase until admitted', async () => {
  // One admission a second, so positions 2.. wait; a short schedule cache keeps it quick.
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_CACHE_MS: 200 });
  const event = `room-${run}`;
  const startsAt = await putEvent(event, 5, 2_500, 3_600_000, `room ${event}`);
  const [alice, bob, carol, dave] = mint(4, 'room');
  const tickets = Object.fromEntries(await Promise.all([alice, bob, carol, dave].map(async (u) => [u.id, await ticketFor(event, u)])));

  // Public, without identity; nobody queued yet.
  const empty = await call('GET', `/api/events/${event}/room`);
  assert.equal(empty.status, 200, JSON.stringify(empty.body));
  assert.equal(empty.body.queued, 0);
  assert.equal(empty.body.phase, 'registering');
  assert.deepEqual([empty.body.schedule.admit_per_second, empty.body.schedule.admitted_through, empty.body.schedule.opened_at], [1, 0, startsAt]);

  assert.equal((await call('POST', `/api/events/${event}/room`, { body: {} })).status, 401);

  // Twice: the same position and receipt.
  const first = await join(event, alice);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const again = await join(event, alice);
  assert.deepEqual([again.body.position, again.body.receipt], [first.body.position, first.body.receipt]);
  assert.equal(first.body.position, 1);
  assert.ok(first.body.estimated_turn >= startsAt);

  // At once: distinct and consecutive.
  const others = await Promise.all([bob, carol, dave].map((u) => join(event, u)));
  for (const o of others) assert.equal(o.status, 200, JSON.stringify(o.body));
  assert.deepEqual(others.map((o) => o.body.position).sort((a, b) => a - b), [2, 3, 4]);
  const receipt = Object.fromEntries([[alice.id, first.body], ...[bob, carol, dave].map((u, i) => [u.id, others[i].body])]);

  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);

  // Refusals reach nobody: the origin's purchase counter does not move.
  const before = await originPurchases();
  const forbidden = async (what, r, reason) => {
    assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.body)}`);
    assert.deepEqual([r.body.error, r.body.reason], ['forbidden', reason], what);
  };
  const tampered = receipt[alice.id].receipt.replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
  await forbidden('missing', await purchase(event, alice, { ticket: tickets[alice.id] }), 'receipt_missing');
  await forbidden('forged', await purchase(event, alice, { ticket: tickets[alice.id], receipt: tampered }), 'receipt_invalid');
  await forbidden("another user's", await purchase(event, bob, { ticket: tickets[bob.id], receipt: receipt[alice.id].receipt }), 'receipt_wrong_user');
  const otherTicket = await ticketFor(event, alice, OTHER_UA);
  await forbidden("another client's", await purchase(event, alice, { ticket: otherTicket, receipt: receipt[alice.id].receipt, ua: OTHER_UA }), 'receipt_wrong_client');

  // Dave (position 4 at one a second) is not admitted yet: 429 until about his turn.
  const early = await purchase(event, dave, { ticket: tickets[dave.id], receipt: receipt[dave.id].receipt });
  assert.equal(early.status, 429, JSON.stringify(early.body));
  assert.equal(early.body.status, 'rate_limited');
  const wait = Number(early.headers.get('retry-after'));
  assert.ok(wait >= 1 && wait <= 5, `Retry-After ${wait}`);
  assert.equal(await originPurchases(), before, 'a refused purchase reached the origin');

  // Alice is admitted first: the schedule says so, and her purchase reaches the origin.
  const admitted = await eventually('position 1 admitted', 5_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.schedule?.admitted_through >= 1 && r.body;
  }, 100);
  assert.equal(admitted.phase, 'open');
  assert.equal(admitted.queued, 4);
  assert.ok(admitted.schedule.admitted_through < 4, JSON.stringify(admitted.schedule));
  const bought = await purchase(event, alice, { ticket: tickets[alice.id], receipt: receipt[alice.id].receipt });
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  assert.equal(bought.body.status, 'queued');
  assert.equal(await originPurchases(), before + 1);
});
