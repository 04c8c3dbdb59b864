// Shared code of the fletch k6 scripts.
//
// Every scenario is defined once, in ./scenarios.json (also read by
// tools/loadgen). The scripts only pick scenarios by name:
//
//   export const options = buildOptions(['postgres_logs']);
//   export default function () { iteration(); }
//   export function handleSummary(data) { return summary(data, ['postgres_logs']); }
//
// Environment (k6 run -e NAME=value ...):
//   BASE_URL        server base URL, loopback only (default defaults.base_url)
//   VU_MULT         multiplies every VU target / connection count (default 1);
//                   above overload.applies_when_vu_mult_above the overload
//                   error limits replace the scenario's own
//   TIME_SCALE      multiplies every stage / closed-loop duration (default 1),
//                   e.g. 0.03 for a quick try-out
//   DURATION        closed-loop duration override, k6 syntax ("30s")
//   CONNECTIONS     closed-loop connection count override
//   IGNORE_LATENCY  "1": no p95 thresholds (e.g. against a debug build)
//   SUMMARY_JSON    also write k6's summary data as JSON to this file

import http from 'k6/http';
import { check, sleep } from 'k6';
import exec from 'k6/execution';
import { Counter, Rate } from 'k6/metrics';

export const CONFIG = JSON.parse(open('./scenarios.json'));

const BY_NAME = {};
for (const def of CONFIG.scenarios) {
  BY_NAME[def.name] = def;
}

// ---------------------------------------------------------------- env

function envPositiveNumber(name, fallback) {
  const raw = __ENV[name];
  if (raw === undefined || raw === '') {
    return fallback;
  }
  const v = Number(raw);
  if (!isFinite(v) || v <= 0) {
    throw new Error(`${name}=${raw}: must be a positive number`);
  }
  return v;
}

const OCTET = '(25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)';
const LOOPBACK_V4 = new RegExp(`^127\\.${OCTET}\\.${OCTET}\\.${OCTET}$`);
const LOOPBACK_V6 = ['[::1]', '[0:0:0:0:0:0:0:1]'];

// isLoopbackHost accepts "localhost", 127.0.0.0/8 literals and ::1 — the
// same rule as tools/loadgen. Names are not resolved.
export function isLoopbackHost(host) {
  const h = host.toLowerCase();
  return h === 'localhost' || LOOPBACK_V4.test(h) || LOOPBACK_V6.indexOf(h) >= 0;
}

