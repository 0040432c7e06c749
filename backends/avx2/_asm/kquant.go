package main

import (
	"encoding/binary"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genKQuant emits the matrix–vector products of k-quant weights (ggml's q4_k, q5_k and
// q6_k super-blocks) with q8_k activations, for kernels.Q8Kernels. They compute exactly
// what kernels.Reference.MatMulQ8 computes — ggml's generic C dot product — bit for bit:
// per super-block, eight exact integer lane sums aux[l] over the elements e ≡ l (mod 8)
// of each sub-block, scaled by the sub-block's scale; then, in float32 and in this
// order, sums[l] += (d_w·d_x)·float32(aux[l]) lane by lane, sumf −= (dmin_w·d_x)·mins for
// q4_k and q5_k, and at the end sumf + sums[0] + … + sums[7].
//
// The integer products come from VPMADDUBSW (unsigned weight quants times signed
// activations), then VPMADDWD by the sub-block's scale, which also adds neighbouring
// int16 pairs. For the four bytes that end in one int32 lane to belong to one class
// mod 8, both operands are permuted the same way within every 32 elements: π puts
// elements c, c+8, c+16, c+24 in dword c (VPERMD [0 2 4 6 1 3 5 7], then a 4×4 byte
// transpose per 128-bit lane by VPSHUFB), so that dword c of the accumulator is aux[c].
// The weights are permuted as they are loaded (packed nibbles and high bits permute
// with their elements); the activations once per product by prepQ8K, which also
// precomputes what the kernels need of them.
//
// A prepared activation super-block (xkBlock bytes) holds π(q) for each of its eight
// runs of 32 (256 bytes), 32·(q_2k + q_2k+1) for each int16 pair of π(q) (256 bytes:
// q6_k's quants are stored as q+32, unsigned, and this is the 32·q term to subtract
// before the scale), the eight sums bsums_2j + bsums_2j+1 as int16 (16 bytes, for the
// mins of q4_k and q5_k), and d (4 bytes).
func genKQuant() {
	genPrepQ8K()
	for _, t := range []string{"q4_k", "q5_k"} {
		genMatVecK45(t)
	}
	genMatVecQ6K()
	genQuantizeQ8K()
}

// xkBlock is the size in bytes of one prepared q8_k super-block (see genKQuant).
const xkBlock = 544

var kconsts = map[string]Mem{}

// bytesConst returns a read-only constant of the given bytes (a multiple of 8).
func bytesConst(name string, b []byte) Mem {
	if m, ok := kconsts[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i := 0; i < len(b); i += 8 {
		DATA(i, U64(binary.LittleEndian.Uint64(b[i:])))
	}
	kconsts[name] = m
	return m
}

// lanes2 repeats 16 bytes in both 128-bit lanes.
func lanes2(b []byte) []byte { return append(append([]byte(nil), b...), b...) }

// kperm and kt4x4 are π's two steps: the VPERMD indices and the per-lane byte transpose.
func kperm() Mem {
	b := make([]byte, 32)
	for i, v := range []uint32{0, 2, 4, 6, 1, 3, 5, 7} {
		binary.LittleEndian.PutUint32(b[4*i:], v)
	}
	return bytesConst("kperm", b)
}

func kt4x4() Mem {
	return bytesConst("kt4x4", lanes2([]byte{0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15}))
}

// permute applies π to v in place; idx holds kperm.
func permute(v, idx VecVirtual) {
	VPERMD(v, idx, v)
	VPSHUFB(kt4x4(), v, v)
}

// genPrepQ8K emits prepQ8K, which writes the prepared super-blocks of nb q8_k
// super-blocks.
func genPrepQ8K() {
	lb := fn("prepQ8K", "func(dst *byte, xq *byte, nb int)",
		"prepQ8K writes the nb q8_k super-blocks at xq as the k-quant kernels take them",
		"(xkBlock bytes each at dst): π(q) per 32 quants, 32·(pair sums) of π(q) as int16,",
		"the sums of pairs of bsums as int16, and d.")
	dst := Load(Param("dst"), GP64())
	xq := Load(Param("xq"), GP64())
	nb := Load(Param("nb"), GP64())
	idx, c32, ones := YMM(), YMM(), YMM()
	VMOVDQU(kperm(), idx)
	VMOVDQU(vconst("k32b", 0x20202020), c32)
	VMOVDQU(vconst("ones16", 0x00010001), ones)
	loop := lb.next("block")
	Label(loop)
	for c := 0; c < 8; c++ {
		v, s := YMM(), YMM()
		VMOVDQU(Mem{Base: xq, Disp: 4 + 32*c}, v)
		permute(v, idx)
		VMOVDQU(v, Mem{Base: dst, Disp: 32 * c})
		VPMADDUBSW(v, c32, s)
		VMOVDQU(s, Mem{Base: dst, Disp: 256 + 32*c})
	}
	b, h := YMM(), XMM()
	VPMADDWD(Mem{Base: xq, Disp: 260}, ones, b) // bsums_2j + bsums_2j+1, as int32
	VEXTRACTI128(U8(1), b, h)
	VPACKSSDW(h, b.AsX(), h) // j = 0..7 as int16 (|·| ≤ 4064)
	VMOVDQU(h, Mem{Base: dst, Disp: 512})
	d := GP32()
	MOVL(Mem{Base: xq}, d)
	MOVL(d, Mem{Base: dst, Disp: 528})
	ADDQ(U32(292), xq)
	ADDQ(U32(xkBlock), dst)
	DECQ(nb)
	JNZ(LabelRef(loop))
	VZEROUPPER()
	RET()
}

// unpackScales returns, from the 12 packed bytes at s, an XMM register holding the eight
// 6-bit scales (bytes 0–7) and mins (bytes 8–15) of a q4_k or q5_k super-block
// (dtype.ScaleMinK4). It reads 16 bytes at s (the 4 past the scales are the block's).
func unpackScales(s Mem) VecVirtual {
	x, a, b, t := XMM(), XMM(), XMM(), XMM()
	VMOVDQU(s, x)
	// a = s0–3, s8–11, s4–7, s8–11: the low parts, masked, and for bytes 12–15 shifted.
	VPSHUFB(bytesConst("kscA", []byte{0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11}), x, a)
	VPSRLW(U8(4), a, t)
	VPAND(bytesConst("kscL", []byte{63, 63, 63, 63, 15, 15, 15, 15, 63, 63, 63, 63, 0, 0, 0, 0}), a, a)
	VPAND(bytesConst("kscL2", []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 15, 15, 15}), t, t)
	VPOR(t, a, a)
	// b = the top two bits of s0–3 above scales 4–7, of s4–7 above mins 4–7.
	const z = 0x80
	VPSHUFB(bytesConst("kscB", []byte{z, z, z, z, 0, 1, 2, 3, z, z, z, z, 4, 5, 6, 7}), x, b)
	VPSRLW(U8(2), b, b)
	VPAND(bytesConst("kscH", []byte{0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30, 0, 0, 0, 0, 0x30, 0x30, 0x30, 0x30}), b, b)
	VPOR(b, a, a)
	return a
}

// kRowLoop starts the row loop of a k-quant kernel: it returns the registers it set up
// and the label of the super-block loop.
type kRow struct {
	dst, w, xp, wb, xb, nb Register
	sums                   VecVirtual // float32 lane sums
	sumf                   VecVirtual // XMM, the scalar sum in lane 0
	lb                     *labels
	rowLabel, blockLabel   string
}

func startKRow(lb *labels) *kRow {
	r := &kRow{lb: lb}
	r.dst = Load(Param("dst"), GP64())
	r.w = Load(Param("w"), GP64())
	r.rowLabel = lb.next("row")
	Label(r.rowLabel)
	r.sums, r.sumf = YMM(), XMM()
	zero(r.sums, r.sumf)
	r.xb, r.wb = GP64(), GP64()
	Load(Param("xp"), r.xb)
	MOVQ(r.w, r.wb)
	r.nb = Load(Param("nb"), GP64())
	r.blockLabel = lb.next("block")
	Label(r.blockLabel)
	return r
}

// scaleBlock adds the super-block's float32 terms: sums += (d_w·d_x)·float32(aux) and,
// when mins is not nil, sumf −= (dmin_w·d_x)·float32(mins) (mins in lane 0). dd holds
// d_w and dmin_w as float32 in lanes 0 and 1.
func (r *kRow) scaleBlock(aux VecVirtual, dd VecVirtual, mins VecVirtual) {
	dx := XMM()
	VBROADCASTSS(Mem{Base: r.xb, Disp: 528}, dx)
	VMULPS(dx, dd, dd) // d_w·d_x, dmin_w·d_x
	db := YMM()
	VBROADCASTSS(dd, db)
	VCVTDQ2PS(aux, aux)
	VMULPS(db, aux, aux)
	VADDPS(aux, r.sums, r.sums)
	if mins != nil {
		dm := XMM()
		VMOVSHDUP(dd, dm)
		VCVTDQ2PS(mins, mins)
		VMULSS(dm, mins, mins)
		VSUBSS(mins, r.sumf, r.sumf)
	}
}

// endKRow closes the super-block loop (advancing by the weight block size), adds
// sums[0..7] to sumf in order, stores it and loops over the rows.
func (r *kRow) endKRow(wbytes int) {
	ADDQ(U32(wbytes), r.wb)
	ADDQ(U32(xkBlock), r.xb)
	DECQ(r.nb)
	JNZ(LabelRef(r.blockLabel))
	hi, t := XMM(), XMM()
	VEXTRACTF128(U8(1), r.sums, hi)
	for _, h := range []Register{r.sums.AsX(), hi} {
		VADDSS(h, r.sumf, r.sumf)
		VMOVSHDUP(h, t)
		VADDSS(t, r.sumf, r.sumf)
		VMOVHLPS(h, h, t)
		VADDSS(t, r.sumf, r.sumf)
		VPSHUFD(U8(3), h, t)
		VADDSS(t, r.sumf, r.sumf)
	}
	VMOVSS(r.sumf, Mem{Base: r.dst})
	ADDQ(U8(4), r.dst)
	ldw := Load(Param("ldw"), GP64())
	ADDQ(ldw, r.w)
	rows := Load(Param("rows"), GP64())
	DECQ(rows)
	Store(rows, Param("rows"))
	JNZ(LabelRef(r.rowLabel))
	VZEROUPPER()
	RET()
}

// genMatVecK45 emits mvQ4_K or mvQ5_K: rows of q4_k or q5_k weights times one token's
// prepared q8_k activations.
func genMatVecK45(t string) {
	q5 := t == "q5_k"
	name, bs, qs := "mvQ4_K", 144, 16
	if q5 {
		name, bs, qs = "mvQ5_K", 176, 48
	}
	lb := fn(name, "func(dst *float32, xp *byte, w *byte, ldw int, nb int, rows int)",
		name+" computes dst[r] for r < rows (≥ 1) of the "+t+" matrix w (row r at w + r·ldw bytes,",
		"nb super-blocks) times the prepared q8_k activations xp (prepQ8K), exactly as",
		"kernels.Reference.MatMulQ8.")
	scales := AllocLocal(32) // sub-block j's scale in both halves of dword j
	idx, nib := YMM(), YMM()
	VMOVDQU(kperm(), idx)
	VMOVDQU(vconst("nibble", 0x0f0f0f0f), nib)
	r := startKRow(lb)
	sc := unpackScales(Mem{Base: r.wb, Disp: 4})
	// mins: Σ_j m_j·(bsums_2j + bsums_2j+1), exact in int32.
	mins := XMM()
	VPSHUFB(bytesConst("kminz", []byte{8, 0x80, 9, 0x80, 10, 0x80, 11, 0x80, 12, 0x80, 13, 0x80, 14, 0x80, 15, 0x80}), sc, mins)
	VPMADDWD(Mem{Base: r.xb, Disp: 512}, mins, mins)
	hsumInt4(mins)
	{
		s, t := YMM(), YMM()
		VPMOVZXBD(sc, s)
		VPSLLD(U8(16), s, t)
		VPOR(t, s, s)
		VMOVDQU(s, scales)
	}
	var qh VecVirtual
	if q5 {
		qh = YMM()
		VMOVDQU(Mem{Base: r.wb, Disp: 16}, qh)
		permute(qh, idx)
	}
	var aux VecVirtual
	for j := 0; j < 4; j++ {
		q, hi := YMM(), YMM()
		VMOVDQU(Mem{Base: r.wb, Disp: qs + 32*j}, q)
		permute(q, idx)
		VPSRLW(U8(4), q, hi)
		VPAND(nib, q, q)
		VPAND(nib, hi, hi)
		if q5 {
			// The fifth bits: bit 2j of qh for the low nibbles, bit 2j+1 for the high.
			h, g := YMM(), YMM()
			if j == 0 {
				VMOVDQA(qh, h)
			} else {
				VPSRLW(U8(2*j), qh, h)
			}
			VPSLLW(U8(4), h, g)
			VPAND(vconst("k10", 0x10101010), g, g)
			VPOR(g, q, q)
			VPSLLW(U8(3), h, h)
			VPAND(vconst("k10", 0x10101010), h, h)
			VPOR(h, hi, hi)
		}
		for half, v := range []VecVirtual{q, hi} {
			s := 2*j + half
			p, b := YMM(), YMM()
			VPMADDUBSW(Mem{Base: r.xb, Disp: 32 * s}, v, p)
			VPBROADCASTD(scales.Offset(4*s), b)
			VPMADDWD(b, p, p)
			if s == 0 {
				aux = p
			} else {
				VPADDD(p, aux, aux)
			}
		}
	}
	dd := XMM()
	VMOVD(Mem{Base: r.wb}, dd)
	VCVTPH2PS(dd, dd)
	r.scaleBlock(aux, dd, mins)
	r.endKRow(bs)
}

// genMatVecQ6K emits mvQ6_K: rows of q6_k weights times one token's prepared q8_k
// activations. Each half of 128 elements loads its 64 bytes of low nibbles and 32 of
// high bits once, permuted, and builds its four runs of 32 unsigned 6-bit quants from
// them; a run's products, less 32·x (prepared), get the two sub-blocks' int8 scales,
// sign-extended once per super-block to a stack array.
func genMatVecQ6K() {
	lb := fn("mvQ6_K", "func(dst *float32, xp *byte, w *byte, ldw int, nb int, rows int)",
		"mvQ6_K computes dst[r] for r < rows (≥ 1) of the q6_k matrix w (row r at w + r·ldw bytes,",
		"nb super-blocks) times the prepared q8_k activations xp (prepQ8K), exactly as",
		"kernels.Reference.MatMulQ8.")
	scales := AllocLocal(32)
	idx, nib := YMM(), YMM()
	VMOVDQU(kperm(), idx)
	VMOVDQU(vconst("nibble", 0x0f0f0f0f), nib)
	r := startKRow(lb)
	{
		s := YMM()
		VPMOVSXBW(Mem{Base: r.wb, Disp: 192}, s)
		VMOVDQU(s, scales)
	}
	k30 := vconst("k30", 0x30303030)
	var aux VecVirtual
	for h := 0; h < 2; h++ {
		ql0, ql1, qh := YMM(), YMM(), YMM()
		VMOVDQU(Mem{Base: r.wb, Disp: 64 * h}, ql0)
		VMOVDQU(Mem{Base: r.wb, Disp: 64*h + 32}, ql1)
		VMOVDQU(Mem{Base: r.wb, Disp: 128 + 32*h}, qh)
		permute(ql0, idx)
		permute(ql1, idx)
		permute(qh, idx)
		for quarter := 0; quarter < 4; quarter++ {
			g, t := YMM(), YMM()
			src := ql0
			if quarter%2 == 1 {
				src = ql1
			}
			if quarter < 2 {
				VPAND(nib, src, g)
			} else {
				VPSRLW(U8(4), src, g)
				VPAND(nib, g, g)
			}
			switch quarter { // (qh >> 2·quarter & 3) << 4
			case 0:
				VPSLLW(U8(4), qh, t)
			case 1:
				VPSLLW(U8(2), qh, t)
			case 2:
				VMOVDQA(qh, t)
			case 3:
				VPSRLW(U8(2), qh, t)
			}
			VPAND(k30, t, t)
			VPOR(t, g, g)
			c := 4*h + quarter // run of 32: sub-blocks 2c and 2c+1
			p, b := YMM(), YMM()
			VPMADDUBSW(Mem{Base: r.xb, Disp: 32 * c}, g, p)
			VPSUBW(Mem{Base: r.xb, Disp: 256 + 32*c}, p, p)
			VPBROADCASTD(scales.Offset(4*c), b)
			VPMADDWD(b, p, p)
			if c == 0 {
				aux = p
			} else {
				VPADDD(p, aux, aux)
			}
		}
	}
	dd, g := XMM(), GP32()
	MOVWLZX(Mem{Base: r.wb, Disp: 208}, g)
	VMOVD(g, dd)
	VCVTPH2PS(dd, dd)
	r.scaleBlock(aux, dd, nil)
	r.endKRow(210)
}

// genQuantizeQ8K emits quantQ8K, the q8_k activation quantizer. It computes what
// dtype.QuantizeRowQ8_K (ggml's quantize_row_q8_K_ref) computes, byte for byte, for every
// super-block whose elements are finite and not all zero, and whose iscale = −127/max is
// finite: amax by VMAXPS; max, the first element of that magnitude, by a second pass;
// iscale and d = 1/iscale by VDIVSS; q = min(127, nearest_int(iscale·x)) with ggml's
// nearest_int (VMULPS, then VADDPS of 12582912 — not fused — and the bits masked to 23
// less 2²²), packed to bytes (|q| ≤ 127, so saturation never acts); the 16 sums from
// VPMADDUBSW and VPMADDWD. It stops before a super-block it cannot do and returns how
// many it wrote; the caller leaves that one to the reference.
func genQuantizeQ8K() {
	lb := fn("quantQ8K", "func(dst *byte, x *float32, nb int) int",
		"quantQ8K quantizes the nb super-blocks of 256 floats at x to q8_k at dst, exactly as",
		"dtype.QuantizeRowQ8_K, stopping before the first super-block with a non-finite",
		"element, all zeros, or a non-finite −127/max; it returns how many it wrote.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	done := GP64()
	XORQ(done, done)
	abs := YMM()
	VMOVUPS(vconst("absmask", 0x7fffffff), abs)
	inf := vconst("inff", 0x7f800000)
	loop, end := lb.next("block"), lb.next("end")
	Label(loop)
	CMPQ(done, nb)
	JGE(LabelRef(end))
	// Pass 1: amax, and whether any element is an infinity or a NaN.
	m := ymms(4)
	bad := YMM()
	zero(bad)
	for i := 0; i < 32; i++ {
		a, t := YMM(), YMM()
		VANDPS(Mem{Base: x, Disp: 32 * i}, abs, a)
		VCMPPS(U8(5), inf, a, t) // !(|x| < ∞)
		VORPS(t, bad, bad)
		if i < 4 {
			VMOVAPS(a, m[i])
		} else {
			VMAXPS(a, m[i%4], m[i%4])
		}
	}
	k := GP32()
	VMOVMSKPS(bad, k)
	TESTL(k, k)
	JNZ(LabelRef(end))
	VMAXPS(m[1], m[0], m[0])
	VMAXPS(m[3], m[2], m[2])
	VMAXPS(m[2], m[0], m[0])
	h, t := XMM(), XMM()
	VEXTRACTF128(U8(1), m[0], h)
	VMAXPS(h, m[0].AsX(), h)
	VMOVHLPS(h, h, t)
	VMAXPS(t, h, h)
	VPSHUFD(U8(1), h, t)
	VMAXSS(t, h, h) // amax
	z := XMM()
	VXORPS(z, z, z)
	VUCOMISS(z, h)
	JE(LabelRef(end)) // all zeros
	// Pass 2: the first element of magnitude amax, with its sign.
	ab := YMM()
	VBROADCASTSS(h, ab)
	i := GP64()
	XORQ(i, i)
	scan, found := lb.next("scan"), lb.next("found")
	Label(scan)
	{
		a := YMM()
		VANDPS(Mem{Base: x, Index: i, Scale: 4}, abs, a)
		VCMPPS(U8(0), ab, a, a)
		VMOVMSKPS(a, k)
		TESTL(k, k)
		JNZ(LabelRef(found))
		ADDQ(U8(8), i)
		JMP(LabelRef(scan)) // amax is some element's magnitude: the scan ends
	}
	Label(found)
	tz := GP32()
	BSFL(k, tz)
	ADDQ(tz.As64(), i)
	mx, is := XMM(), XMM()
	VMOVSS(Mem{Base: x, Index: i, Scale: 4}, mx)
	VMOVSS(vf32("m127f", -127), is)
	VDIVSS(mx, is, is) // iscale = −127/max
	{
		a := XMM()
		VANDPS(abs.AsX(), is, a)
		VUCOMISS(inf.Offset(0), a)
		JAE(LabelRef(end)) // max so small that iscale overflows: the reference's garbage
	}
	d := XMM()
	VMOVSS(vf32("onef", 1), d)
	VDIVSS(is, d, d) // d = 1/iscale
	VMOVSS(d, Mem{Base: dst})
	isy := YMM()
	VBROADCASTSS(is, isy)
	pr := YMM()
	{
		b := make([]byte, 32)
		for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
			binary.LittleEndian.PutUint32(b[4*i:], v)
		}
		VMOVDQU(bytesConst("kpack", b), pr) // undoes the packs' lane interleaving
	}
	var groups []VecVirtual // VPMADDWD sums of 4 bytes, per run of 32 quants
	var halves [2]VecVirtual
	for g := 0; g < 8; g++ {
		q := ymms(4)
		for k := range q {
			VMULPS(Mem{Base: x, Disp: 128*g + 32*k}, isy, q[k]) // rounded to float32
			VADDPS(vf32("magicf", 12582912), q[k], q[k])        // a separate rounding
			VPAND(vconst("mant23", 0x007fffff), q[k], q[k])
			VPSUBD(vconst("half22", 0x00400000), q[k], q[k])
			VPMINSD(vconst("i127", 127), q[k], q[k])
		}
		VPACKSSDW(q[1], q[0], q[0])
		VPACKSSDW(q[3], q[2], q[2])
		VPACKSSWB(q[2], q[0], q[0])
		VPERMD(q[0], pr, q[0])
		VMOVDQU(q[0], Mem{Base: dst, Disp: 4 + 32*g})
		s := YMM()
		VMOVDQU(vconst("ones8", 0x01010101), s)
		VPMADDUBSW(q[0], s, s)
		VPMADDWD(vconst("ones16", 0x00010001), s, s)
		groups = append(groups, s)
		if len(groups) == 4 {
			// [b0 of runs 0–3 | b1 of runs 0–3], b0 and b1 the sums of a run's halves.
			VPHADDD(groups[1], groups[0], groups[0])
			VPHADDD(groups[3], groups[2], groups[2])
			VPHADDD(groups[2], groups[0], groups[0])
			halves[g/4] = groups[0]
			groups = groups[:0]
		}
	}
	VPACKSSDW(halves[1], halves[0], halves[0]) // [b0 of runs 0–7 | b1 of runs 0–7]
	hb, lo := XMM(), XMM()
	VEXTRACTI128(U8(1), halves[0], hb)
	VPUNPCKLWD(hb, halves[0].AsX(), lo) // bsums 0–7
	VPUNPCKHWD(hb, halves[0].AsX(), hb) // bsums 8–15
	VMOVDQU(lo, Mem{Base: dst, Disp: 260})
	VMOVDQU(hb, Mem{Base: dst, Disp: 276})
	ADDQ(U32(1024), x)
	ADDQ(U32(292), dst)
	INCQ(done)
	JMP(LabelRef(loop))
	Label(end)
	Store(done, ReturnIndex(0))
	VZEROUPPER()
	RET()
}
