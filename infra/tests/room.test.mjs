// The edge room end to end (docs/room.md): the wasm worker under `wrangler dev`, its
// Durable Object per event, in front of the real origin. The room is off by default;
// this file turns it on for the running worker through the dev-only
// `/__edge/dev/overrides` (as edge.test.mjs sets its knobs) and always clears it. The
// origin's request counter proves which purchases never reached it.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { env, root, run, users as mint, putEvent, eventually, overrides } from './stack.mjs';
import { startSecondEdge } from './second-edge.mjs';

// How an entrant is named in the published entries (core::room::draw::entrant).
const entrant = (event, user) => createHash('sha256').update(`flashgate room entrant v1\n${event}\n${user}`).digest('hex');
const verifier = (args) => spawnSync(join(root, 'target/debug/flashgate'), ['room', 'verify', ...args], { encoding: 'utf8', timeout: 60_000 });

// Runs `fn` over `items`, `width` at a time; the answers in the items' order.
async function pool(items, width, fn) {
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

const UA = 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0 Safari/537.36 flashgate-room-e2e';
const OTHER_UA = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 14_0) AppleWebKit/605.1.15 Safari/605.1.15 flashgate-room-e2e';
const PURCHASE_ROUTE = '/api/events/{event_id}/purchase';

const call = (method, path, opts) => callAt(env.EDGE_URL, method, path, opts);

