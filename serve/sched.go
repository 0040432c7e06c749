package serve

import (
	"context"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/lmrun/lmrun/engine"
)

// The scheduler runs every sequence of the server through one engine.Batch: each step
// feeds the next token of every sequence that is generating and one prompt chunk of
// sequences still reading their prompt, as one forward pass. New requests take a free
// slot between steps, finished ones leave it; a request that finds no slot waits in the
// queue (Options.Queue).
type scheduler struct {
	m     *engine.Model
	batch *engine.Batch
	chunk int // prompt tokens a sequence feeds per step
	slots []*slot
	met   *metrics

	mu      sync.Mutex
	pending []*job        // admitted, waiting for a slot, oldest first
	closed  bool          // the loop has stopped: a job submitted now ends at once
	wake    chan struct{} // a job arrived (capacity 1)
	quit    chan struct{}
	stop    sync.Once     // closes quit
	done    chan struct{} // the loop has returned

	items []engine.BatchItem
	used  uint64 // a clock for the slots' last use
}

// slot is one session — one sequence's KV cache — and what it holds.
type slot struct {
	sess   *engine.Session
	tokens []int // the tokens in the session's cache, in order
	job    *job  // the sequence using it, nil when idle
	used   uint64
}

// job is one request's sequence.
type job struct {
	ctx       context.Context
	prompt    []int
	sampler   *engine.Sampler
	stopIDs   []int // ids that end the generation (not emitted)
	dec       *engine.TextDecoder
	maxTokens int // < 0: until the context is full
	logprobs  bool
	top       int // top_logprobs alternatives per token

	// The scheduler's state of the job.
	slot      *slot
	fed       int // prompt tokens in the cache
	cached    int // of which reused from an earlier sequence
	generated int
	next      [1]int // the token to feed next
	prefillT0 time.Time

	// What the handler reads: events appended by the scheduler, signalled on ready.
	mu     sync.Mutex
	events []event
	ready  chan struct{} // capacity 1
}

// event is a piece of a job's output: text with the tokens it came from, or the end.
type event struct {
	text   string
	tokens []tokenLogprob // when logprobs are asked for: the tokens sampled since the last event
	end    bool
	finish string // "stop" or "length", at the end
	err    error  // at the end, when the job failed
	usage  usage  // at the end
}

// tokenLogprob is one sampled token's log-probability and the most likely alternatives.
type tokenLogprob struct {
	id      int
	logprob float32
	top     []idLogprob
}

type idLogprob struct {
	id      int
	logprob float32
}

