package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The k-quant GEMM of kgemm.go in YMM registers, for backends/avx2: the same algorithm
// at half the width. A YMM register holds one row × the eight classes l (dword lane l),
// where a ZMM one holds two rows; a group is 4 rows (the 16 YMM registers take 4 rows ×
// 3 tokens of accumulators, as the 32 ZMM ones take 8 pairs × 3 tokens). The weights
// are repacked once per group, pre-multiplied by their sub-block scales as int16, so
// that lane l of vector (p, r) holds row r's int16 pair (sc·w_{16q+l}, sc·w_{16q+l+8})
// of one q of the 16 runs of 16 elements — q = p for the low four lanes, and for the
// high four the other q of the pair 2⌊p/2⌋, 2⌊p/2⌋+1 (q = p XOR 1): each 32 bytes of
// quants hold a pair of runs, one per 128-bit half, and VPSHUFB only picks within a
// half, so vector 2k takes classes 0–3 of run 2k and 4–7 of run 2k+1 from the quants
// as they lie, vector 2k+1 the rest from the quants with their halves swapped (one
// VPERMQ). The activations are prepared once per product (kprepV: kprepZ's int16 pairs
// with the same halves crossed, 576 bytes per super-block). One dot product of vector
// (p, r) with token t's 32 bytes for p adds row r's products of the elements of class l
// to lane l: after the 16 p of a super-block lane l holds the exact aux[l] (kgemmDots,
// the ZMM form's loop with the YMM registers and instructions). The dot product is the
// VEX-encoded VPDPWSSD on CPUs with AVX-VNNI (suffix V; the Go assembler encodes
// VPDPWSSD Y only as EVEX, so vexPass writes it as bytes), else VPMADDWD and VPADDD
// (suffix M): equal results, both wrap modulo 2³², and no sum here comes near that.
// The float work follows the reference's order lane by lane, as in the ZMM form:
//
//	sums[l] += float32(float32(d_w·d_x) · float32(aux[l]))
//	q4_k: sumf −= float32(float32(dmin_w·d_x) · float32(mins))   (4 rows per vector)
//
// with the mins, per row, by VPMADDWD of its (m_j, m_j) word pairs with the token's
// bsums pairs (lane j: m_j·(bsums_2j + bsums_2j+1)) and a tree of VPHADDD over the
// group's four rows. At the end a 4×8 transpose brings each class l of the four rows
// into one lane per row, and sumf + sums[0] + … + sums[7] is summed in that order.
//
// As in the ZMM form the weights are picked by VPSHUFB into the high bytes of words and
// scaled by VPMULHW with (sc·256) words: the high half of (w·256)·(sc·256) is w·sc.

// Offsets within one repacked super-block of a YMM group of 4 rows, and the other
// sizes of the YMM form.
const (
	kvLanes = 4                   // the rows of a group
	kvRowW  = 32 * kvLanes        // the bytes of one p of a group
	kvW     = 0                   // 16 p × 4 rows × 32 bytes: the scaled weight pairs
	kvD     = 16 * kvRowW         // 4 × 8 f32: row r's d_w in every lane of vector r
	kvDmin  = kvD + 32*kvLanes    // q4_k: 4 f32 dmin_w (lane r = row r), padded to 32 bytes
	kvMins  = kvDmin + 32         // q4_k: 4 vectors, lane j = row r's (m_j, m_j) as words
	kvBytes = kvMins + 32*kvLanes // q4_k; q6_k ends at kvDmin
	kvState = 32*kvLanes + 32     // a tile's state per token: 4 row vectors of sums, sumf
	kvTiles = 3                   // the most tokens a tile takes
	kvX     = kgemmXBytes         // a prepared activation super-block (kprepV)
	kvXBs   = 512                 // its bsums
	kvXD    = 544                 // its d_x
	kvZ     = 0x80                // VPSHUFB: a zero byte
)

// kgemmYMM is one form of the YMM tiles.
type kgemmYMM struct {
	suffix string // "V" (AVX-VNNI) or "M" (VPMADDWD)
	vnni   bool
}

