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

// Task is work over an index range. Do is called on disjoint ranges [lo, hi) that
// together cover the Run's [0, n); worker is in [0, Threads()) and unique among the
// calls of one Run that are in progress, so it can index per-thread scratch space.
type Task interface {
	Do(worker, lo, hi int)
}

// Func adapts a function to Task. Converting a closure allocates; hot paths keep their
// tasks as preallocated values instead.
type Func func(worker, lo, hi int)

// Do implements Task.
func (f Func) Do(worker, lo, hi int) { f(worker, lo, hi) }

// Pool runs tasks on a fixed set of worker goroutines. It is safe for use by several
// goroutines at once; their calls share the workers. Run does not allocate.
type Pool struct {
	n    int
	jobs chan *job
	free sync.Pool
	once sync.Once
}

type job struct {
	task   Task
	n      int
	chunk  int
	next   atomic.Int64 // next index to hand out
	worker atomic.Int32 // next worker id
	wg     sync.WaitGroup
	left   atomic.Int32 // threads yet to finish; a thread's last access to the job
}

// spinPolls is how many times an idle worker polls for a job, and Run for its job's end,
// before parking: about 50–100µs. The gaps between the products of a forward pass are
// microseconds, far less than waking a parked thread costs, so the threads of a decode
// step never sleep; between requests they do.
const spinPolls = 1 << 14

// yieldEvery is how often a spinning thread yields its P, so that spinning never starves
// the goroutines it waits for when there are fewer Ps than threads.
const yieldEvery = 64

// New starts a pool of n workers (n ≤ 0: the number of CPUs available to the process).
// The calling goroutine takes part in every Run, so n-1 goroutines are started.
func New(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, jobs: make(chan *job, n)}
	p.free.New = func() any { return new(job) }
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
	for {
		var j *job
		for spin := 0; spin < spinPolls && j == nil; spin++ {
			select {
			case jj, ok := <-p.jobs:
				if !ok {
					return
				}
				j = jj
			default:
				if spin%yieldEvery == yieldEvery-1 {
					runtime.Gosched() // let other goroutines of this P run (GOMAXPROCS < threads)
				}
			}
		}
		if j == nil {
			jj, ok := <-p.jobs
			if !ok {
				return
			}
			j = jj
		}
		j.work()
	}
}

// Run calls t.Do on ranges covering [0, n) and returns when all are done. grain is the
// smallest range worth handing to a thread, and every range but the last is a multiple
// of it (so a kernel that works on tiles of rows sees whole tiles).
func (p *Pool) Run(n, grain int, t Task) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	threads := min(p.n, (n+grain-1)/grain)
	if threads <= 1 {
		t.Do(0, 0, n)
		return
	}
	// A few chunks per thread balance uneven progress; chunks are never below grain.
	j := p.free.Get().(*job)
	j.task, j.n = t, n
	j.chunk = (max((n+4*threads-1)/(4*threads), grain) + grain - 1) / grain * grain
	j.next.Store(0)
	j.worker.Store(0)
	j.wg.Add(threads)
	j.left.Store(int32(threads))
	for w := 1; w < threads; w++ {
		p.jobs <- j
	}
	j.work()
	// Spin for the other threads, then park; either way wait until every thread has
	// let go of the job before recycling it.
	for spin := 0; j.left.Load() != 0; spin++ {
		switch {
		case spin == spinPolls:
			j.wg.Wait()
		case spin%yieldEvery == yieldEvery-1:
			runtime.Gosched()
		}
	}
	j.task = nil
	p.free.Put(j)
}

// RunFunc is Run with a function.
func (p *Pool) RunFunc(n, grain int, fn func(worker, lo, hi int)) { p.Run(n, grain, Func(fn)) }

func (j *job) work() {
	w := int(j.worker.Add(1)) - 1
	for {
		lo := int(j.next.Add(int64(j.chunk))) - j.chunk
		if lo >= j.n {
			break
		}
		j.task.Do(w, lo, min(lo+j.chunk, j.n))
	}
	j.wg.Done()
	j.left.Add(-1)
}
