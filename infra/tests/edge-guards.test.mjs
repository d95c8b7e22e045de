// The edge worker's guards end to end, on the same stack as edge.test.mjs: the kill
// switch, the time gate, bot verdicts, rate limits, an unreachable origin, Turnstile, the
// closed edge endpoints and a key rotation, each shown to answer at the edge without a
// purchase reaching the origin where the contract says so.
//
// Knobs that the running worker must change for a test (a tiny PURCHASE_RPS, a Turnstile
// secret, an unreachable or broken origin) are set through the dev-only
// `/__edge/dev/overrides` and always cleared; non-loopback clients are simulated with a
// `CF-Connecting-IP` header from the documentation ranges.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, randomBytes } from 'node:crypto';
import { createServer } from 'node:net';

import { env, run, users as mint, eventually, overrides } from './stack.mjs';
import * as turnstile from './turnstile.mjs';
import {
  BROWSER, users, putEvent, call, purchase, ticketFor, stats, originCounts, purchases, withoutOrigin,
  assertRateLimited,
} from './edge-client.mjs';

after(() => overrides(null));

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

test('an origin answer that breaks off mid-body becomes 503 busy, not a bare 500', async () => {
  // A stand-in origin that sends a 200's head and a tenth of its body, then hangs up.
  const broken = createServer((socket) => {
    socket.once('data', () => {
      socket.end('HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{"status":');
    });
  });
  await new Promise((resolve) => { broken.listen(0, '127.0.0.1', resolve); });
  const event = await putEvent(`edge-${run}-broken`, 5, -1000, 3_600_000);
  const [ola] = users(1);
  // The window is read (and kept) while the real origin answers, so the purchase and the
  // order lookup below reach the stand-in with their own calls.
  await overrides({ EVENT_CACHE_MS: 60_000 });
  try {
    const t = await ticketFor(event, ola);
    await overrides({ ORIGIN_URL: `http://127.0.0.1:${broken.address().port}` });
    for (const r of [
      await purchase(event, { token: ola.token, ticket: t }),
      await call('GET', `/api/events/${event}/order`, { token: ola.token }),
    ]) {
      assert.equal(r.status, 503, JSON.stringify(r.body));
      assert.equal(r.body.status, 'busy');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
    }
  } finally {
    await overrides(null);
    broken.close();
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
