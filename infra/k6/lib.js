// Shared parts of flashgate's k6 scenarios: settings, users, the shopper's requests,
// checks of every documented answer (../../shared API contract), and the metrics that the
// thresholds and the after-run invariant check (check-invariants.py) read.
//
// AS_EDGE=1: k6 plays the edge and sends the shopper's requests to ORIGIN_URL itself,
// each signed with EDGE_SECRET for ENVIRONMENT (dev) as core/src/sign.rs signs them, for
// the user the edge would have read from the token; what only the edge does (the page,
// its assets, tickets) is left out. It tests the origin at a scale `wrangler dev` cannot
// carry here.
import http from 'k6/http';
import crypto from 'k6/crypto';
import exec from 'k6/execution';
import { check, sleep, fail } from 'k6';
import { Counter, Rate, Trend } from 'k6/metrics';
import { SharedArray } from 'k6/data';

export const env = (name, fallback) => (__ENV[name] === undefined || __ENV[name] === '' ? fallback : __ENV[name]);
export const num = (name, fallback) => Number(env(name, fallback));

export const EDGE_URL = env('EDGE_URL', 'http://127.0.0.1:8787');
export const ORIGIN_URL = env('ORIGIN_URL', 'http://127.0.0.1:8080');
export const EVENT = env('EVENT', `k6-${Date.now().toString(36)}`);
export const AS_EDGE = env('AS_EDGE', '') === '1';
const EDGE_SECRET = env('EDGE_SECRET', '');
const ENVIRONMENT = env('ENVIRONMENT', 'dev');
// Where the shopper's requests go: the edge, or the origin with k6 as the edge.
const BASE = AS_EDGE ? ORIGIN_URL : EDGE_URL;
// Every request carries one browser-like User-Agent: tickets are bound to it.
export const USER_AGENT = env('USER_AGENT', 'Mozilla/5.0 (X11; Linux x86_64) flashgate-k6/1');
// What a browser sends besides: an edge that scores bots (docs/edge.md) refuses requests
// without Accept and Accept-Language, and any sent from another site.
const BROWSER_HEADERS = {
  'user-agent': USER_AGENT,
  accept: 'application/json, text/plain, */*',
  'accept-language': env('ACCEPT_LANGUAGE', 'zh-CN,zh;q=0.9,en;q=0.8'),
  'sec-fetch-site': 'same-origin',
  'sec-fetch-mode': 'cors',
};
// PUBLIC_CLIENT_IPS=N (a local edge under `wrangler dev` only): VU v sends
// `CF-Connecting-IP: 203.0.113.(v mod N + 1)`, so the edge scores the load as N public
// clients instead of allow-listed loopback. Cloudflare replaces the header.
const PUBLIC_CLIENT_IPS = num('PUBLIC_CLIENT_IPS', 0);
const MAX_TRIES = num('PURCHASE_TRIES', 8);
const ORDER_POLLS = num('ORDER_POLLS', 3);
// A request with no answer by then counts as a transport error (fg_transport_error).
const REQUEST_TIMEOUT = env('REQUEST_TIMEOUT', '20s');

// userId,authToken rows written by `flashgate users`; one copy shared by all VUs.
// Scenarios that buy refuse to start without them (needUsers); browsing needs none.
export const users = new SharedArray('users', () => {
  const file = env('USERS_CSV', '');
  if (!file) return [];
  return open(file).trim().split('\n').slice(1).map((row) => {
    const [id, token] = row.trim().split(',');
    return { id, token };
  });
});

// What the invariant check and the report read (names are part of that interface).
export const m = {
  buyers: new Counter('fg_buyers'), // distinct users that tried to buy
  resolved: new Counter('fg_buyers_resolved'), // ... and got 202, 200 or 409
  unresolved: new Counter('fg_buyers_unresolved'), // ... and gave up (429/503/403 to the end)
  queued: new Counter('fg_purchase_queued'), // 202: a new order
  already: new Counter('fg_purchase_already'), // 200: the same order again
  soldOut: new Counter('fg_purchase_sold_out'), // 409
  busy: new Counter('fg_purchase_busy'), // 503 on purchase (the origin may still have reserved)
  limited: new Counter('fg_purchase_rate_limited'), // 429
  notStarted: new Counter('fg_purchase_not_started'), // 425
  ended: new Counter('fg_purchase_ended'), // 410: never expected inside the event window
  forbidden: new Counter('fg_purchase_forbidden'), // 403: a ticket problem
  unexpected: new Counter('fg_unexpected_answer'), // a status this flow must never see
  serverErrors: new Counter('fg_5xx_not_busy'), // any 5xx other than 503 busy
  transport: new Rate('fg_transport_error'), // no HTTP answer at all (status 0)
  admitted: new Trend('fg_purchase_admitted', true), // purchases the origin decided (202/200/409)
  confirmMs: new Trend('fg_order_confirm', true), // 202 until the order reads confirmed
  unconfirmed: new Counter('fg_order_not_confirmed_in_polls'),
};
// Latency by request kind, to see which one a slow run spent its time in.
const latency = {};
['page', 'asset', 'event', 'ticket', 'purchase', 'order'].forEach((n) => {
  latency[n] = new Trend(`fg_latency_${n}`, true);
});
const timed = (r, name) => {
  if (r.status !== 0) latency[name].add(r.timings.duration);
  return r;
};

