package parallel

import (
	"sync"
	"sync/atomic"
	"testing"
)

// TestRunCoversEachIndexOnce for many sizes, grains and thread counts, with several
// goroutines sharing one pool.
func TestRunCoversEachIndexOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 8} {
		p := New(threads)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for _, n := range []int{0, 1, 2, 5, 16, 17, 100, 1000} {
					for _, grain := range []int{0, 1, 7, 64} {
						hits := make([]int32, n)
						var busy [16]atomic.Int32
						p.RunFunc(n, grain, func(w, lo, hi int) {
							if w < 0 || w >= threads {
								t.Errorf("worker id %d with %d threads", w, threads)
								return
							}
							if busy[w].Add(1) != 1 {
								t.Errorf("worker id %d used by two calls at once", w)
							}
							for i := lo; i < hi; i++ {
								atomic.AddInt32(&hits[i], 1)
							}
							busy[w].Add(-1)
						})
						for i, h := range hits {
							if h != 1 {
								t.Errorf("threads=%d n=%d grain=%d: index %d ran %d times", threads, n, grain, i, h)
								return
							}
						}
					}
				}
			}()
		}
		wg.Wait()
		p.Close()
	}
}

// TestRunRangesAreWholeGrains: every range a Run hands out starts at a multiple of the
// grain and, but for the last, is a multiple of it long.
func TestRunRangesAreWholeGrains(t *testing.T) {
	p := New(3)
	defer p.Close()
	for _, n := range []int{1, 15, 16, 17, 288, 768, 1000, 2304, 32000} {
		for _, grain := range []int{1, 8, 16} {
			p.RunFunc(n, grain, func(_, lo, hi int) {
				if lo%grain != 0 || (hi != n && (hi-lo)%grain != 0) {
					t.Errorf("n=%d grain=%d: range [%d,%d)", n, grain, lo, hi)
				}
			})
		}
	}
}

func BenchmarkRunOverhead(b *testing.B) {
	p := New(2)
	defer p.Close()
	var sink atomic.Int64
	for i := 0; i < b.N; i++ {
		p.RunFunc(64, 1, func(_, lo, hi int) { sink.Add(int64(hi - lo)) })
	}
}
