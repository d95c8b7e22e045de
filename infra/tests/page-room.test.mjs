// The edge room's states on the activity page, in a real browser (page-browser.mjs) against
// the stack that `./dev test` starts: registered for the draw, a drawn place, waiting in
// line with a countdown, the turn and the purchase with its receipt, the sell-out while
// waiting, a turn let pass, and a purchase whose answer was lost.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';

import { root, run, eventually, overrides } from './stack.mjs';
import {
  useBrowser, open, signIn, outcome, text, shot, busy, api, users, putEvent, pageErrors,
} from './page-browser.mjs';

useBrowser();
// Knobs of the running worker (stack.mjs's overrides), always cleared.
after(() => overrides(null));

// Another shopper, straight to the edge API (page-browser.mjs's `api`): joins the room,
// and buys once admitted.
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
  assert.deepEqual(pageErrors, [], 'no script errors on the page');
});