// Thresholds that encode the contract's invariants for any scenario.
export function thresholds() {
  return {
    fg_5xx_not_busy: ['count==0'],
    fg_unexpected_answer: ['count==0'],
    fg_purchase_ended: ['count==0'],
    fg_transport_error: [`rate<=${num('MAX_TRANSPORT_ERROR_RATE', 0)}`],
    checks: ['rate==1'],
    fg_purchase_admitted: [`p(99)<${num('P99_MS', 1000)}`],
  };
}

const json = (r) => {
  try {
    return r.json();
  } catch (_) {
    return null;
  }
};

// Every answer passes through here: transport errors, 5xx and body shape are counted.
function observe(r, name, documented) {
  timed(r, name);
  m.transport.add(r.status === 0);
  if (r.status === 0) return null;
  if (r.status >= 500 && r.status !== 503) m.serverErrors.add(1, { name });
  const body = json(r);
  const known = documented[r.status];
  if (!known) {
    m.unexpected.add(1, { name, status: String(r.status) });
    console.warn(`${name}: undocumented ${r.status} ${String(r.body).slice(0, 200)}`);
    return body;
  }
  check(r, { [`${name} ${r.status} has the documented body`]: () => body !== null && known(body, r) });
  return body;
}

const err = (code) => (b) => b.error === code && typeof b.message === 'string';
const errAny = (b) => typeof b.error === 'string' && typeof b.message === 'string';
const busy = (b, r) => b.status === 'busy' && r.headers['Retry-After'] !== undefined;
const limited = (b, r) => b.status === 'rate_limited' && r.headers['Retry-After'] !== undefined;
const EVENT_FIELDS = ['event_id', 'name', 'stock_total', 'stock_left', 'starts_at', 'ends_at', 'server_time', 'state'];
const STATES = ['upcoming', 'live', 'sold_out', 'ended'];

// The documented answers of each endpoint that this load can meet; anything else
// (including a documented 400/401/404/405/413/415, impossible with these inputs) counts
// as unexpected and fails the run.
const ANSWERS = {
  event: {
    200: (b) => EVENT_FIELDS.every((f) => f in b) && STATES.includes(b.state) && b.stock_left >= 0
      && b.stock_left <= b.stock_total && b.event_id === EVENT,
    503: busy,
  },
  ticket: {
    200: (b) => typeof b.ticket === 'string' && b.ticket.length > 0 && !!b.valid_from && !!b.expires_at,
    410: (b) => b.status === 'ended',
    429: limited,
    503: busy,
  },
  purchase: {
    202: (b) => b.status === 'queued' && typeof b.order_id === 'string' && b.message === '抢购成功, 订单处理中',
    200: (b) => b.status === 'already_purchased' && typeof b.order_id === 'string',
    409: (b) => b.status === 'sold_out',
    425: (b) => b.status === 'not_started' && !!b.starts_at,
    410: (b) => b.status === 'ended',
    429: limited,
    403: (b) => b.error === 'forbidden' && typeof b.reason === 'string',
    503: busy,
  },
  order: {
    200: (b) => ['queued', 'confirmed', 'failed'].includes(b.status) && typeof b.order_id === 'string',
    404: (b) => b.status === 'none',
    503: busy,
  },
};
export { err, errAny };

const params = (name, token, ticket) => {
  const headers = { ...BROWSER_HEADERS };
  if (name === 'page') headers.accept = 'text/html,application/xhtml+xml,*/*;q=0.8';
  if (PUBLIC_CLIENT_IPS > 0) {
    headers['cf-connecting-ip'] = `203.0.113.${((exec.vu.idInTest || 0) % Math.min(PUBLIC_CLIENT_IPS, 254)) + 1}`;
  }
  if (token) headers.authorization = `Bearer ${token}`;
  if (ticket) headers['x-ticket'] = ticket;
  return { headers, tags: { name }, timeout: REQUEST_TIMEOUT };
};

