package engine

import (
	"context"
	"errors"
	"fmt"

	"github.com/lmrun/lmrun/model"
)

// ErrContextFull is returned when a forward pass would run past the context length.
var ErrContextFull = errors.New("context full")

// SessionOptions configure NewSession.
type SessionOptions struct {
	// Context caps the session's context (and KV cache memory) below the model's context
	// length; 0 means the model's.
	Context int
	// Batch is the most prompt tokens processed in one pass (0: 512, as llama.cpp's
	// default micro-batch; at most the context). The pass's buffers grow with it: about
	// (5·dim + 2·kv dim + 2·ffn dim) floats a token.
	Batch int
	// HalfKV stores the KV cache as IEEE binary16, halving its memory (keys and values
	// are rounded to 11 significant bits; attention still computes in float32).
	HalfKV bool
	// ObserveMatMul, when set, is called before every matrix product of a forward pass
	// with the input x (T rows of cols values, read-only and valid only during the call)
	// and the tensor names of the one to three matrices that multiply it (q, k and v, or
	// gate and up, share their input). It sees what the weights see — e.g. to collect the
	// input statistics of a quantizer (quant/calib). Nil costs nothing.
	ObserveMatMul func(names []string, x []float32, T, cols int)
}

// Session is one sequence being decoded: the KV cache, the position, and every scratch
// buffer of the forward pass, all allocated once here. A Session is not safe for
// concurrent use; use one per goroutine (they may share a Model).
type Session struct {
	m     *Model
	ctx   int // positions this session can hold
	batch int
	pos   int

	// KV cache, per layer. A global layer keeps every position, [kvCap, kvDim], growing
	// with use up to ctx; a local layer (0 < window < ctx) keeps its window in a ring,
	// [min(kvCap, window), kvDim], position p in slot p mod window, so its memory does not
	// grow with the generated length. Until the ring is full its positions are its first
	// slots, so it grows as a global layer does: a window from the checkpoint costs
	// nothing before it is used.
	kcache, vcache []kvBuf
	halfKV         bool
	kvCap          int
	// stageK/V line up a local layer's ring and a prefill batch in position order,
	// [min(kvCap, maxWindow-1+batch), kvDim], so each query's band is one contiguous run.
	stageK, stageV kvBuf
	maxWindow      int

	ropeFreq []float64   // the model's pair frequencies this session's context selects
	logits   []float32   // [vocab]
	scores   [][]float32 // per thread [scoreRows, kvCap]

	// The working memory of the session's own forward passes (Forward, ForwardAll) of
	// up to batch tokens; a Batch brings its own.
	p       *pass
	observe func(names []string, x []float32, T, cols int) // SessionOptions.ObserveMatMul
	seg     [1]segment                                     // the session as its own pass's one segment
	tokens  []int                                          // [batch]: the tokens of seg

	// This session's part of the pass running it (its own, or a Batch's).
	att attnState
}

// NewSession allocates a session's KV cache and buffers.
func (m *Model) NewSession(opts SessionOptions) *Session {
	c := &m.cfg
	ctx := c.ContextLength
	if opts.Context > 0 && opts.Context < ctx {
		ctx = opts.Context
	}
	b := opts.Batch
	if b <= 0 {
		b = defaultBatch
	}
	b = min(b, ctx)
	s := &Session{m: m, ctx: ctx, batch: b, observe: opts.ObserveMatMul}
	s.halfKV = opts.HalfKV
	s.kcache = make([]kvBuf, c.NLayers)
	s.vcache = make([]kvBuf, c.NLayers)
	for i := range s.kcache { // every cache starts empty: reserve sizes them
		s.kcache[i], s.vcache[i] = s.newKV(0), s.newKV(0)
		s.maxWindow = max(s.maxWindow, s.ring(i))
	}
	s.stageK, s.stageV = s.newKV(0), s.newKV(0)
	if c.Position == model.RoPE {
		s.ropeFreq = m.ropeFreq
		if m.ropeFreqLong != nil && ctx > c.RopeOrigContext {
			s.ropeFreq = m.ropeFreqLong
		}
	}
	s.logits = make([]float32, c.VocabSize)
	s.scores = make([][]float32, m.pool.Threads())
	s.p = newPass(m, b)
	s.tokens = make([]int, b)
	s.reserve(min(ctx, kvInitial))
	return s
}

