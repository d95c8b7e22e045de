// The activity page in a real browser (Debian's Chromium driven by playwright-core) against
// the stack that `./dev test` starts: gating on the server's clock, a purchase from queued
// to confirmed, sold out for the next shopper, a purchase whose answer was lost (the page
// finds the order when it stops retrying), and a 429 that shows the busy message and
// recovers; the edge room's states (registered, waiting with a countdown, your turn, sold
// out while waiting), a paused sale and its resume, and the Turnstile widget (a local
// stand-in of Cloudflare's script and siteverify). Screenshots of each state go to
// target/page-screenshots/.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { chromium } from 'playwright-core';

import { env, root, run, users as mint, putEvent as put, eventually, overrides } from './stack.mjs';
import * as turnstile from './turnstile.mjs';

const shots = join(root, 'target', 'page-screenshots');
const users = (count, tag) => mint(count, `pg${tag}`);
const putEvent = (id, stock, startsInMs, endsInMs) => put(id, stock, startsInMs, endsInMs, `秒杀手机 ${id}`);

let context;
let profile;
const pageErrors = [];

before(async () => {
  mkdirSync(shots, { recursive: true });
  profile = mkdtempSync(join(tmpdir(), 'flashgate-chromium-'));
  // A persistent context is how Playwright takes a --user-data-dir: a fresh temp profile.
  context = await chromium.launchPersistentContext(profile, {
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    viewport: { width: 390, height: 844 }, // a phone: the page is mobile first
    locale: 'zh-CN',
    reducedMotion: 'reduce', // screenshots without a bar caught mid-transition
  });
});

after(async () => {
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
});

// A tab of its own (sessionStorage, hence the sign-in, is per tab).
async function open(path, { skewMs = 0, fakeClock = false, prepare } = {}) {
  const page = await context.newPage();
  if (prepare) await prepare(page);
  page.on('pageerror', (e) => pageErrors.push(String(e)));
  // Timers the test can skip ahead (the clock still runs on by itself).
  if (fakeClock) await page.clock.install();
  if (skewMs) {
    // The visitor's clock is wrong; the page must count on the server's.
    await page.addInitScript((skew) => {
      const real = Date.now.bind(Date);
      Date.now = () => real() + skew;
    }, skewMs);
  }
  await page.goto(`${env.EDGE_URL}${path}`);
  return page;
}

async function signIn(page, token) {
  await page.click('#signin summary');
  await page.fill('#token', token);
  await page.click('#save');
  await page.waitForSelector('#signin:not([open])', { timeout: 5000 });
}

const outcome = (page, name, timeout = 10000) => page.waitForSelector(`main[data-outcome="${name}"]`, { timeout });
const text = (page, sel) => page.locator(sel).textContent();
const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true });

