package main

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The int16 GEMM of k-quant weights (q4_k, q5_k, q6_k) with q8_k activations, AVX-512
// (F, BW, VNNI), for MatMulQ8 with T ≥ 2.
//
// The contract (kernels/kquant.go) keeps eight integer lanes aux[l] per row, token and
// super-block, l the element's class mod 8, each scaled by its sub-block's scale before
// it is summed. Here a ZMM register holds two rows × the eight l: its dword lane 8h+l
// belongs to row h of a pair and class l. The weights are repacked once per group of 16
// rows (eight pairs), pre-multiplied by their sub-block scales as int16 (q4_k: w·sc ≤
// 15·63; q6_k: |(w−32)·sc| ≤ 32·128), so that lane (h, l) of vector (p, pair) holds the
// int16 pair (sc·w_{16p+l}, sc·w_{16p+l+8}) of row h; the activations are prepared once
// per product as the same pairs of x, p-major (32 bytes per p: l = 0..7). One VPDPWSSD
// of vector (p, pair) with the token's 32 bytes broadcast to both halves adds both rows'
// products of elements 16p+l and 16p+l+8 to their lanes: after the 16 p of a super-block
// lane (h, l) holds the exact aux[l] of row h (any order of integer additions is the
// reference's value). The float work then follows the reference's order lane by lane:
//
//	sums[l] += float32(float32(d_w·d_x) · float32(aux[l]))
//	q4_k: sumf −= float32(float32(dmin_w·d_x) · float32(mins))   (16 rows per vector)
//
// with the sums in a state in memory (8 pair vectors per token) and the mins (Σ_k
// bsums_k·m_{k/2}, by VPDPWSSD of (m_j, m_j) word pairs with the bsums pairs) one lane
// per row. At the end each row's sumf + sums[0] + … + sums[7] is summed in that order
// (a gather per l brings the row's sums into one lane per row).
//
// The repack brings 16 elements of each row of a pair to the 128-bit lanes [a, a, b, b]
// (VSHUFI32X4), picks them with VPSHUFB into the high bytes of words, and scales them
// by VPMULHW with (sc·256) words: the high half of (w·256)·(sc·256) is w·sc exactly.

// kgemmXBytes is the size of one prepared q8_k super-block: 256 int16 x as the pairs of
// the layout (512 bytes), the 16 bsums (32 bytes), d_x as float32, padding.
const kgemmXBytes = 576

// Offsets within one repacked super-block of a group of 16 rows.
const (
	kgW     = 0    // 16 p × 8 pairs × 64 bytes: the scaled weight pairs
	kgD     = 8192 // 8 pair vectors of f32 d_w (lanes 0–7 row 2k, 8–15 row 2k+1)
	kgDmin  = 8704 // q4_k: 16 f32 dmin_w, lane r = row r
	kgMins  = 8768 // q4_k: 8 vectors, lane r = row r's (m_j, m_j) as words, j < 8
	kgBytes = 9280 // q4_k; q6_k ends at kgDmin
)

// kgemmTokens is the most tokens a tile takes (its 8·nt accumulators stay in registers).
const kgemmTokens = 3

// kgemmStateBytes is a tile's state per token: 8 pair vectors of sums, the sumf vector.
const kgemmStateBytes = 576

func genKGemm() {
	genKPrep()
	genKRepack("q4_k")
	genKRepack("q5_k")
	genKRepack("q6_k")
	for _, q6 := range []bool{false, true} { // q5_k takes q4_k's tiles
		for nt := 1; nt <= kgemmTokens; nt++ {
			genKTile(q6, nt)
		}
	}
}

// u32s returns the bytes of dwords v.
func u32s(v ...uint32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], x)
	}
	return b
}

func rep(b byte, n int) []byte {
	s := make([]byte, n)
	for i := range s {
		s[i] = b
	}
	return s
}