// scoreRows is how many queries' scores a thread of the session's attention holds at
// once: Model.blockQueries when its own passes can take a prompt's queries in blocks
// (pass.blockedAttention), else one.
func (s *Session) scoreRows() int {
	if q := s.m.blockQueries(); q > 0 && !s.halfKV && s.batch >= max(2*attnBlock, q) {
		return q
	}
	return 1
}

// defaultBatch is SessionOptions.Batch's default.
const defaultBatch = 512

// kvInitial is the number of positions a new session's cache holds before it grows.
const kvInitial = 256

// ring returns layer i's window when it keeps a ring buffer (0 < window < ctx), else 0.
func (s *Session) ring(i int) int {
	if w := s.m.layers[i].window; w > 0 && w < s.ctx {
		return w
	}
	return 0
}

// reserve grows the KV caches (and the attention scratch) to hold n positions. The caches
// double, up to the context length (a ring, up to its window), so memory follows the
// sequence actually decoded and a long context or window costs nothing until it is used;
// growth is amortised O(1) a token.
func (s *Session) reserve(n int) {
	if n <= s.kvCap {
		return
	}
	newCap := min(max(n, 2*s.kvCap, kvInitial), s.ctx)
	for i := range s.kcache {
		rows := newCap
		if w := s.ring(i); w > 0 {
			rows = min(newCap, w)
		}
		if rows == s.kcache[i].rows {
			continue // a full ring
		}
		// Positions 0..pos-1 are rows 0..pos-1: a ring that grows is not full yet.
		keep := min(s.pos, s.kvCap)
		s.kcache[i] = s.kcache[i].grow(rows, keep)
		s.vcache[i] = s.vcache[i].grow(rows, keep)
	}
	if s.maxWindow > 0 {
		// A batch stages at most min(pos, window-1) earlier positions and itself.
		rows := min(newCap, s.maxWindow-1+s.batch)
		if rows > s.stageK.rows {
			s.stageK, s.stageV = s.newKV(rows), s.newKV(rows)
		}
	}
	s.kvCap = newCap
	for i := range s.scores {
		// A band never exceeds the positions so far; blocks of a prompt's queries take a
		// band each.
		s.scores[i] = make([]float32, s.scoreRows()*newCap)
	}
}

// newKV returns an empty-valued cache buffer of rows positions of the session's kind.
func (s *Session) newKV(rows int) kvBuf {
	c := &s.m.cfg
	return newKV(s.halfKV, c.NKVHeads, c.HeadDim, rows)
}

// KVBytes returns the memory the session's KV cache occupies now.
func (s *Session) KVBytes() int64 {
	var n int64
	for i := range s.kcache {
		n += s.kcache[i].bytes() + s.vcache[i].bytes()
	}
	return n
}

// KVMaxBytes returns the memory the KV cache occupies once the context is full.
func (s *Session) KVMaxBytes() int64 {
	kvd := int64(s.m.cfg.KVDim())
	elem := int64(4)
	if s.halfKV {
		elem = 2
	}
	var n int64
	for i := range s.kcache {
		pos := int64(s.ctx)
		if w := s.ring(i); w > 0 {
			pos = int64(w)
		}
		n += pos * kvd * 2 * elem
	}
	return n
}

// Pos returns the number of tokens the session has processed.
func (s *Session) Pos() int { return s.pos }

// Context returns the number of positions the session can hold.
func (s *Session) Context() int { return s.ctx }

// Reset empties the session so it can start a new sequence.
func (s *Session) Reset() { s.pos = 0 }

