// End to end through the real stack: the wasm worker under `wrangler dev`, the origin,
// Redis, the broker, the consumer and MariaDB, all started by `./dev test`.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash, createHmac } from 'node:crypto';

import { env, run, users, putEvent, eventually } from './stack.mjs';

async function call(method, path, { token, ticket, body } = {}) {
  const headers = { 'user-agent': 'Mozilla/5.0 flashgate-e2e' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (ticket) headers['x-ticket'] = ticket;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const r = await fetch(`${env.EDGE_URL}${path}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  const text = await r.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: r.status, body: json, headers: r.headers };
}

function sql(query) {
  return execFileSync('mariadb', ['--no-defaults', '-h127.0.0.1', `-P${env.MYSQL_PORT}`, '-uroot', '-N', '-B', 'flashgate', '-e', query]).toString().trim();
}

test('the page is served by the edge', async () => {
  const r = await fetch(`${env.EDGE_URL}/`);
  assert.equal(r.status, 200);
  assert.match(await r.text(), /<button/);
});

test('a purchase through the edge becomes a confirmed row in MariaDB', async () => {
  const event = `e2e-${run}-buy`;
  await putEvent(event, 1, -1000, 3_600_000);
  const [alice, bob] = users(2);

  const info = await call('GET', `/api/events/${event}`);
  assert.equal(info.status, 200);
  for (const f of ['event_id', 'name', 'stock_total', 'stock_left', 'starts_at', 'ends_at', 'server_time', 'state']) {
    assert.ok(f in info.body, `event info has ${f}`);
  }
  assert.equal(info.body.state, 'live');

  assert.equal((await call('POST', `/api/events/${event}/purchase`, { body: {} })).status, 401);
  const noTicket = await call('POST', `/api/events/${event}/purchase`, { token: alice.token, body: {} });
  assert.equal(noTicket.status, 403);
  assert.equal(noTicket.body.reason, 'ticket_missing');

  const t = await call('POST', `/api/events/${event}/ticket`, { token: alice.token, body: {} });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  assert.ok(t.body.ticket && t.body.valid_from && t.body.expires_at);
  const bobsTicketForAlice = await call('POST', `/api/events/${event}/purchase`, { token: bob.token, ticket: t.body.ticket, body: {} });
  assert.equal(bobsTicketForAlice.status, 403);

  const bought = await call('POST', `/api/events/${event}/purchase`, { token: alice.token, ticket: t.body.ticket, body: {} });
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  assert.equal(bought.body.status, 'queued');
  assert.equal(bought.body.message, '抢购成功, 订单处理中');
  const orderId = bought.body.order_id;

  const confirmed = await eventually('order confirmed', 60_000, async () => {
    const o = await call('GET', `/api/events/${event}/order`, { token: alice.token });
    return o.body.status === 'confirmed' && o;
  });
  assert.equal(confirmed.body.order_id, orderId);
  assert.equal(sql(`SELECT CONCAT(user_id, ' ', status) FROM orders WHERE order_id = '${orderId}'`), `${alice.id} confirmed`);

  // The stack's consumer serves its own health and metrics (consumer.listen).
  assert.equal((await fetch(`${env.CONSUMER_URL}/healthz`)).status, 200);
  const metrics = await (await fetch(`${env.CONSUMER_URL}/metrics`)).text();
  const written = metrics.match(/^flashgate_consumer_orders_total (\d+)/m);
  assert.ok(written && Number(written[1]) >= 1, `consumer metrics count the order:\n${metrics.slice(0, 400)}`);

  const bt = await call('POST', `/api/events/${event}/ticket`, { token: bob.token, body: {} });
  const late = await call('POST', `/api/events/${event}/purchase`, { token: bob.token, ticket: bt.body.ticket, body: {} });
  assert.equal(late.status, 409);
  assert.equal(late.body.status, 'sold_out');
  const none = await call('GET', `/api/events/${event}/order`, { token: bob.token });
  assert.equal(none.status, 404);
  assert.equal(none.body.status, 'none');
});

test('the edge answers gating, identity and shape errors itself', async () => {
  const soon = `e2e-${run}-soon`;
  await putEvent(soon, 5, 3_600_000, 7_200_000);
  const [carol] = users(1);
  const early = await call('POST', `/api/events/${soon}/purchase`, { token: carol.token, body: {} });
  assert.equal(early.status, 425);
  assert.equal(early.body.status, 'not_started');
  assert.ok(early.body.starts_at);

  const forged = carol.token.slice(0, -2) + (carol.token.endsWith('AA') ? 'BB' : 'AA');
  assert.equal((await call('POST', `/api/events/${soon}/purchase`, { token: forged, body: {} })).status, 401);
  assert.equal((await call('GET', '/api/events/no-such-event')).status, 404);
  // The order lookup of an event that does not exist: no order, and why.
  for (const id of ['no-such-event', 'NOT_A_SLUG']) {
    const lookup = await call('GET', `/api/events/${id}/order`, { token: carol.token });
    assert.equal(lookup.status, 404);
    assert.deepEqual([lookup.body.status, lookup.body.error], ['none', 'event_not_found']);
  }
  assert.equal((await call('GET', '/api/nowhere')).status, 404);
  assert.equal((await call('DELETE', `/api/events/${soon}/purchase`, { token: carol.token })).status, 405);
  const big = await call('POST', `/api/events/${soon}/purchase`, { token: carol.token, body: { pad: 'x'.repeat(5000) } });
  assert.equal(big.status, 413);
});

// A purchase straight to the origin, signed as the edge signs it (core/src/sign.rs): what
// an edge isolate that never reported back to this one would have sent.
async function purchaseAtOrigin(event, user) {
  const path = `/api/events/${event}/purchase`;
  const body = '{}';
  const ts = Date.now();
  const nonce = `e2e-${run}-${Math.random().toString(36).slice(2)}`;
  const digest = createHash('sha256').update(body).digest('hex');
  const canonical = `flashgate-edge-v3\ndev\nPOST\n${path}\n${user}\n${ts}\n${nonce}\n${digest}`;
  const sig = createHmac('sha256', env.EDGE_SECRET).update(canonical).digest('base64url');
  const r = await fetch(`${env.ORIGIN_URL}${path}`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json', 'x-flashgate-signature': sig, 'x-flashgate-timestamp': String(ts),
      'x-flashgate-nonce': nonce, 'x-flashgate-user': user,
    },
    body,
  });
  return { status: r.status, body: await r.json() };
}

// `holder` takes a ticket at the edge, then buys the event's one unit straight at the
// origin (through another isolate, or its answer came back too late): this edge never saw
// the 202. Returns their ticket and the order id.
async function boughtElsewhere(event, holder) {
  const ticket = await call('POST', `/api/events/${event}/ticket`, { token: holder.token, body: {} });
  assert.equal(ticket.status, 200, JSON.stringify(ticket.body));
  const bought = await purchaseAtOrigin(event, holder.id);
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  return { ticket: ticket.body.ticket, order_id: bought.body.order_id };
}

// The holder asks again through the edge: their order, not sold_out.
async function assertTheirOrder(event, holder, { ticket, order_id }) {
  const again = await call('POST', `/api/events/${event}/purchase`, { token: holder.token, ticket, body: {} });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.equal(again.body.status, 'already_purchased');
  assert.equal(again.body.order_id, order_id);
}

test('a buyer whose order the edge never saw is told already_purchased after the sell-out, not sold_out', async () => {
  const event = `e2e-${run}-holder`;
  await putEvent(event, 1, -1000, 3_600_000);
  const [holder, late] = users(2, 'holder');
  const tLate = await call('POST', `/api/events/${event}/ticket`, { token: late.token, body: {} });
  const held = await boughtElsewhere(event, holder);
  // The next shopper gets sold_out, and the edge now answers sold_out itself.
  const soldOut = await call('POST', `/api/events/${event}/purchase`, { token: late.token, ticket: tLate.body.ticket, body: {} });
  assert.equal(soldOut.status, 409, JSON.stringify(soldOut.body));
  await assertTheirOrder(event, holder, held);
});

test('a buyer whose order the edge never saw is told already_purchased when the event info said sold out', async () => {
  const event = `e2e-${run}-holder-info`;
  await putEvent(event, 1, -1000, 3_600_000);
  const [holder] = users(1, 'infoholder');
  const held = await boughtElsewhere(event, holder);
  // No purchase goes through the edge: it learns of the sell-out from the event's info,
  // and answers sold_out itself from then on.
  await eventually('the edge shows the event sold out', 15_000, async () =>
    (await call('GET', `/api/events/${event}`)).body.state === 'sold_out');
  await assertTheirOrder(event, holder, held);
});
