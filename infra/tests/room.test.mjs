// The edge room end to end (docs/room.md): the wasm worker under `wrangler dev`, its
// Durable Object per event, in front of the real origin. The room is off by default;
// this file turns it on for the running worker through the dev-only
// `/__edge/dev/overrides` (as edge.test.mjs sets its knobs) and always clears it. The
// origin's request counter proves which purchases never reached it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

import { env, run, users as mint, putEvent, eventually, overrides } from './stack.mjs';
import {
  OTHER_UA, call, enter, entrant, originPurchases, purchase, putRoomEvent, sql, ticketFor,
} from './room-client.mjs';

after(() => overrides(null));

test('the room is off by default: its path is unknown', async () => {
  await overrides(null);
  const r = await call('GET', '/api/events/demo/room');
  assert.equal(r.status, 404);
  assert.equal(r.body.error, 'not_found');
});

test('the public state is the location\'s copy: one object read per ROOM_CACHE_MS', async () => {
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_CACHE_MS: 3_000, ROOM_FAIR_START_MS: 0 });
  const event = `room-copy-${run}`;
  await putEvent(event, 5, 60_000, 3_600_000, `room ${event}`);
  const source = (r) => r.headers.get('x-flashgate-room-source');
  // A new room: no copy anywhere yet, so the object answers and fills the location's.
  const first = await call('GET', `/api/events/${event}/room`);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.equal(source(first), 'room');
  // Every later answer within ROOM_CACHE_MS is that copy, the same state.
  const copies = await Promise.all(Array.from({ length: 5 }, () => call('GET', `/api/events/${event}/room`)));
  for (const c of copies) {
    assert.equal(c.status, 200, JSON.stringify(c.body));
    assert.equal(source(c), 'location');
    assert.equal(c.body.draw.commitment, first.body.draw.commitment);
  }
  // Once it is older than ROOM_CACHE_MS, the next answer reads the object again.
  await sleep(3_100);
  assert.equal(source(await call('GET', `/api/events/${event}/room`)), 'room');
});

