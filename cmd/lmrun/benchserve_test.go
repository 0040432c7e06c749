package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
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
	if _, _, err := lmrun(t, append([]string{"bench", "serve", "-m", model, "--chat"}, short...)...); err == nil || !strings.Contains(err.Error(), "--chat") {
		t.Errorf("--chat without a template: %v", err)
	}
	if _, _, err := lmrun(t, "bench", "serve", "-m", model, "--clients", "0"); err == nil {
		t.Error("--clients 0 accepted")
	}
}
