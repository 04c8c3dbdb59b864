package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func stagesOf(pairs ...any) []PlanStage {
	var out []PlanStage
	for i := 0; i < len(pairs); i += 2 {
		out = append(out, PlanStage{Duration: pairs[i].(time.Duration), Target: pairs[i+1].(int)})
	}
	return out
}

func TestVUsAtRampUpHoldDown(t *testing.T) {
	s := stagesOf(10*time.Second, 10, 10*time.Second, 10, 10*time.Second, 0)
	cases := []struct {
		at   time.Duration
		want int
	}{
		{0, 0},
		{999 * time.Millisecond, 0},
		{time.Second, 1}, // line reaches 1 at 1 s
		{5500 * time.Millisecond, 5},
		{9999 * time.Millisecond, 9},
		{10 * time.Second, 10}, // hold stage starts at the previous target
		{15 * time.Second, 10},
		{20 * time.Second, 10},                  // ramp-down starts at 10
		{20*time.Second + time.Millisecond, 10}, // ceil: 9.999 -> 10
		{21 * time.Second, 9},
		{25500 * time.Millisecond, 5}, // 4.5 -> ceil 5
		{29999 * time.Millisecond, 1},
		{30 * time.Second, 0}, // end
		{time.Hour, 0},
		{-time.Second, 0},
	}
	for _, c := range cases {
		if got := VUsAt(0, s, c.at); got != c.want {
			t.Errorf("VUsAt(%s) = %d, want %d", c.at, got, c.want)
		}
	}
}

func TestVUsAtOldPostgresLogsShape(t *testing.T) {
	// 0->10 (30s) ->30 (1m) ->50 (1m) hold 50 (1m) ->30 (30s) ->0 (30s)
	s := stagesOf(30*time.Second, 10, time.Minute, 30, time.Minute, 50, time.Minute, 50, 30*time.Second, 30, 30*time.Second, 0)
	checks := map[time.Duration]int{
		15 * time.Second:                   5,
		30 * time.Second:                   10,
		60 * time.Second:                   20,
		90 * time.Second:                   30,
		120 * time.Second:                  40,
		150 * time.Second:                  50,
		200 * time.Second:                  50,
		225 * time.Second:                  40,
		240 * time.Second:                  30,
		255 * time.Second:                  15,
		270*time.Second - time.Millisecond: 1,
		270 * time.Second:                  0,
	}
	for at, want := range checks {
		if got := VUsAt(0, s, at); got != want {
			t.Errorf("VUsAt(%s) = %d, want %d", at, got, want)
		}
	}
}

func TestVUsAtStartVUsAndZeroDurationStage(t *testing.T) {
	// start at 5, jump to 8 instantly, hold 8 for 2 s
	s := stagesOf(time.Duration(0), 8, 2*time.Second, 8)
	if got := VUsAt(5, s, 0); got != 8 {
		t.Fatalf("zero-duration stage should jump: got %d", got)
	}
	// constant (closed loop): start N, one stage N
	c := stagesOf(3*time.Second, 50)
	for _, at := range []time.Duration{0, time.Second, 2999 * time.Millisecond} {
		if got := VUsAt(50, c, at); got != 50 {
			t.Fatalf("closed loop at %s: %d", at, got)
		}
	}
	if got := VUsAt(50, c, 3*time.Second); got != 0 {
		t.Fatalf("closed loop after end: %d", got)
	}
}

func TestScaleVUsAndDuration(t *testing.T) {
	if got := ScaleVUs(50, 10); got != 500 {
		t.Errorf("ScaleVUs(50,10)=%d", got)
	}
	if got := ScaleVUs(10, 0.01); got != 1 {
		t.Errorf("non-zero target must not vanish: %d", got)
	}
	if got := ScaleVUs(0, 10); got != 0 {
		t.Errorf("zero stays zero: %d", got)
	}
	if got := ScaleVUs(3, 1.5); got != 5 { // 4.5 rounds half away from zero
		t.Errorf("ScaleVUs(3,1.5)=%d", got)
	}
	if got := ScaleDuration(30*time.Second, 0.1); got != 3*time.Second {
		t.Errorf("ScaleDuration=%s", got)
	}
	if got := ScaleDuration(210*time.Second, 1.0/30); got != 7*time.Second {
		t.Errorf("ScaleDuration=%s", got)
	}
	if got := ScaleDuration(time.Second, 1e-9); got != time.Millisecond {
		t.Errorf("tiny scale floors at 1ms: %s", got)
	}
}

