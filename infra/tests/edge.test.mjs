// The edge worker end to end: the wasm build under `wrangler dev` in front of the real
// origin (started by `./dev test`, or by `./dev up` with FLASHGATE_E2E_DIR pointing at
// its dir). Every row of the purchase answers table is reached through the edge (the
// guards' rows in edge-guards.test.mjs), and the origin's own request counter
// (`flashgate_http_requests_total` at $ORIGIN_URL/metrics) proves which answers never
// reached it.
//
// Knobs that the running worker must change for a test are set through the dev-only
// `/__edge/dev/overrides` (on in the dev environment, for allow-listed loopback clients)
// and always cleared. Non-loopback clients are simulated with a `CF-Connecting-IP` header
// from the documentation ranges: `wrangler dev` keeps a client's header, Cloudflare never
// does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { env, run, eventually, overrides } from './stack.mjs';
import {
  BROWSER, PURCHASE_ROUTE, users, putEvent, call, purchase, ticketFor, stats, originCounts, withoutOrigin,
} from './edge-client.mjs';

after(() => overrides(null));

test('202, 200 (at once and after the sell-out) and 409 through the edge; a sold-out is then answered at the edge', async () => {
  const event = await putEvent(`edge-${run}-rows`, 1, -1000, 3_600_000);
  const [alice, bob, carol] = users(3);
  const [ta, tb, tc] = [await ticketFor(event, alice), await ticketFor(event, bob), await ticketFor(event, carol)];
  // The edge would also learn the sell-out from a refreshed event info (state sold_out);
  // a long event cache makes sure bob's 409 comes from the origin, and a long sold-out
  // mark that carol's comes from the edge, however slow the machine.
  await overrides({ EVENT_CACHE_MS: 60_000, SOLD_OUT_CACHE_MS: 60_000 });
  try {
    await soldOutRows(event, [alice, bob, carol], [ta, tb, tc]);
  } finally {
    await overrides(null);
  }
});

test('every shopper answer about an event is one Analytics Engine data point', async () => {
  // The local binding keeps nothing (wrangler dev); the isolate counts its writes.
  const event = await putEvent(`edge-${run}-points`, 1, 3_600_000, 7_200_000);
  const before = (await stats()).analytics;
  const answers = [
    await call('GET', `/api/events/${event}`),
    await call('GET', `/api/events/${event}-none`),
    await call('POST', `/api/events/${event}/purchase`, { body: {} }),
  ];
  assert.deepEqual(answers.map((a) => a.status), [200, 404, 401]);
  // Not about an event: no point.
  assert.equal((await call('GET', '/api/page')).status, 200);
  const after = (await stats()).analytics;
  assert.deepEqual([after.points - before.points, after.failed - before.failed], [3, 0]);
});

async function soldOutRows(event, [alice, bob, carol], [ta, tb, tc]) {
  const before = await originCounts();
  const bought = await purchase(event, { token: alice.token, ticket: ta });
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  assert.deepEqual([bought.body.status, bought.body.message], ['queued', '抢购成功, 订单处理中']);
  assert.ok(bought.body.order_id);

  // At once again: the buyer gets their order back, inside their per-user window too
  // (the origin is asked).
  const again = await purchase(event, { token: alice.token, ticket: ta });
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.deepEqual([again.body.status, again.body.order_id], ['already_purchased', bought.body.order_id]);
  const afterAgain = await originCounts();
  assert.equal(afterAgain[`POST ${PURCHASE_ROUTE} 200`] ?? 0, (before[`POST ${PURCHASE_ROUTE} 200`] ?? 0) + 1);

  const sold = await purchase(event, { token: bob.token, ticket: tb });
  assert.equal(sold.status, 409);
  assert.equal(sold.body.status, 'sold_out');
  const seen = await originCounts();
  assert.equal(seen[`POST ${PURCHASE_ROUTE} 409`] ?? 0, (before[`POST ${PURCHASE_ROUTE} 409`] ?? 0) + 1);

  // The edge remembers the sold-out for SOLD_OUT_CACHE_MS: carol is answered there.
  const cached = await withoutOrigin('edge-cached sold_out', () => purchase(event, { token: carol.token, ticket: tc }));
  assert.equal(cached.status, 409);
  assert.equal(cached.body.status, 'sold_out');
  const info = await call('GET', `/api/events/${event}`);
  assert.equal(info.body.state, 'sold_out');
  // The buyer asking again is not told sold_out by the edge: the origin answers.
  // (Nor by the origin, which remembers the sell-out too but looks up the buyer's order.)
  const buyer = await purchase(event, { token: alice.token, ticket: ta });
  assert.equal(buyer.status, 200, JSON.stringify(buyer.body));
  assert.equal(buyer.body.order_id, bought.body.order_id);
}

