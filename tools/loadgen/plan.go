package main

import (
	"errors"
	"fmt"
	"math"
	"time"
)

// PlanStage is a stage after VU multiplier and time scale were applied.
type PlanStage struct {
	Duration time.Duration
	Target   int
}

// Plan is one scenario ready to run: the schedule of VUs over time plus
// everything the runner and the threshold check need.
type Plan struct {
	Scenario         Scenario
	ClosedLoop       bool
	StartVUs         int
	Stages           []PlanStage
	Sleep            time.Duration
	GracefulRampDown time.Duration
	GracefulStop     time.Duration
	RequestTimeout   time.Duration
	Thresholds       Thresholds
}

// Options are the command-line knobs that shape plans.
type Options struct {
	VUMult         float64
	TimeScale      float64
	Smoke          bool
	Duration       time.Duration // closed-loop override (0 = from file)
	Connections    int           // closed-loop override (0 = from file * vu-mult)
	RequestTimeout time.Duration // 0 = from file
}

// maxPlanDuration refuses absurd schedules (e.g. a mistyped --time-scale).
const maxPlanDuration = 3 * time.Hour

// ScaleVUs multiplies a VU target; a non-zero target never rounds to zero.
func ScaleVUs(target int, mult float64) int {
	if target <= 0 {
		return 0
	}
	v := int(math.Round(float64(target) * mult))
	if v < 1 {
		v = 1
	}
	return v
}

// ScaleDuration multiplies a duration by f, rounded to the millisecond
// (never below 1 ms for a non-zero input).
func ScaleDuration(d time.Duration, f float64) time.Duration {
	if d <= 0 {
		return 0
	}
	ms := math.Round(float64(d) * f / float64(time.Millisecond))
	if ms < 1 {
		ms = 1
	}
	return time.Duration(ms) * time.Millisecond
}

// BuildPlan turns a scenario from the file into a runnable plan.
func BuildPlan(c *Config, s Scenario, o Options) (Plan, error) {
	if o.VUMult <= 0 || math.IsNaN(o.VUMult) || math.IsInf(o.VUMult, 0) {
		return Plan{}, fmt.Errorf("vu-mult must be > 0, got %v", o.VUMult)
	}
	if o.TimeScale <= 0 || math.IsNaN(o.TimeScale) || math.IsInf(o.TimeScale, 0) {
		return Plan{}, fmt.Errorf("time-scale must be > 0, got %v", o.TimeScale)
	}
	p := Plan{
		Scenario:         s,
		ClosedLoop:       s.ClosedLoop,
		Sleep:            time.Duration(s.SleepS * float64(time.Second)),
		GracefulRampDown: c.Defaults.GracefulRampDown.D(),
		GracefulStop:     c.Defaults.GracefulStop.D(),
		RequestTimeout:   c.Defaults.RequestTimeout.D(),
		Thresholds:       c.EffectiveThresholds(s, o.VUMult),
	}
	if o.Smoke {
		if c.Smoke.GracefulRampDown > 0 {
			p.GracefulRampDown = c.Smoke.GracefulRampDown.D()
		}
		if c.Smoke.GracefulStop > 0 {
			p.GracefulStop = c.Smoke.GracefulStop.D()
		}
		if c.Smoke.RequestTimeout > 0 {
			p.RequestTimeout = c.Smoke.RequestTimeout.D()
		}
	}
	if o.RequestTimeout > 0 {
		p.RequestTimeout = o.RequestTimeout
	}
	if s.ClosedLoop {
		n := ScaleVUs(s.Connections, o.VUMult)
		if o.Connections > 0 {
			n = o.Connections
		}
		d := ScaleDuration(s.Duration.D(), o.TimeScale)
		if o.Smoke && c.Smoke.ClosedLoopDuration > 0 {
			d = c.Smoke.ClosedLoopDuration.D()
		}
		if o.Duration > 0 {
			d = o.Duration
		}
		p.StartVUs = n
		p.Stages = []PlanStage{{Duration: d, Target: n}}
	} else {
		scale := o.TimeScale
		if o.Smoke && c.Smoke.RampingDuration > 0 {
			var total time.Duration
			for _, st := range s.Stages {
				total += st.Duration.D()
			}
			scale = float64(c.Smoke.RampingDuration.D()) / float64(total)
		}
		p.StartVUs = ScaleVUs(s.StartVUs, o.VUMult)
		for _, st := range s.Stages {
			p.Stages = append(p.Stages, PlanStage{
				Duration: ScaleDuration(st.Duration.D(), scale),
				Target:   ScaleVUs(st.Target, o.VUMult),
			})
		}
	}
	if p.Total() <= 0 {
		return Plan{}, errors.New("scenario " + s.Name + ": planned duration is zero")
	}
	if p.Total() > maxPlanDuration {
		return Plan{}, fmt.Errorf("scenario %s: planned duration %s exceeds the %s safety limit", s.Name, p.Total(), maxPlanDuration)
	}
	return p, nil
}

// Total is the scheduled duration (without graceful stop).
func (p Plan) Total() time.Duration {
	var t time.Duration
	for _, s := range p.Stages {
		t += s.Duration
	}
	return t
}

// WorstCase is the longest the scenario can take: schedule, then the
// graceful stop window, after which in-flight requests are cancelled.
func (p Plan) WorstCase() time.Duration { return p.Total() + p.GracefulStop }

// MaxVUs is the peak VU (connection) count of the plan.
func (p Plan) MaxVUs() int {
	m := p.StartVUs
	for _, s := range p.Stages {
		m = max(m, s.Target)
	}
	return m
}

// VUsAt returns how many VUs should be running at elapsed time t, with the
// VU count interpolated linearly between stage targets like k6's
// ramping-vus executor: while ramping up a VU starts when the line reaches
// its number (floor), while ramping down it stops when the line drops below
// its number (ceil). Zero-duration stages jump. At or after the end: 0.
func VUsAt(start int, stages []PlanStage, t time.Duration) int {
	if t < 0 {
		return 0
	}
	from := start
	var off time.Duration
	for _, s := range stages {
		end := off + s.Duration
		if t < end {
			frac := float64(t-off) / float64(s.Duration)
			v := float64(from) + float64(s.Target-from)*frac
			if s.Target >= from {
				return int(math.Floor(v + 1e-9))
			}
			return int(math.Ceil(v - 1e-9))
		}
		off = end
		from = s.Target
	}
	return 0
}
