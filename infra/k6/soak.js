// Soak: the mixed load held at SOAK_VUS (200) for SOAK_DURATION (3m; FULL=1: 30m), to see
// latency, errors and memory stay flat while orders keep flowing to the database.
// Settings as in mixed.js (STOCK defaults to 5000 here).
import { env, num, thresholds, putEvent, pageAssets, mixedIteration, needUsers } from './lib.js';

export { handleSummary } from './summary.js';

export const options = {
  scenarios: {
    soak: {
      executor: 'constant-vus',
      vus: num('SOAK_VUS', 200),
      duration: env('FULL', '') === '1' ? '30m' : env('SOAK_DURATION', '3m'),
    },
  },
  thresholds: thresholds(),
  setupTimeout: '30s',
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

export function setup() {
  needUsers(1);
  putEvent(num('STOCK', 5000), -1000, 3 * 3600 * 1000 * 12);
  return { assets: pageAssets() };
}

export default function (data) {
  mixedIteration(data, num('THINK_S', 1));
}
