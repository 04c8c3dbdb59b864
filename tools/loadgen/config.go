package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Duration is a time.Duration that reads from JSON as a k6-style string
// ("30s", "1m", "3m30s").
type Duration time.Duration

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration must be a string like \"30s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", s)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) D() time.Duration { return time.Duration(d) }

// Stage is one ramping-vus stage: reach Target VUs linearly over Duration.
type Stage struct {
	Duration Duration `json:"duration"`
	Target   int      `json:"target"`
}

// Thresholds are the pass/fail limits of one scenario (see
// threshold_semantics in k6/scenarios.json).
type Thresholds struct {
	P95Ms        float64 `json:"p95_ms"`
	MaxErrorRate float64 `json:"max_error_rate"`
	Max503Rate   float64 `json:"max_503_rate"`
}

// Expect describes the JSON body shape a 200 response must have.
type Expect struct {
	Kind   string `json:"kind"`   // "logs" or "aggregate"
	Source string `json:"source"` // "postgresql" or "hdfs"
	Limit  int    `json:"limit"`  // logs: maximum rows expected
}

type Scenario struct {
	Name        string     `json:"name"`
	Group       string     `json:"group"`
	Description string     `json:"description"`
	Method      string     `json:"method"`
	Paths       []string   `json:"paths"`
	Expect      Expect     `json:"expect"`
	ClosedLoop  bool       `json:"closed_loop"`
	StartVUs    int        `json:"start_vus"`
	Stages      []Stage    `json:"stages"`
	Connections int        `json:"connections"`
	Duration    Duration   `json:"duration"`
	SleepS      float64    `json:"sleep_s"`
	Thresholds  Thresholds `json:"thresholds"`
}

type Defaults struct {
	BaseURL           string   `json:"base_url"`
	RequestTimeout    Duration `json:"request_timeout"`
	GracefulRampDown  Duration `json:"graceful_ramp_down"`
	GracefulStop      Duration `json:"graceful_stop"`
	RequireRetryAfter bool     `json:"require_retry_after_on_503"`
}

type Overload struct {
	AppliesWhenVUMultAbove float64 `json:"applies_when_vu_mult_above"`
	MaxErrorRate           float64 `json:"max_error_rate"`
	Max503Rate             float64 `json:"max_503_rate"`
}

type Smoke struct {
	RampingDuration    Duration `json:"ramping_duration"`
	ClosedLoopDuration Duration `json:"closed_loop_duration"`
	GracefulRampDown   Duration `json:"graceful_ramp_down"`
	GracefulStop       Duration `json:"graceful_stop"`
	RequestTimeout     Duration `json:"request_timeout"`
}

type Config struct {
	Version   int        `json:"version"`
	Defaults  Defaults   `json:"defaults"`
	Overload  *Overload  `json:"overload"`
	Smoke     Smoke      `json:"smoke"`
	Scenarios []Scenario `json:"scenarios"`
}

// LoadConfig reads and validates a scenarios.json file.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseConfig(b)
}

func ParseConfig(b []byte) (*Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse scenarios: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return &c, nil
}