test('a double click is one order: the same purchase sent several times at once is never a 401', async () => {
  const event = await putEvent(`edge-${run}-double`, 5, -1000, 3_600_000);
  const [gina] = users(1);
  const tg = await ticketFor(event, gina);
  const answers = await Promise.all([1, 2, 3, 4].map(() => purchase(event, { token: gina.token, ticket: tg })));
  const statuses = answers.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 200, 200, 202], JSON.stringify(answers.map((r) => r.body)));
  const orders = new Set(answers.map((r) => r.body.order_id));
  assert.equal(orders.size, 1, 'one order id in every answer');
});

test('401, 403 (tickets), 400, 404, 405, 413 and 415 are answered without a purchase reaching the origin', async () => {
  const event = await putEvent(`edge-${run}-refusals`, 5, -1000, 3_600_000);
  const [dave, erin, frank] = users(3);
  const td = await ticketFor(event, dave);

  await withoutOrigin('401', async () => {
    const none = await purchase(event, {});
    assert.equal(none.status, 401);
    assert.equal(none.body.error, 'unauthenticated');
    const forged = dave.token.slice(0, -2) + (dave.token.endsWith('AA') ? 'BB' : 'AA');
    assert.equal((await purchase(event, { token: forged })).status, 401);
    assert.equal((await call('POST', `/api/events/${event}/ticket`, { token: forged, body: {} })).status, 401);
    assert.equal((await call('GET', `/api/events/${event}/order`, { token: forged })).status, 401);
  }, { all: true });

  await withoutOrigin('403 tickets', async () => {
    const reasons = [];
    for (const opts of [
      { token: erin.token },
      { token: erin.token, ticket: 'not.a-ticket' },
      { token: erin.token, ticket: td }, // dave's ticket
      { token: dave.token, ticket: td, headers: { 'user-agent': `${BROWSER['user-agent']} other-browser` } },
    ]) {
      const r = await purchase(event, opts);
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.equal(r.body.error, 'forbidden');
      reasons.push(r.body.reason);
    }
    assert.deepEqual(reasons, ['ticket_missing', 'ticket_invalid', 'ticket_wrong_user', 'ticket_wrong_client']);
  });

  await overrides({ TICKET_TTL_MS: 1 });
  try {
    const short = await ticketFor(event, frank);
    await new Promise((r) => setTimeout(r, 5)); // the ticket lives 1 ms
    const expired = await withoutOrigin('403 expired', () => purchase(event, { token: frank.token, ticket: short }));
    assert.equal(expired.status, 403);
    assert.equal(expired.body.reason, 'ticket_expired');
  } finally {
    await overrides(null);
  }

  await withoutOrigin('shape errors', async () => {
    const badJson = await purchase(event, { token: dave.token, ticket: td, raw: '{', headers: { 'content-type': 'application/json' } });
    assert.equal(badJson.status, 400);
    assert.equal(badJson.body.error, 'invalid_json');
    const text = await purchase(event, { token: dave.token, ticket: td, raw: 'hi', headers: { 'content-type': 'text/plain' } });
    assert.equal(text.status, 415);
    const big = await purchase(event, { token: dave.token, ticket: td, body: { pad: 'x'.repeat(5000) } });
    assert.equal(big.status, 413);
    assert.equal(big.body.error, 'payload_too_large');
    // An id that is not a slug names no event, on every path alike.
    const badId = await purchase('Not_An_Id', { token: dave.token, ticket: td });
    assert.equal(badId.status, 404);
    assert.equal(badId.body.error, 'event_not_found');
    const badIdTicket = await call('POST', '/api/events/Not_An_Id/ticket', { token: dave.token, body: {} });
    assert.equal(badIdTicket.status, 404);
    assert.equal((await call('GET', '/api/nowhere')).status, 404);
    assert.equal((await call('GET', '/api/nowhere')).body.error, 'not_found');
    const wrongMethod = await call('DELETE', `/api/events/${event}/purchase`, { token: dave.token });
    assert.equal(wrongMethod.status, 405);
    assert.equal(wrongMethod.headers.get('allow'), 'POST');
    // A method the runtime has no name for is no GET either.
    const extension = await call('PURGE', `/api/events/${event}`, { token: dave.token });
    assert.equal(extension.status, 405);
    assert.equal(extension.body.error, 'method_not_allowed');
    assert.equal(extension.headers.get('allow'), 'GET, HEAD');
    const extensionOrder = await call('PROPFIND', `/api/events/${event}/order`, { token: dave.token });
    assert.equal(extensionOrder.status, 405);
    const wrongRead = await call('POST', `/api/events/${event}`, { token: dave.token, body: {} });
    assert.equal(wrongRead.status, 405);
    assert.equal(wrongRead.headers.get('allow'), 'GET, HEAD');
    assert.equal((await fetch(`${env.EDGE_URL}/api/events/${event}`, { method: 'HEAD' })).status, 200);
    // The order is read with HEAD as with GET: the same status, no body.
    const orderGet = await call('GET', `/api/events/${event}/order`, { token: dave.token });
    const orderHead = await fetch(`${env.EDGE_URL}/api/events/${event}/order`, {
      method: 'HEAD', headers: { ...BROWSER, authorization: `Bearer ${dave.token}` },
    });
    assert.equal(orderHead.status, orderGet.status);
    assert.equal(await orderHead.text(), '');
    const wrongOrder = await call('PUT', `/api/events/${event}/order`, { token: dave.token, body: {} });
    assert.equal(wrongOrder.status, 405);
    assert.equal(wrongOrder.headers.get('allow'), 'GET, HEAD');
  });
  const unknown = await purchase(`edge-${run}-nope`, { token: dave.token, ticket: td });
  assert.equal(unknown.status, 404);
  assert.equal(unknown.body.error, 'event_not_found');
  // An id that cannot be an event's reads as "no such event".
  const malformed = await call('GET', '/api/events/Not_A_Slug');
  assert.equal(malformed.status, 404);
  assert.equal(malformed.body.error, 'event_not_found');
});

