package main

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/backends"
)

func TestBenchModelBackends(t *testing.T) {
	model := filepath.Join(t.TempDir(), "t.lmc")
	mustRun(t, "synth", "--preset", "tiny", "-o", model)
	best := backends.Best().Name
	out := mustRun(t, "bench", "model", "-m", model, "-p", "4", "-n", "2", "-t", "1", "--reps", "1", "--limits=false", "--backend", "generic,"+best)
	for _, want := range []string{"| t.lmc | ", " | generic | 1 | pp4 |", " | " + best + " | 1 | tg2 |"} {
		if !strings.Contains(out, want) {
			t.Errorf("bench model --backend generic,%s lacks %q:\n%s", best, want, out)
		}
	}
	all := mustRun(t, "bench", "model", "-m", model, "-p", "0", "-n", "2", "-t", "1", "--reps", "1", "--limits=false", "--backend", "all")
	for _, b := range backends.List() {
		if b.Available() && !strings.Contains(all, " | "+b.Name+" | 1 | tg2 |") {
			t.Errorf("--backend all lacks %s:\n%s", b.Name, all)
		}
	}
	if _, _, err := lmrun(t, "bench", "model", "-m", model, "--backend", "generic,nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("an unknown backend: %v", err)
	}
}
