// Command loadgen runs the fletch load scenarios of k6/scenarios.json
// without k6: ramping virtual users that loop request -> sleep, or
// closed-loop connections without sleep. Standard library only.
//
// It only ever targets loopback addresses and every run is bounded by the
// scenario schedules. Exit status: 0 all thresholds passed, 1 a threshold
// failed, 2 usage/configuration/safety error or server unreachable,
// 130 interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

const (
	exitOK          = 0
	exitThreshold   = 1
	exitUsage       = 2
	exitInterrupted = 130
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

type cliFlags struct {
	baseURL       string
	scenariosPath string
	scenario      string
	vuMult        float64
	timeScale     float64
	duration      time.Duration
	connections   int
	timeout       time.Duration
	smoke         bool
	jsonOut       string
	ignoreLatency bool
	noPreflight   bool
	progress      time.Duration
	list          bool
	noBodyCheck   bool
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var f cliFlags
	fs.StringVar(&f.baseURL, "base-url", "", "server base URL, loopback only (default: $BASE_URL, else defaults.base_url of scenarios.json)")
	fs.StringVar(&f.scenariosPath, "scenarios", "", "path to scenarios.json (default: k6/scenarios.json found from the working directory upwards)")
	fs.StringVar(&f.scenario, "scenario", "all", "comma separated scenario and/or group names, or all")
	fs.Float64Var(&f.vuMult, "vu-mult", 0, "multiply every VU target and closed-loop connection count (default: $VU_MULT, else 1); above 1 the overload thresholds apply")
	fs.Float64Var(&f.timeScale, "time-scale", 1, "multiply every stage and closed-loop duration (e.g. 0.1); not with --smoke")
	fs.DurationVar(&f.duration, "duration", 0, "override the duration of closed-loop scenarios")
	fs.IntVar(&f.connections, "connections", 0, "override the connection count of closed-loop scenarios")
	fs.DurationVar(&f.timeout, "timeout", 0, "per-request timeout (default: defaults.request_timeout, 30s)")
	fs.BoolVar(&f.smoke, "smoke", false, "short run of every selected scenario (whole default run < 60 s)")
	fs.StringVar(&f.jsonOut, "json", "", "also write results as JSON to this file")
	fs.BoolVar(&f.ignoreLatency, "ignore-latency", false, "report p95 but do not fail on it (e.g. against a debug build)")
	fs.BoolVar(&f.noPreflight, "no-preflight", false, "skip the GET /health reachability check before the run")
	fs.DurationVar(&f.progress, "progress", 10*time.Second, "interval of progress lines on stderr (0 disables)")
	fs.BoolVar(&f.noBodyCheck, "no-body-check", false, "judge 200 answers by status only, skip the JSON shape check (saves client CPU in closed-loop runs)")
	fs.BoolVar(&f.list, "list", false, "print the planned scenarios and exit without sending requests")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: loadgen [flags]\n\nRuns the scenarios of k6/scenarios.json against a fletch server on loopback.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "loadgen: unexpected arguments: %v\n", fs.Args())
		return exitUsage
	}
	setFlags := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { setFlags[fl.Name] = true })
	if f.smoke && setFlags["time-scale"] {
		fmt.Fprintln(stderr, "loadgen: --smoke and --time-scale are mutually exclusive")
		return exitUsage
	}

	path := f.scenariosPath
	if path == "" {
		wd, _ := os.Getwd()
		p, err := FindConfig(wd)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return exitUsage
		}
		path = p
	}
	cfg, err := LoadConfig(path)
	if err != nil {
		fmt.Fprintf(stderr, "loadgen: %s: %v\n", path, err)
		return exitUsage
	}

	rawBase := f.baseURL
	if rawBase == "" {
		rawBase = os.Getenv("BASE_URL")
	}
	if rawBase == "" {
		rawBase = cfg.Defaults.BaseURL
	}
	if rawBase == "" {
		rawBase = "http://127.0.0.1:8080"
	}
	base, err := CheckBaseURL(rawBase)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	}

	vuMult := f.vuMult
	if !setFlags["vu-mult"] {
		vuMult = 1
		if env := os.Getenv("VU_MULT"); env != "" {
			v, err := strconv.ParseFloat(env, 64)
			if err != nil {
				fmt.Fprintf(stderr, "loadgen: VU_MULT=%q is not a number\n", env)
				return exitUsage
			}
			vuMult = v
		}
	}
	if f.connections < 0 || f.duration < 0 || f.timeout < 0 {
		fmt.Fprintln(stderr, "loadgen: --connections, --duration and --timeout must not be negative")
		return exitUsage
	}

	selected, err := cfg.Select(f.scenario)
	if err != nil {
		fmt.Fprintln(stderr, "loadgen:", err)
		return exitUsage
	}
	opts := Options{
		VUMult:         vuMult,
		TimeScale:      f.timeScale,
		Smoke:          f.smoke,
		Duration:       f.duration,
		Connections:    f.connections,
		RequestTimeout: f.timeout,
	}
	var plans []Plan
	maxVUs := 0
	var worst time.Duration
	for _, s := range selected {
		p, err := BuildPlan(cfg, s, opts)
		if err != nil {
			fmt.Fprintln(stderr, "loadgen:", err)
			return exitUsage
		}
		plans = append(plans, p)
		maxVUs = max(maxVUs, p.MaxVUs())
		worst += p.WorstCase()
	}

	info := RunInfo{
		BaseURL:   base,
		Scenarios: path,
		VUMult:    vuMult,
		TimeScale: f.timeScale,
		Smoke:     f.smoke,
		Started:   time.Now().UTC(),
	}
	printHeader(stdout, info, plans, worst)
	if f.list {
		return exitOK
	}

	client := NewClient(maxVUs)
	defer client.CloseIdleConnections()
	if !f.noPreflight {
		if err := preflight(ctx, client, base); err != nil {
			fmt.Fprintf(stderr, "loadgen: server not reachable at %s: %v (start it first, or pass --no-preflight)\n", base, err)
			return exitUsage
		}
	}

	r := &Runner{
		Client:            client,
		BaseURL:           base,
		RequireRetryAfter: cfg.Defaults.RequireRetryAfter,
		EnforceLatency:    !f.ignoreLatency,
		SkipBodyCheck:     f.noBodyCheck,
		Progress:          stderr,
		ProgressEvery:     f.progress,
	}
	var results []ScenarioResult
	interrupted := false
	for _, p := range plans {
		fmt.Fprintf(stderr, "[%s] running: %s\n", p.Scenario.Name, describePlan(p))
		res := r.Run(ctx, p)
		results = append(results, res)
		printScenario(stdout, res)
		client.CloseIdleConnections()
		if res.Interrupted || ctx.Err() != nil {
			interrupted = true
			break
		}
	}
	info.Finished = time.Now().UTC()
	passed := !interrupted
	for _, res := range results {
		passed = passed && res.Passed
	}
	printTable(stdout, results, passed, interrupted)
	if f.jsonOut != "" {
		if err := writeJSON(f.jsonOut, info, results, passed, interrupted); err != nil {
			fmt.Fprintln(stderr, "loadgen: writing JSON:", err)
			return exitUsage
		}
	}
	switch {
	case interrupted:
		return exitInterrupted
	case !passed:
		return exitThreshold
	}
	return exitOK
}

// preflight checks that something answers HTTP at base (GET /health).
func preflight(ctx context.Context, c *http.Client, base string) error {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, base+"/health", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return errors.New(describeTransportErr(err))
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	return nil
}
