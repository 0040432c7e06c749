package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/bench"
)

func TestBenchServeCommand(t *testing.T) {
	model := filepath.Join(t.TempDir(), "t.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	short := []string{"-t", "1", "--clients", "2", "--duration", "300ms", "--single-duration", "200ms", "-n", "4", "-p", "16"}
	out := mustRun(t, append([]string{"bench", "serve", "-m", model, "--chat", "--chat-template", "chatml"}, short...)...)
	for _, want := range []string{"model t.lmc (f32)", "2 sessions", "| single stream | 1 |", "| concurrent | 2 |", "| engine pp16 |",
		"| errors | 0 | 0 | PASS |", "| aggregate / single stream |", "| p99 token gap / single stream |"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench serve output lacks %q:\n%s", want, out)
		}
	}
	js := mustRun(t, append([]string{"bench", "serve", "-m", model, "--json", "--parallel", "3"}, short...)...)
	var res struct {
		Parallel int
		Load     struct {
			Requests int
			Errors   int
		}
		Checks []struct{ Name string }
	}
	if err := json.Unmarshal([]byte(js), &res); err != nil || res.Parallel != 3 || res.Load.Requests < 2 || res.Load.Errors != 0 || len(res.Checks) != 5 {
		t.Fatalf("--json: %v %+v\n%s", err, res, js)
	}
	// --check turns the verdict into the exit status: an error exactly when the JSON says
	// a target failed.
	js, _, err := lmrun(t, append([]string{"bench", "serve", "-m", model, "--json", "--check"}, short...)...)
	var verdict struct {
		Pass bool `json:"pass"`
	}
	if jerr := json.Unmarshal([]byte(js), &verdict); jerr != nil {
		t.Fatalf("--check --json: %v\n%s", jerr, js)
	}
	if verdict.Pass != (err == nil) || (err != nil && !strings.Contains(err.Error(), "targets not met: ")) {
		t.Errorf("--check: pass %v, error %v", verdict.Pass, err)
	}
	if _, _, err := lmrun(t, append([]string{"bench", "serve", "-m", model, "--chat"}, short...)...); err == nil || !strings.Contains(err.Error(), "--chat") {
		t.Errorf("--chat without a template: %v", err)
	}
	if _, _, err := lmrun(t, "bench", "serve", "-m", model, "--clients", "0"); err == nil {
		t.Error("--clients 0 accepted")
	}
}

func TestFailedChecks(t *testing.T) {
	r := bench.ServeResult{Checks: []bench.Check{
		{Name: "errors", Applies: true, Pass: true},
		{Name: "aggregate / single stream", Applies: false, Pass: false},
		{Name: "aggregate / pp", Applies: true, Pass: false},
		{Name: "p99 token gap / single stream", Applies: true, Pass: false},
	}}
	if got, want := failedChecks(r), "targets not met: aggregate / pp, p99 token gap / single stream"; got != want {
		t.Errorf("failedChecks = %q, want %q", got, want)
	}
}
