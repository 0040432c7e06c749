// Package parallel is a small persistent worker pool that splits index ranges across a
// fixed number of goroutines. Work is assigned by index ranges only, so a computation
// whose every output element is produced by single-threaded code gives bit-identical
// results for any number of threads.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/klauspost/cpuid/v2"
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

// DefaultThreads is the number of threads a pool gets when none is asked for: one per
// physical core (a core's second hardware thread shares its load units and adds
// nothing to a memory-bound product but another thread to wait for), the number of
// logical CPUs where CPUID does not tell the core count, and never more than
// GOMAXPROCS. CPUID counts the cores of the whole processor; GOMAXPROCS follows the
// CPUs this process may use (affinity, container quota), so in a VM or a container
// the cap is what decides.
func DefaultThreads() int {
	n := cpuid.CPU.PhysicalCores
	if n <= 0 {
		n = runtime.NumCPU()
	}
	return max(1, min(n, runtime.GOMAXPROCS(0)))
}

// MaxThreads is the largest number of threads a pool runs; New clamps larger requests.
const MaxThreads = 1 << 16

// Pool runs tasks on a fixed set of worker goroutines. It is safe for use by several
// goroutines at once; their calls share the workers. Run does not allocate.
//
// A Run invites the workers with tickets and works on its own range meanwhile. A worker
// helps only if it joins the Run while the Run still has unclaimed chunks; once the
// caller finds none left it closes the Run, waits for the workers that joined and
// returns. A worker that is slow to take its ticket (its core is busy with another
// process, or it is in another Run) is never waited for, and its ticket is void when
// it gets to it.
type Pool struct {
	n       int
	tickets chan ticket
	free    sync.Pool
	once    sync.Once
	hooks   *hooks // nil but in tests
}

// hooks let tests stall workers at chosen points.
type hooks struct {
	taken func() // a worker has taken a ticket and not yet tried to join
	void  func() // the ticket it took had expired: the Run was closed or is over
}

// ticket invites a worker to one Run: job j while its generation is gen. The job is
// recycled by later Runs, so a ticket is good only while j's generation is still gen
// and j is open.
type ticket struct {
	j   *job
	gen uint64
}

// job.state is gen<<genShift | closed | the number of helpers that joined.
const (
	joinedBits = 20 // > log2(MaxThreads + the tickets a channel holds)
	joinedMask = 1<<joinedBits - 1
	closed     = 1 << joinedBits
	genShift   = joinedBits + 1
	genMask    = 1<<(64-genShift) - 1
)

// parked is set in job.pending while the caller sleeps on job.wake.
const parked = 1 << 40

type job struct {
	// state is the only field a worker holding a ticket reads before it has joined:
	// it joins by a compare-and-swap that requires the ticket's generation and an open
	// job, and so reads the fields below only while the caller waits for it.
	state atomic.Uint64
	// pending is the caller's count of joined helpers not yet done: each helper
	// subtracts one when it has finished, the caller adds how many joined once it has
	// closed the job, so pending is zero again exactly when the last of them is done.
	// Before the caller's addition it is negative, so no helper mistakes itself for the
	// last one.
	pending atomic.Int64
	next    atomic.Int64 // next index to hand out
	wake    chan struct{}

	task     Task
	n, grain int
	threads  int // ids are below it
}

// spinPolls is how many times an idle worker polls for a ticket, and Run for its
// helpers' end, before parking: about 50–100µs. The gaps between the products of a
// forward pass are microseconds, far less than waking a parked thread costs, so the
// threads of a decode step never sleep; between requests they do.
const spinPolls = 1 << 14

// yieldEvery is how often a spinning thread yields its P, so that spinning never starves
// the goroutines it waits for when there are fewer Ps than threads.
const yieldEvery = 64

// New starts a pool of n threads (n ≤ 0: DefaultThreads; at most MaxThreads). The
// calling goroutine takes part in every Run, so n-1 goroutines are started.
func New(n int) *Pool { return newPool(n, nil) }

func newPool(n int, h *hooks) *Pool {
	if n <= 0 {
		n = DefaultThreads()
	}
	n = min(n, MaxThreads)
	p := &Pool{n: n, tickets: make(chan ticket, n), hooks: h}
	p.free.New = func() any { return &job{wake: make(chan struct{}, 1)} }
	for i := 1; i < n; i++ {
		go p.worker()
	}
	return p
}

