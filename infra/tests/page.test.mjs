// The activity page in a real browser (page-browser.mjs) against the stack that
// `./dev test` starts: gating on the server's clock, a purchase from queued to confirmed,
// sold out for the next shopper, a purchase whose answer was lost (the page finds the order
// when it stops retrying), a 429 that shows the busy message and recovers, a paused sale
// and its resume, and the Turnstile widget (a local stand-in of Cloudflare's script and
// siteverify). The edge room's states are in page-room.test.mjs.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { env, run, eventually, overrides } from './stack.mjs';
import * as turnstile from './turnstile.mjs';
import {
  useBrowser, open, signIn, outcome, text, shot, busy, api, users, putEvent, pageErrors,
} from './page-browser.mjs';

useBrowser();
// Knobs of the running worker (stack.mjs's overrides), always cleared.
after(() => overrides(null));

test('the page weighs under 50 KB and is served by the edge', async () => {
  let total = 0;
  for (const f of ['/', '/app.js', '/text.js', '/room.js', '/human.js', '/style.css']) {
    const r = await fetch(`${env.EDGE_URL}${f}`);
    assert.equal(r.status, 200, f);
    total += (await r.arrayBuffer()).byteLength;
  }
  assert.ok(total < 50 * 1024, `page weight ${total} bytes`);
});

test('/e/<event id> is the same page; a malformed id is a 404', async () => {
  const [home, shared, bad] = await Promise.all(['/', '/e/some-event-1', '/e/Not_A_Slug']
    .map((p) => fetch(`${env.EDGE_URL}${p}`)));
  assert.equal(shared.status, 200);
  assert.match(shared.headers.get('content-type') ?? '', /^text\/html/);
  assert.equal(await shared.text(), await home.text());
  assert.equal(bad.status, 404);
  assert.equal((await bad.json()).error, 'not_found');
});

test('a ready sign-in: #token= signs the tab in and leaves the address bar clean', async () => {
  const [dana] = users(1, 'ready');
  const page = await open(`/e/page-${run}-ready#token=${dana.token}`);
  await page.waitForFunction(() => sessionStorage.getItem('flashgate.token'), null, { timeout: 5000 });
  const [stored, hash, href] = await page.evaluate(() => [sessionStorage.getItem('flashgate.token'), location.hash, location.href]);
  assert.equal(stored, dana.token);
  assert.equal(hash, '');
  assert.ok(!href.includes('token'), href);
  assert.equal(await page.locator('#signin').getAttribute('open'), null);
  // A token that is not one is refused as the form refuses it, and nothing is stored.
  const bad = await open(`/e/page-${run}-ready#token=not-a-token`);
  await outcome(bad, 'bad_token');
  assert.equal(await bad.evaluate(() => sessionStorage.getItem('flashgate.token')), null);
  await page.close();
  await bad.close();
});

const soldEvent = `page-${run}-one`;
let alice;
let bob;

