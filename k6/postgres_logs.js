// PostgreSQL newest rows: GET /api/query/postgres/logs?limit=100,
// ramping 0->10->30->50->50->30->0 VUs over 4m30s, sleep 1 s per iteration.
//
// Scenario definition (paths, stages, sleep, thresholds): ./scenarios.json.
// Run:  k6 run [-e BASE_URL=http://127.0.0.1:8080] [-e VU_MULT=10] k6/postgres_logs.js
// Same scenario without k6:  tools/loadgen/loadgen --scenario postgres_logs
// See k6/README.md for all environment variables.

import { buildOptions, iteration, summary } from './lib.js';

const NAMES = ['postgres_logs'];

export const options = buildOptions(NAMES);

export default function () {
  iteration();
}

export function handleSummary(data) {
  return summary(data, NAMES);
}