var (
	kgemmVNNI = kgemmYMM{suffix: "V", vnni: true}
	kgemmMadd = kgemmYMM{suffix: "M"}
)

// form returns f's kgemmForm for tiles of nt tokens. VPMADDWD needs a temporary: with 3
// tokens (12 accumulators, 3 x) its weights are a memory operand rather than a register.
func (f kgemmYMM) form(nt int) kgemmForm {
	k := kgemmForm{
		vec: YMM, size: 32, vecs: kvLanes,
		loadX: func(m Mem, v VecVirtual) { VMOVDQU(m, v) },
		loadW: func(m Mem, v VecVirtual) { VMOVDQU(m, v) },
		dot:   func(x, w, acc Op) { vpdpwssdVEX(x, w, acc) },
	}
	if !f.vnni {
		k.dot = func(x, w, acc Op) {
			m := YMM()
			VPMADDWD(w, x, m)
			VPADDD(m, acc, acc)
		}
		if kvLanes*nt+nt+2 > 16 {
			k.loadW = nil
		}
	}
	return k
}

// genKGemmYMM emits the YMM k-quant GEMM: the preparation, the repacks and both forms'
// tiles.
func genKGemmYMM() {
	genKPrepV()
	genKRepackV("q4_k")
	genKRepackV("q5_k")
	genKRepackV("q6_k")
	for _, f := range []kgemmYMM{kgemmVNNI, kgemmMadd} {
		for _, q6 := range []bool{false, true} { // q5_k takes q4_k's tiles
			for nt := 1; nt <= kvTiles; nt++ {
				genKTileV(f, q6, nt)
			}
		}
	}
}

// genKPrepV emits kprepV: kprepZ's pairs, with the 128-bit halves of each two p
// crossed as the repack crosses them (see genKRepackV).
func genKPrepV() {
	lb := fn("kprepV", "func(dst *byte, xq *byte, nb int, stride int)",
		"kprepV writes the nb q8_k super-blocks at xq as the YMM k-quant GEMM tiles take them",
		"(576 bytes each at dst, stride bytes apart): for k < 8 and l < 8 the int16 pairs",
		"(x_{16p+l}, x_{16p+l+8}) of p = 2k (l < 4) and 2k+1 (l ≥ 4), then those of p = 2k+1",
		"(l < 4) and 2k (l ≥ 4); the 16 bsums; d as float32.")
	dst := Load(Param("dst"), GP64())
	xq := Load(Param("xq"), GP64())
	nb := Load(Param("nb"), GP64())
	stride := Load(Param("stride"), GP64())
	ilv := XMM()
	VMOVDQU(bytesConst("kvilv", []byte{0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15}), ilv)
	loop := lb.next("block")
	Label(loop)
	for k := 0; k < 8; k++ {
		var x [2]VecVirtual
		for h := range x {
			v := XMM()
			x[h] = YMM()
			VMOVDQU(Mem{Base: xq, Disp: 4 + 32*k + 16*h}, v)
			VPSHUFB(ilv, v, v)
			VPMOVSXBW(v, x[h])
		}
		// Vector 2k: p = 2k's classes 0–3, p = 2k+1's classes 4–7; vector 2k+1 the others.
		a, b := YMM(), YMM()
		VPBLENDD(U8(0xf0), x[1], x[0], a)
		VPBLENDD(U8(0xf0), x[0], x[1], b)
		VMOVDQU(a, Mem{Base: dst, Disp: 64 * k})
		VMOVDQU(b, Mem{Base: dst, Disp: 64*k + 32})
	}
	b := YMM()
	VMOVDQU(Mem{Base: xq, Disp: 260}, b)
	VMOVDQU(b, Mem{Base: dst, Disp: kvXBs})
	d := GP32()
	MOVL(Mem{Base: xq}, d)
	MOVL(d, Mem{Base: dst, Disp: kvXD})
	ADDQ(U32(292), xq)
	ADDQ(stride, dst)
	DECQ(nb)
	JNZ(LabelRef(loop))
	VZEROUPPER()
	RET()
}

