package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// maxBodyBytes caps how much of one response body is read.
const maxBodyBytes = 64 << 20

// transportBackoff keeps a VU without sleep (closed loop) from spinning hot
// against a server that refuses connections.
const transportBackoff = 50 * time.Millisecond

// NewClient builds an HTTP/1.1 keep-alive client sized for maxConns
// concurrent VUs, dialing loopback addresses only, never following
// redirects, never using a proxy, not asking for compression (like k6).
func NewClient(maxConns int) *http.Client {
	dialer := &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		Control:   loopbackOnlyControl,
	}
	idle := maxConns + 16
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConns:          idle,
		MaxIdleConnsPerHost:   idle,
		MaxConnsPerHost:       0,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &http.Client{
		Transport: tr,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Runner executes plans against one base URL.
type Runner struct {
	Client            *http.Client
	BaseURL           string // already checked by CheckBaseURL
	RequireRetryAfter bool
	EnforceLatency    bool
	SkipBodyCheck     bool      // judge 200 answers by status only
	Progress          io.Writer // nil: no progress lines
	ProgressEvery     time.Duration
}

// ScenarioResult is what one scenario produced.
type ScenarioResult struct {
	Name        string     `json:"name"`
	ClosedLoop  bool       `json:"closed_loop"`
	MaxVUs      int        `json:"max_vus"`
	PlannedS    float64    `json:"planned_s"`
	SleepS      float64    `json:"sleep_s"`
	Thresholds  Thresholds `json:"thresholds"`
	Summary     Summary    `json:"summary"`
	Checks      []Check    `json:"checks"`
	Passed      bool       `json:"passed"`
	Interrupted bool       `json:"interrupted"`
}

type vuHandle struct {
	stop   chan struct{}
	cancel context.CancelFunc
}

// Run executes one plan. It returns after the schedule ended and every VU
// finished; requests still in flight GracefulStop after the schedule ended
// are cancelled (counted as aborted, not as errors). Cancelling ctx
// interrupts the run early.
func (r *Runner) Run(ctx context.Context, p Plan) ScenarioResult {
	rec := NewRecorder()
	hardCtx, hardCancel := context.WithCancel(ctx)
	defer hardCancel()

	var (
		iter   atomic.Uint64
		wg     sync.WaitGroup
		active []*vuHandle
	)
	spawn := func() {
		vctx, vcancel := context.WithCancel(hardCtx)
		v := &vuHandle{stop: make(chan struct{}), cancel: vcancel}
		active = append(active, v)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer vcancel()
			r.vuLoop(vctx, v.stop, p, &iter, rec)
		}()
	}
	retire := func(v *vuHandle, grace time.Duration) {
		close(v.stop)
		time.AfterFunc(grace, v.cancel)
	}

	total := p.Total()
	start := time.Now()
	nextProgress := start.Add(r.ProgressEvery)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	interrupted := false
	for {
		el := time.Since(start)
		if el >= total {
			break
		}
		want := VUsAt(p.StartVUs, p.Stages, el)
		for len(active) < want {
			spawn()
		}
		for len(active) > want {
			v := active[len(active)-1]
			active = active[:len(active)-1]
			retire(v, p.GracefulRampDown)
		}
		if r.Progress != nil && r.ProgressEvery > 0 && !time.Now().Before(nextProgress) {
			n, failed := rec.Snapshot()
			fmt.Fprintf(r.Progress, "[%s] %s/%s vus=%d requests=%d failed=%d\n",
				p.Scenario.Name, el.Truncate(time.Second), total, len(active), n, failed)
			nextProgress = nextProgress.Add(r.ProgressEvery)
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			interrupted = true
		}
		if interrupted {
			break
		}
	}
	for _, v := range active {
		close(v.stop)
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	grace := time.NewTimer(p.GracefulStop)
	select {
	case <-done:
	case <-grace.C:
		hardCancel()
		<-done
	}
	grace.Stop()
	elapsed := time.Since(start)

	sum := rec.Summarize(elapsed, r.RequireRetryAfter)
	checks := Evaluate(sum, p.Thresholds, r.EnforceLatency)
	return ScenarioResult{
		Name:        p.Scenario.Name,
		ClosedLoop:  p.ClosedLoop,
		MaxVUs:      p.MaxVUs(),
		PlannedS:    total.Seconds(),
		SleepS:      p.Sleep.Seconds(),
		Thresholds:  p.Thresholds,
		Summary:     sum,
		Checks:      checks,
		Passed:      Passed(checks) && !interrupted,
		Interrupted: interrupted,
	}
}

// vuLoop is one virtual user: request, record, sleep, until told to stop.
func (r *Runner) vuLoop(ctx context.Context, stop <-chan struct{}, p Plan, iter *atomic.Uint64, rec *Recorder) {
	paths := p.Scenario.Paths
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		default:
		}
		i := iter.Add(1) - 1
		path := paths[i%uint64(len(paths))]
		res := r.do(ctx, p, path)
		rec.Add(res)
		if res.Outcome == OutcomeAborted {
			return
		}
		wait := p.Sleep
		if wait == 0 && res.Outcome == OutcomeTransport {
			wait = transportBackoff
		}
		if wait > 0 {
			timer.Reset(wait)
			select {
			case <-stop:
				return
			case <-ctx.Done():
				return
			case <-timer.C:
			}
		}
	}
}