// Threads returns the number of threads a Run uses.
func (p *Pool) Threads() int { return p.n }

// Close stops the workers. Run must not be called afterwards.
func (p *Pool) Close() {
	p.once.Do(func() { close(p.tickets) })
}

func (p *Pool) worker() {
	for {
		t, ok := p.take()
		if !ok {
			return
		}
		if p.hooks != nil && p.hooks.taken != nil {
			p.hooks.taken()
		}
		j := t.j
		id, ok := j.join(t.gen)
		if !ok {
			if p.hooks != nil && p.hooks.void != nil {
				p.hooks.void()
			}
			continue
		}
		if id < j.threads { // always, unless the generation wrapped around
			j.do(id)
		}
		j.leave()
	}
}

// take returns the next ticket, spinning for a while before it parks; false once the
// pool is closed.
func (p *Pool) take() (ticket, bool) {
	for spin := 1; spin <= spinPolls; spin++ {
		select {
		case t, ok := <-p.tickets:
			return t, ok
		default:
			if spin%yieldEvery == 0 {
				runtime.Gosched() // let other goroutines of this P run (GOMAXPROCS < threads)
			}
		}
	}
	t, ok := <-p.tickets
	return t, ok
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
	j := p.free.Get().(*job)
	j.task, j.n, j.grain, j.threads = t, n, grain, threads
	j.next.Store(0)
	gen := (j.state.Load()>>genShift + 1) & genMask
	j.state.Store(gen << genShift) // open, nobody joined; publishes the fields above
invite:
	for w := 1; w < threads; w++ {
		select {
		case p.tickets <- ticket{j, gen}:
		default:
			break invite // every worker has tickets queued: none would come soon
		}
	}
	j.do(0)
	// No chunk is left to claim: close the job to the workers that have not joined, and
	// wait only for those that have.
	joined := int64(j.state.Or(closed) & joinedMask)
	if j.pending.Add(joined) != 0 {
		for spin := 1; ; spin++ {
			left := j.pending.Load()
			if left == 0 {
				break
			}
			if spin >= spinPolls && j.pending.CompareAndSwap(left, left|parked) {
				<-j.wake
				j.pending.Store(0)
				break
			}
			if spin%yieldEvery == 0 {
				runtime.Gosched()
			}
		}
	}
	j.task = nil
	p.free.Put(j)
}

// RunFunc is Run with a function.
func (p *Pool) RunFunc(n, grain int, fn func(worker, lo, hi int)) { p.Run(n, grain, Func(fn)) }

// join makes the calling worker a helper of j's generation gen, if j is still open in
// it, and returns its worker id.
func (j *job) join(gen uint64) (int, bool) {
	for {
		s := j.state.Load()
		if s>>genShift != gen || s&closed != 0 {
			return 0, false
		}
		if j.state.CompareAndSwap(s, s+1) {
			return int(s&joinedMask) + 1, true
		}
	}
}

// leave is a helper's last access to j: the caller may recycle j as soon as pending
// drops to zero, and is asleep on wake, waiting for this very send, if it was parked.
func (j *job) leave() {
	if j.pending.Add(-1) == parked {
		j.wake <- struct{}{}
	}
}

// do claims chunks and runs them as worker w until none is left.
func (j *job) do(w int) {
	for {
		lo, hi, ok := j.claim()
		if !ok {
			return
		}
		j.task.Do(w, lo, hi)
	}
}

// claim hands out the next chunk: a threads-th of what is left (rounded up to a
// multiple of grain, and never below it), so the chunks shrink as the Run goes on. The
// first ones are long — a thread streaming weights keeps its prefetchers going, and
// every chunk starts its streams cold, so fewer chunks read faster — and the last ones
// short, so the threads finish within about a grain of each other: with chunks of a
// fixed size the one that takes the last chunk may leave the others idle for all of it
// (a thread's quarter of a product, for the 4 chunks per thread of fixed chunking).
func (j *job) claim() (lo, hi int, ok bool) {
	for {
		next := j.next.Load()
		if next >= int64(j.n) {
			return 0, 0, false
		}
		lo = int(next)
		size := (max((j.n-lo)/j.threads, j.grain) + j.grain - 1) / j.grain * j.grain
		hi = min(lo+size, j.n)
		if j.next.CompareAndSwap(next, int64(hi)) {
			return lo, hi, true
		}
	}
}
