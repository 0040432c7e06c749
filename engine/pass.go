package engine

import (
	"math"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/kernels"
	"github.com/lmrun/lmrun/model"
)

// pass is the working memory of forward passes over up to rows token rows: the
// activations, their quantized forms, the kernels' scratch and the parallel steps. A
// Session has its own, sized by its batch; a Batch has one that the sessions it runs
// share. The rows of a pass belong to one or more segments — consecutive tokens of one
// session each — and every step but attention treats each row alike, whichever session
// it belongs to, so a row computes the same numbers in any pass it is part of.
type pass struct {
	m    *Model
	rows int

	x, xb, out       []float32 // [rows, dim]
	q, att           []float32 // [rows, qDim]
	k, v             []float32 // [rows, kvDim]
	hb, hb2          []float32 // [rows, ffnDim]
	ropeCos, ropeSin []float32 // [rows, rope_dim/2]: angles of each row's position
	emb              []float32 // [rows, embDim] when the model projects embeddings
	xq               []byte    // [rows, widest row] activations as q8_0 blocks
	xqK              []byte    // [rows, widest row] activations as q8_k super-blocks
	xbf              []uint16  // [rows, widest row] activations rounded to bfloat16
	xp               []float32 // activations laid out for the backend's products (kernels.XPreparer)
	logits           []float32 // [segments, vocab] for a pass of several segments (a Batch's)

	// Per thread, the working memory of the matrix products (kernels.Scratch), for up to
	// rows rows of the widest matrix row.
	scratch []kernels.Scratch
	// Per thread, for attention over blocks of queries (blockedAttention): a block of
	// the queries of the heads of one KV head, [blockQueries, headDim], and the key
	// rows as a matrix.
	attQ   [][]float32
	attMat []kernels.Mat

	observe  func(names []string, x []float32, T, cols int) // SessionOptions.ObserveMatMul
	obsNames []string                                       // scratch for observe's names

	segs   []segment // the segments of the pass running now
	rowSeg []int32   // [rows]: the index in segs of each row's segment
	keep   []int32   // [rows]: the rows whose logits are asked for (gatherLogitRows)

	// The parallel steps of a pass, kept here so running them allocates nothing.
	mmTask     matmulTask
	prepTask   prepTask
	actTask    actTask
	ropeKVTask ropeKVTask
	attnTask   attnTask
	normTask   normTask
}

// segment is one session's tokens in a pass, at rows row0 … row0+len(tokens)-1.
type segment struct {
	s      *Session
	tokens []int
	logits bool // compute the logits after the last token into s.logits
	row0   int
}

// attnState is where one session's rows of a pass find the current layer's keys and
// values. The key of position x is row x-base of kc, except for a ring (one decoded
// token of a local layer), whose first min(p+1, window) rows are exactly the positions
// in the band.
type attnState struct {
	kc, vc       kvBuf
	pos0, window int
	base         int
	ring         bool
}