// do performs one request and classifies it.
func (r *Runner) do(ctx context.Context, p Plan, path string) Result {
	reqCtx, cancel := context.WithTimeout(ctx, p.RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(reqCtx, p.Scenario.Method, r.BaseURL+path, nil)
	if err != nil {
		return Result{Outcome: OutcomeTransport, Err: "build request: " + err.Error()}
	}
	start := time.Now()
	resp, err := r.Client.Do(req)
	if err != nil {
		return classifyErr(ctx, reqCtx, err)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	resp.Body.Close()
	lat := time.Since(start)
	if err != nil {
		return classifyErr(ctx, reqCtx, err)
	}
	res := Result{Status: resp.StatusCode, Latency: lat}
	switch {
	case resp.StatusCode == http.StatusOK:
		if r.SkipBodyCheck {
			res.Outcome = OutcomeOK
		} else if berr := CheckBody(p.Scenario.Expect, path, body); berr != nil {
			res.Outcome = OutcomeBadBody
			res.Err = "bad body: " + berr.Error()
		} else {
			res.Outcome = OutcomeOK
		}
	case resp.StatusCode == http.StatusServiceUnavailable:
		res.Outcome = OutcomeStatus
		res.RetryAfter = resp.Header.Get("Retry-After") != ""
		if !res.RetryAfter {
			res.Err = "HTTP 503 without Retry-After"
		}
	default:
		res.Outcome = OutcomeStatus
		res.Err = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return res
}

func classifyErr(vuCtx, reqCtx context.Context, err error) Result {
	if vuCtx.Err() != nil {
		return Result{Outcome: OutcomeAborted}
	}
	if errors.Is(reqCtx.Err(), context.DeadlineExceeded) {
		return Result{Outcome: OutcomeTimeout, Err: "timeout"}
	}
	return Result{Outcome: OutcomeTransport, Err: describeTransportErr(err)}
}

// describeTransportErr turns an error into a stable label (no ephemeral
// ports) so identical failures aggregate in the report.
func describeTransportErr(err error) string {
	switch {
	case errors.Is(err, errNotLoopback):
		return "refused to dial a non-loopback address"
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed by server (EOF)"
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		return oe.Op + ": " + oe.Err.Error()
	}
	return err.Error()
}

// CheckBody verifies the JSON shape of a 200 answer (the k6 scripts make
// the same checks).
func CheckBody(exp Expect, path string, body []byte) error {
	q := url.Values{}
	if u, err := url.Parse(path); err == nil {
		q = u.Query()
	}
	switch exp.Kind {
	case "any":
		return nil
	case "":
		if !json.Valid(body) {
			return errors.New("not JSON")
		}
		return nil
	case "logs":
		var b struct {
			Source        *string    `json:"source"`
			ReturnedCount *float64   `json:"returned_count"`
			Data          *[]logsRow `json:"data"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return errors.New("not a JSON object")
		}
		if err := checkSource(exp, b.Source); err != nil {
			return err
		}
		if b.Data == nil {
			return errors.New("data missing or null")
		}
		n := len(*b.Data)
		if b.ReturnedCount == nil || *b.ReturnedCount != float64(n) {
			return fmt.Errorf("returned_count does not match %d rows", n)
		}
		limit := exp.Limit
		if v, err := strconv.Atoi(q.Get("limit")); err == nil {
			limit = v
		}
		if limit > 0 && n > limit {
			return fmt.Errorf("%d rows exceed limit %d", n, limit)
		}
		for i, row := range *b.Data {
			if isNullOrEmpty(row.ID) || row.Timestamp == nil || row.Level == nil {
				return fmt.Errorf("row %d lacks id/timestamp/level", i)
			}
		}
		return nil
	case "aggregate":
		var b struct {
			Source  *string   `json:"source"`
			GroupBy *string   `json:"group_by"`
			Data    *[]aggRow `json:"data"`
		}
		if err := json.Unmarshal(body, &b); err != nil {
			return errors.New("not a JSON object")
		}
		if err := checkSource(exp, b.Source); err != nil {
			return err
		}
		if want := q.Get("group_by"); want != "" && (b.GroupBy == nil || *b.GroupBy != want) {
			return fmt.Errorf("group_by is not %q", want)
		}
		if b.Data == nil {
			return errors.New("data missing or null")
		}
		prev := -1.0
		for i, row := range *b.Data {
			if row.Key == nil || row.Count == nil || *row.Count < 0 {
				return fmt.Errorf("group %d lacks key/count", i)
			}
			if prev >= 0 && *row.Count > prev {
				return errors.New("groups not sorted by count desc")
			}
			prev = *row.Count
		}
		return nil
	}
	return fmt.Errorf("unknown expect kind %q", exp.Kind)
}

type logsRow struct {
	ID        json.RawMessage `json:"id"`
	Timestamp *float64        `json:"timestamp"`
	Level     *string         `json:"level"`
}

type aggRow struct {
	Key   *string  `json:"key"`
	Count *float64 `json:"count"`
}

func checkSource(exp Expect, got *string) error {
	if exp.Source == "" {
		return nil
	}
	if got == nil || *got != exp.Source {
		return fmt.Errorf("source is not %q", exp.Source)
	}
	return nil
}

func isNullOrEmpty(m json.RawMessage) bool {
	return len(m) == 0 || string(m) == "null"
}