// genKPrep emits kprepZ: the prepared activations of nb q8_k super-blocks.
func genKPrep() {
	lb := fn("kprepZ", "func(dst *byte, xq *byte, nb int, stride int)",
		"kprepZ writes the nb q8_k super-blocks at xq as the k-quant GEMM tiles take them",
		"(576 bytes each at dst, stride bytes apart): for p < 16 and l < 8, the int16 pair",
		"(x_{16p+l}, x_{16p+l+8}); the 16 bsums; d as float32.")
	dst := Load(Param("dst"), GP64())
	xq := Load(Param("xq"), GP64())
	nb := Load(Param("nb"), GP64())
	stride := Load(Param("stride"), GP64())
	ilv := YMM()
	VMOVDQU(bytesConst("kilv", lanes2([]byte{0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15})), ilv)
	loop := lb.next("block")
	Label(loop)
	for c := 0; c < 8; c++ {
		v, z := YMM(), ZMM()
		VMOVDQU(Mem{Base: xq, Disp: 4 + 32*c}, v)
		VPSHUFB(ilv, v, v)
		VPMOVSXBW(v, z)
		VMOVDQU64(z, Mem{Base: dst, Disp: 64 * c})
	}
	b := YMM()
	VMOVDQU(Mem{Base: xq, Disp: 260}, b)
	VMOVDQU(b, Mem{Base: dst, Disp: 512})
	d := GP32()
	MOVL(Mem{Base: xq}, d)
	MOVL(d, Mem{Base: dst, Disp: 544})
	ADDQ(U32(292), xq)
	ADDQ(stride, dst)
	DECQ(nb)
	JNZ(LabelRef(loop))
	VZEROUPPER()
	RET()
}

