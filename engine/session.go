package engine

import (
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
	"github.com/lmrun/lmrun/model"
)

// ErrContextFull is returned when a forward pass would run past the context length.
var ErrContextFull = errors.New("context full")

// SessionOptions configure NewSession.
type SessionOptions struct {
	// Context caps the session's context (and KV cache memory) below the model's context
	// length; 0 means the model's.
	Context int
	// Batch is the number of prompt tokens processed in one pass (0: 64).
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

	x, xb, out       []float32   // [batch, dim]
	q, att           []float32   // [batch, qDim]
	k, v             []float32   // [batch, kvDim]
	hb, hb2          []float32   // [batch, ffnDim]
	ropeCos, ropeSin []float32   // [batch, rope_dim/2]: angles of this pass's positions
	ropeFreq         []float64   // the model's pair frequencies this session's context selects
	emb              []float32   // [batch, embDim] when the model projects embeddings
	xq               []byte      // [batch, widest row] activations as q8_0 blocks
	xqK              []byte      // [batch, widest row] activations as q8_k super-blocks
	logits           []float32   // [vocab]
	scores           [][]float32 // per thread [ctx]

	// Per thread, the working memory of the matrix products (kernels.Scratch), for up to
	// batch rows of the widest matrix row.
	scratch []kernels.Scratch

	observe  func(names []string, x []float32, T, cols int) // SessionOptions.ObserveMatMul
	obsNames []string                                       // scratch for observe's names

	// The parallel steps of a pass, kept here so running them allocates nothing.
	mmTask   matmulTask
	attnTask attnTask
	actTask  actTask
	normTask normTask
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
		b = 64
	}
	b = min(b, ctx)
	s := &Session{m: m, ctx: ctx, batch: b, observe: opts.ObserveMatMul}
	s.halfKV = opts.HalfKV
	s.kcache = make([]kvBuf, c.NLayers)
	s.vcache = make([]kvBuf, c.NLayers)
	for i := range s.kcache { // every cache starts empty: reserve sizes them
		s.kcache[i], s.vcache[i] = newKV(s.halfKV, 0), newKV(s.halfKV, 0)
		s.maxWindow = max(s.maxWindow, s.ring(i))
	}
	s.stageK, s.stageV = newKV(s.halfKV, 0), newKV(s.halfKV, 0)
	if c.Projected() {
		s.emb = make([]float32, b*c.EmbeddingDim())
	}
	widest := max(c.Dim, c.FFNDim, c.QDim(), c.EmbeddingDim()) // the longest matrix row
	if m.q8 != nil {
		// One buffer per activation type the model's weights take (kernels.ActivationDType),
		// rounded up to whole blocks.
		if m.actTypes[dtype.Q8_0] {
			s.xq = make([]byte, b*dtype.RowBytes(dtype.Q8_0, (widest+dtype.QBlock-1)/dtype.QBlock*dtype.QBlock))
		}
		if m.actTypes[dtype.Q8_K] {
			s.xqK = make([]byte, b*dtype.RowBytes(dtype.Q8_K, (widest+dtype.QKBlock-1)/dtype.QKBlock*dtype.QKBlock))
		}
	}
	if c.Position == model.RoPE {
		s.ropeCos = make([]float32, b*c.RopeDim/2)
		s.ropeSin = make([]float32, b*c.RopeDim/2)
		s.ropeFreq = m.ropeFreq
		if m.ropeFreqLong != nil && ctx > c.RopeOrigContext {
			s.ropeFreq = m.ropeFreqLong
		}
	}
	s.x = make([]float32, b*c.Dim)
	s.xb = make([]float32, b*c.Dim)
	s.out = make([]float32, b*c.Dim)
	s.q = make([]float32, b*c.QDim())
	s.att = make([]float32, b*c.QDim())
	s.k = make([]float32, b*c.KVDim())
	s.v = make([]float32, b*c.KVDim())
	s.hb = make([]float32, b*c.FFNDim)
	s.hb2 = make([]float32, b*c.FFNDim)
	s.logits = make([]float32, c.VocabSize)
	s.scores = make([][]float32, m.pool.Threads())
	s.scratch = make([]kernels.Scratch, m.pool.Threads())
	for i := range s.scratch {
		s.scratch[i] = kernels.NewScratch(m.kern, b, widest)
	}
	s.reserve(min(ctx, kvInitial))
	return s
}

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
	kvd := s.m.cfg.KVDim()
	newCap := min(max(n, 2*s.kvCap, kvInitial), s.ctx)
	for i := range s.kcache {
		rows := newCap
		if w := s.ring(i); w > 0 {
			rows = min(newCap, w)
		}
		if rows*kvd == s.kcache[i].size() {
			continue // a full ring
		}
		// Positions 0..pos-1 are rows 0..pos-1: a ring that grows is not full yet.
		keep := min(s.pos, s.kvCap) * kvd
		s.kcache[i] = s.kcache[i].grow(rows*kvd, keep)
		s.vcache[i] = s.vcache[i].grow(rows*kvd, keep)
	}
	if s.maxWindow > 0 {
		// A batch stages at most min(pos, window-1) earlier positions and itself.
		rows := min(newCap, s.maxWindow-1+s.batch)
		if rows*kvd > s.stageK.size() {
			s.stageK, s.stageV = newKV(s.halfKV, rows*kvd), newKV(s.halfKV, rows*kvd)
		}
	}
	s.kvCap = newCap
	for i := range s.scores {
		s.scores[i] = make([]float32, newCap) // a band never exceeds the positions so far
	}
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