// newPass allocates the working memory of passes of up to rows rows of model m.
func newPass(m *Model, rows int) *pass {
	c := &m.cfg
	p := &pass{m: m, rows: rows}
	if c.Projected() {
		p.emb = make([]float32, rows*c.EmbeddingDim())
	}
	widest := max(c.Dim, c.FFNDim, c.QDim(), c.EmbeddingDim()) // the longest matrix row
	if m.q8 != nil {
		// One buffer per activation type the model's weights take (kernels.ActivationDType),
		// rounded up to whole blocks.
		if m.actTypes[dtype.Q8_0] {
			p.xq = make([]byte, rows*dtype.RowBytes(dtype.Q8_0, (widest+dtype.QBlock-1)/dtype.QBlock*dtype.QBlock))
		}
		if m.actTypes[dtype.Q8_K] {
			p.xqK = make([]byte, rows*dtype.RowBytes(dtype.Q8_K, (widest+dtype.QKBlock-1)/dtype.QKBlock*dtype.QKBlock))
		}
	}
	if m.bf16 != nil {
		p.xbf = make([]uint16, rows*widest)
	}
	if m.prep != nil && rows > 1 {
		p.xp = make([]float32, m.prep.PreparedXSize(rows, widest))
	}
	if c.Position == model.RoPE {
		p.ropeCos = make([]float32, rows*c.RopeDim/2)
		p.ropeSin = make([]float32, rows*c.RopeDim/2)
	}
	p.x = make([]float32, rows*c.Dim)
	p.xb = make([]float32, rows*c.Dim)
	p.out = make([]float32, rows*c.Dim)
	p.q = make([]float32, rows*c.QDim())
	p.att = make([]float32, rows*c.QDim())
	p.k = make([]float32, rows*c.KVDim())
	p.v = make([]float32, rows*c.KVDim())
	p.hb = make([]float32, rows*c.FFNDim)
	p.hb2 = make([]float32, rows*c.FFNDim)
	p.rowSeg = make([]int32, rows)
	p.keep = make([]int32, rows)
	p.scratch = make([]kernels.Scratch, m.pool.Threads())
	for i := range p.scratch {
		p.scratch[i] = kernels.NewScratch(m.kern, rows, widest)
	}
	if q := m.blockQueries(); q > 0 && rows >= max(2*attnBlock, q) {
		p.attQ = make([][]float32, m.pool.Threads())
		for i := range p.attQ {
			p.attQ[i] = make([]float32, q*c.HeadDim)
		}
		p.attMat = make([]kernels.Mat, m.pool.Threads())
	}
	return p
}

