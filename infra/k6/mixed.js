// Mixed load through the edge, as the original system was proven: 90 % of iterations
// browse (activity page + event info), 10 % buy (ticket, purchase, poll the order), each
// buyer a distinct user from USERS_CSV; virtual users ramp 0 → PEAK_VUS → 0.
//
//   EDGE_URL ORIGIN_URL ADMIN_TOKEN USERS_CSV EVENT   where and who
//   STOCK (1000)  PEAK_VUS (2000)  THINK_S (1)        the sale and the crowd
//   RAMP_UP (20s) HOLD (40s) RAMP_DOWN (20s)          stage lengths; FULL=1: 1m / 5m / 1m
//   SMOKE=1: SMOKE_VUS (20) run SMOKE_ITERATIONS (200) within SMOKE_MAX (30s) instead
//   P99_MS (1000), MAX_TRANSPORT_ERROR_RATE (0)        thresholds (see lib.js)
// Run it with infra/k6/run.sh, which writes the users and checks the invariants after.
import { env, num, thresholds, putEvent, pageAssets, mixedIteration, needUsers } from './lib.js';

export { handleSummary } from './summary.js';

const full = env('FULL', '') === '1';
const smoke = env('SMOKE', '') === '1';
const peak = num('PEAK_VUS', 2000);

const scenario = smoke
  ? {
    executor: 'shared-iterations',
    vus: num('SMOKE_VUS', 20),
    iterations: num('SMOKE_ITERATIONS', 200),
    maxDuration: env('SMOKE_MAX', '30s'),
  }
  : {
    executor: 'ramping-vus',
    startVUs: 0,
    stages: [
      { duration: full ? '1m' : env('RAMP_UP', '20s'), target: peak },
      { duration: full ? '5m' : env('HOLD', '40s'), target: peak },
      { duration: full ? '1m' : env('RAMP_DOWN', '20s'), target: 0 },
    ],
    gracefulRampDown: '30s',
  };

export const options = {
  scenarios: { mixed: scenario },
  thresholds: thresholds(),
  setupTimeout: '30s',
  teardownTimeout: '10s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  needUsers(1);
  putEvent(num('STOCK', smoke ? 10 : 1000), -1000, 3 * 3600 * 1000);
  return { assets: pageAssets() };
}

export default function (data) {
  mixedIteration(data, num('THINK_S', smoke ? 0.1 : 1));
}