// forward processes T ≤ batch tokens at s.pos. all, if not nil, receives the logits of
// every row; otherwise, when last is set, s.logits receives those of the final row.
func (s *Session) forward(tokens []int, all []float32, last bool) {
	m, c, kern := s.m, &s.m.cfg, s.m.kern
	T, dim, qd, kvd, hd := len(tokens), c.Dim, c.QDim(), c.KVDim(), c.HeadDim
	pos0 := s.pos

	// Embeddings (projected up to dim if the model says so), plus learned positions.
	ed := c.EmbeddingDim()
	emb := s.x
	if c.Projected() {
		emb = s.emb
	}
	for t, id := range tokens {
		m.tokEmbd.RowF32(id, emb[t*ed:(t+1)*ed])
	}
	if c.Projected() {
		s.matmul(s.emb, T, mm{s.x, dim, m.projIn, nil})
	}
	if m.posEmbd != nil {
		for t := range tokens {
			row := s.out[t*dim : (t+1)*dim]
			m.posEmbd.RowF32(pos0+t+c.PositionOffset, row)
			kern.Add(s.x[t*dim:(t+1)*dim], row)
		}
	}
	if c.Position == model.RoPE {
		half := c.RopeDim / 2
		mscale := float32(c.RopeAttnFactor) // a float32 factor, as llama.cpp applies it
		for t := 0; t < T; t++ {
			for i, f := range s.ropeFreq {
				sn, cs := math.Sincos(float64(pos0+t) * f)
				s.ropeCos[t*half+i], s.ropeSin[t*half+i] = float32(cs)*mscale, float32(sn)*mscale
			}
		}
	}
	s.reserve(pos0 + T)

	for li := range m.layers {
		l := &m.layers[li]
		kc, vc := s.kcache[li], s.vcache[li]

		// Attention block.
		in := s.x
		if !c.PostNorm {
			s.norm(s.xb, s.x, l.attnNorm, T)
			in = s.xb
		}
		s.matmul(in, T, mm{s.q, qd, l.wq, l.bq}, mm{s.k, kvd, l.wk, l.bk}, mm{s.v, kvd, l.wv, l.bv})
		if c.Position == model.RoPE {
			half := c.RopeDim / 2
			for t := 0; t < T; t++ {
				cos, sin := s.ropeCos[t*half:(t+1)*half], s.ropeSin[t*half:(t+1)*half]
				if c.RopeStyle == model.NeoX {
					kern.RoPENeoX(s.q[t*qd:(t+1)*qd], c.NHeads, hd, cos, sin)
					kern.RoPENeoX(s.k[t*kvd:(t+1)*kvd], c.NKVHeads, hd, cos, sin)
				} else {
					kern.RoPE(s.q[t*qd:(t+1)*qd], c.NHeads, hd, cos, sin)
					kern.RoPE(s.k[t*kvd:(t+1)*kvd], c.NKVHeads, hd, cos, sin)
				}
			}
		}
		s.attnTask = attnTask{s: s, kc: kc, vc: vc, pos0: pos0, window: l.window}
		if w := s.ring(li); w == 0 {
			kc.put(pos0*kvd, s.k[:T*kvd])
			vc.put(pos0*kvd, s.v[:T*kvd])
		} else {
			s.stageRing(li, w, T)
		}
		m.pool.Run(T*c.NHeads, 1, &s.attnTask)
		s.matmul(s.att, T, mm{s.out, dim, l.wo, l.bo})
		kern.Add(s.x[:T*dim], s.out[:T*dim])
		if c.PostNorm {
			s.norm(s.x, s.x, l.attnNorm, T)
		}

		// Feed-forward block.
		in = s.x
		if !c.PostNorm {
			s.norm(s.xb, s.x, l.ffnNorm, T)
			in = s.xb
		}
		ff := c.FFNDim
		if c.Activation == model.SwiGLU {
			s.matmul(in, T, mm{s.hb, ff, l.gate, l.bgate}, mm{s.hb2, ff, l.up, l.bup})
		} else {
			s.matmul(in, T, mm{s.hb, ff, l.up, l.bup})
		}
		s.actTask = actTask{s: s}
		m.pool.Run(T, 1, &s.actTask)
		s.matmul(s.hb, T, mm{s.out, dim, l.down, l.bdown})
		kern.Add(s.x[:T*dim], s.out[:T*dim])
		if c.PostNorm {
			s.norm(s.x, s.x, l.ffnNorm, T)
		}
	}
	s.pos += T

	// Classifier: every row, or only the last.
	x, rows := s.x, T
	if all == nil {
		if !last {
			return
		}
		x, rows = s.x[(T-1)*dim:T*dim], 1
	}
	if !c.NoFinalNorm {
		s.norm(s.xb, x, m.outNorm, rows)
		x = s.xb
	}
	if c.Projected() {
		s.matmul(x, rows, mm{s.emb, ed, m.projOut, nil})
		x = s.emb
	}
	dst := s.logits
	if all != nil {
		dst = all
	}
	s.matmul(x, rows, mm{dst, c.VocabSize, m.output, nil})
}