// forward runs the segments' tokens (at most rows in all) through the model, each at
// its session's position, appends them to the sessions' KV caches and advances their
// positions. all, if not nil, receives the logits of every row (of a pass of one
// segment); otherwise each segment that asks for them gets the logits after its last
// token in its session's logits. The caller has checked the tokens, the sessions'
// room, and that no session appears twice.
func (p *pass) forward(segs []segment, all []float32) {
	m, c, kern := p.m, &p.m.cfg, p.m.kern
	dim, qd, kvd := c.Dim, c.QDim(), c.KVDim()
	T := 0
	for i := range segs {
		segs[i].row0 = T
		for t := range segs[i].tokens {
			p.rowSeg[T+t] = int32(i)
		}
		T += len(segs[i].tokens)
	}
	p.segs = segs

	// Embeddings (projected up to dim if the model says so), plus learned positions.
	ed := c.EmbeddingDim()
	emb := p.x
	if c.Projected() {
		emb = p.emb
	}
	for _, sg := range segs {
		for t, id := range sg.tokens {
			r := sg.row0 + t
			m.tokEmbd.RowF32(id, emb[r*ed:(r+1)*ed])
		}
	}
	if c.Projected() {
		p.matmul(p.emb, T, mm{p.x, dim, m.projIn, nil})
	}
	if m.posEmbd != nil {
		for _, sg := range segs {
			for t := range sg.tokens {
				r := sg.row0 + t
				row := p.out[r*dim : (r+1)*dim]
				m.posEmbd.RowF32(sg.s.pos+t+c.PositionOffset, row)
				kern.Add(p.x[r*dim:(r+1)*dim], row)
			}
		}
	}
	if c.Position == model.RoPE {
		half := c.RopeDim / 2
		mscale := float32(c.RopeAttnFactor) // a float32 factor, as llama.cpp applies it
		for _, sg := range segs {
			for t := range sg.tokens {
				r := sg.row0 + t
				for i, f := range sg.s.ropeFreq {
					sn, cs := math.Sincos(float64(sg.s.pos+t) * f)
					p.ropeCos[r*half+i], p.ropeSin[r*half+i] = float32(cs)*mscale, float32(sn)*mscale
				}
			}
		}
	}
	for _, sg := range segs {
		sg.s.reserve(sg.s.pos + len(sg.tokens))
	}

	// resid is the output of the previous block not yet added to x (the residual), nil
	// when x is complete: with pre-norm, a block's output is added to x in one parallel
	// pass with the next norm, which reads x right after.
	var resid []float32
	// n is the rows the layers still compute: T, but for the last layer's steps after
	// the cache writes when only some rows' logits are asked for (gatherLogitRows).
	n, gathered := T, false
	for li := range m.layers {
		l := &m.layers[li]

		// Attention block.
		in := p.x
		if !c.PostNorm {
			p.addNorm(p.xb, p.x, resid, &l.attnNorm, T)
			resid = nil
			in = p.xb
		}
		p.matmul(in, T, mm{p.q, qd, l.wq, l.bq}, mm{p.k, kvd, l.wk, l.bk}, mm{p.v, kvd, l.wv, l.bv})
		// RoPE and the cache writes, row by row in parallel; a local layer's ring takes
		// a batch after.
		for _, sg := range segs {
			s := sg.s
			s.att = attnState{kc: s.kcache[li], vc: s.vcache[li], pos0: s.pos, window: l.window}
		}
		p.ropeKVTask = ropeKVTask{p: p, li: li}
		m.pool.Run(T, 8, &p.ropeKVTask)
		for _, sg := range segs {
			s := sg.s
			if w := s.ring(li); w > 0 {
				k := p.k[sg.row0*kvd : (sg.row0+len(sg.tokens))*kvd]
				v := p.v[sg.row0*kvd : (sg.row0+len(sg.tokens))*kvd]
				s.stageRing(li, w, k, v)
			}
		}
		p.attnTask = attnTask{p: p}
		if li == len(m.layers)-1 && all == nil && p.observe == nil {
			// The last layer's rows feed nothing but the logits: past the cache writes
			// above, it computes only the rows whose logits are asked for, gathered at
			// the top of the buffers (their attention writes its rows there).
			n, gathered = p.gatherLogitRows(), true
			if n == 0 {
				break
			}
			p.attnTask.rows = p.keep[:n]
			m.pool.Run(n*c.NHeads, 1, &p.attnTask)
			for i, r := range p.keep[:n] {
				copy(p.x[i*dim:(i+1)*dim], p.x[int(r)*dim:(int(r)+1)*dim])
			}
		} else if p.blockedAttention(T) {
			p.attnTask.blocked = true
			m.pool.Run((T+attnBlock-1)/attnBlock*c.NKVHeads, 1, &p.attnTask)
		} else {
			m.pool.Run(T*c.NHeads, 1, &p.attnTask)
		}
		p.matmul(p.att, n, mm{p.out, dim, l.wo, l.bo})
		if c.PostNorm {
			p.addNorm(p.x, p.x, p.out, &l.attnNorm, n)
		}

		// Feed-forward block.
		in = p.x
		if !c.PostNorm {
			p.addNorm(p.xb, p.x, p.out, &l.ffnNorm, n)
			in = p.xb
		}
		ff := c.FFNDim
		if c.Activation == model.SwiGLU {
			p.matmulAct(in, n, mm{p.hb, ff, l.gate, l.bgate}, mm{p.hb2, ff, l.up, l.bup})
		} else {
			p.matmulAct(in, n, mm{p.hb, ff, l.up, l.bup})
		}
		p.matmul(p.hb, n, mm{p.out, dim, l.down, l.bdown})
		if c.PostNorm {
			p.addNorm(p.x, p.x, p.out, &l.ffnNorm, n)
		} else {
			resid = p.out
		}
	}
	if resid != nil {
		p.addNorm(nil, p.x, resid, nil, n)
	}
	for _, sg := range segs {
		sg.s.pos += len(sg.tokens)
	}

	// Classifier: every row, or the last row of each segment that wants its logits,
	// gathered in out (or already gathered in x by the last layer).
	x, rows := p.x, T
	if gathered {
		rows = n
		if rows == 0 {
			return
		}
	} else if all == nil {
		rows = 0
		for _, sg := range segs {
			if sg.logits {
				r := sg.row0 + len(sg.tokens) - 1
				copy(p.out[rows*dim:(rows+1)*dim], p.x[r*dim:(r+1)*dim])
				rows++
			}
		}
		if rows == 0 {
			return
		}
		x = p.out
	}
	if !c.NoFinalNorm {
		p.addNorm(p.xb, x, nil, &m.outNorm, rows)
		x = p.xb
	}
	if c.Projected() {
		p.matmul(x, rows, mm{p.emb, ed, m.projOut, nil})
		x = p.emb
	}
	v := c.VocabSize
	var dst []float32
	switch {
	case all != nil:
		dst = all
	case rows == 1:
		for _, sg := range segs {
			if sg.logits {
				dst = sg.s.logits
			}
		}
	default:
		dst = p.logits
	}
	p.matmul(x, rows, mm{dst, v, m.output, nil})
	if all == nil && rows > 1 {
		i := 0
		for _, sg := range segs {
			if sg.logits {
				copy(sg.s.logits, p.logits[i*v:(i+1)*v])
				i++
			}
		}
	}
}