test('registrations before the start are drawn; receipts gate the purchase until admitted', async () => {
  // One admission a second, so positions 2.. wait; a short schedule cache keeps it quick.
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0 });
  const event = `room-${run}`;
  const startsAt = await putEvent(event, 5, 3_000, 3_600_000, `room ${event}`);
  const [alice, bob, carol, dave] = mint(4, 'room');
  const tickets = Object.fromEntries(await Promise.all([alice, bob, carol, dave].map(async (u) => [u.id, await ticketFor(event, u)])));

  // Public, without identity; nobody registered yet, the seed committed to already.
  const empty = await call('GET', `/api/events/${event}/room`);
  assert.equal(empty.status, 200, JSON.stringify(empty.body));
  assert.equal(empty.body.queued, 0);
  assert.equal(empty.body.phase, 'registering');
  assert.equal(empty.body.sold_out, false);
  assert.deepEqual([empty.body.schedule.admit_per_second, empty.body.schedule.admitted_through, empty.body.schedule.opened_at], [1, 0, startsAt]);
  assert.match(empty.body.draw.commitment, /^[0-9a-f]{64}$/);
  assert.deepEqual([empty.body.draw.draw_at, empty.body.draw.sealed, empty.body.draw.seed], [startsAt, false, undefined]);
  const entriesEarly = await call('GET', `/api/events/${event}/room/entries`);
  assert.equal(entriesEarly.status, 425, JSON.stringify(entriesEarly.body));

  assert.equal((await call('POST', `/api/events/${event}/room`, { body: {} })).status, 401);

  // Registered for the draw: no position yet; twice, the same receipt.
  const first = await enter(event, alice);
  assert.equal(first.status, 200, JSON.stringify(first.body));
  assert.deepEqual([first.body.position, first.body.estimated_turn, first.body.draw.sealed], [null, null, false]);
  const again = await enter(event, alice);
  assert.equal(again.body.receipt, first.body.receipt);
  const others = await Promise.all([bob, carol, dave].map((u) => enter(event, u)));
  for (const o of others) assert.equal(o.status, 200, JSON.stringify(o.body));
  const registration = Object.fromEntries([[alice.id, first.body], ...[bob, carol, dave].map((u, i) => [u.id, others[i].body])]);

  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);

  // The first call from the start seals the draw; each shopper asks again for their
  // position: a permutation of 1..4, the same on every call.
  const drawn = Object.fromEntries(await Promise.all([alice, bob, carol, dave].map(async (u) => {
    const r = await enter(event, u);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.body.draw.sealed, true);
    return [u.id, r.body];
  })));
  assert.deepEqual(Object.values(drawn).map((d) => d.position).sort((a, b) => a - b), [1, 2, 3, 4]);
  assert.equal((await enter(event, alice)).body.position, drawn[alice.id].position);
  const byPosition = (p) => [alice, bob, carol, dave].find((u) => drawn[u.id].position === p);
  const [firstIn, lastIn] = [byPosition(1), byPosition(4)];

  // The record: the seed revealed matches the commitment made before anyone registered.
  const sealed = await eventually('the sealed record', 5_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.draw?.sealed && r.body;
  }, 100);
  assert.equal(sealed.draw.commitment, empty.body.draw.commitment);
  assert.equal(createHash('sha256').update(Buffer.from(sealed.draw.seed, 'hex')).digest('hex'), sealed.draw.commitment);
  assert.equal(sealed.draw.entrants, 4);
  // Registrations spread over the shards; together they hold every entrant, once.
  assert.equal(sealed.draw.shard_roots.length, sealed.draw.shards);
  const published = [];
  for (let shard = 0; shard < sealed.draw.shards; shard += 1) {
    const page = await call('GET', `/api/events/${event}/room/entries?shard=${shard}`);
    assert.equal(page.status, 200, JSON.stringify(page.body));
    assert.equal(page.body.entries.length, sealed.draw.shard_sizes[shard]);
    assert.ok(!JSON.stringify(page.body).includes(alice.id), 'user ids are never published');
    published.push(...page.body.entries.map((e) => e.user));
  }
  assert.deepEqual(published.sort(), [alice, bob, carol, dave].map((u) => entrant(event, u.id)).sort());
  const beyond = await call('GET', `/api/events/${event}/room/entries?shard=${sealed.draw.shards}`);
  assert.equal(beyond.status, 400, JSON.stringify(beyond.body));

  // Refusals reach nobody: the origin's purchase counter does not move.
  const before = await originPurchases();
  const forbidden = async (what, r, reason) => {
    assert.equal(r.status, 403, `${what}: ${JSON.stringify(r.body)}`);
    assert.deepEqual([r.body.error, r.body.reason], ['forbidden', reason], what);
  };
  const receipt = (u) => drawn[u.id].receipt;
  const tampered = receipt(alice).replace(/^./, (c) => (c === 'A' ? 'B' : 'A'));
  await forbidden('missing', await purchase(event, alice, { ticket: tickets[alice.id] }), 'receipt_missing');
  await forbidden('forged', await purchase(event, alice, { ticket: tickets[alice.id], receipt: tampered }), 'receipt_invalid');
  await forbidden("another user's", await purchase(event, bob, { ticket: tickets[bob.id], receipt: receipt(alice) }), 'receipt_wrong_user');
  const otherTicket = await ticketFor(event, alice, OTHER_UA);
  await forbidden("another client's", await purchase(event, alice, { ticket: otherTicket, receipt: receipt(alice), ua: OTHER_UA }), 'receipt_wrong_client');

  // A registration receipt holds no position: it cannot pass for position 1.
  const unexchanged = await purchase(event, firstIn, { ticket: tickets[firstIn.id], receipt: registration[firstIn.id].receipt });
  assert.equal(unexchanged.status, 429, JSON.stringify(unexchanged.body));

  // Position 4 at one a second is not admitted yet: 429 until about its turn.
  const early = await purchase(event, lastIn, { ticket: tickets[lastIn.id], receipt: receipt(lastIn) });
  assert.equal(early.status, 429, JSON.stringify(early.body));
  assert.equal(early.body.status, 'rate_limited');
  const wait = Number(early.headers.get('retry-after'));
  assert.ok(wait >= 1 && wait <= 5, `Retry-After ${wait}`);
  assert.equal(await originPurchases(), before, 'a refused purchase reached the origin');

  // Position 1 is admitted first: the schedule says so, and the purchase reaches the origin.
  const admitted = await eventually('position 1 admitted', 5_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.schedule?.admitted_through >= 1 && r.body;
  }, 100);
  assert.equal(admitted.phase, 'open');
  assert.equal(admitted.queued, 4);
  assert.ok(admitted.schedule.admitted_through < 4, JSON.stringify(admitted.schedule));
  const bought = await purchase(event, firstIn, { ticket: tickets[firstIn.id], receipt: receipt(firstIn) });
  assert.equal(bought.status, 202, JSON.stringify(bought.body));
  assert.equal(bought.body.status, 'queued');
  assert.equal(await originPurchases(), before + 1);
});