test('the button is disabled before the start and enables at the start without a reload', async (t) => {
  const startsAt = await putEvent(soldEvent, 1, 8000, 3_600_000);
  [alice, bob] = users(2, 'a');
  // The visitor's clock is an hour behind: a page on the local clock would never open.
  const page = await open(`/?event=${soldEvent}&price=2999&was=4999`, { skewMs: -3_600_000 });
  await page.waitForSelector('main[data-phase="upcoming"]', { timeout: 5000 });
  assert.equal(await page.locator('#buy').isDisabled(), true);
  assert.equal(await text(page, '#buy'), '即将开始');
  assert.match(await text(page, '#countdown'), /^距开始 00:00:0\d$/);
  assert.match(await text(page, '#price'), /2,999/);
  const marker = await page.evaluate(() => { window.sameDocument = Math.random(); return window.sameDocument; });
  const tickets = [];
  page.on('request', (r) => { if (r.url().endsWith('/ticket')) tickets.push(Date.now()); });
  await signIn(page, alice.token); // before the start: the page may fetch its ticket early
  assert.equal(await page.locator('#buy').isDisabled(), true);
  await shot(page, '1-upcoming');

  await page.waitForSelector('#buy:not([disabled])', { timeout: 15000 });
  const openedAt = Date.now();
  assert.ok(openedAt >= startsAt - 1000, `enabled ${startsAt - openedAt} ms before the start`);
  assert.ok(openedAt <= startsAt + 4000, `enabled ${openedAt - startsAt} ms after the start`);
  assert.equal(await page.evaluate(() => window.sameDocument), marker, 'no reload');
  assert.equal(await page.getAttribute('main', 'data-phase'), 'live');
  assert.equal(await text(page, '#buy'), '立即抢购');
  await shot(page, '2-live');
  t.diagnostic(`ticket fetched ${tickets.length ? `${startsAt - tickets[0]} ms before the start` : 'not before the start'}`);

  // A purchase on the same page: queued, then confirmed; one click sends one purchase.
  const purchases = [];
  page.on('request', (r) => { if (r.url().endsWith('/purchase')) purchases.push(r); });
  await page.evaluate(() => { const b = document.getElementById('buy'); b.click(); b.click(); });
  await outcome(page, 'queued');
  await shot(page, '3-queued');
  assert.equal(await text(page, '#status'), '抢购成功, 订单处理中');
  assert.equal(await page.locator('#buy').isDisabled(), true);
  await outcome(page, 'confirmed', 30000);
  assert.match(await text(page, '#status'), /^订单已确认, 订单号 \S+/);
  assert.equal(await text(page, '#buy'), '已抢到');
  assert.equal(purchases.length, 1, 'exactly one purchase request');
  await shot(page, '4-confirmed');
  await page.close();
});

test('the next shopper after the sell-out sees sold out', async () => {
  assert.ok(bob, 'the previous test created the event');
  // Arriving after the sell-out, by the event's shareable address: the page says so and
  // never offers the button.
  const page = await open(`/e/${soldEvent}`);
  await page.waitForSelector('main[data-phase="sold_out"]', { timeout: 10000 });
  assert.equal(await page.locator('#buy').isDisabled(), true);
  assert.equal(await text(page, '#buy'), '已售罄');
  assert.equal(await text(page, '#stock'), '0');

  // With a stale stock figure (the contract lets it lag), the click gets a real 409.
  await page.route((u) => u.pathname === `/api/events/${soldEvent}`, async (route) => {
    const response = await route.fetch();
    const json = { ...(await response.json()), stock_left: 1, state: 'live' };
    await route.fulfill({ response, json });
  });
  await page.reload();
  await signIn(page, bob.token);
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  await page.click('#buy');
  await outcome(page, 'sold_out');
  assert.equal(await text(page, '#status'), '很遗憾, 已售罄');
  assert.equal(await text(page, '#buy'), '已售罄');
  assert.equal(await page.locator('#buy').isDisabled(), true);
  await shot(page, '5-sold-out');
  await page.close();
});

