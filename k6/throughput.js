// Throughput, closed loop without sleep (one VU = one keep-alive connection):
//   1. 50 connections on GET /api/query/postgres/logs?limit=100 for 1 min,
//   2. then 50 connections on GET /api/query/hdfs/logs/aggregate?group_by=
//      level|host|service (rotated) for 1 min.
// -e DURATION=30s / -e CONNECTIONS=20 override both scenarios.
//
// Scenario definition (paths, stages, sleep, thresholds): ./scenarios.json.
// Run:  k6 run [-e BASE_URL=http://127.0.0.1:8080] [-e VU_MULT=10] k6/throughput.js
// Same scenario without k6:  tools/loadgen/loadgen --scenario throughput
// See k6/README.md for all environment variables.

import { buildOptions, iteration, summary } from './lib.js';

const NAMES = ['throughput_postgres_logs', 'throughput_hdfs_aggregate'];

export const options = buildOptions(NAMES);

export default function () {
  iteration();
}

export function handleSummary(data) {
  return summary(data, NAMES);
}
