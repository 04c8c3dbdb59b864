package main

// End-to-end tests of the load generator against a throwaway HTTP server on
// loopback that imitates the fletch JSON API (and can shed load with 503).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeFletch struct {
	every503     int64 // answer every Nth API request with 503 (0: never)
	noRetryAfter bool
	badBody      bool
	delay        time.Duration

	n        atomic.Int64
	sent503  atomic.Int64
	inflight atomic.Int64
	peak     atomic.Int64
	mu       sync.Mutex
	hits     map[string]int
}

func newFake() *fakeFletch { return &fakeFletch{hits: map[string]int{}} }

func (f *fakeFletch) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/health" {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprint(w, `{"status":"UP"}`)
		return
	}
	cur := f.inflight.Add(1)
	defer f.inflight.Add(-1)
	for {
		p := f.peak.Load()
		if cur <= p || f.peak.CompareAndSwap(p, cur) {
			break
		}
	}
	f.mu.Lock()
	f.hits[r.URL.RequestURI()]++
	f.mu.Unlock()
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-r.Context().Done():
			return
		}
	}
	n := f.n.Add(1)
	if f.every503 > 0 && n%f.every503 == 0 {
		f.sent503.Add(1)
		if !f.noRetryAfter {
			w.Header().Set("Retry-After", "1")
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `{"error":"overloaded","retry_after_s":1}`)
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/") // api query {src} logs [aggregate]
	if len(parts) < 4 || parts[0] != "api" || parts[1] != "query" || parts[3] != "logs" {
		http.NotFound(w, r)
		return
	}
	source := map[string]string{"postgres": "postgresql", "hdfs": "hdfs"}[parts[2]]
	w.Header().Set("Content-Type", "application/json")
	if f.badBody {
		fmt.Fprintf(w, `{"source":%q,"data":null}`, source)
		return
	}
	q := r.URL.Query()
	if len(parts) == 5 && parts[4] == "aggregate" {
		gb := q.Get("group_by")
		json.NewEncoder(w).Encode(map[string]any{
			"source": source, "query_time_ms": 1.5, "group_by": gb,
			"data": []map[string]any{{"key": gb + "-a", "count": 30}, {"key": gb + "-b", "count": 20}, {"key": gb + "-c", "count": 10}},
		})
		return
	}
	limit, err := strconv.Atoi(q.Get("limit"))
	if err != nil {
		limit = 100
	}
	rows := make([]map[string]any, limit)
	for i := range rows {
		rows[i] = map[string]any{
			"id": i + 1, "timestamp": 1.7e9 + float64(i), "level": "INFO", "service": "api-gateway",
			"host": "worker-1", "message": "ok", "metadata": map[string]any{"status_code": 200}, "created_at": "2024-01-01T00:00:00",
		}
	}
	json.NewEncoder(w).Encode(map[string]any{
		"source": source, "query_time_ms": 0.4, "total_count": 1000, "returned_count": limit,
		"limit": limit, "offset": 0, "data": rows,
	})
}

func (f *fakeFletch) totalHits() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, v := range f.hits {
		n += v
	}
	return n
}

const testScenarios = `{
  "defaults": {"base_url": "http://127.0.0.1:1", "request_timeout": "5s", "graceful_ramp_down": "1s", "graceful_stop": "1s", "require_retry_after_on_503": true},
  "overload": {"applies_when_vu_mult_above": 1, "max_error_rate": 0, "max_503_rate": 0.5},
  "smoke": {"ramping_duration": "300ms", "closed_loop_duration": "200ms", "graceful_stop": "500ms", "request_timeout": "2s"},
  "scenarios": [
    {"name": "ramp_logs", "group": "ramping", "method": "GET",
     "paths": ["/api/query/postgres/logs?limit=100"],
     "expect": {"kind": "logs", "source": "postgresql", "limit": 100},
     "stages": [{"duration": "400ms", "target": 4}, {"duration": "400ms", "target": 4}, {"duration": "200ms", "target": 0}],
     "sleep_s": 0.05,
     "thresholds": {"p95_ms": 2000, "max_error_rate": 0, "max_503_rate": 0}},
    {"name": "loop_agg", "group": "throughput", "method": "GET",
     "paths": ["/api/query/hdfs/logs/aggregate?group_by=level", "/api/query/hdfs/logs/aggregate?group_by=host", "/api/query/hdfs/logs/aggregate?group_by=service"],
     "expect": {"kind": "aggregate", "source": "hdfs"},
     "closed_loop": true, "connections": 6, "duration": "500ms", "sleep_s": 0,
     "thresholds": {"p95_ms": 2000, "max_error_rate": 0, "max_503_rate": 0}}
  ]
}`

