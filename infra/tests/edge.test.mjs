// The edge worker end to end: the wasm build under `wrangler dev` in front of the real
// origin (started by `./dev test`, or by `./dev up` with FLASHGATE_E2E_DIR pointing at
// its dir). Every row of the purchase answers table is reached through the edge, and the
// origin's own request counter (`flashgate_http_requests_total` at $ORIGIN_URL/metrics)
// proves which answers never reached it.
//
// Knobs that the running worker must change for a test (a tiny PURCHASE_RPS, a Turnstile
// secret, an unreachable origin) are set through the dev-only `/__edge/dev/overrides`
// (on in the dev environment, for allow-listed loopback clients) and always cleared.
// Non-loopback clients are simulated with a `CF-Connecting-IP` header from the
// documentation ranges: `wrangler dev` keeps a client's header, Cloudflare never does.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';

import { env, run, users as mint, putEvent as put, eventually, overrides } from './stack.mjs';
import * as turnstile from './turnstile.mjs';

const BROWSER = {
  'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-edge-e2e',
  accept: 'application/json',
  'accept-language': 'zh-CN,zh;q=0.9',
};
const PURCHASE_ROUTE = '/api/events/{event_id}/purchase';
const users = (count) => mint(count, 'edge');
async function putEvent(id, stock, startsInMs, endsInMs) {
  await put(id, stock, startsInMs, endsInMs, `edge ${id}`);
  return id;
}