async function callAt(base, method, path, { token, ticket, receipt, ua = UA, body } = {}) {
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

// An event with room settings of its own; returns its start (unix ms).
async function putRoomEvent(id, stock, startsInMs, room) {
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

function sql(query) {
  return execFileSync('mariadb', ['--no-defaults', '-h127.0.0.1', `-P${env.MYSQL_PORT}`, '-uroot', '-N', '-B', 'flashgate', '-e', query]).toString().trim();
}

const enter = (event, user, opts = {}) => call('POST', `/api/events/${event}/room`, { token: user.token, body: {}, ...opts });
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

// Two-sample Kolmogorov–Smirnov: the statistic and its asymptotic p-value.
function ks(a, b) {
  const x = [...a].sort((p, q) => p - q);
  const y = [...b].sort((p, q) => p - q);
  let [i, j, d] = [0, 0, 0];
  while (i < x.length && j < y.length) {
    const v = Math.min(x[i], y[j]);
    while (i < x.length && x[i] <= v) i += 1;
    while (j < y.length && y[j] <= v) j += 1;
    d = Math.max(d, Math.abs(i / x.length - j / y.length));
  }
  const n = (x.length * y.length) / (x.length + y.length);
  const lambda = (Math.sqrt(n) + 0.12 + 0.11 / Math.sqrt(n)) * d;
  let p = 0;
  for (let k = 1; k <= 100; k += 1) p += 2 * (-1) ** (k - 1) * Math.exp(-2 * k * k * lambda * lambda);
  return { d, p: Math.min(1, Math.max(0, p)) };
}

// FLASHGATE_LONG=1 runs the full size (2,000 shoppers); the default keeps
// ./dev test short.
const SHOPPERS = process.env.FLASHGATE_LONG === '1' ? 2_000 : 300;

test('fair start: a delay in the window does not buy a better place, and anyone can verify the draw', async () => {
  // The window is long enough for every registration (about 120 a second here, fewer
  // on a loaded machine).
  const fairStartMs = Math.min(60_000, Math.max(15_000, SHOPPERS * 30));
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 1_000, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: fairStartMs });
  const event = `fair-${run}`;
  const units = Math.round(SHOPPERS / 10);
  const startsAt = await putEvent(event, units, 2_000, 3_600_000, `fair ${event}`);
  const drawAt = startsAt + fairStartMs;
  // Everyone presses at the start; each request is late by its own 0–400 ms (its link),
  // sent in that order, so arrival order follows the delays.
  const delay = {};
  const shoppers = mint(SHOPPERS, 'fair');
  for (const u of shoppers) delay[u.id] = Math.floor(Math.random() * 400);
  shoppers.sort((a, b) => delay[a.id] - delay[b.id]);
  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt, 20);
  const registered = await pool(shoppers, 16, async (u) => {
    await sleep(Math.max(0, startsAt + delay[u.id] - Date.now()));
    const r = await enter(event, u);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body;
  });
  assert.ok(Date.now() < drawAt, `registrations took ${Date.now() - startsAt} ms, past the ${fairStartMs} ms window`);
  for (const r of registered) assert.equal(r.position, null);

  await eventually('the draw to close', fairStartMs + 10_000, () => Date.now() >= drawAt + 50, 50);
  // A later arrival queues behind everyone in the draw.
  const [late] = mint(1, 'fairlate');
  const lateJoin = await enter(event, late);
  assert.equal(lateJoin.status, 200, JSON.stringify(lateJoin.body));
  assert.equal(lateJoin.body.position, SHOPPERS + 1);

  const drawn = await pool(shoppers, 16, async (u) => (await enter(event, u)).body);
  const position = Object.fromEntries(shoppers.map((u, i) => [u.id, drawn[i].position]));
  assert.deepEqual(Object.values(position).sort((a, b) => a - b), shoppers.map((_, i) => i + 1), 'nobody holds two places');

  // Winners (the first `units` positions) came as late as everyone: a KS test of their
  // delays against all entrants'. Arrival order would give p far below 1e-10 here; a
  // fair draw gives p uniform in [0, 1], so 1e-6 has power without flaking.
  const winners = shoppers.filter((u) => position[u.id] <= units).map((u) => delay[u.id]);
  const { d, p } = ks(winners, shoppers.map((u) => delay[u.id]));
  // The same test on arrival order rejects: the test has power.
  const firstComers = shoppers.slice(0, units).map((u) => delay[u.id]);
  assert.ok(ks(firstComers, shoppers.map((u) => delay[u.id])).p < 1e-6, 'arrival order passed the test');
  assert.ok(p > 1e-6, `winners' delays differ from entrants' (KS D=${d.toFixed(3)}, p=${p})`);

  // The verifier recomputes every position from what the edge publishes.
  const dir = mkdtempSync(join(tmpdir(), 'flashgate-draw-'));
  try {
    const v = verifier(['--event', event, '--edge', env.EDGE_URL, '--save', dir, '--json']);
    assert.equal(v.status, 0, v.stderr);
    const published = JSON.parse(v.stdout);
    assert.equal(published.entrants, SHOPPERS);
    const byEntrant = Object.fromEntries(published.positions.map((e) => [e.entrant, e.position]));
    for (const u of shoppers) assert.equal(byEntrant[entrant(event, u.id)], position[u.id], `${u.id}'s position`);
    // A shopper checks their own receipt.
    const mine = verifier(['--event', event, '--from', dir, '--receipt', drawn[0].receipt]);
    assert.equal(mine.status, 0, mine.stderr);
    assert.match(mine.stderr, new RegExp(`position ${drawn[0].position} of ${SHOPPERS}`));
    // Changing one entry changes the root: the record no longer checks out.
    const entries = JSON.parse(readFileSync(join(dir, 'entries.json'), 'utf8'));
    assert.equal(entries.length, published.shard_roots.length);
    const shard = entries.findIndex((list) => list.length > 0);
    entries[shard][0].registered_at += 1;
    writeFileSync(join(dir, 'entries.json'), JSON.stringify(entries));
    const tampered = verifier(['--event', event, '--from', dir]);
    assert.equal(tampered.status, 1);
    assert.match(tampered.stderr, new RegExp(`the entries of shard ${shard} do not chain to its root`));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('global pacing: two edges together forward no more than the room rate', async () => {
  // Well under what the shoppers below ask for, even when wrangler dev is slow on a
  // loaded machine: the lower bound then measures the pacing, not the load.
  const RATE = 10;
  const knobs = { ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: RATE, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0 };
  await overrides(knobs);
  const b = await startSecondEdge(`flashgate-edge-b-${run}`, Object.fromEntries(Object.entries(knobs).map(([k, v]) => [k, String(v)])));
  try {
    const event = `pace-${run}`;
    const startsAt = await putEvent(event, 100_000, 4_000, 3_600_000, `pace ${event}`);
    const shoppers = mint(120, 'pace');
    const edgeOf = (i) => (i % 2 === 0 ? env.EDGE_URL : b.url);
    const at = (i, method, path, opts) => callAt(edgeOf(i), method, path, opts);
    const tickets = await pool(shoppers, 16, async (u, i) => {
      const r = await at(i, 'POST', `/api/events/${event}/ticket`, { token: u.token, body: {} });
      assert.equal(r.status, 200, JSON.stringify(r.body));
      const joined = await at(i, 'POST', `/api/events/${event}/room`, { token: u.token, body: {} });
      assert.equal(joined.status, 200, JSON.stringify(joined.body));
      return r.body.ticket;
    });
    await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);
    const receipts = await pool(shoppers, 16, async (u, i) => (await at(i, 'POST', `/api/events/${event}/room`, { token: u.token, body: {} })).body.receipt);

    // Every shopper presses again and again on their own edge, 24 presses in flight: the
    // places admitted by the time the window opens press at once, far more than RATE a
    // second, and each receipt buys once (later presses: 403 receipt_used). The origin
    // counts what came.
    const from = await originPurchases();
    const t0 = Date.now();
    const WINDOW_MS = 10_000;
    const WIDTH = 24;
    const forwarded = [0, 0];
    await pool(Array.from({ length: WIDTH }, (_, w) => w), WIDTH, async (w) => {
      for (let i = w; Date.now() - t0 < WINDOW_MS; i = (i + WIDTH) % shoppers.length) {
        const r = await at(i, 'POST', `/api/events/${event}/purchase`, { token: shoppers[i].token, ticket: tickets[i], receipt: receipts[i], body: {} });
        if (r.status === 202) forwarded[i % 2] += 1;
        await sleep(100);
      }
    });
    const elapsed = Date.now() - t0;
    const came = (await originPurchases()) - from;
    // The rate over the window, one burst (100 ms worth, at least 5) and a grant left in
    // each of the two isolates (a twentieth of a second's worth each).
    const burst = Math.max(5, Math.ceil(RATE / 10));
    const allowed = Math.ceil(RATE * (elapsed / 1000) * 1.05) + burst + 2 * Math.max(1, Math.floor(RATE / 20));
    assert.ok(came <= allowed, `${came} purchases reached the origin in ${elapsed} ms; at most ${allowed} allowed`);
    assert.ok(came >= RATE * (elapsed / 1000) * 0.5, `only ${came} purchases reached the origin in ${elapsed} ms`);
    assert.ok(forwarded[0] > 0 && forwarded[1] > 0, `both edges forwarded: ${forwarded}`);

    // The last unit sold through one edge: shoppers waiting on the other learn it.
    const last = `last-${run}`;
    const lastStart = await putEvent(last, 1, 2_500, 3_600_000, `last ${last}`);
    const [buyer] = mint(1, 'last');
    const t = await callAt(env.EDGE_URL, 'POST', `/api/events/${last}/ticket`, { token: buyer.token, body: {} });
    await callAt(env.EDGE_URL, 'POST', `/api/events/${last}/room`, { token: buyer.token, body: {} });
    const waiting = await callAt(b.url, 'GET', `/api/events/${last}/room`);
    assert.equal(waiting.body.sold_out, false, JSON.stringify(waiting.body));
    await eventually('the last sale to start', 10_000, () => Date.now() >= lastStart + 50, 50);
    const drawnReceipt = (await callAt(env.EDGE_URL, 'POST', `/api/events/${last}/room`, { token: buyer.token, body: {} })).body.receipt;
    const bought = await eventually('the last unit bought', 10_000, async () => {
      const r = await callAt(env.EDGE_URL, 'POST', `/api/events/${last}/purchase`, { token: buyer.token, ticket: t.body.ticket, receipt: drawnReceipt, body: {} });
      return r.status === 202 && r;
    }, 300);
    assert.equal(bought.body.status, 'queued');
    await eventually('the other edge to say sold out', 5_000, async () => (await callAt(b.url, 'GET', `/api/events/${last}/room`)).body.sold_out === true, 250);
  } finally {
    b.stop();
  }
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

test('later arrivals are placed by their shards: one place each, behind the draw, the same on every join', async () => {
  await overrides(null);
  await overrides({ ROOM_ENABLED: 'true', ROOM_ADMIT_PER_SECOND: 5, ROOM_CACHE_MS: 200, ROOM_FAIR_START_MS: 0, ROOM_SHARDS: 4 });
  const event = `late-${run}`;
  const startsAt = await putEvent(event, 1_000, 1_500, 3_600_000, `late ${event}`);
  const shoppers = mint(160, 'late');
  await eventually('the sale to start', 10_000, () => Date.now() >= startsAt + 50, 50);
  // A surge after the draw: every shard takes blocks of positions for its arrivals.
  const joined = await pool(shoppers, 32, (u) => enter(event, u));
  for (const j of joined) assert.equal(j.status, 200, JSON.stringify(j.body));
  const positions = joined.map((j) => j.body.position);
  assert.equal(new Set(positions).size, shoppers.length, 'nobody shares a place');
  const entrants = joined[0].body.draw.entrants ?? 0;
  assert.ok(positions.every((p) => Number.isInteger(p) && p > entrants), `every place behind the ${entrants} drawn`);
  const room = await eventually('the room to count them', 5_000, async () => {
    const r = await call('GET', `/api/events/${event}/room`);
    return r.body.queued >= Math.max(...positions) && r.body;
  }, 200);
  // Places a block held and nobody took are at most a block per shard.
  assert.ok(room.queued - shoppers.length <= 4 * 64, `${room.queued} places handed out for ${shoppers.length}`);
  // Joining again answers the same place.
  const again = await pool(shoppers.slice(0, 20), 10, (u) => enter(event, u));
  assert.deepEqual(again.map((j) => j.body.position), positions.slice(0, 20));
});
