package main

import (
	"math"
	"testing"
	"time"
)

func msList(vals ...float64) []time.Duration {
	out := make([]time.Duration, len(vals))
	for i, v := range vals {
		out[i] = time.Duration(v * float64(time.Millisecond))
	}
	return out
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-6 }

func TestPercentile(t *testing.T) {
	var hundred []float64
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, float64(i))
	}
	s := msList(hundred...)
	cases := map[float64]float64{0: 1, 50: 50.5, 90: 90.1, 95: 95.05, 99: 99.01, 100: 100}
	for p, want := range cases {
		if got := Percentile(s, p); !near(got, want) {
			t.Errorf("p%v = %v, want %v", p, got, want)
		}
	}
	if got := Percentile(msList(7), 95); got != 7 {
		t.Errorf("single sample: %v", got)
	}
	if got := Percentile(msList(10, 20), 50); !near(got, 15) {
		t.Errorf("two samples p50: %v", got)
	}
	if !math.IsNaN(Percentile(nil, 95)) {
		t.Error("empty input must be NaN")
	}
	// a long tail: 95 fast, 5 slow -> p95 sits between them, p99 in the tail
	var tail []float64
	for i := 0; i < 95; i++ {
		tail = append(tail, 2)
	}
	for i := 0; i < 5; i++ {
		tail = append(tail, 1000)
	}
	ts := msList(tail...)
	if got := Percentile(ts, 95); !near(got, 2+0.05*998) {
		t.Errorf("tail p95 %v", got)
	}
	if got := Percentile(ts, 99); got != 1000 {
		t.Errorf("tail p99 %v", got)
	}
}

func TestRecorderSummary(t *testing.T) {
	r := NewRecorder()
	for i := 0; i < 90; i++ {
		r.Add(Result{Outcome: OutcomeOK, Status: 200, Latency: time.Duration(i+1) * time.Millisecond})
	}
	for i := 0; i < 4; i++ {
		r.Add(Result{Outcome: OutcomeStatus, Status: 503, RetryAfter: true, Latency: time.Millisecond})
	}
	r.Add(Result{Outcome: OutcomeStatus, Status: 503, RetryAfter: false, Latency: time.Millisecond, Err: "HTTP 503 without Retry-After"})
	r.Add(Result{Outcome: OutcomeStatus, Status: 500, Latency: time.Millisecond, Err: "HTTP 500"})
	r.Add(Result{Outcome: OutcomeBadBody, Status: 200, Latency: time.Millisecond, Err: "bad body: x"})
	r.Add(Result{Outcome: OutcomeTimeout, Err: "timeout"})
	r.Add(Result{Outcome: OutcomeTransport, Err: "connection refused"})
	r.Add(Result{Outcome: OutcomeTransport, Err: "connection refused"})
	r.Add(Result{Outcome: OutcomeAborted})

	s := r.Summarize(10*time.Second, true)
	if s.Requests != 100 || s.OK != 90 || s.Failed != 10 || s.Aborted != 1 {
		t.Fatalf("counts: %+v", s)
	}
	if s.Responses != 97 || s.Count503 != 5 || s.Count503NoRA != 1 || s.Timeouts != 1 || s.Transport != 2 || s.BadBody != 1 {
		t.Fatalf("breakdown: %+v", s)
	}
	if !near(s.RPS, 10) || !near(s.ErrorRate, 0.10) || !near(s.Rate503, 0.05) {
		t.Fatalf("rates: rps %v err %v 503 %v", s.RPS, s.ErrorRate, s.Rate503)
	}
	// non-503 errors: 500, bad body, timeout, 2 transport, and the 503 without Retry-After
	if s.NonShed != 6 || !near(s.NonShedRate, 0.06) {
		t.Fatalf("non-503 errors %d rate %v", s.NonShed, s.NonShedRate)
	}
	if s.StatusCounts[200] != 91 || s.StatusCounts[503] != 5 || s.StatusCounts[500] != 1 {
		t.Fatalf("status counts %v", s.StatusCounts)
	}
	if s.ErrorSamples["connection refused"] != 2 {
		t.Fatalf("error samples %v", s.ErrorSamples)
	}
	if s.MaxMs != 90 || s.MinMs != 1 {
		t.Fatalf("min/max %v %v", s.MinMs, s.MaxMs)
	}
	// Retry-After not required: every 503 is load shedding.
	if s2 := r.Summarize(10*time.Second, false); s2.NonShed != 5 {
		t.Fatalf("without Retry-After requirement: %d", s2.NonShed)
	}
}

func TestEmptySummary(t *testing.T) {
	s := NewRecorder().Summarize(time.Second, true)
	if s.Requests != 0 || s.ErrorRate != 0 || s.P95Ms != 0 || s.Responses != 0 {
		t.Fatalf("%+v", s)
	}
}