// The pass's parallel steps are tasks kept in the pass, so handing them to the pool
// allocates nothing.

// mm is one matrix product: dst[t*ld + r] = x[t]·w[r] + bias[r].
type mm struct {
	dst  []float32
	ld   int
	w    *kernels.Mat
	bias []float32
}

// matmulTask runs up to three products that share their input in one pool pass, rows
// split across threads: the rows of all the products one after the other, or, with
// act, the rows the products have alike (the feed-forward's gate and up), each range of
// them through every product and then the activation.
type matmulTask struct {
	p   *pass
	x   []float32
	xq  []byte   // x quantized to q8_0 blocks, when the q8 path is taken and an op needs them
	xqK []byte   // x quantized to q8_k super-blocks, likewise
	xbf []uint16 // x rounded to bfloat16, when the bf16 path is taken and an op needs it
	// xp is x laid out by the backend (kernels.XPreparer) for the products of layout
	// xpLayout, nil when none is.
	xp       []float32
	xpLayout int
	T        int
	ops      [3]mm
	n        int
	act      bool
}

func (k *matmulTask) Do(w, lo, hi int) {
	if k.act {
		for _, o := range k.ops[:k.n] {
			k.run(w, o, lo, hi)
		}
		k.p.activate(k.T, lo, hi)
		return
	}
	base := 0
	for _, o := range k.ops[:k.n] {
		r0, r1 := max(lo-base, 0), min(hi-base, o.w.Rows)
		if r0 < r1 {
			k.run(w, o, r0, r1)
		}
		base += o.w.Rows
	}
}