func writeTestScenarios(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "scenarios.json")
	if err := os.WriteFile(p, []byte(testScenarios), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func testConfig(t *testing.T) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(testScenarios))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func runCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestEndToEndCLIPass(t *testing.T) {
	t.Parallel()
	fake := newFake()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	jsonPath := filepath.Join(t.TempDir(), "out.json")
	start := time.Now()
	code, stdout, stderr := runCLI(t, "--scenarios", writeTestScenarios(t), "--base-url", srv.URL,
		"--json", jsonPath, "--progress", "0")
	if code != exitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if el := time.Since(start); el > 4*time.Second {
		t.Fatalf("run took %s, schedule is 1.5 s", el)
	}
	for _, want := range []string{"ramp_logs", "loop_agg", "requests", "req/s", "p95", "p99", "errors", "503", "overall: PASS"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	var rep jsonReport
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	if !rep.Passed || len(rep.Scenarios) != 2 {
		t.Fatalf("json: %+v", rep)
	}
	total := 0
	for _, sc := range rep.Scenarios {
		s := sc.Summary
		if s.Requests == 0 || s.OK != s.Requests || s.Failed != 0 || s.StatusCounts[200] != s.Requests || s.P95Ms <= 0 || s.P99Ms < s.P95Ms || s.MaxMs < s.P99Ms {
			t.Errorf("%s: %+v", sc.Name, s)
		}
		total += s.Requests + s.Aborted
	}
	// every request the server saw was recorded by the load generator
	if got := fake.totalHits(); got != total {
		t.Errorf("server saw %d API requests, loadgen recorded %d", got, total)
	}
	// ramp: 4 VUs, ~50 ms per iteration, ~0.8 s at >= 1 VU -> dozens of requests
	if n := rep.Scenarios[0].Summary.Requests; n < 20 || n > 200 {
		t.Errorf("ramp_logs made %d requests", n)
	}
	// closed loop rotates group_by evenly and never exceeds its connections
	fake.mu.Lock()
	var counts []int
	for _, gb := range []string{"level", "host", "service"} {
		counts = append(counts, fake.hits["/api/query/hdfs/logs/aggregate?group_by="+gb])
	}
	fake.mu.Unlock()
	for _, c := range counts {
		if c == 0 || c-counts[0] > 1 || counts[0]-c > 1 {
			t.Errorf("uneven rotation %v", counts)
		}
	}
	if p := fake.peak.Load(); p > 6 || p < 2 {
		t.Errorf("peak concurrency %d, want 2..6", p)
	}
}

func TestEndToEnd503Shedding(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.every503 = 10
	srv := httptest.NewServer(fake)
	defer srv.Close()
	c := testConfig(t)
	s, _ := c.Select("loop_agg")
	p, err := BuildPlan(c, s[0], Options{VUMult: 1, TimeScale: 1, Duration: 400 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{Client: NewClient(p.MaxVUs()), BaseURL: srv.URL, RequireRetryAfter: true, EnforceLatency: true}
	res := r.Run(context.Background(), p)
	sum := res.Summary
	if sum.Count503 == 0 || int64(sum.Count503) != fake.sent503.Load() {
		t.Fatalf("503s: recorded %d, server sent %d", sum.Count503, fake.sent503.Load())
	}
	if sum.Count503NoRA != 0 || sum.NonShed != 0 || sum.Failed != sum.Count503 {
		t.Fatalf("503 with Retry-After must be the only failure: %+v", sum)
	}
	if d := sum.Rate503 - 0.1; d > 0.02 || d < -0.02 {
		t.Fatalf("503 rate %v, server sheds every 10th", sum.Rate503)
	}
	if res.Passed || checkByName(res.Checks, "max_503_rate").Pass {
		t.Fatalf("at 1x any 503 must fail: %+v", res.Checks)
	}
	// the same figures against the 10x profile of this file (503 <= 50 %)
	over := c.EffectiveThresholds(s[0], 10)
	if cs := Evaluate(sum, over, true); !Passed(cs) {
		t.Fatalf("10x profile should pass: %+v", cs)
	}
}

func TestEndToEnd503WithoutRetryAfterAndBadBodies(t *testing.T) {
	t.Parallel()
	c := testConfig(t)
	s, _ := c.Select("ramp_logs")
	p, err := BuildPlan(c, s[0], Options{VUMult: 1, TimeScale: 0.4})
	if err != nil {
		t.Fatal(err)
	}

	noRA := newFake()
	noRA.every503, noRA.noRetryAfter = 3, true
	srv := httptest.NewServer(noRA)
	defer srv.Close()
	r := &Runner{Client: NewClient(p.MaxVUs()), BaseURL: srv.URL, RequireRetryAfter: true, EnforceLatency: true}
	res := r.Run(context.Background(), p)
	if res.Summary.Count503 == 0 || res.Summary.Count503NoRA != res.Summary.Count503 || res.Summary.NonShed != res.Summary.Count503 {
		t.Fatalf("503 without Retry-After must count as a real error: %+v", res.Summary)
	}
	if res.Passed || checkByName(res.Checks, "max_error_rate").Pass {
		t.Fatalf("should fail max_error_rate: %+v", res.Checks)
	}

	bad := newFake()
	bad.badBody = true
	srv2 := httptest.NewServer(bad)
	defer srv2.Close()
	r2 := &Runner{Client: NewClient(p.MaxVUs()), BaseURL: srv2.URL, RequireRetryAfter: true, EnforceLatency: true}
	res2 := r2.Run(context.Background(), p)
	if res2.Summary.Requests == 0 || res2.Summary.BadBody != res2.Summary.Requests || res2.Passed {
		t.Fatalf("bad bodies: %+v", res2.Summary)
	}
	if res2.Summary.StatusCounts[200] != res2.Summary.Requests {
		t.Fatalf("bad bodies are still HTTP 200: %v", res2.Summary.StatusCounts)
	}
	// --no-body-check judges by status only
	r2.SkipBodyCheck = true
	res3 := r2.Run(context.Background(), p)
	if res3.Summary.Requests == 0 || res3.Summary.BadBody != 0 || !res3.Passed {
		t.Fatalf("--no-body-check: %+v", res3.Summary)
	}
}

func TestEndToEndTimeoutsAndHardStop(t *testing.T) {
	t.Parallel()
	slow := newFake()
	slow.delay = 3 * time.Second
	srv := httptest.NewServer(slow)
	defer srv.Close()
	c := testConfig(t)
	s, _ := c.Select("loop_agg")

	// per-request timeout shorter than the server's delay
	p, _ := BuildPlan(c, s[0], Options{VUMult: 1, TimeScale: 1, Connections: 2, Duration: 500 * time.Millisecond, RequestTimeout: 150 * time.Millisecond})
	r := &Runner{Client: NewClient(2), BaseURL: srv.URL, RequireRetryAfter: true, EnforceLatency: true}
	start := time.Now()
	res := r.Run(context.Background(), p)
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("timeout run took %s", el)
	}
	if res.Summary.Timeouts == 0 || res.Summary.Timeouts != res.Summary.Requests || res.Passed {
		t.Fatalf("timeouts: %+v", res.Summary)
	}

	// requests still running after the graceful stop are cancelled: the
	// run ends on schedule, nothing finished, and that is a FAIL
	p2, _ := BuildPlan(c, s[0], Options{VUMult: 1, TimeScale: 1, Connections: 2, Duration: 200 * time.Millisecond, RequestTimeout: 10 * time.Second})
	p2.GracefulStop = 200 * time.Millisecond
	start = time.Now()
	res2 := r.Run(context.Background(), p2)
	if el := time.Since(start); el > 1500*time.Millisecond {
		t.Fatalf("hard stop did not bound the run: %s", el)
	}
	if res2.Summary.Aborted != 2 || res2.Summary.Requests != 0 || res2.Passed {
		t.Fatalf("hard stop: %+v passed=%v", res2.Summary, res2.Passed)
	}
}

func TestCLIRefusesNonLoopbackWithoutSendingAnything(t *testing.T) {
	t.Parallel()
	path := writeTestScenarios(t)
	for _, u := range []string{"http://10.0.0.1:8080", "http://example.com", "http://0.0.0.0:8080"} {
		code, stdout, stderr := runCLI(t, "--scenarios", path, "--base-url", u, "--smoke")
		if code != exitUsage || !strings.Contains(stderr, "not loopback") || stdout != "" {
			t.Errorf("%s: exit %d stderr %q stdout %q", u, code, stderr, stdout)
		}
	}
}

func TestCLIServerDownAndListAndUsage(t *testing.T) {
	t.Parallel()
	path := writeTestScenarios(t)
	// a loopback port with nobody listening
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	code, _, stderr := runCLI(t, "--scenarios", path, "--base-url", "http://"+addr)
	if code != exitUsage || !strings.Contains(stderr, "not reachable") {
		t.Fatalf("server down: exit %d, %s", code, stderr)
	}

	fake := newFake()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	code, stdout, _ := runCLI(t, "--scenarios", path, "--base-url", srv.URL, "--list", "--vu-mult", "10")
	if code != exitOK || fake.totalHits() != 0 || !strings.Contains(stdout, "ramping VUs from 0: 400ms->40") || !strings.Contains(stdout, "60 connections") {
		t.Fatalf("--list: exit %d hits %d\n%s", code, fake.totalHits(), stdout)
	}
	for _, args := range [][]string{
		{"--scenarios", path, "--smoke", "--time-scale", "0.5", "--list"},
		{"--scenarios", path, "--scenario", "nope", "--list"},
		{"--scenarios", path, "--vu-mult", "-1", "--list"},
		{"--scenarios", path, "--bogus"},
		{"--scenarios", filepath.Join(t.TempDir(), "missing.json")},
	} {
		if code, _, _ := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

func TestCLISmokeAndThresholdExit(t *testing.T) {
	t.Parallel()
	fake := newFake()
	fake.every503 = 5
	srv := httptest.NewServer(fake)
	defer srv.Close()
	path := writeTestScenarios(t)
	// at 1x every 503 fails the run -> exit 1
	start := time.Now()
	code, stdout, stderr := runCLI(t, "--scenarios", path, "--base-url", srv.URL, "--smoke", "--progress", "0")
	if code != exitThreshold || !strings.Contains(stdout, "FAIL") || !strings.Contains(stdout, "overall: FAIL") {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("smoke of the test file took %s", el)
	}
	// at 2x the overload profile of the test file allows 50 % 503s -> exit 0
	code, stdout, stderr = runCLI(t, "--scenarios", path, "--base-url", srv.URL, "--smoke", "--vu-mult", "2", "--progress", "0")
	if code != exitOK {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
}

func TestCLIInterrupted(t *testing.T) {
	t.Parallel()
	fake := newFake()
	srv := httptest.NewServer(fake)
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	var out, errb bytes.Buffer
	start := time.Now()
	code := run(ctx, []string{"--scenarios", writeTestScenarios(t), "--base-url", srv.URL, "--progress", "0"}, &out, &errb)
	if code != exitInterrupted || !strings.Contains(out.String(), "INTERRUPTED") {
		t.Fatalf("exit %d\n%s", code, out.String())
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("interrupt took %s", el)
	}
}
