package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The vector exp: x = n·ln2 + r with n = round(x·log2e) and |r| ≤ ln2/2 (ln2 split in
// two, Cody–Waite), e^r by Cephes' expf polynomial (in Estrin's scheme, depth 3), and
// 2^n built in the exponent bits. n comes from the "magic number" rounding
// x·log2e + (1.5·2^23 + 126), whose low mantissa bits are n + 126: shifted left by 23
// they are the float 2^(n-1). Measured against math.Exp (TestExpAccuracy): ≤ 1 ulp
// over [-86.6, 88.7].
//
// Edges, chosen so that SiLU, GELU and softmax see IEEE-like behaviour:
//   - NaN in, NaN out (the clamps put x in the operand that MAXPS/MINPS return for NaN);
//   - x ≥ ln(MaxFloat32) gives +Inf, through the final multiply's overflow: x is clamped
//     to 89 and 2^n is applied as 2·2^(n-1) so that n = 128 is representable;
//   - x < -125·ln2 (≈ -86.64) gives +0, including -Inf. The exact result there is below
//     2.4e-38 and would be subnormal for x < -87.34: it is flushed instead.
const (
	expLo = -86.64339742 // -125·ln2: n ≥ -125, so 2^(n-1) is a normal float
	expHi = 89.0         // n ≤ 128
)

// Constants of GELU's tanh form rewritten as a logistic:
// 0.5·(1 + tanh(u)) = 1/(1 + e^(-2u)), u = √(2/π)·(x + 0.044715·x³), so
// GELU(x) = x / (1 + e^(x·(k1 + k2·x²))), which has no cancellation for x ≪ 0.
var (
	geluK1 = float32(-2 * math.Sqrt(2/math.Pi))
	geluK2 = float32(-2 * math.Sqrt(2/math.Pi) * 0.044715)
)

// The named 8-lane constants, as float32 bits.
var constBits = map[string]uint32{
	"exp_lo":    math.Float32bits(expLo),
	"exp_hi":    math.Float32bits(expHi),
	"exp_log2e": math.Float32bits(math.Log2E),
	"exp_magic": math.Float32bits(1.5*(1<<23) + 126),
	"exp_c1":    math.Float32bits(0.693359375),
	"exp_c2":    math.Float32bits(-2.12194440e-4),
	"exp_p0":    math.Float32bits(1.9875691500e-4),
	"exp_p1":    math.Float32bits(1.3981999507e-3),
	"exp_p2":    math.Float32bits(8.3334519073e-3),
	"exp_p3":    math.Float32bits(4.1665795894e-2),
	"exp_p4":    math.Float32bits(1.6666665459e-1),
	"exp_p5":    math.Float32bits(5.0000001201e-1),
	"one":       math.Float32bits(1),
	"signbit":   0x80000000,
	"neginf":    0xff800000,
	"gelu_k1":   math.Float32bits(geluK1),
	"gelu_k2":   math.Float32bits(geluK2),
}

// expConsts are the constants of expN and its callers (siluN, divOnePlus).
var expConsts = []string{"exp_lo", "exp_hi", "exp_log2e", "exp_magic", "exp_c1", "exp_c2",
	"exp_p0", "exp_p1", "exp_p2", "exp_p3", "exp_p4", "exp_p5", "one", "signbit"}

// consts gives the kernels' constants: those hoisted into registers before a loop, the
// rest as memory operands (for ZMM, broadcast from memory where used: one load, as the
// memory operand is). (Hoisting the exp constants did not pay on Zen 1, whose FP
// scheduler, not its load ports, bounds these kernels; interleaving two vectors did.)
type consts struct {
	w width
	r map[string]VecVirtual
}

// hoist loads the named constants into registers.
func hoist(w width, names ...string) consts {
	c := consts{w: w, r: map[string]VecVirtual{}}
	for _, n := range names {
		if w.zmm {
			c.r[n] = w.bcastMem(vconst(n, constBits[n]))
		} else {
			c.r[n] = YMM()
			VMOVUPS(vconst(n, constBits[n]), c.r[n])
		}
	}
	return c
}

// op returns the constant as an operand.
func (c consts) op(name string) Op {
	if r, ok := c.r[name]; ok {
		return r
	}
	return c.w.constant(name)
}

// copy returns a new register holding the constant.
func (c consts) copy(name string) VecVirtual {
	if r, ok := c.r[name]; ok {
		y := c.w.vec()
		VMOVAPS(r, y)
		return y
	}
	if c.w.zmm {
		return c.w.bcastMem(vconst(name, constBits[name]))
	}
	y := YMM()
	VMOVUPS(vconst(name, constBits[name]), y)
	return y
}

// expN returns e^x for each x in xs (left unchanged), in new registers, their
// instructions interleaved so that the long dependency chains overlap (Zen 1's FP
// scheduler holds little more than one chain).
func expN(c consts, xs []VecVirtual) []VecVirtual {
	k := len(xs)
	each := func(f func(j int)) {
		for j := 0; j < k; j++ {
			f(j)
		}
	}
	t, u, fx, n, y := make([]VecVirtual, k), make([]VecVirtual, k), make([]VecVirtual, k), c.w.vecs(k), make([]VecVirtual, k)
	a := make([]VecVirtual, k)
	each(func(j int) { t[j] = c.copy("exp_lo") })
	each(func(j int) { VMAXPS(xs[j], t[j], t[j]) }) // max(lo, x), NaN → x
	each(func(j int) { u[j] = c.copy("exp_hi") })
	each(func(j int) { VMINPS(t[j], u[j], u[j]) }) // min(hi, ·), NaN → ·
	each(func(j int) { fx[j] = c.copy("exp_magic") })
	each(func(j int) { VFMADD231PS(c.op("exp_log2e"), u[j], fx[j]) }) // magic + round(x·log2e)
	each(func(j int) { VSUBPS(c.op("exp_magic"), fx[j], n[j]) })
	each(func(j int) { VFNMADD231PS(c.op("exp_c1"), n[j], u[j]) })
	each(func(j int) { VFNMADD231PS(c.op("exp_c2"), n[j], u[j]) }) // u = r
	each(func(j int) { VMULPS(u[j], u[j], t[j]) })                 // r²
	// y = ((p0·r + p1)·r² + (p2·r + p3))·r² + (p4·r + p5), then y·r² + r + 1.
	each(func(j int) { y[j] = c.copy("exp_p1") })
	each(func(j int) { VFMADD231PS(c.op("exp_p0"), u[j], y[j]) })
	each(func(j int) { a[j] = c.copy("exp_p3") })
	each(func(j int) { VFMADD231PS(c.op("exp_p2"), u[j], a[j]) })
	each(func(j int) { VFMADD213PS(a[j], t[j], y[j]) })
	each(func(j int) { a[j] = c.copy("exp_p5") })
	each(func(j int) { VFMADD231PS(c.op("exp_p4"), u[j], a[j]) })
	each(func(j int) { VFMADD213PS(a[j], t[j], y[j]) })
	each(func(j int) { VFMADD213PS(u[j], t[j], y[j]) }) // y·r² + r
	each(func(j int) { VADDPS(c.op("one"), y[j], y[j]) })
	each(func(j int) { VPSLLD(U8(23), fx[j], fx[j]) }) // 2^(n-1)
	each(func(j int) { VADDPS(y[j], y[j], y[j]) })
	each(func(j int) { VMULPS(fx[j], y[j], y[j]) })
	if c.w.zmm {
		ks := make([]Register, k)
		each(func(j int) { ks[j] = K(); VCMPPS(U8(5), c.op("exp_lo"), xs[j], ks[j]) }) // !(x < lo): true for NaN
		each(func(j int) { VMOVAPS_Z(y[j], ks[j], y[j]) })
		return y
	}
	each(func(j int) { VCMPPS(U8(5), c.op("exp_lo"), xs[j], t[j]) }) // !(x < lo): true for NaN
	each(func(j int) { VANDPS(t[j], y[j], y[j]) })
	return y
}

// siluN returns x / (1 + e^-x) for each x in xs, in the x registers.
func siluN(c consts, xs []VecVirtual) []VecVirtual {
	nx := c.w.vecs(len(xs))
	for j, x := range xs {
		c.w.xor(c.op("signbit"), x, nx[j])
	}
	return divOnePlus(c, xs, expN(c, nx))
}

// divOnePlus returns x / (1 + e) for each pair, in the x registers.
func divOnePlus(c consts, xs, es []VecVirtual) []VecVirtual {
	for _, e := range es {
		VADDPS(c.op("one"), e, e)
	}
	for j, e := range es {
		VDIVPS(e, xs[j], xs[j])
	}
	return xs
}

// genElementwise emits the elementwise kernels for width w.
func genElementwise(w width) {
	type ew struct {
		name, sig, doc string
		dst            string
		ins            []string
		scal           []string
		unroll         int
		exp            bool // an exp kernel: its iterations' vectors are interleaved
		// f computes one vector from its inputs (which it may clobber) and the
		// broadcast scalars s; fb, set instead, all the iteration's vectors at once
		// (in[v][input]), given their slots for operands read late.
		f  func(c consts, in, s []VecVirtual, v vec, ptr map[string]Register) VecVirtual
		fb func(c consts, in [][]VecVirtual, s []VecVirtual, vs []vec, ptr map[string]Register) []VecVirtual
	}
	ops := []ew{
		{"add", "func(dst, x *float32, n int)", "add computes dst[i] += x[i] for i < n.",
			"dst", []string{"dst", "x"}, nil, 4, false,
			func(_ consts, in, _ []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				VADDPS(in[1], in[0], in[0])
				return in[0]
			}, nil},
		{"scale", "func(x *float32, n int, s float32)", "scale computes x[i] *= s for i < n.",
			"x", []string{"x"}, []string{"s"}, 4, false,
			func(_ consts, in, s []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				VMULPS(s[0], in[0], in[0])
				return in[0]
			}, nil},
		{"rmsOut", "func(dst, x, w *float32, n int, s float32)", "rmsOut computes dst[i] = x[i]·s·w[i] for i < n (RMSNorm's second pass).",
			"dst", []string{"x", "w"}, []string{"s"}, 4, false,
			func(_ consts, in, s []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				VMULPS(s[0], in[0], in[0])
				VMULPS(in[1], in[0], in[0])
				return in[0]
			}, nil},
		{"lnOut", "func(dst, x, w *float32, n int, mean, inv float32)", "lnOut computes dst[i] = (x[i]-mean)·inv·w[i] for i < n (LayerNorm without bias).",
			"dst", []string{"x", "w"}, []string{"mean", "inv"}, 4, false,
			func(_ consts, in, s []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				VSUBPS(s[0], in[0], in[0])
				VMULPS(s[1], in[0], in[0])
				VMULPS(in[1], in[0], in[0])
				return in[0]
			}, nil},
		{"lnOutBias", "func(dst, x, w, b *float32, n int, mean, inv float32)", "lnOutBias computes dst[i] = (x[i]-mean)·inv·w[i] + b[i] for i < n.",
			"dst", []string{"x", "w", "b"}, []string{"mean", "inv"}, 4, false,
			func(_ consts, in, s []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				VSUBPS(s[0], in[0], in[0])
				VMULPS(s[1], in[0], in[0])
				VMULPS(in[1], in[0], in[0])
				VADDPS(in[2], in[0], in[0])
				return in[0]
			}, nil},
		{"relu", "func(x *float32, n int)", "relu sets x[i] = 0 where x[i] < 0, for i < n (NaN and -0 stay as they are).",
			"x", []string{"x"}, nil, 4, false,
			func(c consts, in, _ []VecVirtual, _ vec, _ map[string]Register) VecVirtual {
				x, z := in[0], c.w.vec()
				c.w.zero(z)
				if c.w.zmm {
					k := K()
					VCMPPS(U8(1), z, x, k) // x < 0
					VPXORD(x, x, k, x)
					return x
				}
				t := YMM()
				VCMPPS(U8(1), z, x, t) // x < 0
				VANDNPS(x, t, x)
				return x
			}, nil},
		{"gelu", "func(x *float32, n int)", "gelu applies GELU (tanh form) in place: x / (1 + exp(x·(k1 + k2·x²))).",
			"x", []string{"x"}, nil, 2, true, nil,
			func(c consts, in [][]VecVirtual, _ []VecVirtual, _ []vec, _ map[string]Register) []VecVirtual {
				xs := col(in, 0)
				as, ts := make([]VecVirtual, len(xs)), c.w.vecs(len(xs))
				for j, x := range xs {
					VMULPS(x, x, ts[j])
				}
				for j := range xs {
					as[j] = c.copy("gelu_k2")
					VFMADD213PS(c.op("gelu_k1"), ts[j], as[j])
				}
				for j, x := range xs {
					VMULPS(x, as[j], as[j])
				}
				return divOnePlus(c, xs, expN(c, as))
			}},
		{"silu", "func(x *float32, n int)", "silu applies x·σ(x) = x / (1 + exp(-x)) in place.",
			"x", []string{"x"}, nil, 2, true, nil,
			func(c consts, in [][]VecVirtual, _ []VecVirtual, _ []vec, _ map[string]Register) []VecVirtual {
				return siluN(c, col(in, 0))
			}},
		{"swiglu", "func(gate, up *float32, n int)", "swiglu computes gate[i] = silu(gate[i])·up[i] for i < n.",
			"gate", []string{"gate"}, nil, 2, true, nil,
			func(c consts, in [][]VecVirtual, _ []VecVirtual, vs []vec, ptr map[string]Register) []VecVirtual {
				gs := siluN(c, col(in, 0))
				for j, g := range gs {
					VMULPS(vs[j].operand(ptr["up"]), g, g)
				}
				return gs
			}},
	}
	for _, o := range ops {
		lb := fn(o.name, o.sig, o.doc)
		ptr := map[string]Register{}
		params := append([]string{o.dst}, o.ins...)
		if o.name == "swiglu" {
			params = append(params, "up") // read late, as an operand
		}
		for _, p := range params {
			if _, ok := ptr[p]; !ok {
				ptr[p] = Load(Param(p), GP64())
			}
		}
		var s []VecVirtual
		for _, name := range o.scal {
			s = append(s, w.bcast(name))
		}
		// The exp kernels keep their constants in memory: two interleaved vectors
		// need 14 registers, and Zen 1 is bound by its FP scheduler there, not its loads.
		c := consts{w: w}
		if w.zmm && o.exp {
			// With 32 registers the exp constants all fit beside two vectors' chains.
			names := expConsts
			if o.name == "gelu" {
				names = append(names, "gelu_k1", "gelu_k2")
			}
			c = hoist(w, names...)
		}
		streamBatch(w, lb, "n", o.unroll, func(vs []vec) {
			in := make([][]VecVirtual, len(vs))
			for j, v := range vs {
				for _, p := range o.ins {
					in[j] = append(in[j], v.load(ptr[p]))
				}
			}
			var out []VecVirtual
			if o.fb != nil {
				out = o.fb(c, in, s, vs, ptr)
			} else {
				for j, v := range vs {
					out = append(out, o.f(c, in[j], s, v, ptr))
				}
			}
			for j, v := range vs {
				v.store(out[j], ptr[o.dst])
			}
		})
		VZEROUPPER()
		RET()
	}
}

// genReductions emits the reductions (and softmax's passes) for width w: each sums in
// four accumulators of w.lanes() lanes.
func genReductions(w width) {
	type red struct {
		name, sig, doc string
		scal           []string
		step           func(x VecVirtual, s []VecVirtual, v vec, acc VecVirtual)
	}
	reds := []red{
		{"sum", "func(x *float32, n int) float32", "sum returns Σ x[i] over i < n.", nil,
			func(x VecVirtual, _ []VecVirtual, _ vec, acc VecVirtual) { VADDPS(x, acc, acc) }},
		{"sumsq", "func(x *float32, n int) float32", "sumsq returns Σ x[i]² over i < n.", nil,
			func(x VecVirtual, _ []VecVirtual, _ vec, acc VecVirtual) { VFMADD231PS(x, x, acc) }},
		{"sumsqdev", "func(x *float32, n int, mean float32) float32", "sumsqdev returns Σ (x[i]-mean)² over i < n.", []string{"mean"},
			func(x VecVirtual, s []VecVirtual, v vec, acc VecVirtual) {
				VSUBPS(s[0], x, x)
				v.zeroTail(x) // the masked-off lanes are 0 - mean
				VFMADD231PS(x, x, acc)
			}},
	}
	for _, r := range reds {
		lb := fn(r.name, r.sig, r.doc)
		p := Load(Param("x"), GP64())
		var s []VecVirtual
		for _, name := range r.scal {
			s = append(s, w.bcast(name))
		}
		acc := w.vecs(4)
		w.zero(acc...)
		stream(w, lb, "n", 4, func(v vec) {
			r.step(v.load(p), s, v, acc[v.disp/w.bytes()])
		})
		VADDPS(acc[1], acc[0], acc[0])
		VADDPS(acc[3], acc[2], acc[2])
		VADDPS(acc[2], acc[0], acc[0])
		Store(w.hsum(acc[0]), ReturnIndex(0))
		w.done()
	}

	// maxNaN: the maximum, and whether any element is NaN (MAXPS alone cannot tell).
	{
		lb := fn("maxNaN", "func(x *float32, n int) (max float32, nan bool)",
			"maxNaN returns max x[i] over i < n (-Inf for n = 0) and whether any x[i] is NaN.")
		p := Load(Param("x"), GP64())
		mx := w.vecs(4)
		var nan []VecVirtual // YMM: the unordered compares, ORed
		var knan Register    // ZMM: the same as an opmask
		if w.zmm {
			for u := range mx {
				VBROADCASTSS(vconst("neginf", constBits["neginf"]), mx[u])
			}
			knan = K()
			KXORW(knan, knan, knan)
		} else {
			nan = ymms(4)
			for u := range mx {
				VMOVUPS(vconst("neginf", constBits["neginf"]), mx[u])
				zero(nan[u])
			}
		}
		stream(w, lb, "n", 4, func(v vec) {
			x, u := v.load(p), v.disp/w.bytes()
			if w.zmm {
				// The masked-off lanes, loaded as 0, take no part: the compare and
				// the max are masked too.
				t := K()
				if v.tail() {
					VCMPPS(U8(3), x, x, v.k, t) // unordered: NaN
					VMAXPS(x, mx[u], v.k, mx[u])
				} else {
					VCMPPS(U8(3), x, x, t)
					VMAXPS(x, mx[u], mx[u])
				}
				KORW(t, knan, knan)
				return
			}
			t := YMM()
			VCMPPS(U8(3), x, x, t) // unordered: NaN
			VORPS(t, nan[u], nan[u])
			if v.tail() {
				// Masked-off lanes loaded as 0 must not win the max.
				t := YMM()
				VMOVUPS(vconst("neginf", constBits["neginf"]), t)
				VBLENDVPS(v.mask(), x, t, x)
			}
			VMAXPS(x, mx[u], mx[u])
		})
		for u := 1; u < 4; u++ {
			VMAXPS(mx[u], mx[0], mx[0])
			if !w.zmm {
				VORPS(nan[u], nan[0], nan[0])
			}
		}
		Store(w.hmax(mx[0]), ReturnIndex(0))
		if w.zmm {
			KORTESTW(knan, knan)
		} else {
			bits := GP32()
			VMOVMSKPS(nan[0], bits)
			TESTL(bits, bits)
		}
		flag := GP8()
		SETNE(flag)
		Store(flag, ReturnIndex(1))
		w.done()
	}

	// expSub: softmax's middle pass.
	lb := fn("expSub", "func(x *float32, n int, m float32) float32",
		"expSub replaces x[i] by exp(x[i]-m) for i < n and returns their sum.")
	p := Load(Param("x"), GP64())
	m := w.bcast("m")
	acc := w.vec()
	w.zero(acc)
	c := consts{w: w}
	if w.zmm {
		c = hoist(w, expConsts...)
	}
	streamBatch(w, lb, "n", 2, func(vs []vec) {
		xs := make([]VecVirtual, len(vs))
		for j, v := range vs {
			xs[j] = v.load(p)
			VSUBPS(m, xs[j], xs[j])
		}
		es := expN(c, xs)
		for j, v := range vs {
			v.zeroTail(es[j])
			VADDPS(es[j], acc, acc)
			v.store(es[j], p)
		}
	})
	Store(w.hsum(acc), ReturnIndex(0))
	w.done()
}

// col returns in[v][i] for every v.
func col(in [][]VecVirtual, i int) []VecVirtual {
	c := make([]VecVirtual, len(in))
	for v := range in {
		c[v] = in[v][i]
	}
	return c
}
