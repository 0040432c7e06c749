// Package bench holds lmrun's benchmarks: model-level prefill and decode throughput on
// synthesized models of real shapes (go test -bench), per backend and thread count.
// Kernel-level benchmarks and the machine-limit probes behind `lmrun bench` build on it:
// read bandwidth per cache level and of DRAM, FMA and int8 peaks per backend, and the
// comparison of several machines' kernel results (`lmrun bench compare`).
package bench

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/lmrun/lmrun/convert/synth"
)

// SynthModel writes the named preset into dir (once; an existing file is reused) and
// returns its path.
func SynthModel(dir, preset string, seed uint64) (string, error) {
	p, err := synth.Lookup(preset)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, fmt.Sprintf("%s-seed%d.lmc", preset, seed))
	if _, err := os.Stat(path); err == nil {
		return path, nil
	}
	ck, err := p.Build(seed)
	if err != nil {
		return "", err
	}
	return path, ck.WriteFile(path, nil)
}