// checkBaseUrl refuses anything but http(s)://<loopback>[:port][/prefix]:
// these load tests may only target the machine they run on.
export function checkBaseUrl(raw) {
  const m = /^(https?):\/\/(\[[0-9A-Fa-f:.]+\]|[^/\[\]:?#@]+)(:\d{1,5})?(\/[^?#]*)?$/.exec(raw);
  if (!m) {
    throw new Error(`BASE_URL ${raw}: expected http(s)://host[:port][/path] without user info, query or fragment`);
  }
  if (!isLoopbackHost(m[2])) {
    throw new Error(`refusing BASE_URL ${raw}: host ${m[2]} is not loopback (127.0.0.0/8, ::1, localhost); load tests may only target this machine`);
  }
  if (m[3] && Number(m[3].slice(1)) > 65535) {
    throw new Error(`BASE_URL ${raw}: bad port`);
  }
  return `${m[1]}://${m[2]}${m[3] || ''}${(m[4] || '').replace(/\/+$/, '')}`;
}

export const BASE_URL = checkBaseUrl(__ENV.BASE_URL || CONFIG.defaults.base_url || 'http://127.0.0.1:8080');
export const VU_MULT = envPositiveNumber('VU_MULT', 1);
export const TIME_SCALE = envPositiveNumber('TIME_SCALE', 1);
const CONNECTIONS = __ENV.CONNECTIONS ? Math.round(envPositiveNumber('CONNECTIONS', 0)) : 0;
const DURATION_MS = __ENV.DURATION ? durationMs(__ENV.DURATION) : 0;
const IGNORE_LATENCY = __ENV.IGNORE_LATENCY === '1' || __ENV.IGNORE_LATENCY === 'true';
const REQUIRE_RETRY_AFTER = CONFIG.defaults.require_retry_after_on_503 !== false;
const REQUEST_TIMEOUT = CONFIG.defaults.request_timeout || '30s';

// ---------------------------------------------------------------- scaling

// durationMs parses k6/Go duration strings: "30s", "1m", "3m30s", "500ms", "1h".
export function durationMs(s) {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  const unit = { ms: 1, s: 1000, m: 60000, h: 3600000 };
  let total = 0;
  let consumed = 0;
  let m;
  while ((m = re.exec(s)) !== null) {
    total += Number(m[1]) * unit[m[2]];
    consumed += m[0].length;
  }
  if (consumed === 0 || consumed !== s.length) {
    throw new Error(`bad duration ${s}`);
  }
  return total;
}

function scaledDuration(s) {
  if (TIME_SCALE === 1) {
    return s;
  }
  return `${Math.max(1, Math.round(durationMs(s) * TIME_SCALE))}ms`;
}

// scaleVUs mirrors tools/loadgen: a non-zero target never rounds to zero.
export function scaleVUs(target) {
  if (!target || target <= 0) {
    return 0;
  }
  return Math.max(1, Math.round(target * VU_MULT));
}

export function effectiveThresholds(def) {
  const t = Object.assign({}, def.thresholds);
  const o = CONFIG.overload;
  if (o && VU_MULT > o.applies_when_vu_mult_above) {
    t.max_error_rate = o.max_error_rate;
    t.max_503_rate = o.max_503_rate;
  }
  return t;
}

// ---------------------------------------------------------------- options

function scenarioDef(name) {
  const def = BY_NAME[name];
  if (!def) {
    throw new Error(`scenario ${name} is not in scenarios.json (known: ${Object.keys(BY_NAME).join(', ')})`);
  }
  return def;
}

// plannedMs is the scheduled duration of a scenario (for req/s).
function plannedMs(def) {
  if (def.closed_loop) {
    return DURATION_MS || durationMs(def.duration) * TIME_SCALE;
  }
  return def.stages.reduce((acc, s) => acc + durationMs(s.duration), 0) * TIME_SCALE;
}

function executorFor(def, startMs) {
  const common = {
    gracefulStop: CONFIG.defaults.graceful_stop || '30s',
    startTime: `${Math.round(startMs)}ms`,
  };
  if (def.closed_loop) {
    // Closed loop: N VUs, each sends the next request as soon as the
    // previous answer arrived (no sleep). One VU = one keep-alive connection.
    return Object.assign(common, {
      executor: 'constant-vus',
      vus: CONNECTIONS || scaleVUs(def.connections),
      duration: `${Math.max(1, Math.round(plannedMs(def)))}ms`,
    });
  }
  return Object.assign(common, {
    executor: 'ramping-vus',
    startVUs: scaleVUs(def.start_vus || 0),
    stages: def.stages.map((s) => ({ duration: scaledDuration(s.duration), target: scaleVUs(s.target) })),
    gracefulRampDown: CONFIG.defaults.graceful_ramp_down || '30s',
  });
}

function thresholdsFor(def) {
  const t = effectiveThresholds(def);
  const tag = `{scenario:${def.name}}`;
  const th = {};
  if (!IGNORE_LATENCY) {
    th[`http_req_duration${tag}`] = [`p(95)<=${t.p95_ms}`];
  }
  // failures other than a 503 with Retry-After
  th[`fletch_errors${tag}`] = [`rate<=${t.max_error_rate}`];
  // share of 503 answers (admission control shedding load)
  th[`fletch_503${tag}`] = [`rate<=${t.max_503_rate}`];
  // something must have succeeded ("nothing finished" is a failure)
  th[`fletch_ok${tag}`] = ['count>0'];
  // The next two never fail; they only make k6 keep per-scenario
  // sub-metrics so handleSummary can print requests and the error rate.
  th[`http_reqs${tag}`] = ['count>=0'];
  th[`fletch_failed${tag}`] = ['rate<=1'];
  if (IGNORE_LATENCY) {
    th[`http_req_duration${tag}`] = ['max>=0'];
  }
  return th;
}

// buildOptions returns k6 options running the named scenarios one after
// the other (each starts when the previous one's schedule and graceful
// stop are over), like tools/loadgen does.
export function buildOptions(names) {
  const scenarios = {};
  let thresholds = {};
  let startMs = 0;
  for (const name of names) {
    const def = scenarioDef(name);
    scenarios[name] = executorFor(def, startMs);
    thresholds = Object.assign(thresholds, thresholdsFor(def));
    startMs += plannedMs(def) + durationMs(CONFIG.defaults.graceful_stop || '30s');
  }
  return {
    scenarios,
    thresholds,
    summaryTrendStats: ['avg', 'min', 'med', 'p(90)', 'p(95)', 'p(99)', 'max', 'count'],
    // bodies are needed for the JSON shape checks
    discardResponseBodies: false,
  };
}

// ---------------------------------------------------------------- metrics

// Only 200 counts as success in k6's own http_req_failed.
http.setResponseCallback(http.expectedStatuses(200));

const failedRate = new Rate('fletch_failed'); // any failure incl. 503 ("errors" column)
const errorRate = new Rate('fletch_errors'); // failures other than 503 + Retry-After
const shedRate = new Rate('fletch_503'); // share of 503 answers
const shedCount = new Counter('fletch_503_total'); // tagged retry_after=yes|no
const okCount = new Counter('fletch_ok'); // 200 with the expected body

// ---------------------------------------------------------------- checks

function queryParam(path, name) {
  const q = path.indexOf('?') >= 0 ? path.slice(path.indexOf('?') + 1) : '';
  for (const kv of q.split('&')) {
    const i = kv.indexOf('=');
    const k = decodeURIComponent(i >= 0 ? kv.slice(0, i) : kv);
    if (k === name) {
      return decodeURIComponent(i >= 0 ? kv.slice(i + 1) : '');
    }
  }
  return null;
}

// bodyShapeError returns null when a 200 body has the shape of the
// facade's JSON (DESIGN.md, HTTP facade), else a short reason. The same
// rules as CheckBody in tools/loadgen.
export function bodyShapeError(expect, path, body) {
  const kind = (expect && expect.kind) || '';
  if (kind === 'any') {
    return null;
  }
  let b;
  try {
    b = JSON.parse(body);
  } catch (e) {
    return 'not JSON';
  }
  if (kind === '') {
    return null;
  }
  if (b === null || typeof b !== 'object' || Array.isArray(b)) {
    return 'not a JSON object';
  }
  if (expect.source && b.source !== expect.source) {
    return `source is not ${expect.source}`;
  }
  if (!Array.isArray(b.data)) {
    return 'data missing or null';
  }
  if (kind === 'logs') {
    const n = b.data.length;
    if (b.returned_count !== n) {
      return `returned_count does not match ${n} rows`;
    }
    const qLimit = parseInt(queryParam(path, 'limit'), 10);
    const limit = isNaN(qLimit) ? expect.limit || 0 : qLimit;
    if (limit > 0 && n > limit) {
      return `${n} rows exceed limit ${limit}`;
    }
    for (let i = 0; i < n; i++) {
      const r = b.data[i];
      if (!r || r.id === undefined || r.id === null || typeof r.timestamp !== 'number' || typeof r.level !== 'string') {
        return `row ${i} lacks id/timestamp/level`;
      }
    }
    return null;
  }
  if (kind === 'aggregate') {
    const want = queryParam(path, 'group_by');
    if (want && b.group_by !== want) {
      return `group_by is not ${want}`;
    }
    let prev = -1;
    for (let i = 0; i < b.data.length; i++) {
      const g = b.data[i];
      if (!g || typeof g.key !== 'string' || typeof g.count !== 'number' || g.count < 0) {
        return `group ${i} lacks key/count`;
      }
      if (prev >= 0 && g.count > prev) {
        return 'groups not sorted by count desc';
      }
      prev = g.count;
    }
    return null;
  }
  return `unknown expect kind ${kind}`;
}

// ---------------------------------------------------------------- VU code

// iteration runs one request of the current scenario (paths rotate over
// the scenario's iterations), records it, then sleeps sleep_s.
export function iteration() {
  const def = scenarioDef(exec.scenario.name);
  const path = def.paths[exec.scenario.iterationInTest % def.paths.length];
  const res = http.request(def.method || 'GET', BASE_URL + path, null, {
    timeout: REQUEST_TIMEOUT,
    redirects: 0,
    tags: { endpoint: path },
  });

  const is503 = res.status === 503;
  const hasRetryAfter = is503 && !!res.headers['Retry-After'];
  const shedOk = is503 && (hasRetryAfter || !REQUIRE_RETRY_AFTER);
  const shapeErr = res.status === 200 ? bodyShapeError(def.expect, path, res.body) : null;
  const ok = res.status === 200 && shapeErr === null;

  const checks = { 'status is 200': (r) => r.status === 200 };
  if (res.status === 200) {
    checks['JSON body has the facade shape'] = () => shapeErr === null;
  }
  if (is503) {
    checks['503 carries Retry-After'] = () => hasRetryAfter;
  }
  check(res, checks);

  failedRate.add(!ok);
  errorRate.add(!ok && !shedOk);
  shedRate.add(is503);
  if (is503) {
    shedCount.add(1, { retry_after: hasRetryAfter ? 'yes' : 'no' });
  }
  if (ok) {
    okCount.add(1);
  }
  if (def.sleep_s > 0) {
    sleep(def.sleep_s);
  }
}

// ---------------------------------------------------------------- summary

function fmtMs(v) {
  if (v === undefined || v === null || isNaN(v)) {
    return '-';
  }
  if (v >= 1000) {
    return `${(v / 1000).toFixed(2)}s`;
  }
  if (v >= 100) {
    return `${v.toFixed(0)}ms`;
  }
  if (v >= 10) {
    return `${v.toFixed(1)}ms`;
  }
  return `${v.toFixed(2)}ms`;
}

function fmtPct(r) {
  return `${((r || 0) * 100).toFixed(2)}%`;
}

function pad(s, w, left) {
  s = String(s);
  while (s.length < w) {
    s = left ? `${s} ` : ` ${s}`;
  }
  return s;
}

// summary prints the same table as tools/loadgen (requests, req/s, avg,
// p50, p95, p99, max, errors, 503, result) plus every threshold verdict.
export function summary(data, names) {
  const rows = [['scenario', 'VUs', 'requests', 'req/s', 'avg', 'p50', 'p95', 'p99', 'max', 'errors', '503', 'result']];
  const lines = [];
  for (const name of names) {
    const def = scenarioDef(name);
    const tag = `{scenario:${name}}`;
    const m = (k) => (data.metrics[k + tag] || {}).values || {};
    const dur = m('http_req_duration');
    const reqs = m('http_reqs').count || 0;
    let pass = true;
    for (const key of Object.keys(data.metrics)) {
      if (key.indexOf(tag) < 0) {
        continue;
      }
      const th = data.metrics[key].thresholds || {};
      for (const expr of Object.keys(th)) {
        const ok = th[expr].ok;
        pass = pass && ok;
        lines.push(`  ${ok ? 'PASS' : 'FAIL'}  ${key}  ${expr}`);
      }
    }
    const vus = def.closed_loop
      ? CONNECTIONS || scaleVUs(def.connections)
      : Math.max(scaleVUs(def.start_vus || 0), ...def.stages.map((s) => scaleVUs(s.target)));
    const secs = plannedMs(def) / 1000;
    rows.push([
      name, String(vus), String(reqs), (secs > 0 ? reqs / secs : 0).toFixed(1),
      fmtMs(dur.avg), fmtMs(dur.med), fmtMs(dur['p(95)']), fmtMs(dur['p(99)']), fmtMs(dur.max),
      fmtPct(m('fletch_failed').rate), fmtPct(m('fletch_503').rate), pass ? 'PASS' : 'FAIL',
    ]);
  }
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  const table = rows.map((r) => r.map((c, i) => (i === 0 ? pad(c, widths[i], true) : pad(c, widths[i], false))).join('  '));
  const text = [
    `fletch k6: ${BASE_URL} (VU_MULT ${VU_MULT}, TIME_SCALE ${TIME_SCALE})`,
    '',
    ...table,
    '',
    'errors = all failed requests incl. 503; 503 = share answered 503; req/s over the planned scenario duration.',
    'thresholds:',
    ...lines,
    '',
  ].join('\n');
  const out = { stdout: text };
  if (__ENV.SUMMARY_JSON) {
    out[__ENV.SUMMARY_JSON] = JSON.stringify(data, null, 2);
  }
  return out;
}