// The pass's parallel steps are tasks kept in the Session, so handing them to the pool
// allocates nothing.

// mm is one matrix product: dst[t*ld + r] = x[t]·w[r] + bias[r].
type mm struct {
	dst  []float32
	ld   int
	w    *kernels.Mat
	bias []float32
}

// matmulTask runs up to three products that share their input in one pool pass, rows
// split across threads.
type matmulTask struct {
	s   *Session
	x   []float32
	xq  []byte // x quantized to q8_0 blocks, when the q8 path is taken and an op needs them
	xqK []byte // x quantized to q8_k super-blocks, likewise
	T   int
	ops [3]mm
	n   int
}

func (k *matmulTask) Do(w, lo, hi int) {
	base := 0
	sc := k.s.scratch[w]
	for _, o := range k.ops[:k.n] {
		r0, r1 := max(lo-base, 0), min(hi-base, o.w.Rows)
		if r0 < r1 {
			if xq := k.activations(o.w.DType); xq != nil {
				k.s.m.q8.MatMulQ8(o.dst, o.ld, xq, k.T, o.w, o.bias, r0, r1, sc)
			} else {
				k.s.m.kern.MatMul(o.dst, o.ld, k.x, k.T, o.w, o.bias, r0, r1, sc)
			}
		}
		base += o.w.Rows
	}
}

// activations returns the quantized activations a product on weights of dtype dt takes,
// nil when it multiplies the float32 ones.
func (k *matmulTask) activations(dt dtype.DType) []byte {
	if !blockQuantized(dt) {
		return nil
	}
	if kernels.ActivationDType(dt) == dtype.Q8_K {
		return k.xqK
	}
	return k.xq
}

// blockQuantized reports whether weights of dtype dt take quantized activations on the
// q8 path: q8_0 and q4_0 (q8_0 activations) and the k-quants (q8_k activations).
func blockQuantized(dt dtype.DType) bool { return dt == dtype.Q8_0 || dt == dtype.Q4_0 || dt.KQuant() }

// matmul computes the products ops (at most three) of the T rows of x. Rows are handed
// out in multiples of 16 so a SIMD kernel sees whole tiles.
func (s *Session) matmul(x []float32, T int, ops ...mm) {
	k := &s.mmTask
	k.s, k.x, k.T, k.xq, k.xqK = s, x, T, nil, nil
	k.n = copy(k.ops[:], ops)
	if s.observe != nil {
		s.obsNames = s.obsNames[:0]
		for _, o := range ops {
			s.obsNames = append(s.obsNames, s.m.names[o.w])
		}
		cols := ops[0].w.Cols
		s.observe(s.obsNames, x[:T*cols], T, cols)
	}
	total := 0
	for _, o := range ops {
		total += o.w.Rows
	}
	// Block-quantized weights take activations quantized once per product (q8_0 blocks
	// for q8_0 and q4_0, q8_k super-blocks for the k-quants, as llama.cpp does), unless the
	// model was loaded with exact f32 activations. Ops sharing x may need both.
	if s.m.q8 != nil {
		cols := ops[0].w.Cols
		for _, o := range ops {
			if !blockQuantized(o.w.DType) {
				continue
			}
			adt := kernels.ActivationDType(o.w.DType)
			dst := &k.xq
			buf := s.xq
			if adt == dtype.Q8_K {
				dst, buf = &k.xqK, s.xqK
			}
			if *dst != nil {
				continue // already quantized for an earlier op
			}
			rb := dtype.RowBytes(adt, cols)
			xq := buf[:T*rb]
			for t := 0; t < T; t++ {
				kernels.QuantizeActivations(s.m.q8, o.w.DType, x[t*cols:(t+1)*cols], xq[t*rb:(t+1)*rb])
			}
			*dst = xq
		}
	}
	s.m.pool.Run(total, 16, k)
}