test('the page weighs under 50 KB and is served by the edge', async () => {
  let total = 0;
  for (const f of ['/', '/app.js', '/room.js', '/human.js', '/style.css']) {
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

// Answers a routed request 503 busy, as an edge that stopped waiting for the origin.
const busy = (route) => route.fulfill({
  status: 503,
  headers: { 'retry-after': '1', 'cache-control': 'no-store' },
  contentType: 'application/json; charset=utf-8',
  body: JSON.stringify({ status: 'busy' }),
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

// ---- the edge room, a paused sale, Turnstile -------------------------------------------
// Pages below ask for Chinese (?lang=zh): the test above left English chosen in this profile.
// Knobs of the running worker (stack.mjs's overrides), always cleared.
after(() => overrides(null));

// Another shopper, straight to the edge API with one browser-like client (a receipt is
// bound to its client): joins the room, and buys once admitted.
const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-page-e2e';
async function api(method, path, { token, ticket, receipt } = {}) {
  const headers = { 'user-agent': UA, accept: 'application/json', 'accept-language': 'zh-CN', 'content-type': 'application/json' };
  if (token) headers.authorization = `Bearer ${token}`;
  if (ticket) headers['x-ticket'] = ticket;
  if (receipt) headers['x-room-receipt'] = receipt;
  const r = await fetch(`${env.EDGE_URL}${path}`, { method, headers, body: method === 'POST' ? '{}' : undefined });
  return { status: r.status, body: await r.json().catch(() => ({})) };
}
async function joinRoom(event, user) {
  const r = await api('POST', `/api/events/${event}/room`, { token: user.token });
  assert.equal(r.status, 200, JSON.stringify(r.body));
  return r.body;
}
test("the page computes a turn as core::room::schedule::estimated_turn does", () => {
  const sandbox = { window: {} };
  runInNewContext(readFileSync(join(root, 'static', 'room.js'), 'utf8'), sandbox);
  const turn = sandbox.window.FlashgateRoom.estimatedTurn;
  const opened = 1_800_000_000_000;
  const s = { opened_at: opened, admit_per_second: 1000, admitted_through: 2000, as_of: opened + 5000 };
  assert.equal(turn(s, 4000), opened + 7000); // 2000 behind at 1000 a second
  assert.equal(turn(s, 1500), opened + 1499); // admitted: its ideal turn, before as_of
  assert.equal(turn({ ...s, admit_per_second: 3, admitted_through: 0, as_of: opened - 60_000 }, 2), opened + 667); // 2 from the opening at 3 a second, rounded up
});

const roomState = (page, state, timeout = 15000) => page.waitForSelector(`#room[data-state="${state}"]:not([hidden])`, { timeout });

const isRoomJoin = (event) => (r) => r.url().endsWith(`/api/events/${event}/room`) && r.request().method() === 'POST';

test('the room: registered for the draw, then a drawn place; a later arrival in line with a countdown, its turn, the purchase with its receipt', async () => {
  // One admission a second: the draw's seven entrants go first, the later arrival waits
  // (ten units: the inventory cap, 11 live admissions, never holds the eighth back).
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0 });
  const event = `page-${run}-room`;
  const startsAt = await putEvent(event, 10, 9000, 3_600_000);
  const [erin, gina, ...ahead] = users(8, 'r');
  for (const u of ahead) await joinRoom(event, u);

  // Erin registers before the start: the draw gives her a place at draw_at (the start).
  const page = await open(`/?event=${event}&lang=zh`);
  await page.waitForSelector('main[data-phase="upcoming"]', { timeout: 5000 });
  const joined = page.waitForResponse(isRoomJoin(event), { timeout: 15000 });
  await signIn(page, erin.token);
  const first = await (await joined).json();
  assert.deepEqual([first.position, first.draw.draw_at, first.draw.sealed], [null, startsAt, false]);
  await roomState(page, 'registered');
  assert.match(await text(page, '#room-position'), /^已登记，排队位置将于 \d\d:\d\d:\d\d 抽签公布$/);
  assert.match(await text(page, '#status'), /^已登记, 排队位置将于 \d\d:\d\d:\d\d 抽签公布$/);
  await shot(page, 'room-1-registered');
  // Just after draw_at the page asks again, and shows the place the draw gave.
  const drawn = await (await page.waitForResponse(isRoomJoin(event), { timeout: 20000 })).json();
  assert.ok(drawn.position >= 1 && drawn.position <= 7, JSON.stringify(drawn));
  assert.equal(drawn.draw.sealed, true);
  await page.waitForFunction((p) => {
    const room = document.getElementById('room');
    return room.dataset.state === 'turn' || document.getElementById('room-position').textContent.includes(`第 ${p} 位`);
  }, drawn.position, { timeout: 5000 });
  await page.close();

  // Gina comes after the draw: behind its seven entrants, in arrival order.
  const page2 = await open(`/?event=${event}&lang=zh`);
  const joined2 = page2.waitForResponse(isRoomJoin(event), { timeout: 15000 });
  await signIn(page2, gina.token);
  const late = await (await joined2).json();
  assert.equal(late.position, 8);
  // The page computes a turn exactly as the edge (core::room::schedule) does.
  const mine = await page2.evaluate(([sched, p]) => window.FlashgateRoom.estimatedTurn(sched, p), [late.schedule, late.position]);
  assert.equal(mine, late.estimated_turn);
  await roomState(page2, 'waiting', 10000);
  assert.equal(await page2.locator('#buy').isDisabled(), true);
  assert.match(await text(page2, '#status'), /^您已进入排队, 第 8 位$/);
  assert.match(await text(page2, '#room-position'), /^排队位置: 第 8 位 · 前面还有 \d+ 人$/);
  const eta = await text(page2, '#room-eta');
  assert.match(eta, /^预计 \d\d:\d\d:\d\d 轮到您 · 还需 00:00:\d\d$/);
  // The countdown is live: the text moves on without a reload.
  await page2.waitForFunction((before) => document.getElementById('room-eta').textContent !== before, eta, { timeout: 5000 });
  await page2.waitForSelector('#buy:text("排队中 · 第")', { timeout: 5000 });
  await shot(page2, 'room-2-waiting');
  const receipt = await page2.evaluate((k) => sessionStorage.getItem(k), `flashgate.room.${event}.${gina.id}`);
  assert.ok(JSON.parse(receipt).receipt, 'the receipt is kept in sessionStorage');
  // A reload keeps the place in line without joining again.
  const joins = [];
  page2.on('request', (r) => { if (r.url().endsWith(`/api/events/${event}/room`) && r.method() === 'POST') joins.push(r); });
  await page2.reload();
  await page2.waitForSelector('#room[data-state="waiting"]:not([hidden]), #room[data-state="turn"]:not([hidden])', { timeout: 10000 });
  assert.match(await text(page2, '#room-position'), /^排队位置: 第 8 位/);
  assert.equal(joins.length, 0, 'no second join after a reload');

  // Its turn: the button enables by itself; the purchase carries the receipt.
  await roomState(page2, 'turn', 20000);
  await page2.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  assert.equal(await text(page2, '#buy'), '轮到您了 · 立即抢购');
  assert.equal(await text(page2, '#status'), '轮到您了, 请立即抢购');
  await shot(page2, 'room-3-turn');
  const purchase = page2.waitForRequest((r) => r.url().endsWith(`/api/events/${event}/purchase`));
  await page2.click('#buy');
  assert.equal((await purchase).headers()['x-room-receipt'], JSON.parse(receipt).receipt);
  await page2.waitForSelector('main[data-outcome="queued"], main[data-outcome="confirmed"]', { timeout: 15000 });
  assert.equal(await page2.locator('#room').isHidden(), true, 'the line is behind the shopper');
  await outcome(page2, 'confirmed', 30000);
  await shot(page2, 'room-4-confirmed');
  await page2.close();
});

test('the room: a shopper waiting in line sees the sell-out at once', async () => {
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0 });
  const event = `page-${run}-roomsold`;
  const startsAt = await putEvent(event, 1, 2000, 3_600_000);
  // Ten ahead, all after the start (so in arrival order): one unit of stock lets only the
  // first in, so the page's shopper waits.
  const [frank, first, ...others] = users(11, 's');
  await eventually('the start', 15000, () => Date.now() >= startsAt + 100, 100);
  const winner = await joinRoom(event, first);
  assert.equal(winner.position, 1);
  for (const u of others) await joinRoom(event, u);
  const page = await open(`/?event=${event}&lang=zh`);
  await signIn(page, frank.token);
  await roomState(page, 'waiting', 20000);
  assert.match(await text(page, '#room-position'), /^排队位置: 第 11 位 · 前面还有 \d+ 人$/);
  await page.waitForSelector('#buy:text("排队中 · 第 11 位")', { timeout: 5000 });

  // The first in line buys the only unit.
  const ticket = await api('POST', `/api/events/${event}/ticket`, { token: first.token });
  assert.equal(ticket.status, 200, JSON.stringify(ticket.body));
  const bought = await eventually('the first purchase', 10000, async () => {
    const r = await api('POST', `/api/events/${event}/purchase`, { token: first.token, ticket: ticket.body.ticket, receipt: winner.receipt });
    return r.status === 202 && r;
  }, 600); // under the per-user purchase limit of the edge
  assert.equal(bought.body.status, 'queued');
  await page.waitForSelector('main[data-phase="sold_out"]', { timeout: 20000 });
  assert.equal(await text(page, '#status'), '很遗憾, 已售罄');
  assert.equal(await text(page, '#buy'), '已售罄');
  assert.equal(await page.locator('#buy').isDisabled(), true);
  assert.equal(await page.locator('#room').isHidden(), true);
  await shot(page, 'room-5-sold-out');
  await page.close();
});

test('the room: a shopper who lets the turn pass is told the place went to the next in line', async () => {
  // Admissions last a second (the shortest allowed).
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 100, ROOM_CACHE_MS: 200, ROOM_SESSION_MS: 1000, ROOM_FAIR_START_MS: 0 });
  const event = `page-${run}-roompass`;
  const startsAt = await putEvent(event, 5, 1500, 3_600_000);
  const [hana] = users(1, 'h');
  await eventually('the start', 15000, () => Date.now() >= startsAt + 100, 100);
  const page = await open(`/?event=${event}&lang=zh`);
  await signIn(page, hana.token);
  await roomState(page, 'turn', 15000);
  // The shopper waits past the admission's second: the room passes the place on.
  await eventually('the admission to expire', 10000, async () => {
    const r = await api('GET', `/api/events/${event}/room`);
    return r.body.schedule?.expired_through >= 1;
  }, 200);
  // The page learns it from the schedule it refreshes, without a click.
  await page.waitForSelector('#buy:text("已过号")', { timeout: 15000 });
  assert.equal(await text(page, '#status'), '您的抢购时段已过, 名额已顺延给后面的用户');
  assert.equal(await text(page, '#buy'), '已过号');
  assert.equal(await page.locator('#buy').isDisabled(), true);
  await page.close();
});