// One request to the edge. `headers` are added to (or, with '' values, blank out) the
// browser-like defaults; `raw` sends the body as is.
async function call(method, path, { token, ticket, body, raw, headers = {}, ip } = {}) {
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

const purchase = (event, opts) => call('POST', `/api/events/${event}/purchase`, { body: {}, ...opts });
const ticketFor = async (event, user, opts = {}) => {
  const t = await call('POST', `/api/events/${event}/ticket`, { token: user.token, body: {}, ...opts });
  assert.equal(t.status, 200, JSON.stringify(t.body));
  return t.body.ticket;
};

after(() => overrides(null));

async function stats() {
  const r = await fetch(`${env.EDGE_URL}/__edge/stats`);
  assert.equal(r.status, 200);
  return r.json();
}

// The origin's request counter: { `${method} ${route} ${status}`: n }.
async function originCounts() {
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
const sum = (counts, pred = () => true) => Object.entries(counts).filter(([k]) => pred(k)).reduce((a, [, v]) => a + v, 0);
const purchases = (counts) => sum(counts, (k) => k.startsWith(`POST ${PURCHASE_ROUTE} `));

// Runs `fn` and checks that the origin saw no purchase (with `{ all: true }`: no request
// at all) meanwhile. The stack is private to the test run and test files run one at a time.
async function withoutOrigin(what, fn, { all = false } = {}) {
  const before = await originCounts();
  const result = await fn();
  const after = await originCounts();
  if (all) assert.equal(sum(after), sum(before), `${what}: the origin saw a request`);
  assert.equal(purchases(after), purchases(before), `${what}: the origin saw a purchase`);
  return result;
}

function assertRateLimited(r, what) {
  assert.equal(r.status, 429, `${what}: ${JSON.stringify(r.body)}`);
  assert.equal(r.body.status, 'rate_limited');
  assert.equal(r.body.message, '活动火爆, 请稍后再试');
  assert.ok(Number(r.headers.get('retry-after')) >= 1, `${what}: Retry-After`);
}

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

// The kill switch: an operator pauses the sale at the origin; the edge learns it with its
// next look at the event (EVENT_CACHE_MS) and answers every purchase 503 paused itself.
async function pauseSale(event, paused) {
  const r = await fetch(`${env.ORIGIN_URL}/admin/events/${event}/${paused ? 'pause' : 'resume'}`, {
    method: 'POST', headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
  });
  assert.equal(r.status, 200, await r.text());
}

test('a paused sale is answered 503 paused at the edge within a second, and resumes', async () => {
  const event = await putEvent(`edge-${run}-pause`, 5, -1000, 3_600_000);
  const [alice, bob] = users(2);
  const [ta, tb] = [await ticketFor(event, alice), await ticketFor(event, bob)];
  // The edge caches the started event's info now.
  assert.equal((await call('GET', `/api/events/${event}`)).body.paused, false);
  await pauseSale(event, true);
  const started = Date.now();
  const answer = await eventually('the edge answers paused', 5_000, async () => {
    const r = await withoutOrigin('paused', () => purchase(event, { token: alice.token, ticket: ta }))
      .catch(() => null);
    return r && r.status === 503 && r;
  }, 100);
  assert.equal(answer.body.status, 'paused');
  assert.equal(answer.headers.get('retry-after'), '5');
  assert.ok(Date.now() - started < 3_000, `learned the pause after ${Date.now() - started} ms`);
  // Every purchase, answered at the edge: none reaches the origin.
  await withoutOrigin('paused', async () => {
    const r = await purchase(event, { token: bob.token, ticket: tb });
    assert.equal(r.status, 503, JSON.stringify(r.body));
  });
  await pauseSale(event, false);
  const bought = await eventually('purchases again after resume', 5_000, async () => {
    const r = await purchase(event, { token: alice.token, ticket: ta });
    return r.status === 202 && r;
  }, 200);
  assert.equal(bought.body.status, 'queued');
});

test('425 before the start and 410 from the end, without asking the origin to purchase', async () => {
  const soon = await putEvent(`edge-${run}-soon`, 5, 3_600_000, 7_200_000);
  const over = await putEvent(`edge-${run}-over`, 5, -20_000, -10_000);
  const [gina] = users(1);
  // A ticket can be had before the start; it opens at the start.
  const t = await call('POST', `/api/events/${soon}/ticket`, { token: gina.token, body: {} });
  assert.equal(t.status, 200);
  assert.equal(Date.parse(t.body.valid_from), Date.parse((await call('GET', `/api/events/${soon}`)).body.starts_at));

  await withoutOrigin('425 and 410', async () => {
    for (let i = 0; i < 3; i += 1) {
      const early = await purchase(soon, { token: gina.token, ticket: t.body.ticket });
      assert.equal(early.status, 425);
      assert.equal(early.body.status, 'not_started');
      assert.equal(Date.parse(early.body.starts_at), Date.parse(t.body.valid_from));
      const late = await purchase(over, { token: gina.token });
      assert.equal(late.status, 410);
      assert.equal(late.body.status, 'ended');
    }
  });
  const lateTicket = await call('POST', `/api/events/${over}/ticket`, { token: gina.token, body: {} });
  assert.equal(lateTicket.status, 410);
});

test('bot verdicts: 403 with a reason at the edge, counted; loopback load tests pass', async () => {
  const event = await putEvent(`edge-${run}-bots`, 5, -1000, 3_600_000);
  const [hank, ivy] = users(2);
  const th = await ticketFor(event, hank);
  const before = await stats();

  const reasons = await withoutOrigin('bot 403', async () => {
    const seen = [];
    for (const [i, headers] of [
      { 'user-agent': 'curl/8.5.0' },
      { 'user-agent': 'python-requests/2.32.3' },
      { 'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36' },
      { 'user-agent': 'k6/1.1.0 (https://k6.io/)' },
      { 'user-agent': '' },
      { accept: '', 'accept-language': '' },
    ].entries()) {
      const r = await purchase(event, { token: hank.token, ticket: th, headers, ip: `198.51.100.${10 + i}` });
      assert.equal(r.status, 403, JSON.stringify(r.body));
      assert.equal(r.body.error, 'forbidden');
      seen.push(r.body.reason);
    }
    const cross = await call('POST', `/api/events/${event}/ticket`, {
      token: hank.token, body: {}, ip: '198.51.100.30',
      headers: { 'sec-fetch-site': 'cross-site', 'accept-language': '' },
    });
    assert.equal(cross.status, 403);
    seen.push(cross.body.reason);
    return seen;
  }, { all: true });
  assert.deepEqual(reasons, [
    'bot_automation_agent', 'bot_automation_agent', 'bot_automation_agent', 'bot_automation_agent',
    'bot_no_user_agent', 'bot_missing_headers', 'bot_missing_headers',
  ]);

  // A browser from a public address passes; the same one in a burst does not.
  await overrides({ BOT_IP_BURST: 3 });
  try {
    const burst = [];
    for (let i = 0; i < 6; i += 1) {
      burst.push((await call('GET', `/api/events/${event}/order`, { token: ivy.token, ip: '198.51.100.40' })).status);
    }
    assert.equal(burst[0], 404, 'no order yet');
    assert.ok(burst.includes(403), `a burst from one IP is refused: ${burst}`);
  } finally {
    await overrides(null);
  }

  // Loopback is allow-listed in dev: a load tool's User-Agent and no browser headers pass,
  // for many users at once (the per-user rules, 429s, still apply: see the limits test).
  const crowd = users(30);
  const tickets = await Promise.all(crowd.map((u) => call('POST', `/api/events/${event}/ticket`, {
    token: u.token, body: {}, headers: { 'user-agent': 'k6/1.1.0 (https://k6.io/)', accept: '', 'accept-language': '' },
  })));
  assert.deepEqual([...new Set(tickets.map((r) => r.status))], [200]);

  const now = await stats();
  const grew = (reason) => (now.bot.blocked[reason] ?? 0) - (before.bot.blocked[reason] ?? 0);
  assert.ok(grew('bot_automation_agent') >= 4);
  assert.ok(grew('bot_no_user_agent') >= 1);
  assert.ok(grew('bot_missing_headers') >= 2);
  assert.ok(grew('bot_ip_burst') >= 1);
  assert.ok(now.bot.allow_listed - before.bot.allow_listed >= 30);
});

test('429 at the edge: the isolate bucket and the rate-limit bindings, with Retry-After', async () => {
  const event = await putEvent(`edge-${run}-limits`, 100, -1000, 3_600_000);
  const crowd = users(4);
  const tickets = await Promise.all(crowd.map((u) => ticketFor(event, u)));

  // The isolate bucket: one purchase per second. Four at once: one goes on, three are
  // refused at the edge.
  await overrides({ PURCHASE_RPS: 1 });
  try {
    const before = await originCounts();
    const answers = await Promise.all(crowd.map((u, i) => purchase(event, { token: u.token, ticket: tickets[i] })));
    const after = await originCounts();
    const limited = answers.filter((r) => r.status === 429);
    assert.ok(limited.length >= 2, `bucket: ${answers.map((r) => r.status)}`);
    limited.forEach((r) => assertRateLimited(r, 'bucket'));
    assert.equal(purchases(after) - purchases(before), answers.length - limited.length, 'edge 429s never reach the origin');
  } finally {
    await overrides(null);
  }

  // The per-user binding (PURCHASE_LIMITER: 10 per 10 s), from loopback too: 21 presses
  // within 10 s.
  {
    const [kim] = users(1);
    const t = await ticketFor(event, kim);
    const beforeStats = await stats();
    const before = await originCounts();
    const answers = [];
    for (let i = 0; i < 21; i += 1) answers.push(await purchase(event, { token: kim.token, ticket: t }));
    const after = await originCounts();
    const refused = (await stats()).limiters['PURCHASE_LIMITER.refused'] - (beforeStats.limiters['PURCHASE_LIMITER.refused'] ?? 0);
    assert.ok(refused >= 1, `per-user binding: ${answers.map((r) => r.status)}`);
    const edge429 = answers.filter((r) => r.status === 429 && r.headers.get('retry-after') === '10');
    assert.equal(edge429.length, refused);
    edge429.forEach((r) => assertRateLimited(r, 'per-user binding'));
    assert.equal(purchases(after) - purchases(before), answers.length - refused, 'binding 429s never reach the origin');
    // Counted per event: the same shopper's first press on another sale goes through.
    const other = `${event}-other`;
    await putEvent(other, 5, -1000, 3_600_000);
    const elsewhere = await purchase(other, { token: kim.token, ticket: await ticketFor(other, kim) });
    assert.equal(elsewhere.status, 202, JSON.stringify(elsewhere.body));
  }

  // The per-IP binding of the ticket endpoint (TICKET_LIMITER: 100 per 10 s).
  await overrides({ BOT_IP_BURST: 100_000 });
  try {
    const [lee] = users(1);
    let limited;
    for (let i = 0; i < 201 && !limited; i += 1) {
      const r = await call('POST', `/api/events/${event}/ticket`, { token: lee.token, body: {}, ip: '198.51.100.60' });
      if (r.status === 429) limited = r;
      else assert.equal(r.status, 200, JSON.stringify(r.body));
    }
    assert.ok(limited, 'per-IP ticket limit reached');
    assertRateLimited(limited, 'per-IP binding');
    assert.equal(limited.headers.get('retry-after'), '10');
    // Loopback is allow-listed: the per-IP limit does not apply to it.
    assert.equal((await call('POST', `/api/events/${event}/ticket`, { token: lee.token, body: {} })).status, 200);
  } finally {
    await overrides(null);
  }
});

test('an unreachable origin becomes 503 busy with Retry-After, never a hang', async () => {
  const event = await putEvent(`edge-${run}-down`, 5, -1000, 3_600_000);
  const [max] = users(1);
  const t = await ticketFor(event, max);
  await overrides({ ORIGIN_URL: 'http://127.0.0.1:9', ORIGIN_TIMEOUT_MS: 2000 });
  try {
    const started = Date.now();
    for (const r of [
      await call('GET', `/api/events/edge-${run}-uncached`),
      await purchase(event, { token: max.token, ticket: t }),
      await call('GET', `/api/events/${event}/order`, { token: max.token }),
    ]) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.status, 'busy');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
    assert.ok(Date.now() - started < 10_000);
  } finally {
    await overrides(null);
  }
});

test('Turnstile: skipped when not configured; when configured a ticket needs a token', async () => {
  const event = await putEvent(`edge-${run}-human`, 5, -1000, 3_600_000);
  const [nina] = users(1);
  assert.equal((await call('POST', `/api/events/${event}/ticket`, { token: nina.token, body: {} })).status, 200);
  await overrides({ TURNSTILE_SECRET: 'dev-only-secret' });
  try {
    const r = await withoutOrigin('turnstile', () => call('POST', `/api/events/${event}/ticket`, { token: nina.token, body: {} }), { all: true });
    assert.equal(r.status, 403, JSON.stringify(r.body));
    assert.equal(r.body.reason, 'turnstile_missing');
    const noBody = await call('POST', `/api/events/${event}/ticket`, { token: nina.token });
    assert.equal(noBody.body.reason, 'turnstile_missing');
  } finally {
    await overrides(null);
  }
});

test('Turnstile: the page learns the site key; siteverify decides (a local stand-in)', async () => {
  const event = await putEvent(`edge-${run}-verify`, 5, -1000, 3_600_000);
  const [olga] = users(1);
  assert.deepEqual((await call('GET', '/api/page')).body, { turnstile_site_key: null });
  const verify = await turnstile.siteverify();
  await overrides({ TURNSTILE_SECRET: turnstile.SECRET, TURNSTILE_SITE_KEY: turnstile.SITE_KEY, TURNSTILE_VERIFY_URL: verify.url });
  try {
    const page = await call('GET', '/api/page');
    assert.equal(page.status, 200);
    assert.deepEqual(page.body, { turnstile_site_key: turnstile.SITE_KEY });
    const ticket = (token) => call('POST', `/api/events/${event}/ticket`, { token: olga.token, body: token === undefined ? {} : { turnstile_token: token } });
    const missing = await ticket();
    assert.deepEqual([missing.status, missing.body.reason], [403, 'turnstile_missing']);
    const bad = await ticket('forged-token');
    assert.deepEqual([bad.status, bad.body.reason], [403, 'turnstile_failed'], JSON.stringify(bad.body));
    const good = await ticket(`${turnstile.PASS}edge-1`);
    assert.equal(good.status, 200, JSON.stringify(good.body));
    assert.ok(good.body.ticket);
    const replayed = await ticket(`${turnstile.PASS}edge-1`);
    assert.deepEqual([replayed.status, replayed.body.reason], [403, 'turnstile_failed'], 'a token is good once');
    // The edge sent the secret and the token; a missing token never reached siteverify.
    assert.deepEqual(verify.calls.map((c) => [c.secret, c.response]), [
      [turnstile.SECRET, 'forged-token'], [turnstile.SECRET, `${turnstile.PASS}edge-1`], [turnstile.SECRET, `${turnstile.PASS}edge-1`],
    ]);
  } finally {
    await overrides(null);
    await verify.close();
  }
});

test('the edge endpoints are closed to the public', async () => {
  const outside = { 'cf-connecting-ip': '198.51.100.70' };
  assert.equal((await fetch(`${env.EDGE_URL}/__edge/stats`, { headers: outside })).status, 404);
  const put = await fetch(`${env.EDGE_URL}/__edge/dev/overrides`, {
    method: 'PUT', headers: { ...outside, 'content-type': 'application/json' }, body: '{"PURCHASE_RPS":"1"}',
  });
  assert.equal(put.status, 404);
  const secret = await fetch(`${env.EDGE_URL}/__edge/dev/overrides`, {
    method: 'PUT', headers: { 'content-type': 'application/json' }, body: '{"AUTH_SECRET":"x"}',
  });
  assert.equal(secret.status, 400);
  const s = await stats();
  for (const f of ['bot', 'purchase', 'limiters', 'tickets_issued']) assert.ok(f in s, f);
});

// A ticket as an edge holding `edgeSecret` issues it (core/src/ticket.rs), for this
// browser, valid from a second ago for a minute.
function ticketUnder(edgeSecret, event, user) {
  const fp = createHash('sha256').update(BROWSER['user-agent']).digest('hex').slice(0, 16);
  const now = Date.now();
  const payload = `${event}|${user.id}|${fp}|${now - 1000}|${now + 60_000}`;
  const sig = createHmac('sha256', `ticket:${edgeSecret}`).update(`flashgate-ticket-v1\n${payload}`).digest('base64url');
  return `${Buffer.from(payload).toString('base64url')}.${sig}`;
}

test('during a rotation, a token under the previous AUTH_SECRET and a ticket under the previous EDGE_SECRET still buy; a third key is refused at the edge', async () => {
  // The stack holds a previous AUTH_SECRET and EDGE_SECRET (infra/dev/services.sh).
  assert.ok(env.AUTH_SECRET_PREVIOUS && env.EDGE_SECRET_PREVIOUS, 'the stack has previous secrets');
  const event = await putEvent(`edge-${run}-rotation`, 5, -1000, 3_600_000);
  const [before] = mint(1, 'edgeprev', env.AUTH_SECRET_PREVIOUS);
  const ticket = await ticketFor(event, before);
  const bought = await purchase(event, { token: before.token, ticket });
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  const [bob] = users(1);
  const older = await purchase(event, { token: bob.token, ticket: ticketUnder(env.EDGE_SECRET_PREVIOUS, event, bob) });
  assert.equal(older.status, 202, JSON.stringify(older.body));
  const [mallory] = mint(1, 'edgethird', randomBytes(24).toString('hex'));
  const [carol] = users(1);
  await withoutOrigin('third keys', async () => {
    const t = await call('POST', `/api/events/${event}/ticket`, { token: mallory.token, body: {} });
    assert.equal(t.status, 401, JSON.stringify(t.body));
    assert.equal(t.body.error, 'unauthenticated');
    const p = await purchase(event, { token: carol.token, ticket: ticketUnder(randomBytes(24).toString('hex'), event, carol) });
    assert.equal(p.status, 403, JSON.stringify(p.body));
    assert.equal(p.body.reason, 'ticket_invalid');
  });
});