// genKRepack emits krepQ4KZ, krepQ5KZ or krepQ6KZ (kind q4_k, q5_k, q6_k): a group of
// up to 16 rows. q5_k is q4_k with the fifth bits (qh) added to the nibbles.
func genKRepack(kind string) {
	q6, q5 := kind == "q6_k", kind == "q5_k"
	name, bs, gb, qs := "krepQ4KZ", 144, kgBytes, 16
	switch kind {
	case "q5_k":
		name, bs, qs = "krepQ5KZ", 176, 48
	case "q6_k":
		name, bs, gb = "krepQ6KZ", 210, kgDmin
	}
	lb := fn(name, "func(dst *byte, w *byte, ldw int, nb int, rows int)",
		fmt.Sprintf("%s repacks rows 0 ≤ r < rows (1 ≤ rows ≤ 16; ldw bytes apart, nb %s", name, kind),
		"super-blocks) as the k-quant GEMM's group at dst, rows 2k and 2k+1 as pair k (rows past",
		"the last repeat it): per super-block, the scaled weight pairs of p < 16 at dst + 512p +",
		"64k, the pair's d at 8192 + 64k (and for q4_k the rows' dmin and mins in lanes 2k, 2k+1",
		"of the vectors at 8704 and 8768).")
	k := GP64()
	XORQ(k, k)
	t := GP64()
	pick := ZMM()
	{
		const z = 0x80
		lo := []byte{z, 0, z, 8, z, 1, z, 9, z, 2, z, 10, z, 3, z, 11}
		hi := []byte{z, 4, z, 12, z, 5, z, 13, z, 6, z, 14, z, 7, z, 15}
		VMOVDQU64(bytesConst("kpick", append(append(lanes2(lo)[:16:16], hi...), append(append([]byte(nil), lo...), hi...)...)), pick)
	}
	nib := ZMM()
	VMOVDQU64(bytesConst("knib64", rep(0x0f, 64)), nib)
	one := ZMM()
	VMOVDQU64(bytesConst("kone64", rep(1, 64)), one)

	pair := lb.next("pair")
	Label(pair)
	// wa, wb: rows min(2k, rows−1) and min(2k+1, rows−1); ow = dst + 64k, o8 = dst + 8k.
	wa, wb := GP64(), GP64()
	{
		last := Load(Param("rows"), GP64())
		DECQ(last)
		LEAQ(Mem{Base: k, Index: k, Scale: 1}, wa)
		CMPQ(wa, last)
		CMOVQGT(last, wa)
		LEAQ(Mem{Base: k, Index: k, Scale: 1, Disp: 1}, wb)
		CMPQ(wb, last)
		CMOVQGT(last, wb)
		ldw := Load(Param("ldw"), GP64())
		IMULQ(ldw, wa)
		IMULQ(ldw, wb)
		w := Load(Param("w"), GP64())
		ADDQ(w, wa)
		ADDQ(w, wb)
	}
	out := Load(Param("dst"), GP64())
	ow, o8 := GP64(), GP64()
	MOVQ(k, ow)
	SHLQ(U8(6), ow)
	ADDQ(out, ow)
	LEAQ(Mem{Base: out, Index: k, Scale: 8}, o8)
	nb := Load(Param("nb"), GP64())

	loop := lb.next("block")
	Label(loop)

	// S: bytes 0–15 row a's scales (q4_k: 8 scales, 8 mins), 16–31 row b's.
	// S4: 128-bit lanes row a's, row a's, row b's, row b's.
	S, S4 := ZMM(), ZMM()
	var sa, sb VecVirtual
	if q6 {
		VMOVDQU(Mem{Base: wa, Disp: 192}, S.AsX())
		VINSERTI32X4(U8(1), Mem{Base: wb, Disp: 192}, S, S)
	} else {
		sa = unpackScales(Mem{Base: wa, Disp: 4})
		sb = unpackScales(Mem{Base: wb, Disp: 4})
		VMOVDQA(sa, S.AsX())
		VINSERTI32X4(U8(1), sb, S, S)
	}
	VSHUFI32X4(U8(0x50), S, S, S4)
	// d (and dmin): f16 → float32.
	{
		h, f := XMM(), XMM()
		if q6 {
			VPINSRW(U8(0), Mem{Base: wa, Disp: 208}, h, h)
			VPINSRW(U8(1), Mem{Base: wb, Disp: 208}, h, h)
		} else {
			VMOVD(Mem{Base: wa}, h)
			VPINSRD(U8(1), Mem{Base: wb}, h, h)
		}
		VCVTPH2PS(h, f) // q6_k: da, db; q4_k: da, dmina, db, dminb
		dv, di := ZMM(), ZMM()
		if q6 {
			VMOVDQU64(bytesConst("kdidx6", u32s(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1)), di)
		} else {
			VMOVDQU64(bytesConst("kdidx4", u32s(0, 0, 0, 0, 0, 0, 0, 0, 2, 2, 2, 2, 2, 2, 2, 2)), di)
		}
		VPERMPS(f.AsZ(), di, dv)
		VMOVUPS(dv, Mem{Base: ow, Disp: kgD})
		if !q6 {
			m := XMM()
			VPSHUFD(U8(0x0d), f, m) // dmina, dminb
			VMOVQ(m, Mem{Base: o8, Disp: kgDmin})
			// The mins: qword j of mv = words (ma_j, ma_j, mb_j, mb_j) (VPSHUFB from the mins
			// of both rows in every lane), scattered to lanes 2k, 2k+1 of vector j.
			const z = 0x80
			b := make([]byte, 64)
			for j := 0; j < 8; j++ {
				copy(b[8*j:], []byte{byte(j), z, byte(j), z, byte(8 + j), z, byte(8 + j), z})
			}
			ki := K()
			mm, mv := XMM(), ZMM()
			VPUNPCKHQDQ(sb, sa, mm) // ma_0..7, mb_0..7
			VSHUFI32X4(U8(0), mm.AsZ(), mm.AsZ(), mv)
			VPSHUFB(bytesConst("kminidx", b), mv, mv)
			MOVQ(U64(0xff), t)
			KMOVQ(t, ki)
			qi := ZMM()
			VMOVDQU64(bytesConst("kminoff", func() []byte {
				c := make([]byte, 64)
				for j := 0; j < 8; j++ {
					binary.LittleEndian.PutUint64(c[8*j:], uint64(64*j))
				}
				return c
			}()), qi)
			VPSCATTERQQ(mv, ki, Mem{Base: o8, Index: qi, Scale: 1, Disp: kgMins})
		}
	}

	// The scale vectors: word i's high byte the scale j of row a (i < 16) or b, by
	// VPSHUFB of S4 with a running index (even bytes 0x80: zero).
	sidx := ZMM()
	VMOVDQU64(bytesConst("kscidx", func() []byte {
		c := make([]byte, 64)
		for i := 0; i < 32; i++ {
			c[2*i] = 0x80
		}
		return c
	}()), sidx)
	scale := func() VecVirtual {
		s := ZMM()
		VPSHUFB(sidx, S4, s)
		VPADDB(one, sidx, sidx)
		return s
	}
	// emit writes vector (p, k): the 16 elements in 128-bit lane base/16 of srcA (row a)
	// and srcB (row b), brought to lanes [a, a, b, b] and picked by VPSHUFB into the
	// high bytes of words, l-interleaved, times the scales (VPMULHW by sc·256).
	emit := func(p int, srcA, srcB VecVirtual, base int, sc VecVirtual) {
		i := uint8(base / 16)
		v := ZMM()
		VSHUFI32X4(U8(i|i<<2|i<<4|i<<6), srcB, srcA, v)
		VPSHUFB(pick, v, v)
		VPMULHW(sc, v, v)
		VMOVDQU64(v, Mem{Base: ow, Disp: kgW + 512*p})
	}
	if q6 {
		c30 := ZMM()
		VMOVDQU64(bytesConst("k30", rep(0x30, 64)), c30)
		c32 := ZMM()
		VMOVDQU64(bytesConst("k32", rep(0x20, 64)), c32)
		sl := bytesConst("kq6sl", func() []byte {
			c := make([]byte, 64)
			for i := 0; i < 32; i++ {
				v := byte(4)
				if i >= 16 {
					v = 2
				}
				c[2*i] = v
			}
			return c
		}())
		sr := bytesConst("kq6sr", func() []byte {
			c := make([]byte, 64)
			for i := 16; i < 32; i++ {
				c[2*i] = 2
			}
			return c
		}())
		// quants returns V0 (elements 128hh + 0..63) and V1 (+64..127) of a row, w − 32
		// as signed bytes.
		quants := func(w Register, hh int) [2]VecVirtual {
			ql, qh := ZMM(), ZMM()
			VMOVDQU64(Mem{Base: w, Disp: 64 * hh}, ql)
			VBROADCASTI64X4(Mem{Base: w, Disp: 128 + 32*hh}, qh)
			lo, hi := ZMM(), ZMM()
			VPANDD(nib, ql, lo)
			VPSRLW(U8(4), ql, hi)
			VPANDD(nib, hi, hi)
			h0, h1 := ZMM(), ZMM()
			VPSLLVW(sl, qh, h0) // quarter 0: bits 0–1 to 4–5; quarter 1: bits 2–3
			VPSRLVW(sr, qh, h1) // quarter 2: bits 4–5; quarter 3: bits 6–7 to 4–5
			VPTERNLOGD(U8(0xf8), c30, h0, lo)
			VPTERNLOGD(U8(0xf8), c30, h1, hi)
			VPSUBB(c32, lo, lo)
			VPSUBB(c32, hi, hi)
			return [2]VecVirtual{lo, hi}
		}
		for hh := 0; hh < 2; hh++ {
			a, b := quants(wa, hh), quants(wb, hh)
			for q := 0; q < 8; q++ {
				p := 8*hh + q
				emit(p, a[q/4], b[q/4], 16*(q%4), scale())
			}
		}
	} else {
		var src [2][4]VecVirtual // row, {L0, H0, L1, H1}: sub-blocks {0|2, 1|3, 4|6, 5|7}
		var c10 VecVirtual
		if q5 {
			c10 = ZMM()
			VMOVDQU64(bytesConst("k10", rep(0x10, 64)), c10)
		}
		for r, w := range []Register{wa, wb} {
			var qh VecVirtual
			if q5 {
				qh = ZMM()
				VBROADCASTI64X4(Mem{Base: w, Disp: 16}, qh)
			}
			for c := 0; c < 2; c++ {
				q, lo, hi := ZMM(), ZMM(), ZMM()
				VMOVDQU64(Mem{Base: w, Disp: qs + 64*c}, q)
				VPANDD(nib, q, lo)
				VPSRLW(U8(4), q, hi)
				VPANDD(nib, hi, hi)
				src[r][2*c], src[r][2*c+1] = lo, hi
			}
			if q5 {
				// Sub-block j's fifth bit is bit j of qh: to bit 4, by word shifts whose
				// spill into the neighbouring byte the mask 0x10 drops (left ≤ 4, right ≤ 3).
				for i, sh := range [4][2]int{{4, 2}, {3, 1}, {0, -2}, {-1, -3}} {
					cnt := make([]byte, 64)
					for wd := 0; wd < 32; wd++ {
						cnt[2*wd] = byte(max(sh[wd/16], -sh[wd/16]))
					}
					h := ZMM()
					if i < 2 {
						VPSLLVW(bytesConst(fmt.Sprintf("kq5s%d", i), cnt), qh, h)
					} else {
						VPSRLVW(bytesConst(fmt.Sprintf("kq5s%d", i), cnt), qh, h)
					}
					VPTERNLOGD(U8(0xf8), c10, h, src[r][i])
				}
			}
		}
		for j := 0; j < 8; j++ {
			sc := scale()
			v := []int{0, 1, 0, 1, 2, 3, 2, 3}[j]
			off := 32 * ((j / 2) % 2)
			for h := 0; h < 2; h++ {
				emit(2*j+h, src[0][v], src[1][v], off+16*h, sc)
			}
		}
	}
	ADDQ(U32(bs), wa)
	ADDQ(U32(bs), wb)
	ADDQ(U32(gb), ow)
	ADDQ(U32(gb), o8)
	DECQ(nb)
	JNZ(LabelRef(loop))
	INCQ(k)
	CMPQ(k, U8(8))
	JNE(LabelRef(pair))
	VZEROUPPER()
	RET()
}

