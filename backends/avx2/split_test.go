//go:build amd64 && !purego

package avx2

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/lmrun/lmrun/kernels"
)

// TestMatMulSplitInputs: the f32 GEMM on rows it takes with the inputs split (gemm4s:
// long rows, or at least twice as many rows as columns) gives every token the bits it
// gets alone (T = 1), over row ranges with and without rows%4 left over (gemm1, on the
// inputs as they are), with and without bias; and splitX lays a token out as gemm4s
// reads it; with either gemmSeg.
func TestMatMulSplitInputs(t *testing.T) {
	withGemmSegs(t, testMatMulSplitInputs)
}

// withGemmSegs runs f with each gemmSeg gemmSegFor chooses, whatever this CPU's L1d.
func withGemmSegs(t *testing.T, f func(t *testing.T)) {
	seg, rows := gemmSeg, gemmStateRows
	defer func() { gemmSeg, gemmStateRows = seg, rows }()
	for _, l1d := range []int{32 << 10, 48 << 10} {
		gemmSeg = gemmSegFor(l1d)
		gemmStateRows = gemmChunkBytes / (4 * gemmSeg)
		t.Run(fmt.Sprintf("seg%d", gemmSeg), f)
	}
}

func testMatMulSplitInputs(t *testing.T) {
	x := make([]float32, 2080)
	for i := range x {
		x[i] = float32(i)
	}
	got := make([]float32, len(x))
	splitX(got, x)
	for k0 := 0; k0 < len(x); k0 += gemmSeg {
		k1 := min(k0+gemmSeg, len(x))
		h := (k1 - k0) / 2
		for j := 0; j < h; j++ {
			odd, even := k0+j/8*16+8+j%8, k0+j/8*16+j%8
			if got[k0+j] != float32(odd) || got[k0+h+j] != float32(even) {
				t.Fatalf("splitX: column %d: %v, %v; want %d, %d", k0+j, got[k0+j], got[k0+h+j], odd, even)
			}
		}
	}
	inPlace := append([]float32(nil), x...)
	splitXInPlace(inPlace)
	for i := range got {
		if inPlace[i] != got[i] {
			t.Fatalf("splitXInPlace: %d = %v, splitX %v", i, inPlace[i], got[i])
		}
	}

	r := rand.New(rand.NewPCG(7, 7))
	for _, c := range []struct{ rows, cols int }{{75, 32}, {100, 48}, {20, 1040}, {19, 2048}, {18, 1056}, {22, 2080}} {
		rows, n := c.rows, c.cols
		if !splitInputs(n, rows-2) {
			t.Fatalf("%d×%d: not split", rows, n)
		}
		w, err := kernels.NewMatF32(randSlice(r, rows*n), rows, n)
		if err != nil {
			t.Fatal(err)
		}
		checkTokensAlone(t, r, w, [][2]int{{0, rows}, {1, rows}, {0, rows - rows%4}}, fmt.Sprintf("%d×%d", rows, n))
	}
}
