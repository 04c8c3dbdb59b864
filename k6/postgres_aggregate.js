// PostgreSQL aggregate: GET /api/query/postgres/logs/aggregate?group_by=
// level|host|service (rotated per iteration), 0->20 VUs over 30 s, hold 20
// for 3m30s, down over 30 s, sleep 1 s per iteration.
//
// Scenario definition (paths, stages, sleep, thresholds): ./scenarios.json.
// Run:  k6 run [-e BASE_URL=http://127.0.0.1:8080] [-e VU_MULT=10] k6/postgres_aggregate.js
// Same scenario without k6:  tools/loadgen/loadgen --scenario postgres_aggregate
// See k6/README.md for all environment variables.

import { buildOptions, iteration, summary } from './lib.js';

const NAMES = ['postgres_aggregate'];

export const options = buildOptions(NAMES);

export default function () {
  iteration();
}

export function handleSummary(data) {
  return summary(data, NAMES);
}