func (c *Config) Validate() error {
	if len(c.Scenarios) == 0 {
		return errors.New("scenarios: no scenarios defined")
	}
	if c.Defaults.RequestTimeout <= 0 {
		c.Defaults.RequestTimeout = Duration(30 * time.Second)
	}
	seen := map[string]bool{}
	for i := range c.Scenarios {
		s := &c.Scenarios[i]
		if s.Name == "" {
			return fmt.Errorf("scenario #%d: missing name", i)
		}
		if seen[s.Name] {
			return fmt.Errorf("scenario %q: duplicate name", s.Name)
		}
		seen[s.Name] = true
		if s.Method == "" {
			s.Method = "GET"
		}
		if len(s.Paths) == 0 {
			return fmt.Errorf("scenario %q: no paths", s.Name)
		}
		for _, p := range s.Paths {
			if !strings.HasPrefix(p, "/") {
				return fmt.Errorf("scenario %q: path %q must start with /", s.Name, p)
			}
			if _, err := url.ParseRequestURI(p); err != nil {
				return fmt.Errorf("scenario %q: path %q: %w", s.Name, p, err)
			}
		}
		switch s.Expect.Kind {
		case "", "logs", "aggregate", "any":
		default:
			return fmt.Errorf("scenario %q: expect.kind %q (allowed: logs, aggregate, any)", s.Name, s.Expect.Kind)
		}
		if s.SleepS < 0 || math.IsNaN(s.SleepS) {
			return fmt.Errorf("scenario %q: sleep_s must be >= 0", s.Name)
		}
		t := s.Thresholds
		if t.P95Ms <= 0 {
			return fmt.Errorf("scenario %q: thresholds.p95_ms must be > 0", s.Name)
		}
		if t.MaxErrorRate < 0 || t.MaxErrorRate > 1 || t.Max503Rate < 0 || t.Max503Rate > 1 {
			return fmt.Errorf("scenario %q: threshold rates must be within [0, 1]", s.Name)
		}
		if s.ClosedLoop {
			if s.Connections <= 0 {
				return fmt.Errorf("scenario %q: closed_loop needs connections > 0", s.Name)
			}
			if s.Duration <= 0 {
				return fmt.Errorf("scenario %q: closed_loop needs a duration > 0", s.Name)
			}
		} else {
			if len(s.Stages) == 0 {
				return fmt.Errorf("scenario %q: ramping scenario needs stages", s.Name)
			}
			if s.StartVUs < 0 {
				return fmt.Errorf("scenario %q: start_vus must be >= 0", s.Name)
			}
			var total time.Duration
			peak := s.StartVUs
			for j, st := range s.Stages {
				if st.Target < 0 {
					return fmt.Errorf("scenario %q: stage %d: negative target", s.Name, j)
				}
				total += st.Duration.D()
				peak = max(peak, st.Target)
			}
			if total <= 0 {
				return fmt.Errorf("scenario %q: stages have zero total duration", s.Name)
			}
			if peak == 0 {
				return fmt.Errorf("scenario %q: stages never start a VU", s.Name)
			}
		}
	}
	if o := c.Overload; o != nil {
		if o.MaxErrorRate < 0 || o.MaxErrorRate > 1 || o.Max503Rate < 0 || o.Max503Rate > 1 {
			return errors.New("overload: rates must be within [0, 1]")
		}
	}
	return nil
}

// Select returns the scenarios named in spec: "all", or a comma separated
// list of scenario names and/or group names ("ramping", "throughput").
// Order follows the file; each scenario appears at most once.
func (c *Config) Select(spec string) ([]Scenario, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "all" {
		return append([]Scenario(nil), c.Scenarios...), nil
	}
	want := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		found := false
		for _, s := range c.Scenarios {
			if s.Name == part || s.Group == part {
				want[s.Name] = true
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario or group %q (known: %s)", part, strings.Join(c.knownNames(), ", "))
		}
	}
	var out []Scenario
	for _, s := range c.Scenarios {
		if want[s.Name] {
			out = append(out, s)
		}
	}
	return out, nil
}

func (c *Config) knownNames() []string {
	var names []string
	groups := map[string]bool{}
	for _, s := range c.Scenarios {
		names = append(names, s.Name)
		if s.Group != "" && !groups[s.Group] {
			groups[s.Group] = true
		}
	}
	for g := range groups {
		names = append(names, g+" (group)")
	}
	return append(names, "all")
}

// EffectiveThresholds returns the limits that apply at the given VU
// multiplier: above overload.applies_when_vu_mult_above the overload rates
// replace the scenario's own error limits; p95 stays.
func (c *Config) EffectiveThresholds(s Scenario, vuMult float64) Thresholds {
	t := s.Thresholds
	if o := c.Overload; o != nil && vuMult > o.AppliesWhenVUMultAbove {
		t.MaxErrorRate = o.MaxErrorRate
		t.Max503Rate = o.Max503Rate
	}
	return t
}

// FindConfig locates k6/scenarios.json by walking up from dir.
func FindConfig(dir string) (string, error) {
	d, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for {
		p := filepath.Join(d, "k6", "scenarios.json")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(d)
		if parent == d {
			return "", errors.New("k6/scenarios.json not found in this directory or any parent; pass --scenarios PATH")
		}
		d = parent
	}
}