let nonces = 0;
// The edge's headers for one request to the origin (core/src/sign.rs, v3): the HMAC-SHA256
// of `flashgate-edge-v3\n{environment}\n{method}\n{path}\n{user}\n{timestamp}\n{nonce}\n{hex
// sha256(body)}` under EDGE_SECRET, base64url without padding. The nonce is this VU's own
// count, so no two requests of a run sign alike.
export function edgeHeaders(method, path, user, body) {
  if (!EDGE_SECRET) fail('AS_EDGE=1 needs EDGE_SECRET');
  nonces += 1;
  const ts = String(Date.now());
  const nonce = `k6v${exec.vu.idInTest}n${nonces}`;
  const canonical = ['flashgate-edge-v3', ENVIRONMENT, method, path, user, ts, nonce,
    crypto.sha256(body, 'hex')].join('\n');
  const headers = {
    'x-flashgate-signature': crypto.hmac('sha256', EDGE_SECRET, canonical, 'base64rawurl'),
    'x-flashgate-timestamp': ts,
    'x-flashgate-nonce': nonce,
    // The edge names every request it forwards (its CF-Ray, else its nonce).
    'x-request-id': nonce,
  };
  if (user) headers['x-flashgate-user'] = user;
  return headers;
}

// A shopper's request of `name` to `path`: through the edge with the user's token (and
// ticket), or, with AS_EDGE, to the origin signed as the edge signs it for that user.
const shopper = (name, method, path, body, user, ticket) => {
  const p = params(name, AS_EDGE ? null : user && user.token, AS_EDGE ? null : ticket);
  if (method === 'POST') p.headers['content-type'] = 'application/json';
  if (AS_EDGE) Object.assign(p.headers, edgeHeaders(method, path, user ? user.id : '', body || ''));
  return [`${BASE}${path}`, p];
};
const get = (name, path, user) => {
  const [url, p] = shopper(name, 'GET', path, '', user);
  return http.get(url, p);
};
const post = (name, path, user, ticket) => {
  const [url, p] = shopper(name, 'POST', path, '{}', user, ticket);
  return http.post(url, '{}', p);
};

const retryAfter = (r) => Math.min(Math.max(Number(r.headers['Retry-After']) || 1, 0.2), 5);

// The activity page with its assets (found by setup()), then the event info.
export function browse(assets) {
  loadPage(assets);
  return eventInfo();
}

// The page and its assets are the edge's: with AS_EDGE there is nothing to load.
export function loadPage(assets) {
  if (AS_EDGE) return;
  const page = timed(http.get(`${EDGE_URL}/?event=${EVENT}`, params('page')), 'page');
  m.transport.add(page.status === 0);
  if (page.status >= 500 && page.status !== 503) m.serverErrors.add(1, { name: 'page' });
  check(page, { 'page 200 is html': (r) => r.status === 200 && String(r.body).includes('<button') });
  if (assets.length) {
    const rs = http.batch(assets.map((a) => ['GET', `${EDGE_URL}${a}`, null, params('asset')]));
    rs.forEach((r) => {
      timed(r, 'asset');
      m.transport.add(r.status === 0);
      check(r, { 'asset 200': (x) => x.status === 200 });
    });
  }
}

export function eventInfo() {
  const r = get('event', `/api/events/${EVENT}`, null);
  return observe(r, 'event', ANSWERS.event);
}

export function ticket(user) {
  // The edge's own admission; the origin asks for none.
  if (AS_EDGE) return 'issued by the edge';
  for (let i = 0; i < MAX_TRIES; i += 1) {
    const r = post('ticket', `/api/events/${EVENT}/ticket`, user);
    const b = observe(r, 'ticket', ANSWERS.ticket);
    if (r.status === 200 && b) return b.ticket;
    if (r.status !== 429 && r.status !== 503 && r.status !== 0) return null;
    sleep(retryAfter(r));
  }
  return null;
}

