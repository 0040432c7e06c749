package qgemm

import (
	"math/rand/v2"
	"testing"
)

// TestSumQuants checks sumQuants against a plain sum of int8s, the extremes included.
func TestSumQuants(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	q := make([]byte, 32)
	for i := 0; i < 2000; i++ {
		for j := range q {
			switch i % 4 {
			case 0:
				q[j] = byte(r.IntN(256))
			case 1:
				q[j] = 0x80 // −128
			case 2:
				q[j] = 0x7f
			default:
				q[j] = byte(r.IntN(2) * 0x80)
			}
		}
		var want int32
		for _, b := range q {
			want += int32(int8(b))
		}
		if got := sumQuants(q); got != want {
			t.Fatalf("sumQuants(%v) = %d, want %d", q, got, want)
		}
	}
}

// TestScratchFloatsGrows: ScratchFloats does not decrease in T or cols and leaves room
// for the activations and the group MatMulQ8 repacks, in a scratch layout of more bytes
// a block than the repack's.
func TestScratchFloatsGrows(t *testing.T) {
	for _, sl := range []*ScratchLayout{nil, {BlockBytes: 544, Chunk: 4}} {
		k := Kernels{Lanes: 8, Tokens: 6, ScratchQ8: sl}
		gb := 288
		if sl != nil {
			gb = sl.BlockBytes
		}
		prev := 0
		for T := 1; T <= 9; T++ {
			prevCols := 0
			for nb := 1; nb <= 12; nb++ {
				got := k.ScratchFloats(T, 32*nb)
				if got < prevCols || got < prev {
					t.Fatalf("ScratchFloats(%d, %d) = %d, less than before (%d, %d)", T, 32*nb, got, prevCols, prev)
				}
				if need := (T*nb*xBytes+nb*gb+align)/4 + 8*6; got < need {
					t.Fatalf("block bytes %d: ScratchFloats(%d, %d) = %d, want ≥ %d", gb, T, 32*nb, got, need)
				}
				prevCols = got
			}
			prev = k.ScratchFloats(T, 32)
		}
	}
}