// run computes rows [r0, r1) of product o on thread w.
func (k *matmulTask) run(w int, o mm, r0, r1 int) {
	m := k.p.m
	if xq := k.activations(o.w.DType); xq != nil {
		m.q8.MatMulQ8(o.dst, o.ld, xq, k.T, o.w, o.bias, r0, r1, k.p.scratch[w])
	} else if o.w.DType == dtype.BF16 && k.xbf != nil {
		m.bf16.MatMulBF16(o.dst, o.ld, k.xbf, k.T, o.w, o.bias, r0, r1, k.p.scratch[w])
	} else if k.xp != nil && m.prep.XLayout(k.T, o.w) == k.xpLayout {
		m.prep.MatMulPrepared(o.dst, o.ld, k.x, k.xp, k.T, o.w, o.bias, r0, r1, k.p.scratch[w])
	} else {
		m.kern.MatMul(o.dst, o.ld, k.x, k.T, o.w, o.bias, r0, r1, k.p.scratch[w])
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

// matmulGrain is the rows a thread's range of a product is a multiple of (but for the
// last range): a multiple of 16 and of every SIMD backend's tile rows (3, 4, 6, 8), so
// that the kernels see whole tiles.
const matmulGrain = 48

// matmul computes the products ops (at most three) of the T rows of x.
func (p *pass) matmul(x []float32, T int, ops ...mm) { p.matmulOps(x, T, false, ops) }

// matmulAct computes the products ops of the feed-forward's input x — up, or gate and
// up (into hb, hb2) — and applies the activation to hb, in one pool pass: each thread
// takes a range of the rows through every product and then the activation.
func (p *pass) matmulAct(x []float32, T int, ops ...mm) { p.matmulOps(x, T, true, ops) }

func (p *pass) matmulOps(x []float32, T int, act bool, ops []mm) {
	k := &p.mmTask
	k.p, k.x, k.T, k.xq, k.xqK, k.xbf, k.act = p, x, T, nil, nil, nil, act
	k.xp, k.xpLayout = nil, 0
	k.n = copy(k.ops[:], ops)
	if p.observe != nil {
		p.obsNames = p.obsNames[:0]
		for _, o := range ops {
			p.obsNames = append(p.obsNames, p.m.names[o.w])
		}
		cols := ops[0].w.Cols
		p.observe(p.obsNames, x[:T*cols], T, cols)
	}
	total := 0
	for _, o := range ops {
		total += o.w.Rows
	}
	if act {
		total = ops[0].w.Rows // gate and up have the same rows
	}
	// Block-quantized weights take activations quantized once per product (q8_0 blocks
	// for q8_0 and q4_0, q8_k super-blocks for the k-quants, as llama.cpp does), unless the
	// model was loaded with exact f32 activations. Ops sharing x may need both. bf16
	// weights take activations rounded to bfloat16 on a backend with a faster product
	// for them (kernels.BF16Kernels), unless the model was loaded with f32 activations.
	// The conversions go by ranges of the tokens in parallel.
	if p.m.q8 != nil || p.m.bf16 != nil {
		cols := ops[0].w.Cols
		a := actTask{p: p, x: x}
		for _, o := range ops {
			switch {
			case p.m.q8 != nil && blockQuantized(o.w.DType):
				adt := kernels.ActivationDType(o.w.DType)
				rb := dtype.RowBytes(adt, cols)
				if adt == dtype.Q8_K && k.xqK == nil {
					k.xqK, a.xqK, a.wK, a.rbK = p.xqK[:T*rb], p.xqK[:T*rb], o.w.DType, rb
				} else if adt != dtype.Q8_K && k.xq == nil {
					k.xq, a.xq, a.w0, a.rb0 = p.xq[:T*rb], p.xq[:T*rb], o.w.DType, rb
				}
			case p.m.bf16 != nil && o.w.DType == dtype.BF16 && k.xbf == nil:
				k.xbf, a.xbf = p.xbf[:T*cols], p.xbf[:T*cols]
			}
		}
		if a.xq != nil || a.xqK != nil || a.xbf != nil {
			a.cols = cols
			p.actTask = a
			p.m.pool.Run(T, actGrain, &p.actTask)
		}
	}
	// The products the backend takes x laid out for (f16 rows over many tokens, say)
	// share one layout of it, made once on ranges of the tokens in parallel, rather than
	// each call of each product making its own. The first such product's layout serves
	// every product of that layout; the others lay x out themselves.
	if p.m.prep != nil && T > 1 && p.xp != nil {
		for _, o := range ops {
			if k.activations(o.w.DType) != nil || o.w.DType == dtype.BF16 && k.xbf != nil {
				continue
			}
			if l := p.m.prep.XLayout(T, o.w); l != 0 {
				k.xp, k.xpLayout = p.xp, l
				p.prepTask = prepTask{p: p, x: x, T: T, w: o.w}
				p.m.pool.Run(T, prepGrain, &p.prepTask)
				break
			}
		}
	}
	p.m.pool.Run(total, matmulGrain, k)
}

// ropeKVTask rotates the queries and keys of rows [lo, hi) (RoPE models) and writes
// their keys and values to their sessions' caches of layer li, but for a local layer's
// ring, which the caller fills after (stageRing).
type ropeKVTask struct {
	p  *pass
	li int
}

func (k *ropeKVTask) Do(_, lo, hi int) {
	p := k.p
	c, kern := &p.m.cfg, p.m.kern
	qd, kvd, hd := c.QDim(), c.KVDim(), c.HeadDim
	half := c.RopeDim / 2
	for t := lo; t < hi; t++ {
		if c.Position == model.RoPE {
			cos, sin := p.ropeCos[t*half:(t+1)*half], p.ropeSin[t*half:(t+1)*half]
			if c.RopeStyle == model.NeoX {
				kern.RoPENeoX(p.q[t*qd:(t+1)*qd], c.NHeads, hd, cos, sin)
				kern.RoPENeoX(p.k[t*kvd:(t+1)*kvd], c.NKVHeads, hd, cos, sin)
			} else {
				kern.RoPE(p.q[t*qd:(t+1)*qd], c.NHeads, hd, cos, sin)
				kern.RoPE(p.k[t*kvd:(t+1)*kvd], c.NKVHeads, hd, cos, sin)
			}
		}
		sg := &p.segs[p.rowSeg[t]]
		if s := sg.s; s.ring(k.li) == 0 {
			pos := s.pos + t - sg.row0
			s.kcache[k.li].put(pos, p.k[t*kvd:(t+1)*kvd])
			s.vcache[k.li].put(pos, p.v[t*kvd:(t+1)*kvd])
		}
	}
}

// actGrain is the tokens a thread's range of actTask is a multiple of.
const actGrain = 8

// actTask converts tokens of x (cols columns each) to the activations of the products
// that take them in another format: q8_0 blocks into xq (rb0 bytes a token, for weights
// of dtype w0), q8_k super-blocks into xqK (rbK bytes a token, for weights of dtype wK),
// bfloat16 into xbf; each when not nil.
type actTask struct {
	p        *pass
	x        []float32
	cols     int
	xq, xqK  []byte
	rb0, rbK int
	w0, wK   dtype.DType
	xbf      []uint16
}

func (k *actTask) Do(_, lo, hi int) {
	q8, cols := k.p.m.q8, k.cols
	for t := lo; t < hi; t++ {
		x := k.x[t*cols : (t+1)*cols]
		if k.xq != nil {
			kernels.QuantizeActivations(q8, k.w0, x, k.xq[t*k.rb0:(t+1)*k.rb0])
		}
		if k.xqK != nil {
			kernels.QuantizeActivations(q8, k.wK, x, k.xqK[t*k.rbK:(t+1)*k.rbK])
		}
	}
	if k.xbf != nil {
		k.p.m.bf16.RoundBF16(k.x[lo*cols:hi*cols], k.xbf[lo*cols:hi*cols])
	}
}

// prepGrain is the tokens a thread's range of prepTask is a multiple of.
const prepGrain = 4

// prepTask lays out tokens of x for the products on matrices of w's layout
// (kernels.XPreparer.PrepareX) into the pass's xp.
type prepTask struct {
	p *pass
	x []float32
	T int
	w *kernels.Mat
}

func (k *prepTask) Do(w, lo, hi int) {
	k.p.m.prep.PrepareX(k.p.xp, k.x, k.T, k.w, lo, hi, k.p.scratch[w])
}

// stageRing appends a segment's keys and values k and v (T rows) to local layer li's
// ring (window w). A single token is written to its slot and attends over the ring as it
// is (attention does not depend on the order of the positions). A batch first lines up,
// in position order, the w-1 positions before it and its own T in the stage buffers, so
// that each query's band is one contiguous run there; then its last w positions enter
// the ring.
func (s *Session) stageRing(li, w int, k, v []float32) {
	kvd := s.m.cfg.KVDim()
	T := len(k) / kvd
	kc, vc := s.kcache[li], s.vcache[li]
	pos0 := s.pos
	a := &s.att
	if T == 1 {
		slot := pos0 % w
		kc.put(slot, k)
		vc.put(slot, v)
		a.ring = true
		return
	}
	m := min(pos0, w-1)
	base := pos0 - m
	if need := m + T; need > s.stageK.rows {
		// A Batch's segment may be longer than the session's own batch.
		s.stageK, s.stageV = s.newKV(need), s.newKV(need)
	}
	for i := 0; i < m; {
		// The ring's positions base.. in slot order: at most two runs.
		slot := (base + i) % w
		n := min(m-i, w-slot)
		s.stageK.copyRows(i, kc, slot, n)
		s.stageV.copyRows(i, vc, slot, n)
		i += n
	}
	s.stageK.put(m, k)
	s.stageV.put(m, v)
	for t := max(0, T-w); t < T; t++ {
		slot := (pos0 + t) % w
		kc.put(slot, k[t*kvd:(t+1)*kvd])
		vc.put(slot, v[t*kvd:(t+1)*kvd])
	}
	a.kc, a.vc, a.base = s.stageK, s.stageV, base
}

// attnTask computes attention for (row, head) pairs i = row·n_heads + h, each row over
// its own session's keys and values (attnState), or, blocked, for (block, KV head)
// pairs: attnBlock rows of a pass's one segment at a time, every head of the KV head
// (blockedAttention). With rows, the pairs are (j, h) for the query of row rows[j],
// whose output goes to row j of att.
type attnTask struct {
	p       *pass
	blocked bool
	rows    []int32
}

func (a *attnTask) Do(w, lo, hi int) {
	if a.blocked {
		a.doBlocks(w, lo, hi)
		return
	}
	p := a.p
	c := &p.m.cfg
	kern := p.m.kern
	qd, hd := c.QDim(), c.HeadDim
	group := c.NHeads / c.NKVHeads
	for i := lo; i < hi; i++ {
		j, h := i/c.NHeads, i%c.NHeads
		r := j
		if a.rows != nil {
			r = int(a.rows[j])
		}
		sg := &p.segs[p.rowSeg[r]]
		s := sg.s
		st := &s.att
		first, n := st.band(st.pos0 + r - sg.row0)
		off := st.kc.off(h/group, first) // the same in vc
		q, o := r*qd+h*hd, j*qd+h*hd
		if st.kc.h != nil {
			kern.AttentionF16(p.att[o:o+hd], p.q[q:q+hd], st.kc.h[off:], st.vc.h[off:], n, hd, c.AttnScale, s.scores[w])
		} else {
			kern.Attention(p.att[o:o+hd], p.q[q:q+hd], st.kc.f[off:], st.vc.f[off:], n, hd, c.AttnScale, s.scores[w])
		}
	}
}

// gatherLogitRows lists in keep the row of each segment's last token whose logits are
// asked for, in segment order, and returns their number.
func (p *pass) gatherLogitRows() int {
	n := 0
	for _, sg := range p.segs {
		if sg.logits {
			p.keep[n] = int32(sg.row0 + len(sg.tokens) - 1)
			n++
		}
	}
	return n
}

// band returns the first row in kc of the keys a query at position pos attends to, and
// their number.
func (st *attnState) band(pos int) (first, n int) {
	if st.ring {
		return 0, min(pos+1, st.window)
	}
	lo := 0
	if st.window > 0 && pos-st.window+1 > 0 {
		lo = pos - st.window + 1
	}
	return lo - st.base, pos - lo + 1
}

// attnBlock is how many of a prompt's positions blocked attention takes at a time.
const attnBlock = 16

// blockQueries is how many queries blocked attention takes in one product: attnBlock
// positions of every head that shares a KV head; 0 when the backend's attention cannot
// be taken by blocks.
func (m *Model) blockQueries() int {
	if m.scored == nil {
		return 0
	}
	return attnBlock * (m.cfg.NHeads / m.cfg.NKVHeads)
}

// blockedAttention reports whether the attention of a pass of T rows goes by blocks of
// queries: a backend whose scores are matrix products (kernels.ScoredAttention), one
// segment of at least two blocks (a prompt) over a float32 cache, its session's score
// buffers sized for blocks. Each block's scores over the keys of all its queries are
// one product, the queries its rows: every query gets the bits Attention gives it.
func (p *pass) blockedAttention(T int) bool {
	if p.attQ == nil || len(p.segs) != 1 || T < 2*attnBlock {
		return false
	}
	s := p.segs[0].s
	return s.att.kc.h == nil && !s.att.ring && s.scoreRows() == p.m.blockQueries()
}

// doBlocks computes attention for the (block, KV head) pairs [lo, hi): the last block
// first, since later queries attend to more positions (the pool's first ranges are the
// longest). Each gathers the block's queries of every head that shares the KV head,
// takes their scores over the union of their bands in one MatMul (the keys read once
// for the group) and finishes each query with AttendScores.
func (a *attnTask) doBlocks(w, lo, hi int) {
	p := a.p
	c := &p.m.cfg
	qd, hd := c.QDim(), c.HeadDim
	group := c.NHeads / c.NKVHeads
	s := p.segs[0].s
	st := &s.att
	T := len(p.segs[0].tokens)
	nb := (T + attnBlock - 1) / attnBlock
	qb, km, sc := p.attQ[w], &p.attMat[w], s.scores[w]
	for i := lo; i < hi; i++ {
		b, kh := nb-1-i/c.NKVHeads, i%c.NKVHeads
		r0, r1 := b*attnBlock, min((b+1)*attnBlock, T)
		f0, _ := st.band(st.pos0 + r0)
		fl, nl := st.band(st.pos0 + r1 - 1)
		nu := fl + nl - f0 // the union of the bands: theirs start and end in order
		// Row j = g·(r1-r0) + r-r0 of qb is the query of row r in head kh·group+g.
		for g := 0; g < group; g++ {
			for r := r0; r < r1; r++ {
				j := g*(r1-r0) + r - r0
				copy(qb[j*hd:(j+1)*hd], p.q[r*qd+(kh*group+g)*hd:])
			}
		}
		ko := st.kc.off(kh, f0)
		keys := st.kc.f[ko : ko+nu*hd]
		*km = kernels.Mat{DType: dtype.F32, Rows: nu, Cols: hd, Data: dtype.F32ToBytes(keys), F32: keys}
		p.m.kern.MatMul(sc, nu, qb, group*(r1-r0), km, nil, 0, nu, p.scratch[w])
		for g := 0; g < group; g++ {
			for r := r0; r < r1; r++ {
				f, n := st.band(st.pos0 + r)
				q := r*qd + (kh*group+g)*hd
				row := sc[(g*(r1-r0)+r-r0)*nu+f-f0:]
				p.m.scored.AttendScores(p.att[q:q+hd], row[:n], st.vc.f[st.vc.off(kh, f):], n, hd, c.AttnScale)
			}
		}
	}
}

// activate applies the feed-forward activation to columns [lo, hi) of the T rows of hb
// (SwiGLU: with those of hb2).
func (p *pass) activate(T, lo, hi int) {
	kern, ff := p.m.kern, p.m.cfg.FFNDim
	for t := 0; t < T; t++ {
		h := p.hb[t*ff+lo : t*ff+hi]
		switch p.m.cfg.Activation {
		case model.SwiGLU:
			kern.SwiGLU(h, p.hb2[t*ff+lo:t*ff+hi])
		case model.GELUTanh:
			kern.GELU(h)
		case model.GELU:
			kern.GELUErf(h)
		case model.ReLU:
			kern.ReLU(h)
		}
	}
}

// normTask adds add (when not nil: a block's output, the residual) to rows [lo, hi)
// of x, then normalises them into dst (which may alias x), unless n is nil. The two in
// one pass over each row, which the norm reads right after the addition.
type normTask struct {
	p           *pass
	dst, x, add []float32
	n           *norm
}

func (k *normTask) Do(_, lo, hi int) {
	c, kern := &k.p.m.cfg, k.p.m.kern
	dim := c.Dim
	for t := lo; t < hi; t++ {
		xi := k.x[t*dim : (t+1)*dim]
		if k.add != nil {
			kern.Add(xi, k.add[t*dim:(t+1)*dim])
		}
		if k.n == nil {
			continue
		}
		d := k.dst[t*dim : (t+1)*dim]
		if c.Norm == model.RMSNorm {
			kern.RMSNorm(d, xi, k.n.w, float32(c.NormEps))
		} else {
			kern.LayerNorm(d, xi, k.n.w, k.n.b, float32(c.NormEps))
		}
	}
}

// addNorm adds add (if not nil) to T rows of x, then applies the configured
// normalisation n (if not nil) to them into dst, rows in parallel.
func (p *pass) addNorm(dst, x, add []float32, n *norm, T int) {
	p.normTask = normTask{p: p, dst: dst, x: x, add: add, n: n}
	p.m.pool.Run(T, 8, &p.normTask)
}
