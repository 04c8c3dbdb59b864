package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// RunInfo describes the whole invocation (header of the report / JSON).
type RunInfo struct {
	BaseURL   string    `json:"base_url"`
	Scenarios string    `json:"scenarios_file"`
	VUMult    float64   `json:"vu_mult"`
	TimeScale float64   `json:"time_scale"`
	Smoke     bool      `json:"smoke"`
	Started   time.Time `json:"started"`
	Finished  time.Time `json:"finished"`
}

func describePlan(p Plan) string {
	if p.ClosedLoop {
		return fmt.Sprintf("closed loop, %d connections, %s, no sleep", p.MaxVUs(), p.Total())
	}
	var st []string
	for _, s := range p.Stages {
		st = append(st, fmt.Sprintf("%s->%d", s.Duration, s.Target))
	}
	return fmt.Sprintf("ramping VUs from %d: %s, sleep %s", p.StartVUs, strings.Join(st, " "), p.Sleep)
}

func printHeader(w io.Writer, info RunInfo, plans []Plan, worst time.Duration) {
	mode := "full"
	if info.Smoke {
		mode = "smoke"
	}
	fmt.Fprintf(w, "fletch loadgen: %s run against %s (vu-mult %g, time-scale %g)\n", mode, info.BaseURL, info.VUMult, info.TimeScale)
	fmt.Fprintf(w, "scenarios from %s; worst case %s (schedules + graceful stops)\n\n", info.Scenarios, worst.Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tplan\tp95 <=\tnon-503 err <=\t503 <=\t")
	for _, p := range plans {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t\n", p.Scenario.Name, describePlan(p),
			fmtMs(p.Thresholds.P95Ms), fmtPct(p.Thresholds.MaxErrorRate), fmtPct(p.Thresholds.Max503Rate))
	}
	tw.Flush()
	fmt.Fprintln(w)
}

func verdict(pass bool) string {
	if pass {
		return "PASS"
	}
	return "FAIL"
}

// printScenario prints the threshold checks and error breakdown of one
// scenario as soon as it finished.
func printScenario(w io.Writer, r ScenarioResult) {
	s := r.Summary
	v := verdict(r.Passed)
	if r.Interrupted {
		v = "INTERRUPTED"
	}
	fmt.Fprintf(w, "== %s: %s  (%d requests in %s, %.1f req/s)\n", r.Name, v, s.Requests, s.Elapsed.Round(10*time.Millisecond), s.RPS)
	for _, c := range r.Checks {
		mark := verdict(c.Pass)
		if !c.Enforced {
			mark += " (not enforced)"
		}
		fmt.Fprintf(w, "   %-4s  %s\n", mark, c.Detail)
	}
	var codes []int
	for k := range s.StatusCounts {
		codes = append(codes, k)
	}
	sort.Ints(codes)
	var sc []string
	for _, k := range codes {
		sc = append(sc, fmt.Sprintf("%d=%d", k, s.StatusCounts[k]))
	}
	if len(sc) == 0 {
		sc = []string{"none"}
	}
	fmt.Fprintf(w, "   status: %s | 503 without Retry-After: %d | bad bodies: %d | timeouts: %d | transport errors: %d | aborted at stop: %d\n",
		strings.Join(sc, " "), s.Count503NoRA, s.BadBody, s.Timeouts, s.Transport, s.Aborted)
	if len(s.ErrorSamples) > 0 {
		var keys []string
		for k := range s.ErrorSamples {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			fmt.Fprintf(w, "   error x%d: %s\n", s.ErrorSamples[k], k)
		}
	}
	fmt.Fprintln(w)
}

// printTable prints the final one-line-per-scenario summary table.
func printTable(w io.Writer, results []ScenarioResult, passed, interrupted bool) {
	rows := [][]string{{"scenario", "VUs", "requests", "req/s", "avg", "p50", "p95", "p99", "max", "errors", "503", "result"}}
	for _, r := range results {
		s := r.Summary
		lat := func(v float64) string {
			if s.Responses == 0 {
				return "-"
			}
			return fmtMs(v)
		}
		res := verdict(r.Passed)
		if r.Interrupted {
			res = "INTR"
		}
		rows = append(rows, []string{r.Name, fmt.Sprint(r.MaxVUs), fmt.Sprint(s.Requests), fmt.Sprintf("%.1f", s.RPS),
			lat(s.AvgMs), lat(s.P50Ms), lat(s.P95Ms), lat(s.P99Ms), lat(s.MaxMs),
			fmtPct(s.ErrorRate), fmtPct(s.Rate503), res})
	}
	writeAligned(w, rows)
	overall := verdict(passed)
	if interrupted {
		overall = "INTERRUPTED"
	}
	fmt.Fprintf(w, "\nerrors = all failed requests incl. 503 (like k6 http_req_failed); 503 = share answered 503.\noverall: %s\n", overall)
}

// writeAligned prints rows with the first column left-aligned and the
// others right-aligned, two spaces apart.
func writeAligned(w io.Writer, rows [][]string) {
	var widths []int
	for _, row := range rows {
		for i, c := range row {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], len(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			if i == 0 {
				fmt.Fprintf(&b, "%-*s", widths[i], c)
			} else {
				fmt.Fprintf(&b, "  %*s", widths[i], c)
			}
		}
		fmt.Fprintln(w, b.String())
	}
}

type jsonReport struct {
	Run         RunInfo          `json:"run"`
	Passed      bool             `json:"passed"`
	Interrupted bool             `json:"interrupted"`
	Scenarios   []ScenarioResult `json:"scenarios"`
}

func writeJSON(path string, info RunInfo, results []ScenarioResult, passed, interrupted bool) error {
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jsonReport{Run: info, Passed: passed, Interrupted: interrupted, Scenarios: results}); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}
