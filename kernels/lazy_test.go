package kernels

import (
	"sync"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

// TestMatFactsOnce: the facts NewMat leaves for later are found once, agree for every
// concurrent first caller (run under -race by make test), and cost no allocation once
// known — the kernels ask on every call.
func TestMatFactsOnce(t *testing.T) {
	const rows, cols = 64, 256
	x := make([]float32, rows*cols)
	for i := range x {
		x[i] = float32(i%23) - 11
	}
	q8, err := dtype.Quantize(dtype.Q8_0, x, cols)
	if err != nil {
		t.Fatal(err)
	}
	f16, err := dtype.Quantize(dtype.F16, x, cols)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		dt   dtype.DType
		data []byte
		fact func(*Mat) bool
	}{{dtype.Q8_0, q8, (*Mat).Q8Sym}, {dtype.F16, f16, (*Mat).F16Finite}} {
		m, err := NewMat(c.dt, c.data, rows, cols)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		got := make([]bool, 8)
		for i := range got {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got[i] = c.fact(m)
			}()
		}
		wg.Wait()
		for i, g := range got {
			if !g {
				t.Fatalf("%s: caller %d saw false for clean data", c.dt, i)
			}
		}
		if n := testing.AllocsPerRun(100, func() { c.fact(m) }); n != 0 {
			t.Fatalf("%s: %v allocations per call once known", c.dt, n)
		}
		cp := *m // a copy shares the facts
		if !c.fact(&cp) {
			t.Fatalf("%s: a copy of the Mat lost the fact", c.dt)
		}
	}
	lit := &Mat{DType: dtype.Q8_0, Rows: rows, Cols: cols, Data: q8}
	if lit.Q8Sym() || (&Mat{DType: dtype.F16, Rows: rows, Cols: cols, Data: f16}).F16Finite() {
		t.Fatal("a Mat built without NewMat claims a fact about its data")
	}
}