func repoConfig(t *testing.T) *Config {
	t.Helper()
	wd, _ := os.Getwd()
	p, err := FindConfig(wd)
	if err != nil {
		t.Fatal(err)
	}
	if filepath.Base(filepath.Dir(p)) != "k6" {
		t.Fatalf("unexpected config path %s", p)
	}
	c, err := LoadConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRepoScenariosMatchTheIssue(t *testing.T) {
	c := repoConfig(t)
	want := map[string]struct {
		peak  int
		total time.Duration
		p95   float64
		sleep float64
	}{
		"postgres_logs":             {50, 270 * time.Second, 50, 1},
		"postgres_aggregate":        {20, 270 * time.Second, 1000, 1},
		"hdfs_logs":                 {10, 270 * time.Second, 300, 1},
		"hdfs_aggregate":            {10, 270 * time.Second, 1000, 1},
		"throughput_postgres_logs":  {50, 60 * time.Second, 50, 0},
		"throughput_hdfs_aggregate": {50, 60 * time.Second, 1000, 0},
	}
	if len(c.Scenarios) != len(want) {
		t.Fatalf("got %d scenarios, want %d", len(c.Scenarios), len(want))
	}
	for _, s := range c.Scenarios {
		w, ok := want[s.Name]
		if !ok {
			t.Fatalf("unexpected scenario %s", s.Name)
		}
		p, err := BuildPlan(c, s, Options{VUMult: 1, TimeScale: 1})
		if err != nil {
			t.Fatal(err)
		}
		if p.MaxVUs() != w.peak || p.Total() != w.total || p.Thresholds.P95Ms != w.p95 || s.SleepS != w.sleep {
			t.Errorf("%s: peak %d total %s p95 %v sleep %v; want %+v", s.Name, p.MaxVUs(), p.Total(), p.Thresholds.P95Ms, s.SleepS, w)
		}
		if p.Thresholds.MaxErrorRate != 0 || p.Thresholds.Max503Rate != 0 {
			t.Errorf("%s: at 1x no errors are allowed: %+v", s.Name, p.Thresholds)
		}
		p10, err := BuildPlan(c, s, Options{VUMult: 10, TimeScale: 1})
		if err != nil {
			t.Fatal(err)
		}
		if p10.MaxVUs() != 10*w.peak {
			t.Errorf("%s at 10x: peak %d", s.Name, p10.MaxVUs())
		}
		if p10.Thresholds.MaxErrorRate != 0 || p10.Thresholds.Max503Rate != 0.01 || p10.Thresholds.P95Ms != w.p95 {
			t.Errorf("%s at 10x: thresholds %+v", s.Name, p10.Thresholds)
		}
	}
	// old postgres logs stages: 0->10->30->50->50->30->0
	pl, _ := c.Select("postgres_logs")
	var targets []int
	for _, st := range pl[0].Stages {
		targets = append(targets, st.Target)
	}
	if got := targets; len(got) != 6 || got[0] != 10 || got[1] != 30 || got[2] != 50 || got[3] != 50 || got[4] != 30 || got[5] != 0 {
		t.Errorf("postgres_logs targets %v", got)
	}
}

func TestSmokePlanFitsInAMinute(t *testing.T) {
	c := repoConfig(t)
	var worst time.Duration
	for _, s := range c.Scenarios {
		p, err := BuildPlan(c, s, Options{VUMult: 1, TimeScale: 1, Smoke: true})
		if err != nil {
			t.Fatal(err)
		}
		if p.RequestTimeout > 5*time.Second {
			t.Errorf("%s: smoke request timeout %s", s.Name, p.RequestTimeout)
		}
		full, _ := BuildPlan(c, s, Options{VUMult: 1, TimeScale: 1})
		if p.MaxVUs() != full.MaxVUs() {
			t.Errorf("%s: smoke keeps VU targets: %d vs %d", s.Name, p.MaxVUs(), full.MaxVUs())
		}
		worst += p.WorstCase()
	}
	// 5 s of slack for the preflight and process start.
	if worst+5*time.Second > 60*time.Second {
		t.Fatalf("smoke worst case %s does not fit in 60 s", worst)
	}
	if worst < 30*time.Second {
		t.Fatalf("smoke suspiciously short: %s", worst)
	}
}

func TestBuildPlanOverrides(t *testing.T) {
	c := repoConfig(t)
	tp, _ := c.Select("throughput_postgres_logs")
	p, err := BuildPlan(c, tp[0], Options{VUMult: 2, TimeScale: 0.5, Connections: 7, Duration: 3 * time.Second, RequestTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if p.MaxVUs() != 7 || p.Total() != 3*time.Second || p.RequestTimeout != time.Second || !p.ClosedLoop {
		t.Fatalf("overrides not applied: %+v", p)
	}
	p, _ = BuildPlan(c, tp[0], Options{VUMult: 2, TimeScale: 0.5})
	if p.MaxVUs() != 100 || p.Total() != 30*time.Second {
		t.Fatalf("vu-mult/time-scale on closed loop: vus %d total %s", p.MaxVUs(), p.Total())
	}
	rl, _ := c.Select("postgres_logs")
	p, _ = BuildPlan(c, rl[0], Options{VUMult: 1, TimeScale: 0.1})
	if p.Total() != 27*time.Second {
		t.Fatalf("time-scale 0.1: %s", p.Total())
	}
	if _, err := BuildPlan(c, rl[0], Options{VUMult: 0, TimeScale: 1}); err == nil {
		t.Fatal("vu-mult 0 accepted")
	}
	if _, err := BuildPlan(c, rl[0], Options{VUMult: 1, TimeScale: 100}); err == nil {
		t.Fatal("a 7.5 h plan was accepted")
	}
}

func TestSelect(t *testing.T) {
	c := repoConfig(t)
	all, _ := c.Select("all")
	if len(all) != 6 {
		t.Fatalf("all: %d", len(all))
	}
	tp, err := c.Select("throughput")
	if err != nil || len(tp) != 2 {
		t.Fatalf("group throughput: %v %d", err, len(tp))
	}
	two, err := c.Select("hdfs_logs, postgres_logs,postgres_logs")
	if err != nil || len(two) != 2 || two[0].Name != "postgres_logs" {
		t.Fatalf("list: %v %+v", err, two)
	}
	if _, err := c.Select("nope"); err == nil {
		t.Fatal("unknown scenario accepted")
	}
}

func TestParseConfigRejectsBadFiles(t *testing.T) {
	bad := []string{
		`{"scenarios": []}`,
		`{"scenarios": [{"name": "a", "paths": ["/x"], "stages": [{"duration": "1s", "target": 1}], "thresholds": {"p95_ms": 0}}]}`,
		`{"scenarios": [{"name": "a", "paths": ["x"], "stages": [{"duration": "1s", "target": 1}], "thresholds": {"p95_ms": 1}}]}`,
		`{"scenarios": [{"name": "a", "paths": ["/x"], "stages": [{"duration": "soon", "target": 1}], "thresholds": {"p95_ms": 1}}]}`,
		`{"scenarios": [{"name": "a", "paths": ["/x"], "stages": [{"duration": "1s", "target": 0}], "thresholds": {"p95_ms": 1}}]}`,
		`{"scenarios": [{"name": "a", "paths": ["/x"], "closed_loop": true, "connections": 0, "duration": "1s", "thresholds": {"p95_ms": 1}}]}`,
		`{"scenarios": [{"name": "a", "paths": ["/x"], "stages": [{"duration": "1s", "target": 1}], "thresholds": {"p95_ms": 1, "max_503_rate": 2}}]}`,
	}
	for _, b := range bad {
		if _, err := ParseConfig([]byte(b)); err == nil {
			t.Errorf("accepted: %s", b)
		}
	}
}