// Rewind drops the positions from n on, so that the next Forward continues the
// sequence at n (a chat whose past turns render differently than they were generated
// keeps the turns before the difference). It reports false, and changes nothing, when
// n is beyond the positions processed or a sliding-window layer's ring has already
// overwritten some of the positions before n; then Reset and start over.
func (s *Session) Rewind(n int) bool {
	if n < 0 || n > s.pos {
		return false
	}
	for i := range s.kcache {
		// Position p lives in slot p mod w: once positions reached w, those from n on
		// have overwritten some of the w before n.
		if w := s.ring(i); w > 0 && s.pos > w && n < s.pos {
			return false
		}
	}
	s.pos = n
	return true
}

// Model returns the session's model.
func (s *Session) Model() *Model { return s.m }

// Forward runs tokens through the model at the session's position, appends them to the
// KV cache and returns the logits after the last one. The slice is owned by the session
// and overwritten by the next call. A prompt is processed in batches (matrix–matrix
// products); a single token is a decode step.
func (s *Session) Forward(tokens []int) ([]float32, error) {
	return s.ForwardContext(context.Background(), tokens)
}

// ForwardContext is Forward that checks ctx before each batch: once ctx is done it
// returns ctx's error, so a long prompt stops within one batch of a cancellation. The
// batches processed before stay in the KV cache (Pos counts them).
func (s *Session) ForwardContext(ctx context.Context, tokens []int) ([]float32, error) {
	if err := s.check(tokens); err != nil {
		return nil, err
	}
	for len(tokens) > 0 {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(len(tokens), s.batch)
		s.forward(tokens[:n], nil, len(tokens) == n)
		tokens = tokens[n:]
	}
	return s.logits, nil
}

// ForwardAll is Forward that also returns the logits after every token: out (len ≥
// len(tokens)·vocab, allocated when nil) receives row t for token t.
func (s *Session) ForwardAll(tokens []int, out []float32) ([]float32, error) {
	return s.forwardAll(context.Background(), tokens, out)
}

// forwardAll is ForwardAll checking ctx before each batch, as ForwardContext does.
func (s *Session) forwardAll(ctx context.Context, tokens []int, out []float32) ([]float32, error) {
	if err := s.check(tokens); err != nil {
		return nil, err
	}
	v := s.m.cfg.VocabSize
	if out == nil {
		out = make([]float32, len(tokens)*v)
	} else if len(out) < len(tokens)*v {
		return nil, fmt.Errorf("logits buffer of %d floats, need %d", len(out), len(tokens)*v)
	}
	for i := 0; i < len(tokens); i += s.batch {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		n := min(len(tokens)-i, s.batch)
		s.forward(tokens[i:i+n], out[i*v:(i+n)*v], false)
	}
	if len(tokens) > 0 {
		copy(s.logits, out[(len(tokens)-1)*v:])
	}
	return out, nil
}

func (s *Session) check(tokens []int) error {
	if len(tokens) == 0 {
		return errors.New("no tokens to process")
	}
	if s.pos+len(tokens) > s.ctx {
		return fmt.Errorf("%w: %d tokens at position %d exceed the context length %d", ErrContextFull, len(tokens), s.pos, s.ctx)
	}
	for i, id := range tokens {
		if id < 0 || id >= s.m.cfg.VocabSize {
			return fmt.Errorf("token %d (at index %d) is out of range: the vocabulary has %d ids", id, i, s.m.cfg.VocabSize)
		}
	}
	return nil
}

// forward processes T ≤ batch tokens at s.pos in the session's own pass. all, if not
// nil, receives the logits of every row; otherwise, when last is set, s.logits receives
// those of the final row.
func (s *Session) forward(tokens []int, all []float32, last bool) {
	// The pass keeps its segments' tokens: a copy, so the caller's slice does not escape
	// (a decode step's []int{id} stays on the caller's stack).
	n := copy(s.tokens, tokens)
	s.seg[0] = segment{s: s, tokens: s.tokens[:n], logits: last}
	s.p.observe = s.observe
	s.p.forward(s.seg[:], all)
}
