// The flash moment: every user opens the page and takes a ticket before the start, waits
// on the server's clock, and presses at the same instant. STOCK (100) is far below the
// crowd FLASH_USERS (1000), so most answers are 409 sold_out and the invariants matter.
//
//   EDGE_URL ORIGIN_URL ADMIN_TOKEN USERS_CSV EVENT   where and who
//   START_IN_S (15)  the start, counted from setup (after every VU is initialised)
//   FLASH_MAX (2m)   hard bound of the run;  P99_MS, MAX_TRANSPORT_ERROR_RATE: see lib.js
import exec from 'k6/execution';
import { num, env, thresholds, putEvent, pageAssets, loadPage, eventInfo, ticket, buy, users, sleep, needUsers } from './lib.js';

export { handleSummary } from './summary.js';

const crowd = num('FLASH_USERS', 1000);

export const options = {
  scenarios: {
    flash: { executor: 'per-vu-iterations', vus: crowd, iterations: 1, maxDuration: env('FLASH_MAX', '2m') },
  },
  thresholds: thresholds(),
  setupTimeout: '30s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  needUsers(crowd);
  const { startsAt } = putEvent(num('STOCK', 100), num('START_IN_S', 15) * 1000, 3600 * 1000);
  return { assets: pageAssets(), startsAt };
}

export default function (data) {
  const user = users[exec.vu.idInTest - 1];
  loadPage(data.assets);
  // The page's clock: server time corrected by half the event request's round trip.
  const sent = Date.now();
  const info = eventInfo();
  const got = Date.now();
  const offset = info && info.server_time ? Date.parse(info.server_time) + (got - sent) / 2 - got : 0;
  const t = ticket(user);
  const wait = data.startsAt - (Date.now() + offset);
  if (wait > 0) sleep(wait / 1000);
  buy(user, { ticket: t });
}