// stageRing appends the batch's keys and values to local layer li's ring (window w).
// A single token is written to its slot and attends over the ring as it is (attention
// does not depend on the order of the positions). A batch first lines up, in position
// order, the w-1 positions before it and its own T in the stage buffers, so that each
// query's band is one contiguous run there; then its last w positions enter the ring.
func (s *Session) stageRing(li, w, T int) {
	kvd := s.m.cfg.KVDim()
	kc, vc := s.kcache[li], s.vcache[li]
	pos0 := s.pos
	a := &s.attnTask
	if T == 1 {
		slot := pos0 % w
		kc.put(slot*kvd, s.k[:kvd])
		vc.put(slot*kvd, s.v[:kvd])
		a.ring = true
		return
	}
	m := min(pos0, w-1)
	base := pos0 - m
	for i := 0; i < m; i++ {
		slot := (base + i) % w
		s.stageK.copyFrom(i*kvd, kc, slot*kvd, kvd)
		s.stageV.copyFrom(i*kvd, vc, slot*kvd, kvd)
	}
	s.stageK.put(m*kvd, s.k[:T*kvd])
	s.stageV.put(m*kvd, s.v[:T*kvd])
	for t := max(0, T-w); t < T; t++ {
		slot := (pos0 + t) % w
		kc.put(slot*kvd, s.k[t*kvd:(t+1)*kvd])
		vc.put(slot*kvd, s.v[t*kvd:(t+1)*kvd])
	}
	a.kc, a.vc, a.base = s.stageK, s.stageV, base
}

// attnTask computes attention for (token, head) pairs i = t·n_heads + h. The key of
// position x is row x-base of kc, except for a ring (one decoded token of a local
// layer), whose first min(p+1, window) rows are exactly the positions in the band.
type attnTask struct {
	s            *Session
	kc, vc       kvBuf
	pos0, window int
	base         int
	ring         bool
}

func (a *attnTask) Do(w, lo, hi int) {
	s := a.s
	c := &s.m.cfg
	qd, kvd, hd := c.QDim(), c.KVDim(), c.HeadDim
	group := c.NHeads / c.NKVHeads
	for i := lo; i < hi; i++ {
		t, h := i/c.NHeads, i%c.NHeads
		p := a.pos0 + t
		first, n := 0, 0 // first row of the band in kc, and its length
		if a.ring {
			n = min(p+1, a.window)
		} else {
			lo := 0
			if a.window > 0 && p-a.window+1 > 0 {
				lo = p - a.window + 1
			}
			first, n = lo-a.base, p-lo+1
		}
		off := first*kvd + (h/group)*hd
		q := t*qd + h*hd
		if a.kc.h != nil {
			s.m.kern.AttentionF16(s.att[q:q+hd], s.q[q:q+hd], a.kc.h[off:], a.vc.h[off:], n, kvd, c.AttnScale, s.scores[w])
		} else {
			s.m.kern.Attention(s.att[q:q+hd], s.q[q:q+hd], a.kc.f[off:], a.vc.f[off:], n, kvd, c.AttnScale, s.scores[w])
		}
	}
}

// actTask applies the feed-forward activation to rows [lo, hi) of hb.
type actTask struct{ s *Session }

func (a *actTask) Do(_, lo, hi int) {
	s := a.s
	kern, ff := s.m.kern, s.m.cfg.FFNDim
	h := s.hb[lo*ff : hi*ff]
	switch s.m.cfg.Activation {
	case model.SwiGLU:
		kern.SwiGLU(h, s.hb2[lo*ff:hi*ff])
	case model.GELUTanh:
		kern.GELU(h)
	case model.GELU:
		kern.GELUErf(h)
	case model.ReLU:
		kern.ReLU(h)
	}
}

// normTask normalises rows [lo, hi) of x into dst (which may alias x).
type normTask struct {
	s      *Session
	dst, x []float32
	n      norm
}

func (k *normTask) Do(_, lo, hi int) {
	c, kern := &k.s.m.cfg, k.s.m.kern
	dim := c.Dim
	for t := lo; t < hi; t++ {
		d, xi := k.dst[t*dim:(t+1)*dim], k.x[t*dim:(t+1)*dim]
		if c.Norm == model.RMSNorm {
			kern.RMSNorm(d, xi, k.n.w, float32(c.NormEps))
		} else {
			kern.LayerNorm(d, xi, k.n.w, k.n.b, float32(c.NormEps))
		}
	}
}

// norm applies the configured normalisation to T rows of x into dst.
func (s *Session) norm(dst, x []float32, n norm, T int) {
	s.normTask = normTask{s: s, dst: dst, x: x, n: n}
	s.m.pool.Run(T, 8, &s.normTask)
}