// vpdpwssd emits VPDPWSSD (avo v0.5.0 lacks it): acc += Σ pairs of int16 w·x per dword;
// bcast takes x as a broadcast dword in memory.
func vpdpwssd(x, w, acc Op, bcast bool) {
	var suf []string
	if bcast {
		suf = []string{"BCST"}
	}
	Instruction(&ir.Instruction{
		Opcode: "VPDPWSSD", Suffixes: suf,
		Operands: []Op{x, w, acc}, Inputs: []Op{x, w, acc}, Outputs: []Op{acc},
		ISA: []string{"AVX512F", "AVX512_VNNI"},
	})
}

// kgemmForm is how a k-quant GEMM tile takes its integer dot products: the ZMM form
// (vectors of two rows, VPDPWSSD of AVX512_VNNI) or a YMM one (vectors of one row; the
// VEX-encoded VPDPWSSD of AVX-VNNI, or VPMADDWD and VPADDD).
type kgemmForm struct {
	vec   func() VecVirtual
	size  int                       // a vector's bytes
	vecs  int                       // the weight vectors of a p (pairs of rows, or rows)
	loadX func(m Mem, v VecVirtual) // a token's 32 bytes of p into v
	loadW func(m Mem, v VecVirtual) // a weight vector into v; nil: the dots' memory operand
	dot   func(x, w, acc Op)        // acc += the pair products of w and x, per dword
}

