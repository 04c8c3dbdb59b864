package main

import (
	"math"
	"sort"
	"sync"
	"time"
)

// Outcome classifies one finished request.
type Outcome int

const (
	OutcomeOK        Outcome = iota // 200 with a well-formed body
	OutcomeStatus                   // non-200 HTTP status (503 handled by Status field)
	OutcomeBadBody                  // 200 but the JSON body did not have the expected shape
	OutcomeTimeout                  // per-request timeout expired
	OutcomeTransport                // connection refused/reset, etc.
	OutcomeAborted                  // cancelled by the hard stop at the end of the scenario
)

// Result of one request.
type Result struct {
	Outcome    Outcome
	Status     int // 0 when no response
	RetryAfter bool
	Latency    time.Duration // request start to last body byte; valid when Status != 0
	Err        string
}

// Recorder accumulates results from many goroutines.
type Recorder struct {
	mu        sync.Mutex
	latencies []time.Duration
	statuses  map[int]int
	total     int // completed requests (aborted excluded)
	ok        int
	c503      int
	c503NoRA  int
	badBody   int
	timeouts  int
	transport int
	aborted   int
	errs      map[string]int
}

func NewRecorder() *Recorder {
	return &Recorder{statuses: map[int]int{}, errs: map[string]int{}}
}

const maxDistinctErrors = 8

func (r *Recorder) Add(res Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if res.Outcome == OutcomeAborted {
		r.aborted++
		return
	}
	r.total++
	if res.Status != 0 {
		r.statuses[res.Status]++
		r.latencies = append(r.latencies, res.Latency)
	}
	if res.Status == 503 {
		r.c503++
		if !res.RetryAfter {
			r.c503NoRA++
		}
	}
	switch res.Outcome {
	case OutcomeOK:
		r.ok++
	case OutcomeBadBody:
		r.badBody++
	case OutcomeTimeout:
		r.timeouts++
	case OutcomeTransport:
		r.transport++
	}
	if res.Err != "" {
		if _, seen := r.errs[res.Err]; seen || len(r.errs) < maxDistinctErrors {
			r.errs[res.Err]++
		}
	}
}

// Total returns completed requests and failures so far (for progress lines).
func (r *Recorder) Snapshot() (total, failed int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.total, r.total - r.ok
}

// Summary is the figure set reported per scenario.
type Summary struct {
	Requests     int            `json:"requests"`
	OK           int            `json:"ok"`
	Elapsed      time.Duration  `json:"-"`
	ElapsedS     float64        `json:"elapsed_s"`
	RPS          float64        `json:"req_per_s"`
	Responses    int            `json:"responses"`
	AvgMs        float64        `json:"avg_ms"`
	MinMs        float64        `json:"min_ms"`
	P50Ms        float64        `json:"p50_ms"`
	P90Ms        float64        `json:"p90_ms"`
	P95Ms        float64        `json:"p95_ms"`
	P99Ms        float64        `json:"p99_ms"`
	MaxMs        float64        `json:"max_ms"`
	Failed       int            `json:"failed"`
	ErrorRate    float64        `json:"error_rate"` // all failures incl. 503 / requests
	Count503     int            `json:"count_503"`  // all 503 responses
	Count503NoRA int            `json:"count_503_missing_retry_after"`
	Rate503      float64        `json:"rate_503"`       // 503s / requests
	NonShed      int            `json:"non_503_errors"` // failures other than 503+Retry-After
	NonShedRate  float64        `json:"non_503_error_rate"`
	BadBody      int            `json:"bad_bodies"`
	Timeouts     int            `json:"timeouts"`
	Transport    int            `json:"transport_errors"`
	Aborted      int            `json:"aborted_at_stop"`
	StatusCounts map[int]int    `json:"status_counts"`
	ErrorSamples map[string]int `json:"error_samples,omitempty"`
}

// Summarize computes the figures; requireRetryAfter decides whether a 503
// without Retry-After counts as an ordinary (non-503) error.
func (r *Recorder) Summarize(elapsed time.Duration, requireRetryAfter bool) Summary {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := Summary{
		Requests:     r.total,
		OK:           r.ok,
		Elapsed:      elapsed,
		ElapsedS:     elapsed.Seconds(),
		Responses:    len(r.latencies),
		Failed:       r.total - r.ok,
		Count503:     r.c503,
		Count503NoRA: r.c503NoRA,
		BadBody:      r.badBody,
		Timeouts:     r.timeouts,
		Transport:    r.transport,
		Aborted:      r.aborted,
		StatusCounts: map[int]int{},
	}
	for k, v := range r.statuses {
		s.StatusCounts[k] = v
	}
	if len(r.errs) > 0 {
		s.ErrorSamples = map[string]int{}
		for k, v := range r.errs {
			s.ErrorSamples[k] = v
		}
	}
	shed := r.c503
	if requireRetryAfter {
		shed = r.c503 - r.c503NoRA
	}
	s.NonShed = s.Failed - shed
	if elapsed > 0 {
		s.RPS = float64(r.total) / elapsed.Seconds()
	}
	if r.total > 0 {
		s.ErrorRate = float64(s.Failed) / float64(r.total)
		s.Rate503 = float64(r.c503) / float64(r.total)
		s.NonShedRate = float64(s.NonShed) / float64(r.total)
	}
	if n := len(r.latencies); n > 0 {
		sorted := make([]time.Duration, n)
		copy(sorted, r.latencies)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		var sum float64
		for _, d := range sorted {
			sum += ms(d)
		}
		s.AvgMs = sum / float64(n)
		s.MinMs = ms(sorted[0])
		s.MaxMs = ms(sorted[n-1])
		s.P50Ms = Percentile(sorted, 50)
		s.P90Ms = Percentile(sorted, 90)
		s.P95Ms = Percentile(sorted, 95)
		s.P99Ms = Percentile(sorted, 99)
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// Percentile returns the p-th percentile (0..100) of ascending sorted
// samples, in milliseconds, interpolating linearly between the two nearest
// ranks (rank = p/100*(n-1)). Empty input gives NaN.
func Percentile(sorted []time.Duration, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return math.NaN()
	}
	if p <= 0 {
		return ms(sorted[0])
	}
	if p >= 100 {
		return ms(sorted[n-1])
	}
	rank := p / 100 * float64(n-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	if lo == hi {
		return ms(sorted[lo])
	}
	frac := rank - float64(lo)
	return ms(sorted[lo]) + (ms(sorted[hi])-ms(sorted[lo]))*frac
}
