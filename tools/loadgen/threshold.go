package main

import "fmt"

// Check is one evaluated threshold.
type Check struct {
	Name     string  `json:"name"`
	Observed float64 `json:"observed"`
	Limit    float64 `json:"limit"`
	Pass     bool    `json:"pass"`
	Enforced bool    `json:"enforced"`
	Detail   string  `json:"detail"`
}

const rateEpsilon = 1e-12

// Evaluate applies thresholds to a summary. Limits are inclusive
// (observed <= limit). A scenario with no completed requests fails: "nothing
// finished" must never look like a pass. When enforceLatency is false the
// p95 check is still reported but cannot fail the run.
func Evaluate(s Summary, t Thresholds, enforceLatency bool) []Check {
	var out []Check
	out = append(out, Check{
		Name:     "requests > 0",
		Observed: float64(s.Requests),
		Limit:    1,
		Pass:     s.Requests > 0,
		Enforced: true,
		Detail:   fmt.Sprintf("%d requests completed", s.Requests),
	})
	p95 := Check{Name: "p95_ms", Observed: s.P95Ms, Limit: t.P95Ms, Enforced: enforceLatency}
	if s.Responses == 0 {
		p95.Pass = false
		p95.Detail = "no HTTP responses to measure"
	} else {
		p95.Pass = s.P95Ms <= t.P95Ms
		p95.Detail = fmt.Sprintf("p95 %s <= %s", fmtMs(s.P95Ms), fmtMs(t.P95Ms))
	}
	out = append(out, p95)
	out = append(out, Check{
		Name:     "max_error_rate",
		Observed: s.NonShedRate,
		Limit:    t.MaxErrorRate,
		Pass:     s.NonShedRate <= t.MaxErrorRate+rateEpsilon,
		Enforced: true,
		Detail:   fmt.Sprintf("non-503 errors %s (%d) <= %s", fmtPct(s.NonShedRate), s.NonShed, fmtPct(t.MaxErrorRate)),
	})
	out = append(out, Check{
		Name:     "max_503_rate",
		Observed: s.Rate503,
		Limit:    t.Max503Rate,
		Pass:     s.Rate503 <= t.Max503Rate+rateEpsilon,
		Enforced: true,
		Detail:   fmt.Sprintf("503 rate %s (%d) <= %s", fmtPct(s.Rate503), s.Count503, fmtPct(t.Max503Rate)),
	})
	return out
}

// Passed is true when every enforced check passed.
func Passed(checks []Check) bool {
	for _, c := range checks {
		if c.Enforced && !c.Pass {
			return false
		}
	}
	return true
}

func fmtPct(r float64) string { return fmt.Sprintf("%.2f%%", r*100) }

func fmtMs(v float64) string {
	switch {
	case v >= 10000:
		return fmt.Sprintf("%.1fs", v/1000)
	case v >= 1000:
		return fmt.Sprintf("%.2fs", v/1000)
	case v >= 100:
		return fmt.Sprintf("%.0fms", v)
	case v >= 10:
		return fmt.Sprintf("%.1fms", v)
	default:
		return fmt.Sprintf("%.2fms", v)
	}
}