// kgemmZMM is the ZMM form.
var kgemmZMM = kgemmForm{
	vec: ZMM, size: 64, vecs: 8,
	loadX: func(m Mem, v VecVirtual) { VBROADCASTI64X4(m, v) },
	loadW: func(m Mem, v VecVirtual) { VMOVDQU64(m, v) },
	dot:   func(x, w, acc Op) { vpdpwssd(x, w, acc, false) },
}

// kgemmDots emits a tile's integer products of one super-block: acc[k][t] = the sum over
// p < 16 of the pair products of weight vector k of p (at wp + vecs·size·p + size·k, size
// the vector's bytes) and token t's 32 bytes of p (at xp + 576t + 32p), the first p by
// VPMADDWD.
func kgemmDots(f kgemmForm, wp, xp Register, nt int) [][]VecVirtual {
	size := f.size
	acc := make([][]VecVirtual, f.vecs)
	for k := range acc {
		acc[k] = make([]VecVirtual, nt)
		for t := range acc[k] {
			acc[k][t] = f.vec()
		}
	}
	for p := 0; p < 16; p++ {
		X := make([]VecVirtual, nt)
		for t := range X {
			X[t] = f.vec()
			f.loadX(Mem{Base: xp, Disp: kgemmXBytes*t + 32*p}, X[t])
		}
		for k := 0; k < f.vecs; k++ {
			var w Op = Mem{Base: wp, Disp: f.vecs*size*p + size*k}
			if f.loadW != nil {
				v := f.vec()
				f.loadW(w.(Mem), v)
				w = v
			}
			for t := range X {
				switch {
				case p > 0:
					f.dot(X[t], w, acc[k][t])
				case f.loadW == nil:
					VPMADDWD(w, X[t], acc[k][t])
				default:
					VPMADDWD(X[t], w, acc[k][t])
				}
			}
		}
	}
	return acc
}