// genKRepackV emits krepQ4KV, krepQ5KV or krepQ6KV: a YMM group of up to 4 rows.
func genKRepackV(kind string) {
	q6, q5 := kind == "q6_k", kind == "q5_k"
	name, bs, gb, qs := "krepQ4KV", 144, kvBytes, 16
	switch kind {
	case "q5_k":
		name, bs, qs = "krepQ5KV", 176, 48
	case "q6_k":
		name, bs, gb = "krepQ6KV", 210, kvDmin
	}
	lb := fn(name, "func(dst *byte, w *byte, ldw int, nb int, rows int)",
		fmt.Sprintf("%s repacks rows 0 ≤ r < rows (1 ≤ rows ≤ 4; ldw bytes apart, nb %s", name, kind),
		"super-blocks) as the YMM k-quant GEMM's group at dst (rows past the last repeat it):",
		"per super-block, row r's scaled weight pairs of p < 16 at dst + 128p + 32r, its d_w",
		"in the 8 lanes at 2048 + 32r (and for q4_k its dmin_w at 2176 + 4r, its mins pairs at",
		"2208 + 32r).")
	r := GP64()
	XORQ(r, r)
	pick := YMM()
	VMOVDQU(bytesConst("kvpick", []byte{
		kvZ, 0, kvZ, 8, kvZ, 1, kvZ, 9, kvZ, 2, kvZ, 10, kvZ, 3, kvZ, 11,
		kvZ, 4, kvZ, 12, kvZ, 5, kvZ, 13, kvZ, 6, kvZ, 14, kvZ, 7, kvZ, 15}), pick)
	nib := YMM()
	VMOVDQU(bytesConst("kvnib", rep(0x0f, 32)), nib)

	row := lb.next("row")
	Label(row)
	// w: row min(r, rows−1); out = dst + 32r.
	w := GP64()
	{
		last := Load(Param("rows"), GP64())
		DECQ(last)
		MOVQ(r, w)
		CMPQ(w, last)
		CMOVQGT(last, w)
		ldw := Load(Param("ldw"), GP64())
		IMULQ(ldw, w)
		ADDQ(Load(Param("w"), GP64()), w)
	}
	out := Load(Param("dst"), GP64())
	{
		o := GP64()
		MOVQ(r, o)
		SHLQ(U8(5), o)
		ADDQ(o, out)
	}
	dm := Load(Param("dst"), GP64())
	LEAQ(Mem{Base: dm, Index: r, Scale: 4}, dm) // dst + 4r, for dmin
	nb := Load(Param("nb"), GP64())

	loop := lb.next("block")
	Label(loop)
	// S: the row's 16 scale bytes in both 128-bit lanes (q4_k: 8 scales, 8 mins).
	S := YMM()
	if q6 {
		VBROADCASTI128(Mem{Base: w, Disp: 192}, S)
	} else {
		s := unpackScales(Mem{Base: w, Disp: 4})
		VINSERTI128(U8(1), s, s.AsY(), S)
	}
	// d (and dmin): f16 → float32.
	{
		h, d := XMM(), YMM()
		off := 0
		if q6 {
			off = 208
		}
		VPBROADCASTW(Mem{Base: w, Disp: off}, h)
		VCVTPH2PS(h, d)
		VMOVUPS(d, Mem{Base: out, Disp: kvD})
		if !q6 {
			hm, f := XMM(), XMM()
			VPBROADCASTW(Mem{Base: w, Disp: 2}, hm)
			VCVTPH2PS(hm, f)
			VMOVSS(f, Mem{Base: dm, Disp: kvDmin})
			// The mins: word 2j and 2j+1 of lane j: m_j (bytes 8–15 of S).
			b := make([]byte, 32)
			for j := 0; j < 8; j++ {
				copy(b[4*j:], []byte{byte(8 + j), kvZ, byte(8 + j), kvZ})
			}
			mv := YMM()
			VPSHUFB(bytesConst("kvminidx", b), S, mv)
			VMOVDQU(mv, Mem{Base: out, Disp: kvMins})
		}
	}
	// scale returns the scale vector of vector p (p < 16): every word's high byte the
	// scale of the elements it meets, by VPSHUFB of S (even bytes 0x80: zero).
	scale := func(p int) VecVirtual {
		c := make([]byte, 32)
		for i := 0; i < 16; i++ {
			c[2*i] = kvZ
			switch {
			case !q6:
				c[2*i+1] = byte(p / 2) // sub-block p/2 (both p of a pair)
			case (i < 8) == (p%2 == 0):
				c[2*i+1] = byte(p &^ 1) // the pair's first p
			default:
				c[2*i+1] = byte(p | 1)
			}
		}
		s := YMM()
		VPSHUFB(bytesConst(fmt.Sprintf("kvsc%v%d", q6, p), c), S, s)
		return s
	}
	// emit writes vectors 2k and 2k+1 of the pair of p whose 16 weights each v holds
	// (2k in the low 128 bits, 2k+1 in the high ones): the weights picked into the high
	// bytes of words, l-interleaved — classes 0–3 from the low half of their source,
	// 4–7 from the high half — times the scales (VPMULHW by sc·256); vector 2k from v,
	// vector 2k+1 from v with its halves swapped.
	emit := func(k int, v VecVirtual, sc0, sc1 VecVirtual) {
		sw := YMM()
		VPERMQ(U8(0x4e), v, sw)
		for i, src := range []VecVirtual{v, sw} {
			sc := []VecVirtual{sc0, sc1}[i]
			t := YMM()
			VPSHUFB(pick, src, t)
			VPMULHW(sc, t, t)
			VMOVDQU(t, Mem{Base: out, Disp: kvW + kvRowW*(2*k+i)})
		}
	}
	if q6 {
		// Pair k = 4hh + q (p = 2k + h): elements 128hh + 32q + 16h + (0..15), their low
		// bits the nibble q/2 of ql bytes 64hh + 32(q%2) + 16h, their high bits bits 2q,
		// 2q+1 of qh bytes 128 + 32hh + 16h (to bits 4–5 by word shifts whose spill the
		// mask 0x30 drops).
		for hh := 0; hh < 2; hh++ {
			for q := 0; q < 4; q++ {
				k := 4*hh + q
				lo, hb := YMM(), YMM()
				VMOVDQU(Mem{Base: w, Disp: 64*hh + 32*(q%2)}, lo)
				if q >= 2 {
					VPSRLW(U8(4), lo, lo)
				}
				VPAND(nib, lo, lo)
				VMOVDQU(Mem{Base: w, Disp: 128 + 32*hh}, hb)
				switch sh := 4 - 2*q; {
				case sh > 0:
					VPSLLW(U8(sh), hb, hb)
				case sh < 0:
					VPSRLW(U8(-sh), hb, hb)
				}
				VPAND(bytesConst("kv30", rep(0x30, 32)), hb, hb)
				VPOR(hb, lo, lo)
				VPSUBB(bytesConst("kv32", rep(0x20, 32)), lo, lo)
				emit(k, lo, scale(2*k), scale(2*k+1))
			}
		}
	} else {
		// Sub-block j = 2c + n is pair j: the nibble n of qs bytes 32c + 16h for p = 2j +
		// h; for q5_k its fifth bit, bit j of qh bytes 16h, to bit 4 by word shifts whose
		// spill the mask 0x10 drops.
		for j := 0; j < 8; j++ {
			c, n := j/2, j%2
			v := YMM()
			VMOVDQU(Mem{Base: w, Disp: qs + 32*c}, v)
			if n == 1 {
				VPSRLW(U8(4), v, v)
			}
			VPAND(nib, v, v)
			if q5 {
				hb := YMM()
				VMOVDQU(Mem{Base: w, Disp: 16}, hb)
				switch sh := 4 - j; {
				case sh > 0:
					VPSLLW(U8(sh), hb, hb)
				case sh < 0:
					VPSRLW(U8(-sh), hb, hb)
				}
				VPAND(bytesConst("kv10", rep(0x10, 32)), hb, hb)
				VPOR(hb, v, v)
			}
			sc := scale(2 * j)
			emit(j, v, sc, sc)
		}
	}
	ADDQ(U32(bs), w)
	ADDQ(U32(gb), out)
	ADDQ(U32(gb), dm)
	DECQ(nb)
	JNZ(LabelRef(loop))
	INCQ(r)
	CMPQ(r, U8(kvLanes))
	JNE(LabelRef(row))
	VZEROUPPER()
	RET()
}