func newScheduler(m *engine.Model, parallel, chunk, context int, halfKV bool, met *metrics) (*scheduler, error) {
	b, err := m.NewBatch(parallel+chunk, parallel)
	if err != nil {
		return nil, err
	}
	sc := &scheduler{m: m, batch: b, chunk: chunk, met: met,
		wake: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	for range parallel {
		// A slot's session runs only in the Batch: its own pass needs one row.
		sc.slots = append(sc.slots, &slot{sess: m.NewSession(engine.SessionOptions{Context: context, Batch: 1, HalfKV: halfKV})})
	}
	go sc.loop()
	return sc, nil
}

// contextLength returns the positions a sequence can hold.
func (sc *scheduler) contextLength() int { return sc.slots[0].sess.Context() }

// submit queues a job; the scheduler starts it when a slot is free.
func (sc *scheduler) submit(j *job) {
	j.ready = make(chan struct{}, 1)
	sc.mu.Lock()
	if sc.closed {
		sc.mu.Unlock()
		j.push(event{end: true, err: errShutdown})
		return
	}
	sc.pending = append(sc.pending, j)
	sc.met.queue.Set(float64(len(sc.pending)))
	sc.mu.Unlock()
	select {
	case sc.wake <- struct{}{}:
	default:
	}
}

// close stops the loop; jobs still running end with an error. It may be called more
// than once.
func (sc *scheduler) close() {
	sc.stop.Do(func() { close(sc.quit) })
	<-sc.done
}

func (sc *scheduler) loop() {
	defer close(sc.done)
	for {
		sc.admit()
		if !sc.active() {
			select {
			case <-sc.wake:
				continue
			case <-sc.quit:
				sc.abort()
				return
			}
		}
		select {
		case <-sc.quit:
			sc.abort()
			return
		default:
		}
		sc.step()
	}
}

// active reports whether some slot runs a job.
func (sc *scheduler) active() bool {
	for _, sl := range sc.slots {
		if sl.job != nil {
			return true
		}
	}
	return false
}

// abort ends every job, running or waiting, with an error.
func (sc *scheduler) abort() {
	for _, sl := range sc.slots {
		if sl.job != nil {
			sc.finish(sl.job, "", errShutdown)
		}
	}
	sc.mu.Lock()
	pending := sc.pending
	sc.pending, sc.closed = nil, true
	sc.mu.Unlock()
	for _, j := range pending {
		j.push(event{end: true, err: errShutdown})
	}
}

// admit gives free slots to waiting jobs, oldest first. A job takes the idle slot whose
// cached tokens share the longest prefix with its prompt, and keeps that prefix (the
// prompt cache): at least its last prompt token is fed again, for the logits.
func (sc *scheduler) admit() {
	for {
		sc.mu.Lock()
		// Jobs whose client left while waiting leave the queue.
		sc.pending = slices.DeleteFunc(sc.pending, func(j *job) bool {
			if j.ctx.Err() != nil {
				j.push(event{end: true, err: j.ctx.Err()})
				return true
			}
			return false
		})
		var j *job
		var best *slot
		if len(sc.pending) > 0 {
			j = sc.pending[0]
			bestN := -1
			for _, sl := range sc.slots {
				if sl.job != nil {
					continue
				}
				n := commonPrefix(sl.tokens, j.prompt)
				if n > bestN || n == bestN && sl.used < best.used {
					best, bestN = sl, n
				}
			}
			if best != nil {
				sc.pending = sc.pending[1:]
			}
		}
		sc.met.queue.Set(float64(len(sc.pending)))
		sc.mu.Unlock()
		if best == nil {
			return
		}
		sc.start(j, best)
	}
}

// start puts job j in slot sl.
func (sc *scheduler) start(j *job, sl *slot) {
	n := min(commonPrefix(sl.tokens, j.prompt), len(j.prompt)-1)
	if !sl.sess.Rewind(n) {
		sl.sess.Reset()
		n = 0
	}
	sl.tokens = sl.tokens[:n]
	sl.job, j.slot = j, sl
	j.fed, j.cached = n, n
	j.prefillT0 = time.Now()
	sc.met.active.Inc()
	sc.met.cachedTokens.Add(float64(n))
}

func commonPrefix(a, b []int) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// step runs one batched forward pass: the next token of every generating job, and the
// next prompt tokens of jobs still reading their prompt, in slot order, up to
// promptBudget (a chunk stalls the others' streams for one step at most, and the
// steps that carry one stay close to a decode step's time). Then every job whose logits
// came out samples its next token.
func (sc *scheduler) step() {
	sc.items = sc.items[:0]
	rows := 0
	for _, sl := range sc.slots {
		j := sl.job
		if j == nil {
			continue
		}
		if err := j.ctx.Err(); err != nil {
			sc.finish(j, "", err) // the client left, or its deadline passed
			continue
		}
		if j.fed == len(j.prompt) {
			sc.items = append(sc.items, engine.BatchItem{Session: sl.sess, Tokens: j.next[:], Logits: true})
			rows++
		}
	}
	prompt, budget := 0, promptBudget(sc.chunk, rows)
	for _, sl := range sc.slots {
		j := sl.job
		if j == nil || j.fed == len(j.prompt) {
			continue
		}
		n := min(budget-prompt, len(j.prompt)-j.fed)
		if n <= 0 {
			break
		}
		if rows+n > sc.batch.Rows() {
			continue
		}
		c := j.prompt[j.fed : j.fed+n]
		sc.items = append(sc.items, engine.BatchItem{Session: sl.sess, Tokens: c, Logits: j.fed+n == len(j.prompt)})
		rows += n
		prompt += n
	}
	if len(sc.items) == 0 {
		return
	}
	t0 := time.Now()
	err := sc.batch.Forward(sc.items)
	sc.met.step(rows-prompt, prompt, time.Since(t0))
	if err != nil {
		for _, it := range sc.items {
			for _, sl := range sc.slots {
				if sl.sess == it.Session && sl.job != nil {
					sc.finish(sl.job, "", err)
				}
			}
		}
		return
	}
	for _, it := range sc.items {
		sl := sc.slotOf(it.Session)
		j := sl.job
		sl.tokens = append(sl.tokens, it.Tokens...)
		if j.fed < len(j.prompt) {
			j.fed += len(it.Tokens)
			if j.fed < len(j.prompt) {
				continue
			}
			sc.met.ttft.Observe(time.Since(j.prefillT0).Seconds())
		}
		sc.sample(j, it.Session.Logits())
	}
}

// promptBudget returns how many prompt tokens a step feeds beside gen generating
// sequences: a whole chunk when none is generating, else no more than gen (and at least a
// half chunk, so a newcomer still moves), so that a step carrying a newcomer's prompt
// costs about what two decode steps do and the others' streams keep an even pace.
func promptBudget(chunk, gen int) int {
	if gen == 0 {
		return chunk
	}
	return min(chunk, max(gen, (chunk+1)/2))
}

func (sc *scheduler) slotOf(s *engine.Session) *slot {
	for _, sl := range sc.slots {
		if sl.sess == s {
			return sl
		}
	}
	panic("serve: a batch item of no slot")
}

// sample chooses job j's next token from logits and hands its text to the handler, or
// ends the job.
func (sc *scheduler) sample(j *job, logits []float32) {
	id := j.sampler.Sample(logits)
	if slices.Contains(j.stopIDs, id) {
		sc.finish(j, "stop", nil)
		return
	}
	var lp []tokenLogprob
	if j.logprobs {
		lp = []tokenLogprob{logprobsOf(logits, id, j.top)}
	}
	j.sampler.Accept(id)
	j.generated++
	sc.met.generated.Inc()
	text, stop, err := j.dec.Add(id)
	if err != nil {
		sc.finish(j, "", err)
		return
	}
	if text != "" || lp != nil {
		j.push(event{text: text, tokens: lp})
	}
	switch {
	case stop:
		sc.finish(j, "stop", nil)
	case j.maxTokens >= 0 && j.generated >= j.maxTokens, j.slot.sess.Pos() >= j.slot.sess.Context():
		sc.finish(j, "length", nil)
	default:
		j.next[0] = id
	}
}

// finish ends job j — with finish reason finish, or with err — and frees its slot. The
// slot keeps its cache for the prompt cache.
func (sc *scheduler) finish(j *job, finish string, err error) {
	sl := j.slot
	sl.job, j.slot = nil, nil
	sc.used++
	sl.used = sc.used
	sc.met.active.Dec()
	ev := event{end: true, finish: finish, err: err,
		usage: usage{PromptTokens: len(j.prompt), CompletionTokens: j.generated, TotalTokens: len(j.prompt) + j.generated}}
	if j.cached > 0 {
		ev.usage.PromptTokensDetails = &promptDetails{CachedTokens: j.cached}
	}
	if err == nil {
		ev.text = j.dec.Flush()
	}
	j.push(ev)
}

// push appends an event for the handler and signals it.
func (j *job) push(e event) {
	j.mu.Lock()
	j.events = append(j.events, e)
	j.mu.Unlock()
	select {
	case j.ready <- struct{}{}:
	default:
	}
}

// take returns the events pushed since the last call.
func (j *job) take() []event {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.events
	j.events = nil
	return e
}

// logprobsOf returns the log-probability of token id under logits (the model's
// distribution, before the sampler's penalties and filters, as OpenAI reports it) and
// the top most likely tokens.
func logprobsOf(logits []float32, id, top int) tokenLogprob {
	mx := logits[0]
	for _, x := range logits {
		mx = max(mx, x)
	}
	var sum float64
	for _, x := range logits {
		sum += math.Exp(float64(x - mx))
	}
	lse := float64(mx) + math.Log(sum)
	t := tokenLogprob{id: id, logprob: float32(float64(logits[id]) - lse)}
	for i, x := range logits {
		// Insertion into the sorted top list (top ≤ 20).
		if len(t.top) == top && (top == 0 || x <= logits[t.top[top-1].id]) {
			continue
		}
		k := len(t.top)
		if k < top {
			t.top = append(t.top, idLogprob{})
		} else {
			k--
		}
		for k > 0 && logits[t.top[k-1].id] < x {
			t.top[k] = t.top[k-1]
			k--
		}
		t.top[k] = idLogprob{id: i}
	}
	for k := range t.top {
		t.top[k].logprob = float32(float64(logits[t.top[k].id]) - lse)
	}
	return t
}