// genKTile emits kgemmQ4KZx<nt> or kgemmQ6KZx<nt>.
func genKTile(q6 bool, nt int) {
	kind, gb := "Q4K", kgBytes
	if q6 {
		kind, gb = "Q6K", kgDmin
	}
	name := fmt.Sprintf("kgemm%sZx%d", kind, nt)
	lb := fnStack(name, "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, st *float32)",
		fmt.Sprintf("%s computes the 16 rows of a repacked group w times the %d tokens of the", name, nt),
		"prepared activations x (token t of super-block b at x + b·xstride + 576t), nb ≥ 1",
		"super-blocks, to dst[t*ldd + r], exactly as the reference sums them; st is its state",
		fmt.Sprintf("(%d bytes).", nt*kgemmStateBytes))
	dst := Load(Param("dst"), GP64())
	ldd := bytesOf("ldd")
	wp := Load(Param("w"), GP64())
	xp := Load(Param("x"), GP64())
	xs := Load(Param("xstride"), GP64())
	nb := Load(Param("nb"), GP64())
	st := Load(Param("st"), GP64())
	{
		z := ZMM()
		VMOVUPS(zeros, z)
		for i := 0; i < nt*kgemmStateBytes; i += 64 {
			VMOVUPS(z, Mem{Base: st, Disp: i})
		}
	}
	blk := lb.next("block")
	Label(blk)
	acc := kgemmDots(kgemmZMM, wp, xp, nt)
	for k := 0; k < 8; k++ {
		d := ZMM()
		VMOVUPS(Mem{Base: wp, Disp: kgD + 64*k}, d)
		for t := 0; t < nt; t++ {
			f, a := ZMM(), acc[k][t]
			VMULPS_BCST(Mem{Base: xp, Disp: kgemmXBytes*t + 544}, d, f) // float32(d_w·d_x)
			VCVTDQ2PS(a, a)
			VMULPS(f, a, a)
			VADDPS(Mem{Base: st, Disp: kgemmStateBytes*t + 64*k}, a, a)
			VMOVUPS(a, Mem{Base: st, Disp: kgemmStateBytes*t + 64*k})
		}
	}
	if !q6 {
		mv := make([]VecVirtual, 8)
		for j := range mv {
			mv[j] = ZMM()
			VMOVDQU64(Mem{Base: wp, Disp: kgMins + 64*j}, mv[j])
		}
		dm := ZMM()
		VMOVUPS(Mem{Base: wp, Disp: kgDmin}, dm)
		for t := 0; t < nt; t++ {
			m := ZMM()
			VPBROADCASTD(Mem{Base: xp, Disp: kgemmXBytes*t + 512}, m)
			VPMADDWD(mv[0], m, m)
			for j := 1; j < 8; j++ {
				vpdpwssd(Mem{Base: xp, Disp: kgemmXBytes*t + 512 + 4*j}, mv[j], m, true)
			}
			f, s := ZMM(), ZMM()
			VMULPS_BCST(Mem{Base: xp, Disp: kgemmXBytes*t + 544}, dm, f) // float32(dmin_w·d_x)
			VCVTDQ2PS(m, m)
			VMULPS(f, m, m)
			VMOVUPS(Mem{Base: st, Disp: kgemmStateBytes*t + 512}, s)
			VSUBPS(m, s, s)
			VMOVUPS(s, Mem{Base: st, Disp: kgemmStateBytes*t + 512})
		}
	}
	ADDQ(U32(gb), wp)
	ADDQ(xs, xp)
	DECQ(nb)
	JNZ(LabelRef(blk))

	// Row r's sums[l] (lane 8(r%2)+l of pair vector r/2) brought to lane r of vector l
	// by three rounds of two-table permutes, then added in order to sumf.
	for t := 0; t < nt; t++ {
		cur := make([]VecVirtual, 8)
		labels := make([][]rl, 8)
		for k := range cur {
			cur[k] = ZMM()
			VMOVUPS(Mem{Base: st, Disp: kgemmStateBytes*t + 64*k}, cur[k])
			labels[k] = make([]rl, 16)
			for i := range labels[k] {
				labels[k][i] = rl{2*k + i/8, i % 8}
			}
		}
		// Round s: vectors i, i+1 hold rows R (nr of them) × classes C (nc); the outputs
		// hold the rows of both with half the classes each, class-major.
		for round := 0; round < 3; round++ {
			next := make([]VecVirtual, 8)
			nl := make([][]rl, 8)
			for i := 0; i < 8; i += 2 {
				a, b := labels[i], labels[i+1]
				rows := uniq(append(rowsOf(a), rowsOf(b)...))
				cls := uniq(clsOf(a))
				for h := 0; h < 2; h++ {
					var want []rl
					for _, c := range cls[h*len(cls)/2 : (h+1)*len(cls)/2] {
						for _, r := range rows {
							want = append(want, rl{r, c})
						}
					}
					idx := make([]uint32, 16)
					for j, x := range want {
						idx[j] = uint32(pos(a, b, x))
					}
					v := ZMM()
					VMOVDQU64(bytesConst("ktr"+constKey(idx), u32s(idx...)), v)
					VPERMI2PS(cur[i+1], cur[i], v)
					// Outputs ordered so that the next round pairs the same classes.
					o := i/2 + 4*h
					next[o], nl[o] = v, want
				}
			}
			cur, labels = next, nl
		}
		res := ZMM()
		VMOVUPS(Mem{Base: st, Disp: kgemmStateBytes*t + 512}, res)
		for l := 0; l < 8; l++ {
			j := -1
			for i := range labels {
				if labels[i][0].l == l {
					j = i
				}
			}
			for r, x := range labels[j] {
				if x != (rl{r, l}) {
					panic(fmt.Sprintf("transpose: vector %d lane %d holds %v", j, r, x))
				}
			}
			VADDPS(cur[j], res, res)
		}
		VMOVUPS(res, Mem{Base: dst})
		if t < nt-1 {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// rl labels a float of the tile's state: row r, class l.
type rl struct{ r, l int }

func rowsOf(v []rl) []int {
	var o []int
	for _, x := range v {
		o = append(o, x.r)
	}
	return o
}

func clsOf(v []rl) []int {
	var o []int
	for _, x := range v {
		o = append(o, x.l)
	}
	return o
}

// uniq returns the distinct values of v, in increasing order.
func uniq(v []int) []int {
	seen := map[int]bool{}
	var o []int
	for _, x := range v {
		if !seen[x] {
			seen[x] = true
			o = append(o, x)
		}
	}
	sort.Ints(o)
	return o
}

// pos returns the index of x in the two tables a (0–15) and b (16–31).
func pos(a, b []rl, x rl) int {
	for i, y := range append(append([]rl(nil), a...), b...) {
		if y == x {
			return i
		}
	}
	panic(fmt.Sprintf("transpose: %v in neither table", x))
}

// constKey names a permute index by its contents.
func constKey(idx []uint32) string {
	var sb strings.Builder
	for _, x := range idx {
		fmt.Fprintf(&sb, "%x", x)
	}
	return sb.String()
}