test("an event's own room settings win over the vars; the admitted position and the client's network reach the order", async () => {
  // The vars: registration only from the start, one admission a second.
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1, ROOM_PREQUEUE_MS: 0, ROOM_CACHE_MS: 200 });
  const event = `roomset-${run}`;
  const startsAt = await putRoomEvent(event, 5, 2_500, { admit_per_second: 1000, prequeue_ms: 60_000 });
  const shoppers = mint(3, 'roomset');
  const tickets = await Promise.all(shoppers.map((u) => ticketFor(event, u)));

  // Before the start: the event's prequeue lets them join (the vars' would answer 425).
  const joined = await Promise.all(shoppers.map((u) => enter(event, u)));
  for (const j of joined) assert.equal(j.status, 200, JSON.stringify(j.body));
  const status = await call('GET', `/api/events/${event}/room`);
  assert.equal(status.body.phase, 'registering');
  assert.equal(status.body.schedule.admit_per_second, 1000);

  // At its rate, all three are admitted at the start (the vars' would hold two back).
  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);
  await eventually('three admitted', 5_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.schedule?.admitted_through >= 3;
  }, 100);
  // Registered before the start: each asks again for the place the draw gave.
  const drawn = await Promise.all(shoppers.map((u) => enter(event, u)));
  const bought = await Promise.all(shoppers.map((u, i) => purchase(event, u, { ticket: tickets[i], receipt: drawn[i].body.receipt })));
  for (const b of bought) assert.equal(b.status, 202, JSON.stringify(b.body));

  // Each order's row carries the position its purchase was admitted at, and the network
  // of the client it came from (the test's, on loopback).
  const expected = shoppers.map((u, i) => `${u.id}\t${drawn[i].body.position}\t127.0.0.0/24`).sort().join('\n');
  await eventually('the rows with their positions', 30_000, () =>
    sql(`SELECT user_id, room_position, client_net FROM orders WHERE event_id = '${event}' ORDER BY user_id`) === expected);
});

test('an expired admission: its receipt is refused, and nothing reaches the origin', async () => {
  // Admissions last a second (the shortest allowed).
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 100, ROOM_CACHE_MS: 200, ROOM_SESSION_MS: 1_000 });
  const event = `expire-${run}`;
  const startsAt = await putEvent(event, 5, 1_500, 3_600_000, `expire ${event}`);
  const [slow] = mint(1, 'expire');
  const ticket = await ticketFor(event, slow);
  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);
  // After the draw: the first place behind its (empty) draw.
  const joined = await enter(event, slow);
  assert.equal(joined.status, 200, JSON.stringify(joined.body));
  assert.equal(joined.body.position, 1);
  // Admitted, then the admission passes its second: the schedule says so.
  const later = await eventually('the admission to expire', 10_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.schedule?.expired_through >= 1 && r.body;
  }, 200);
  assert.ok(later.schedule.admitted_through >= 1);
  const before = await originPurchases();
  const r = await purchase(event, slow, { ticket, receipt: joined.body.receipt });
  assert.equal(r.status, 403, JSON.stringify(r.body));
  assert.deepEqual([r.body.error, r.body.reason], ['forbidden', 'receipt_expired']);
  assert.equal(await originPurchases(), before, 'an expired receipt reached the origin');
});

test('a receipt is used once: an undecided answer gives it back; a decided one keeps it, and its reuse reaches nobody', async () => {
  // The edge keeps the event's info for 30 s, so it does not see the pause below: the
  // purchase reaches the origin, which answers 503 paused (a decision on nothing).
  await overrides(null); // the knobs of earlier tests (a one-second admission) stay otherwise
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 100, ROOM_CACHE_MS: 200, EVENT_CACHE_MS: 30_000 });
  const event = `spend-${run}`;
  const startsAt = await putEvent(event, 5, 1_500, 3_600_000, `spend ${event}`);
  const [shopper] = mint(1, 'spend');
  const ticket = await ticketFor(event, shopper);
  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);
  const joined = await enter(event, shopper);
  assert.equal(joined.status, 200, JSON.stringify(joined.body));
  await eventually('the place to be admitted', 10_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.schedule?.admitted_through >= joined.body.position;
  }, 100);
  const info = await call('GET', `/api/events/${event}`);
  assert.equal(info.status, 200, 'the edge caches the live event');
  const admin = (what) => fetch(`${env.ORIGIN_URL}/admin/events/${event}/${what}`, {
    method: 'POST', headers: { authorization: `Bearer ${env.ADMIN_TOKEN}` },
  }).then((r) => assert.equal(r.status, 200, `${what}`));
  const buy = (receipt = joined.body.receipt) => purchase(event, shopper, { ticket, receipt });

  await admin('pause');
  let before = await originPurchases();
  const paused = await buy();
  assert.equal(paused.status, 503, JSON.stringify(paused.body));
  assert.equal(await originPurchases(), before + 1, 'the paused purchase was decided by the origin');

  // Given back: the retry passes, and its 202 spends the receipt for good.
  await admin('resume');
  const bought = await buy();
  assert.equal(bought.status, 202, JSON.stringify(bought.body));

  before = await originPurchases();
  const again = await buy();
  assert.equal(again.status, 403, JSON.stringify(again.body));
  assert.deepEqual([again.body.error, again.body.reason], ['forbidden', 'receipt_used']);
  // A fresh receipt for the same place is the same user's: spent too.
  const rejoined = await enter(event, shopper);
  assert.equal(rejoined.body.position, joined.body.position);
  const fresh = await buy(rejoined.body.receipt);
  assert.deepEqual([fresh.status, fresh.body.reason], [403, 'receipt_used']);
  assert.equal(await originPurchases(), before, 'a used receipt reached the origin');

  // The shopper finds the outcome with the order lookup.
  const order = await call('GET', `/api/events/${event}/order`, { token: shopper.token });
  assert.equal(order.status, 200, JSON.stringify(order.body));
  assert.equal(order.body.order_id, bought.body.order_id);
});