test('the room: a purchase whose answer was lost; the retry finds its receipt used, and the page shows the order', async () => {
  await overrides(null); // the knobs of earlier tests (a one-second admission) stay otherwise
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 100, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0 });
  const event = `page-${run}-roomused`;
  const startsAt = await putEvent(event, 5, 1500, 3_600_000);
  const [ivan] = users(1, 'i');
  await eventually('the start', 15000, () => Date.now() >= startsAt + 100, 100);
  const page = await open(`/?event=${event}&lang=zh`);
  await signIn(page, ivan.token);
  await roomState(page, 'turn', 15000);
  // The purchase that makes the order loses its answer (503); the page's retry goes to
  // the edge, which finds the receipt spent. (A 429 before it, the edge's copy of the
  // schedule a moment behind the page's, passes as it is.)
  const answers = [];
  await page.route((u) => u.pathname === `/api/events/${event}/purchase`, async (route) => {
    const response = await route.fetch();
    answers.push([response.status(), (await response.json()).reason]);
    const lost = response.status() === 202 && answers.filter(([s]) => s === 202).length === 1;
    return lost ? busy(route) : route.fulfill({ response });
  });
  await page.waitForSelector('#buy:not([disabled])', { timeout: 5000 });
  await page.click('#buy');
  await outcome(page, 'confirmed', 30000);
  const bought = answers.findIndex(([status]) => status === 202);
  assert.deepEqual(answers.slice(bought, bought + 2), [[202, undefined], [403, 'receipt_used']], JSON.stringify(answers));
  assert.match(await text(page, '#status'), /^订单已确认, 订单号 \S+/);
  await page.close();
});

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
