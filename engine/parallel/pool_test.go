package parallel

import (
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// guard bounds every wait of these tests. It only turns a hang into a failure; no test
// asserts on how long anything takes.
const guard = 10 * time.Second

// recorder is a Task that counts the runs of every index and of every worker id, checks
// the ids, and fails the test if it runs after its Run has returned.
type recorder struct {
	t       testing.TB
	name    string
	threads int
	hits    []atomic.Int32
	busy    []atomic.Int32 // calls in progress per worker id
	ranges  []atomic.Int32 // calls per worker id
	over    atomic.Bool
	first   func() // if set, called by the first call to Do, before it runs its range
	once    sync.Once
	yield   bool // each call yields its P once, letting stalled goroutines catch up
}

func newRecorder(t testing.TB, name string, n, threads int) *recorder {
	return &recorder{t: t, name: name, threads: threads, hits: make([]atomic.Int32, n),
		busy: make([]atomic.Int32, threads), ranges: make([]atomic.Int32, threads)}
}

func (r *recorder) Do(w, lo, hi int) {
	if r.over.Load() {
		r.t.Errorf("%s: [%d,%d) ran on worker %d after its Run returned", r.name, lo, hi, w)
	}
	if w < 0 || w >= r.threads {
		r.t.Errorf("%s: worker id %d with %d threads", r.name, w, r.threads)
		return
	}
	if r.first != nil {
		r.once.Do(r.first)
	}
	if r.busy[w].Add(1) != 1 {
		r.t.Errorf("%s: worker id %d used by two calls at once", r.name, w)
	}
	r.ranges[w].Add(1)
	if r.yield {
		runtime.Gosched()
	}
	for i := lo; i < hi; i++ {
		r.hits[i].Add(1)
	}
	r.busy[w].Add(-1)
}

// done marks the Run over and checks that it ran every index exactly once.
func (r *recorder) done() {
	r.t.Helper()
	r.over.Store(true)
	for i := range r.hits {
		if h := r.hits[i].Load(); h != 1 {
			r.t.Errorf("%s: index %d ran %d times", r.name, i, h)
			return
		}
	}
}

// waitFor polls cond until it holds, failing the test after guard.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(guard)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting after %v for %s", guard, what)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// TestRunCoversEachIndexOnce for many sizes, grains and thread counts (also more
// threads than grains), with several goroutines sharing one pool.
func TestRunCoversEachIndexOnce(t *testing.T) {
	for _, threads := range []int{1, 2, 3, 4, 8, 13} {
		p := New(threads)
		var wg sync.WaitGroup
		for g := 0; g < 4; g++ {
			wg.Go(func() {
				for _, n := range []int{0, 1, 2, 5, 16, 17, 63, 100, 1000, 4099} {
					for _, grain := range []int{0, 1, 3, 7, 64, 5000} {
						r := newRecorder(t, fmt.Sprintf("threads=%d n=%d grain=%d", threads, n, grain), n, threads)
						p.Run(n, grain, r)
						r.done()
					}
				}
			})
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

// TestRunDoesNotWaitForBusyWorkers: with every worker of the pool stuck in another
// goroutine's Run, a Run completes on its caller alone instead of waiting for workers
// that never take up its work.
func TestRunDoesNotWaitForBusyWorkers(t *testing.T) {
	for _, threads := range []int{2, 4} {
		p := New(threads)
		// One index per thread: the blocker's caller blocks in its own range, so the rest
		// can only start on the workers, and once all have started every worker is stuck.
		release := make(chan struct{})
		var entered atomic.Int32
		blocked := make(chan struct{})
		go func() {
			defer close(blocked)
			p.RunFunc(threads, 1, func(_, _, _ int) {
				entered.Add(1)
				<-release
			})
		}()
		waitFor(t, "every thread to enter the blocking Run", func() bool { return entered.Load() == int32(threads) })

		r := newRecorder(t, fmt.Sprintf("threads=%d", threads), 1000, threads)
		finished := make(chan struct{})
		go func() {
			defer close(finished)
			p.Run(1000, 1, r)
		}()
		select {
		case <-finished:
		case <-time.After(guard):
			close(release)
			<-finished
			<-blocked
			t.Fatalf("threads=%d: Run waited for workers busy elsewhere (still running after %v)", threads, guard)
		}
		r.done()
		for w := 1; w < threads; w++ {
			if got := r.ranges[w].Load(); got != 0 {
				t.Errorf("threads=%d: worker %d ran %d ranges while stuck elsewhere", threads, w, got)
			}
		}
		close(release)
		<-blocked
		p.Close()
	}
}

// TestVoidTicketRunsNothing: a worker that takes a Run's ticket only after the Run is
// over (here: stalled between taking it and joining) runs nothing of it, even while the
// job it points to is open again for a later Run.
func TestVoidTicketRunsNothing(t *testing.T) {
	gate := make(chan struct{})
	var takes atomic.Int32
	voids := make(chan struct{}, 16)
	p := newPool(2, &hooks{
		taken: func() {
			if takes.Add(1) == 1 {
				<-gate
			}
		},
		void: func() { voids <- struct{}{} },
	})
	defer p.Close()

	// The only worker takes the first ticket and stalls: the first Run is its caller's.
	r1 := newRecorder(t, "first", 1000, 2)
	p.Run(1000, 1, r1)
	r1.done()
	if got := r1.ranges[1].Load(); got != 0 {
		t.Fatalf("the stalled worker ran %d ranges of the first Run", got)
	}

	// The second Run (on the recycled job, as a rule) lets the worker go and waits in its
	// first range until the worker has found its ticket void.
	r2 := newRecorder(t, "second", 1000, 2)
	r2.first = func() {
		close(gate)
		select {
		case <-voids:
		case <-time.After(guard):
			t.Errorf("the stalled worker's ticket was not found void within %v", guard)
		}
	}
	p.Run(1000, 1, r2)
	r2.done()
	select {
	case <-voids:
		t.Errorf("more than one ticket was void")
	default:
	}
}

// TestStaleTicketsUnderStress: several goroutines run many small Runs on one pool whose
// workers stall at random between taking a ticket and joining, so that tickets go
// stale while their jobs are recycled. Every Run must cover its indices once, with no
// call after it returned.
func TestStaleTicketsUnderStress(t *testing.T) {
	var takes, voids, helped atomic.Int64
	p := newPool(4, &hooks{
		taken: func() {
			switch takes.Add(1) % 8 {
			case 0:
				time.Sleep(20 * time.Microsecond)
			case 1, 2, 3:
				runtime.Gosched()
			}
		},
		void: func() { voids.Add(1) },
	})
	defer p.Close()
	rounds := 300
	if testing.Short() {
		rounds = 50
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Go(func() {
			for i := 0; i < rounds; i++ {
				n := []int{4, 17, 64, 300, 1000}[(i+g)%5]
				grain := []int{1, 2, 8}[(i+2*g)%3]
				r := newRecorder(t, fmt.Sprintf("goroutine %d run %d n=%d grain=%d", g, i, n, grain), n, 4)
				r.yield = true
				p.Run(n, grain, r)
				r.done()
				for w := 1; w < 4; w++ {
					helped.Add(int64(r.ranges[w].Load()))
				}
			}
		})
	}
	wg.Wait()
	t.Logf("%d of %d tickets taken were void; helpers ran %d ranges", voids.Load(), takes.Load(), helped.Load())
}

// TestRunAllocatesNothing with a preallocated task, for one thread and several.
func TestRunAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts are meaningless under the race detector")
	}
	for _, threads := range []int{1, 2, 4} {
		p := New(threads)
		var sink atomic.Int64
		task := Func(func(_, lo, hi int) { sink.Add(int64(hi - lo)) })
		if a := testing.AllocsPerRun(200, func() { p.Run(4096, 16, task) }); a != 0 {
			t.Errorf("%d threads: %.2f allocations per Run", threads, a)
		}
		p.Close()
	}
}

// TestDefaultThreads: one thread at least, never more than GOMAXPROCS or the CPUs, and
// what New(0) uses.
func TestDefaultThreads(t *testing.T) {
	d := DefaultThreads()
	if d < 1 || d > runtime.GOMAXPROCS(0) || d > runtime.NumCPU() {
		t.Errorf("DefaultThreads() = %d with GOMAXPROCS %d and %d CPUs", d, runtime.GOMAXPROCS(0), runtime.NumCPU())
	}
	p := New(0)
	defer p.Close()
	if p.Threads() != d {
		t.Errorf("New(0) has %d threads, DefaultThreads() = %d", p.Threads(), d)
	}
}

func BenchmarkRunOverhead(b *testing.B) {
	p := New(2)
	defer p.Close()
	var sink atomic.Int64
	task := Func(func(_, lo, hi int) { sink.Add(int64(hi - lo)) })
	for b.Loop() {
		p.Run(64, 1, task)
	}
}

// matvec is a Task shaped like a decode step's product: rows of a dim×dim matrix times
// a vector, a few microseconds of work per chunk of a small model.
type matvec struct {
	w, x, y []float32
	cols    int
}

func (m *matvec) Do(_, lo, hi int) {
	for r := lo; r < hi; r++ {
		row := m.w[r*m.cols : (r+1)*m.cols]
		var s0, s1, s2, s3 float32
		for i := 0; i+4 <= len(row); i += 4 {
			s0 += row[i] * m.x[i]
			s1 += row[i+1] * m.x[i+1]
			s2 += row[i+2] * m.x[i+2]
			s3 += row[i+3] * m.x[i+3]
		}
		m.y[r] = s0 + s1 + s2 + s3
	}
}

// BenchmarkRunSmall: back-to-back Runs of a 288×288 product (stories15m's dim), chunks
// of a few microseconds, as in a decode step.
func BenchmarkRunSmall(b *testing.B) {
	const dim = 288
	m := &matvec{w: make([]float32, dim*dim), x: make([]float32, dim), y: make([]float32, dim), cols: dim}
	for i := range m.w {
		m.w[i] = float32(i%7) * 0.25
	}
	for i := range m.x {
		m.x[i] = float32(i%5) * 0.5
	}
	for _, threads := range []int{1, 2, 4} {
		b.Run(fmt.Sprintf("threads=%d", threads), func(b *testing.B) {
			p := New(threads)
			defer p.Close()
			for b.Loop() {
				p.Run(dim, 8, m)
			}
		})
	}
}
