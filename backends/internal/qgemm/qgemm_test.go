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
