// Buyers arriving at a steady pace while `./dev chaos` kills and restarts the parts of
// the stack behind the edge (infra/dev/chaos.sh). Each buyer is a distinct user: event
// info, ticket, purchase (retrying 429 and 503 after Retry-After, as the page does), then
// its order. STOCK is below the crowd, so the sale may sell out under the faults.
//
//   EDGE_URL ORIGIN_URL ADMIN_TOKEN USERS_CSV EVENT   where and who
//   CHAOS_RATE (15)  buyers per second;  CHAOS_SECONDS (60; the drill sets 90)  how long they arrive
//   STOCK (0.8 × the buyers); PURCHASE_TRIES, P99_MS: see lib.js (chaos.sh sets 12, 5000)
// Run it with infra/k6/run.sh, which writes the users and checks the invariants after.
import { num, thresholds, putEvent, eventInfo, buy, buyer, iteration, needUsers } from './lib.js';

export { handleSummary } from './summary.js';

const rate = num('CHAOS_RATE', 15);
const seconds = num('CHAOS_SECONDS', 60);
const buyers = rate * seconds;

export const options = {
  scenarios: {
    chaos: {
      executor: 'constant-arrival-rate',
      rate,
      timeUnit: '1s',
      duration: `${seconds}s`,
      preAllocatedVUs: Math.min(buyers, rate * 10),
      maxVUs: Math.min(buyers, rate * 40),
      // A buyer that began is let finish: its answer counts for the invariants.
      gracefulStop: '60s',
    },
  },
  thresholds: thresholds(),
  setupTimeout: '30s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  needUsers(buyers);
  putEvent(num('STOCK', Math.floor(buyers * 0.8)), -1000, 3600 * 1000);
  return {};
}

export default function () {
  const user = buyer(iteration());
  if (!user) return;
  eventInfo();
  buy(user);
}
