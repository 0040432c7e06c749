// Package parallel is a small persistent worker pool that splits index ranges across a
// fixed number of goroutines. Work is assigned by index ranges only, so a computation
// whose every output element is produced by single-threaded code gives bit-identical
// results for any number of threads.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// Pool runs range functions on a fixed set of worker goroutines. It is safe for use by
// several goroutines at once; their calls share the workers.
type Pool struct {
	n    int
	jobs chan *job
	once sync.Once
}

type job struct {
	fn    func(worker, lo, hi int)
	n     int
	chunk int
	next  atomic.Int64
	wg    sync.WaitGroup
	slots chan int
}

// New starts a pool of n workers (n ≤ 0: the number of CPUs available to the process).
// The calling goroutine takes part in every Run, so n-1 goroutines are started.
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, jobs: make(chan *job, n)}
	for i := 1; i < n; i++ {
		go p.worker()
	}
	return p
}

// Threads returns the number of threads a Run uses.
func (p *Pool) Threads() int { return p.n }

// Close stops the workers. Run must not be called afterwards.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.jobs) })
}

func (p *Pool) worker() {
	for j := range p.jobs {
		j.work()
	}
}

// Run calls fn on disjoint ranges [lo, hi) covering [0, n) and returns when all are done.
// worker is in [0, Threads()) and is unique among the calls running at the same time, so
// it can index per-thread scratch buffers. grain is the smallest range worth handing out.
func (p *Pool) Run(n, grain int, fn func(worker, lo, hi int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	threads := p.n
	if max := (n + grain - 1) / grain; threads > max {
		threads = max
	}
	if threads <= 1 {
		fn(0, 0, n)
		return
	}
	// A few chunks per thread balance uneven progress; chunks are never below grain.
	chunk := max((n+4*threads-1)/(4*threads), grain)
	j := &job{fn: fn, n: n, chunk: chunk, slots: make(chan int, threads)}
	for w := 0; w < threads; w++ {
		j.slots <- w
	}
	j.wg.Add(threads)
	for w := 1; w < threads; w++ {
		p.jobs <- j
	}
	j.work()
	j.wg.Wait()
}

func (j *job) work() {
	defer j.wg.Done()
	w := <-j.slots
	for {
		lo := int(j.next.Add(int64(j.chunk))) - j.chunk
		if lo >= j.n {
			return
		}
		j.fn(w, lo, min(lo+j.chunk, j.n))
	}
}