// One buyer: ticket, purchase (retrying what the contract says to retry), then the
// order. `startsAt` (ms, server clock) lets flash buyers wait for the start.
export function buy(user, opts = {}) {
  m.buyers.add(1);
  let t = opts.ticket || ticket(user);
  let orderId = null;
  let outcome = null;
  for (let i = 0; t && i < MAX_TRIES && !outcome; i += 1) {
    const r = post('purchase', `/api/events/${EVENT}/purchase`, user, t);
    const b = observe(r, 'purchase', ANSWERS.purchase);
    switch (r.status) {
      case 202:
        m.queued.add(1);
        m.admitted.add(r.timings.duration);
        outcome = 'queued';
        orderId = b && b.order_id;
        break;
      case 200:
        m.already.add(1);
        m.admitted.add(r.timings.duration);
        outcome = 'already';
        orderId = b && b.order_id;
        break;
      case 409:
        m.soldOut.add(1);
        m.admitted.add(r.timings.duration);
        outcome = 'sold_out';
        break;
      case 425:
        m.notStarted.add(1);
        sleep(0.2 + Math.random() * 0.3);
        break;
      case 410:
        m.ended.add(1);
        outcome = 'ended';
        break;
      case 403:
        m.forbidden.add(1);
        t = ticket(user); // expired or refused: a new one, as the page would
        break;
      case 429:
        m.limited.add(1);
        sleep(retryAfter(r) + Math.random() * 0.5);
        break;
      case 503:
        m.busy.add(1);
        sleep(retryAfter(r) + Math.random() * 0.5);
        break;
      default:
        if (r.status === 0) sleep(1);
        else outcome = 'unexpected';
    }
  }
  if (outcome === 'queued' || outcome === 'already' || outcome === 'sold_out') m.resolved.add(1);
  else m.unresolved.add(1);
  if (orderId) pollOrder(user, orderId, outcome === 'queued' ? Date.now() : null);
  else if (outcome === 'sold_out') {
    const r = get('order', `/api/events/${EVENT}/order`, user);
    observe(r, 'order', ANSWERS.order);
    check(r, { 'sold-out buyer holds no order': (x) => x.status === 404 || x.status === 503 });
  }
  return outcome;
}

function pollOrder(user, orderId, queuedAt) {
  for (let i = 0; i < ORDER_POLLS; i += 1) {
    const r = get('order', `/api/events/${EVENT}/order`, user);
    const b = observe(r, 'order', ANSWERS.order);
    if (r.status === 200 && b) {
      check(b, { 'order id is the purchase answer': (x) => x.order_id === orderId });
      if (b.status === 'confirmed') {
        if (queuedAt) m.confirmMs.add(Date.now() - queuedAt);
        return;
      }
      if (b.status === 'failed') return;
    } else if (r.status === 404) {
      check(r, { 'a bought order is never missing': () => false });
      return;
    }
    sleep(1);
  }
  m.unconfirmed.add(1);
}

// Buyers take users from the front of the CSV, one each, never twice in a run, so the
// number of buyers is exact for the invariant check. `index` must be unique per buyer.
export function buyer(index) {
  if (index >= users.length) return null;
  return users[index];
}

export function needUsers(count) {
  if (users.length < count) fail(`USERS_CSV has ${users.length} users, this run needs ${count} (flashgate users)`);
}

// Creates (or updates) the run's event through the admin API, before its start.
export function putEvent(stock, startsInMs, endsInMs) {
  const token = env('ADMIN_TOKEN', '');
  if (!token) fail('ADMIN_TOKEN is not set');
  const now = Date.now();
  const body = JSON.stringify({
    name: `k6 ${EVENT}`,
    stock,
    starts_at: new Date(now + startsInMs).toISOString(),
    ends_at: new Date(now + endsInMs).toISOString(),
  });
  const r = http.put(`${ORIGIN_URL}/admin/events/${EVENT}`, body, {
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    tags: { name: 'admin' },
  });
  if (r.status !== 201 && r.status !== 200) fail(`creating event ${EVENT}: HTTP ${r.status} ${r.body}`);
  return { startsAt: now + startsInMs };
}

// The page's local assets, so browsing loads what a browser loads.
export function pageAssets() {
  if (AS_EDGE) return [];
  const r = http.get(`${EDGE_URL}/?event=${EVENT}`, params('page'));
  if (r.status !== 200) fail(`the activity page answered ${r.status}`);
  const found = [];
  const re = /(?:src|href)="(\/[^"/][^"]*)"/g;
  let hit = re.exec(String(r.body));
  while (hit) {
    found.push(hit[1]);
    hit = re.exec(String(r.body));
  }
  return found;
}

export const iteration = () => exec.scenario.iterationInTest;
export { sleep };

// One iteration of the mixed load: 9 in 10 browse, 1 in 10 buys with a user of its own.
export function mixedIteration(data, thinkS) {
  const i = iteration();
  const user = i % 10 === 9 ? buyer(Math.floor(i / 10)) : null;
  if (user) {
    eventInfo();
    buy(user);
  } else {
    browse(data.assets);
  }
  sleep(thinkS * (0.5 + Math.random()));
}