test('event info from the edge cache has the state of now: upcoming, live, ended', async () => {
  // A cache far longer than the event: once it has started, every answer comes from the
  // cached one (only stock_left may lag), with the state of the moment.
  await overrides({ EVENT_CACHE_MS: 60_000 });
  try {
    const event = await putEvent(`edge-${run}-states`, 5, 1500, 3000);
    const first = await call('GET', `/api/events/${event}`);
    assert.equal(first.body.state, 'upcoming', JSON.stringify(first.body));
    const until = async (at) => new Promise((r) => setTimeout(r, Math.max(0, at + 150 - Date.now())));
    await until(Date.parse(first.body.starts_at));
    const live = await call('GET', `/api/events/${event}`);
    assert.equal(live.body.state, 'live', JSON.stringify(live.body));
    await until(Date.parse(first.body.ends_at));
    const ended = await call('GET', `/api/events/${event}`);
    assert.equal(ended.body.state, 'ended', JSON.stringify(ended.body));
  } finally {
    await overrides(null);
  }
});

test("an upcoming event's info shows an admin's change at once; a started one's comes from the cache", async () => {
  await overrides({ EVENT_CACHE_MS: 60_000 });
  try {
    const event = await putEvent(`edge-${run}-edit`, 5, 3_600_000, 7_200_000);
    const before = await call('GET', `/api/events/${event}`);
    assert.equal(before.body.stock_total, 5, JSON.stringify(before.body));
    const update = await fetch(`${env.ORIGIN_URL}/admin/events/${event}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${env.ADMIN_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'renamed before the sale', stock: 8, starts_at: before.body.starts_at, ends_at: before.body.ends_at }),
    });
    assert.equal(update.status, 200, await update.text());
    const after = await call('GET', `/api/events/${event}`);
    assert.equal(after.body.stock_total, 8, JSON.stringify(after.body));
    assert.equal(after.body.name, 'renamed before the sale');

    // Once started, nothing but stock_left can change: the cached answer serves, the
    // origin is not asked.
    const live = await putEvent(`edge-${run}-edit-live`, 5, -1000, 3_600_000);
    assert.equal((await call('GET', `/api/events/${live}`)).body.state, 'live');
    await withoutOrigin('a started event from the cache', async () => {
      const cached = await call('GET', `/api/events/${live}`);
      assert.equal(cached.status, 200, JSON.stringify(cached.body));
      assert.equal(cached.body.stock_total, 5);
    }, { all: true });
  } finally {
    await overrides(null);
  }
});

const INFO_ROUTE = '/api/events/{event_id}';
const infoLookups = (counts, status) => counts[`GET ${INFO_ROUTE} ${status}`] ?? 0;

test('an unknown event id reaches the origin once per NOT_FOUND_CACHE_MS; a known one answers as before', async () => {
  const known = await putEvent(`edge-${run}-known`, 5, 3_600_000, 7_200_000);
  const unknown = `edge-${run}-made-up`;
  const [olga] = users(1);
  // A period far longer than the test: every repeat must be answered by the edge.
  await overrides({ NOT_FOUND_CACHE_MS: 60_000 });
  try {
    const before = await originCounts();
    for (let i = 0; i < 50; i += 1) {
      const r = await call('GET', `/api/events/${unknown}`);
      assert.equal(r.status, 404, JSON.stringify(r.body));
      assert.equal(r.body.error, 'event_not_found');
      if (i % 10 === 0) {
        // HEAD, and the gating of a purchase, read the same memory.
        assert.equal((await call('HEAD', `/api/events/${unknown}`)).status, 404);
        const p = await purchase(unknown, { token: olga.token });
        assert.equal(p.status, 404, JSON.stringify(p.body));
      }
    }
    const mid = await originCounts();
    assert.equal(infoLookups(mid, 404) - infoLookups(before, 404), 1, 'the origin was asked once');

    // A known (upcoming) event is still asked of the origin each time, answers 200.
    for (let i = 0; i < 3; i += 1) {
      const r = await call('GET', `/api/events/${known}`);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      assert.deepEqual([r.body.event_id, r.body.state, r.body.stock_total], [known, 'upcoming', 5]);
    }
    const after = await originCounts();
    assert.equal(infoLookups(after, 200) - infoLookups(mid, 200), 3);
    assert.equal(infoLookups(after, 404), infoLookups(mid, 404));
    const s = await stats();
    assert.ok(s.memory.unknown >= 1 && s.memory.unknown <= 10_000, JSON.stringify(s.memory));
  } finally {
    await overrides(null);
  }
});

test('a flood of one unknown id: one origin lookup per period; an event created meanwhile shows after it', async () => {
  const period = 1500;
  const id = `edge-${run}-later`;
  await overrides({ NOT_FOUND_CACHE_MS: period });
  try {
    const before = await originCounts();
    const started = Date.now();
    let sent = 0;
    while (Date.now() - started < 4 * period) {
      const r = await call('GET', `/api/events/${id}`);
      assert.equal(r.status, 404);
      sent += 1;
    }
    const elapsed = Date.now() - started;
    const asked = infoLookups(await originCounts(), 404) - infoLookups(before, 404);
    // Each lookup opens a period in which the edge answers alone.
    assert.ok(asked >= 2 && asked <= Math.floor(elapsed / period) + 1, `${asked} lookups for ${sent} requests in ${elapsed} ms`);
    assert.ok(sent > 10 * asked, `${sent} requests, ${asked} lookups`);

    // An admin creates it: the edge shows it once the 404 it remembers has expired.
    await putEvent(id, 5, 3_600_000, 7_200_000);
    const created = Date.now();
    await eventually('the created event', period + 3000, async () => (await call('GET', `/api/events/${id}`)).status === 200, 100);
    assert.ok(Date.now() - created <= period + 3000);
  } finally {
    await overrides(null);
  }
});