test('a purchase whose answer was lost shows the order once the page stops retrying', async () => {
  const event = `page-${run}-lost`;
  await putEvent(event, 5, -1000, 3_600_000);
  const [dave] = users(1, 'd');
  const page = await open(`/?event=${event}`, { fakeClock: true });
  await signIn(page, dave.token);
  // The first purchase reaches the origin and makes the order, but the shopper gets 503
  // (as when the answer came after the edge stopped waiting); every retry gets 503 too.
  let sent = 0;
  await page.route((u) => u.pathname === `/api/events/${event}/purchase`, async (route) => {
    sent += 1;
    if (sent === 1) assert.equal((await route.fetch()).status(), 202);
    await busy(route);
  });
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  await page.click('#buy');
  // The page waits longer after each 503 (1 s, 2 s, 4 s, ... up to 30 s): skip the waits.
  for (let round = 0; round < 12; round += 1) {
    const seen = sent;
    await page.waitForSelector('main[data-outcome="busy"], main[data-outcome="busy_gave_up"], main[data-outcome="queued"], main[data-outcome="confirmed"]', { timeout: 10000 });
    if (await page.locator('main[data-outcome="busy"]').count() === 0) break;
    await page.clock.fastForward(35_000);
    await eventually('the next attempt', 10000, async () => sent > seen || (await page.locator('main[data-outcome="busy"]').count()) === 0, 50);
  }
  assert.ok(sent >= 2, `retried (${sent} attempts)`);
  // Giving up, the page looks once more and finds the order the lost answer stood for.
  await page.waitForSelector('main[data-outcome="queued"], main[data-outcome="confirmed"]', { timeout: 10000 });
  await page.clock.fastForward(35_000);
  await outcome(page, 'confirmed', 30000);
  assert.match(await text(page, '#status'), /^订单已确认, 订单号 \S+/);
  await page.close();
});

test('a 429 shows the busy message, then the page retries after Retry-After and recovers', async () => {
  const event = `page-${run}-busy`;
  await putEvent(event, 5, -1000, 3_600_000);
  const [carol] = users(1, 'c');
  const page = await open(`/?event=${event}`);
  // Signed out, the button invites to sign in and opens the demo sign-in.
  await page.waitForSelector('main[data-phase="live"]', { timeout: 5000 });
  assert.equal(await text(page, '#buy'), '登录后抢购');
  await page.click('#buy');
  await outcome(page, 'signin');
  assert.match(await text(page, '#status'), /^请先登录/);
  assert.equal(await page.locator('#signin').getAttribute('open'), '');
  await shot(page, '0-signed-out');
  await page.fill('#token', carol.token);
  await page.click('#save');
  await page.waitForSelector('#signin:not([open])', { timeout: 5000 });
  const sent = [];
  await page.route((u) => u.pathname === `/api/events/${event}/purchase`, async (route) => {
    sent.push(Date.now());
    if (sent.length === 1) {
      await route.fulfill({
        status: 429,
        headers: { 'retry-after': '1', 'cache-control': 'no-store' },
        contentType: 'application/json; charset=utf-8',
        body: JSON.stringify({ status: 'rate_limited', message: '活动火爆, 请稍后再试' }),
      });
    } else {
      await route.continue();
    }
  });
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  await page.click('#buy');
  await outcome(page, 'busy');
  assert.match(await text(page, '#status'), /^活动火爆, 请稍后再试/);
  assert.equal(await page.locator('#buy').isDisabled(), true, 'no clicking through the wait');
  await shot(page, '6-busy');

  await page.waitForSelector('main[data-outcome="queued"], main[data-outcome="confirmed"]', { timeout: 10000 });
  assert.equal(sent.length, 2, 'one retry');
  assert.ok(sent[1] - sent[0] >= 1000, `retried after ${sent[1] - sent[0]} ms, Retry-After was 1 s`);
  await outcome(page, 'confirmed', 30000);
  await shot(page, '7-recovered');

  // A reload keeps the sign-in (session) and shows the order; English is one click away.
  await page.reload();
  await outcome(page, 'confirmed');
  await page.click('#lang');
  assert.equal(await page.getAttribute('html', 'lang'), 'en');
  assert.equal(await text(page, '#buy'), 'Got it');
  assert.match(await text(page, '#status'), /^Order confirmed, order no\. \S+/);
  await shot(page, '8-confirmed-en');
  await page.close();
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
});

// ---- a paused sale, Turnstile ------------------------------------------------------------
// Pages below ask for Chinese (?lang=zh): the tests above left English chosen in this profile.
async function pauseSale(event, paused) {
  const r = await fetch(`${env.ORIGIN_URL}/admin/events/${event}/${paused ? 'pause' : 'resume'}`, {
    method: 'POST', headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
  });
  assert.equal(r.status, 200, await r.text());
}

