// The edge room's draw and pacing end to end (docs/room.md): a fair start that a delay
// cannot beat and anyone can verify, two edges paced together by the room, and later
// arrivals placed by the room's shards. The room is turned on through the dev-only
// `/__edge/dev/overrides`, as in room.test.mjs, and always cleared.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { env, run, users as mint, putEvent, eventually, overrides } from './stack.mjs';
import { startSecondEdge } from './second-edge.mjs';
import { call, callAt, enter, entrant, originPurchases, pool, verifier } from './room-client.mjs';

after(() => overrides(null));

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
