//go:build amd64 && !purego

package avx2

import (
	"math/rand/v2"
	"testing"
)

// TestArrangeX: arrangeX (the assembly arrangeHM and arrangeBFM over every whole 32
// columns) lays x out exactly as the orders' definitions say, for lengths with and
// without columns past the last 32.
func TestArrangeX(t *testing.T) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{8, 24, 32, 40, 64, 96, 776, 3072} {
		x := randSlice(r, n)
		for _, o := range []halfOrder{orderMixH, orderMixBF} {
			want := make([]float32, n)
			n32 := n &^ 31
			for c := 0; c < n; c++ {
				src := c
				if c < n32 {
					b, j := c&^15, c&15 // column j of a 16-column block
					if o == orderMixBF || b%32 == 16 {
						// the block's 8 even columns, then its 8 odd ones
						src = b + 2*(j%8) + j/8
					}
				}
				want[c] = x[src]
			}
			got := make([]float32, n+1)
			got[n] = 42
			arrangeX(o, got, x)
			for c := range want {
				if got[c] != want[c] {
					t.Fatalf("order %d n=%d: column %d = %v, want %v", o, n, c, got[c], want[c])
				}
			}
			if got[n] != 42 {
				t.Fatalf("order %d n=%d: wrote past len(x)", o, n)
			}
		}
	}
}
