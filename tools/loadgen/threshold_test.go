package main

import "testing"

func checkByName(cs []Check, name string) Check {
	for _, c := range cs {
		if c.Name == name {
			return c
		}
	}
	panic("no check " + name)
}

func TestEvaluateOneX(t *testing.T) {
	th := Thresholds{P95Ms: 50, MaxErrorRate: 0, Max503Rate: 0}
	ok := Summary{Requests: 1000, Responses: 1000, P95Ms: 12}
	if cs := Evaluate(ok, th, true); !Passed(cs) {
		t.Fatalf("clean run failed: %+v", cs)
	}
	// a single non-503 error fails a 0 % threshold
	one := ok
	one.NonShed, one.NonShedRate, one.Failed, one.ErrorRate = 1, 0.001, 1, 0.001
	cs := Evaluate(one, th, true)
	if Passed(cs) || checkByName(cs, "max_error_rate").Pass {
		t.Fatalf("1 error passed at 0 %%: %+v", cs)
	}
	// a single 503 fails at 1x
	shed := ok
	shed.Count503, shed.Rate503 = 1, 0.001
	cs = Evaluate(shed, th, true)
	if Passed(cs) || checkByName(cs, "max_503_rate").Pass || !checkByName(cs, "max_error_rate").Pass {
		t.Fatalf("503 at 1x: %+v", cs)
	}
	// p95 boundary is inclusive
	edge := ok
	edge.P95Ms = 50
	if !Passed(Evaluate(edge, th, true)) {
		t.Fatal("p95 == limit must pass")
	}
	edge.P95Ms = 50.01
	if Passed(Evaluate(edge, th, true)) {
		t.Fatal("p95 above limit must fail")
	}
	if !Passed(Evaluate(edge, th, false)) {
		t.Fatal("latency not enforced must not fail the run")
	}
	if c := checkByName(Evaluate(edge, th, false), "p95_ms"); c.Pass || c.Enforced {
		t.Fatalf("unenforced p95 check should still report FAIL: %+v", c)
	}
}

func TestEvaluateTenX(t *testing.T) {
	th := Thresholds{P95Ms: 1000, MaxErrorRate: 0, Max503Rate: 0.01}
	s := Summary{Requests: 1000, Responses: 1000, P95Ms: 400, Count503: 10, Rate503: 0.01}
	if !Passed(Evaluate(s, th, true)) {
		t.Fatal("exactly 1 % 503s must pass (inclusive)")
	}
	s.Count503, s.Rate503 = 11, 0.011
	if Passed(Evaluate(s, th, true)) {
		t.Fatal("1.1 % 503s must fail")
	}
	s.Count503, s.Rate503 = 5, 0.005
	s.NonShed, s.NonShedRate = 1, 0.001
	if Passed(Evaluate(s, th, true)) {
		t.Fatal("a non-503 error at 10x must fail")
	}
}

func TestEvaluateNothingFinished(t *testing.T) {
	// the old HDFS run: nothing finished in 5 minutes
	cs := Evaluate(Summary{}, Thresholds{P95Ms: 300}, false)
	if Passed(cs) {
		t.Fatalf("an empty run must fail: %+v", cs)
	}
	if checkByName(cs, "requests > 0").Pass {
		t.Fatal("requests > 0 passed")
	}
	// all requests timed out: no responses, p95 cannot pass
	cs = Evaluate(Summary{Requests: 5, Failed: 5, NonShed: 5, NonShedRate: 1}, Thresholds{P95Ms: 300, MaxErrorRate: 0.05}, true)
	if Passed(cs) || checkByName(cs, "p95_ms").Pass {
		t.Fatalf("all-timeout run passed: %+v", cs)
	}
}
