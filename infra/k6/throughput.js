// Closed-loop throughput of one GET through the edge (no think time): the floors and
// figures of `./dev bench fullstack`. TARGET_PATH ('/'), VUS (50), DURATION ('10s').
// Every answer must be 200, or the run fails.
import http from 'k6/http';
import { check } from 'k6';
import { env, num, EDGE_URL, USER_AGENT } from './lib.js';

export const options = {
  scenarios: { load: { executor: 'constant-vus', vus: num('VUS', 50), duration: env('DURATION', '10s') } },
  thresholds: { checks: ['rate==1'] },
  summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max'],
};

const url = `${EDGE_URL}${env('TARGET_PATH', '/')}`;

export default function () {
  const r = http.get(url, { headers: { 'user-agent': USER_AGENT }, timeout: '10s' });
  check(r, { 'status 200': (x) => x.status === 200 });
}