// vpdpwssdVEX emits the VEX-encoded VPDPWSSD, acc += Σ pairs of int16 w·x per dword, as
// VPDPWSSD.VEX, which vexPass turns into bytes.
func vpdpwssdVEX(x, w, acc Op) {
	Instruction(&ir.Instruction{
		Opcode: "VPDPWSSD", Suffixes: []string{"VEX"},
		Operands: []Op{x, w, acc}, Inputs: []Op{x, w, acc}, Outputs: []Op{acc},
		ISA: []string{"AVX", "AVXVNNI"},
	})
}

// genKTileV emits kgemmQ4K<f>x<nt> or kgemmQ6K<f>x<nt> (f: V or M).
func genKTileV(f kgemmYMM, q6 bool, nt int) {
	kind, gb := "Q4K", kvBytes
	if q6 {
		kind, gb = "Q6K", kvDmin
	}
	name := fmt.Sprintf("kgemm%s%sx%d", kind, f.suffix, nt)
	how := "VPMADDWD and VPADDD"
	if f.vnni {
		how = "the VEX-encoded VPDPWSSD (AVX-VNNI)"
	}
	lb := fn(name, "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, st *float32)",
		fmt.Sprintf("%s computes the 4 rows of a repacked YMM group w times the %d tokens of", name, nt),
		"the prepared activations x (token t of super-block b at x + b·xstride + 576t), nb ≥ 1",
		"super-blocks, to dst[t*ldd + r], exactly as the reference sums them, with "+how+";",
		fmt.Sprintf("st is its state (%d bytes).", nt*kvState))
	dst := Load(Param("dst"), GP64())
	ldd := bytesOf("ldd")
	wp := Load(Param("w"), GP64())
	xp := Load(Param("x"), GP64())
	xs := Load(Param("xstride"), GP64())
	nb := Load(Param("nb"), GP64())
	st := Load(Param("st"), GP64())
	{
		z := YMM()
		VXORPS(z, z, z)
		for i := 0; i < nt*kvState; i += 32 {
			VMOVUPS(z, Mem{Base: st, Disp: i})
		}
	}
	blk := lb.next("block")
	Label(blk)
	acc := kgemmDots(f.form(nt), wp, xp, nt)
	{
		bx := ymms(nt)
		for t := range bx {
			VBROADCASTSS(Mem{Base: xp, Disp: kvX*t + kvXD}, bx[t])
		}
		for r := 0; r < kvLanes; r++ {
			for t := 0; t < nt; t++ {
				f, a := YMM(), acc[r][t]
				VMULPS(Mem{Base: wp, Disp: kvD + 32*r}, bx[t], f) // float32(d_w·d_x)
				VCVTDQ2PS(a, a)
				VMULPS(f, a, a)
				VADDPS(Mem{Base: st, Disp: kvState*t + 32*r}, a, a)
				VMOVUPS(a, Mem{Base: st, Disp: kvState*t + 32*r})
			}
		}
	}
	if !q6 {
		mv := ymms(kvLanes)
		for r := range mv {
			VMOVDQU(Mem{Base: wp, Disp: kvMins + 32*r}, mv[r])
		}
		dm := XMM()
		VMOVUPS(Mem{Base: wp, Disp: kvDmin}, dm)
		for t := 0; t < nt; t++ {
			b := YMM()
			VMOVDQU(Mem{Base: xp, Disp: kvX*t + kvXBs}, b)
			m := ymms(kvLanes)
			for r := range m {
				VPMADDWD(b, mv[r], m[r]) // lane j: m_j·(bsums_2j + bsums_2j+1)
			}
			VPHADDD(m[1], m[0], m[0])
			VPHADDD(m[3], m[2], m[2])
			VPHADDD(m[2], m[0], m[0]) // lane r (+4): row r's mins over j < 4 (j ≥ 4)
			hi := XMM()
			VEXTRACTI128(U8(1), m[0], hi)
			s := m[0].AsX()
			VPADDD(hi, s, s)
			fm, sf := XMM(), XMM()
			VBROADCASTSS(Mem{Base: xp, Disp: kvX*t + kvXD}, fm)
			VMULPS(dm, fm, fm) // float32(dmin_w·d_x)
			VCVTDQ2PS(s, s)
			VMULPS(fm, s, s)
			VMOVUPS(Mem{Base: st, Disp: kvState*t + 32*kvLanes}, sf)
			VSUBPS(s, sf, sf)
			VMOVUPS(sf, Mem{Base: st, Disp: kvState*t + 32*kvLanes})
		}
	}
	ADDQ(U32(gb), wp)
	ADDQ(xs, xp)
	DECQ(nb)
	JNZ(LabelRef(blk))

	// Row r's sums[l] (lane l of vector r) to lane r of class l's half: u[c] holds
	// classes c (low half) and c+4 (high half) of the four rows.
	for t := 0; t < nt; t++ {
		v := ymms(kvLanes)
		for r := range v {
			VMOVUPS(Mem{Base: st, Disp: kvState*t + 32*r}, v[r])
		}
		t0, t1, t2, t3 := YMM(), YMM(), YMM(), YMM()
		VUNPCKLPS(v[1], v[0], t0) // r0 l0, r1 l0, r0 l1, r1 l1 | l4, l5
		VUNPCKHPS(v[1], v[0], t1) // l2, l3 | l6, l7
		VUNPCKLPS(v[3], v[2], t2)
		VUNPCKHPS(v[3], v[2], t3)
		u := ymms(4)
		VUNPCKLPD(t2, t0, u[0]) // rows 0–3 of l0 | l4
		VUNPCKHPD(t2, t0, u[1]) // l1 | l5
		VUNPCKLPD(t3, t1, u[2]) // l2 | l6
		VUNPCKHPD(t3, t1, u[3]) // l3 | l7
		res := XMM()
		VMOVUPS(Mem{Base: st, Disp: kvState*t + 32*kvLanes}, res)
		for l := 0; l < 4; l++ {
			VADDPS(u[l].AsX(), res, res)
		}
		for l := 0; l < 4; l++ {
			h := XMM()
			VEXTRACTF128(U8(1), u[l], h)
			VADDPS(h, res, res)
		}
		VMOVUPS(res, Mem{Base: dst})
		if t < nt-1 {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// vexVNNIOps are the opcode bytes (map 0F38, VEX.256.66.W0) of the AVX-VNNI
// instructions vexPass encodes.
var vexVNNIOps = map[string]byte{"VPDPBUSD": 0x50, "VPDPWSSD": 0x52}

// vexVNNI returns the VEX encoding of the AVX-VNNI instruction op (VPDPBUSD or
// VPDPWSSD) ymm(dst), ymm(src1), ymm(src2) in Intel operand order (Go's: op Y<src2>,
// Y<src1>, Y<dst>).
func vexVNNI(op string, dst, src1, src2 int) ([]byte, error) {
	code, ok := vexVNNIOps[op]
	if !ok {
		return nil, fmt.Errorf("%s: not an AVX-VNNI instruction vexPass encodes", op)
	}
	for _, r := range []int{dst, src1, src2} {
		if r < 0 || r > 15 {
			return nil, fmt.Errorf("%s (VEX) of Y%d: only Y0–Y15 have a VEX encoding", op, r)
		}
	}
	inv := func(b int) byte { return byte(^b & 1) }
	b1 := inv(dst>>3)<<7 | 1<<6 | inv(src2>>3)<<5 | 0x02 // R̄ X̄ B̄, map 0F38
	b2 := byte(^src1&0xf)<<3 | 1<<2 | 0x01               // W0, v̄v̄v̄v̄, L=256, pp=66
	modrm := 0xc0 | byte(dst&7)<<3 | byte(src2&7)
	return []byte{0xc4, b1, b2, code, modrm}, nil
}