test('a paused sale: the purchase gets 503 paused, the page waits and comes back by itself', async () => {
  await overrides(null);
  const event = `page-${run}-pause`;
  await putEvent(event, 5, -1000, 3_600_000);
  const [gina] = users(1, 'p');
  const page = await open(`/?event=${event}&lang=zh`);
  await signIn(page, gina.token);
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  // The page's event info is a moment old (the contract lets it lag) while the operator
  // pauses: the click gets the edge's real 503 paused.
  await page.route((u) => u.pathname === `/api/events/${event}`, async (route) => {
    const response = await route.fetch();
    await route.fulfill({ response, json: { ...(await response.json()), paused: false } });
  });
  await pauseSale(event, true);
  await eventually('the edge to know of the pause', 10000, async () => (await api('GET', `/api/events/${event}`)).body.paused === true);
  const answer = page.waitForResponse((r) => r.url().endsWith(`/api/events/${event}/purchase`));
  await page.click('#buy');
  assert.equal((await answer).status(), 503);
  await page.unroute((u) => u.pathname === `/api/events/${event}`);
  await outcome(page, 'paused');
  assert.equal(await text(page, '#status'), '活动已暂停，请稍候 · 恢复后可继续抢购');
  assert.equal(await text(page, '#buy'), '活动已暂停');
  assert.equal(await page.locator('#buy').isDisabled(), true);
  // The event info says so too at the next look.
  await page.waitForSelector('main[data-phase="paused"]', { timeout: 15000 });
  assert.equal(await text(page, '#countdown'), '活动暂停中');
  await shot(page, 'paused');

  await pauseSale(event, false);
  await outcome(page, 'resumed', 20000);
  assert.equal(await page.getAttribute('main', 'data-phase'), 'live');
  assert.equal(await text(page, '#status'), '活动已恢复, 可以继续抢购');
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  await shot(page, 'resumed');
  await page.click('#buy');
  await outcome(page, 'confirmed', 30000);
  await page.close();
});

test('Turnstile: the page renders the widget the edge names and sends its token', async () => {
  const verify = await turnstile.siteverify();
  try {
    await overrides(null); // a PUT adds to the knobs already set
    await overrides({ TURNSTILE_SECRET: turnstile.SECRET, TURNSTILE_SITE_KEY: turnstile.SITE_KEY, TURNSTILE_VERIFY_URL: verify.url });
    const event = `page-${run}-human`;
    await putEvent(event, 5, -1000, 3_600_000);
    const [hana] = users(1, 'h');
    const page = await open(`/?event=${event}&lang=zh`, {
      prepare: (p) => p.route((u) => u.href.startsWith(turnstile.SCRIPT_URL), (route) => route.fulfill({
        status: 200, contentType: 'text/javascript', body: turnstile.WIDGET_JS,
      })),
    });
    const rooms = [];
    page.on('request', (r) => { if (r.url().endsWith(`/api/events/${event}/room`)) rooms.push(r.method()); });
    await page.waitForSelector(`#human[data-sitekey="${turnstile.SITE_KEY}"]:not([hidden])`, { timeout: 10000 });
    await signIn(page, hana.token);
    await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
    await shot(page, 'turnstile');
    const ticket = page.waitForRequest((r) => r.url().endsWith(`/api/events/${event}/ticket`));
    await page.click('#buy');
    const sent = JSON.parse((await ticket).postData());
    assert.ok(sent.turnstile_token.startsWith(turnstile.PASS), JSON.stringify(sent));
    await outcome(page, 'confirmed', 30000);
    assert.deepEqual(verify.calls.map((c) => [c.secret, c.response]), [[turnstile.SECRET, sent.turnstile_token]]);
    // The room is off here: its path answered 404 and the page never tried to join.
    assert.ok(!rooms.includes('POST'), `room requests: ${rooms}`);
    await page.close();
  } finally {
    await overrides(null);
    await verify.close();
  }
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
});
