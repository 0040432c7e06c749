package main

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The int8 GEMM of q8_0 and q4_0 weights with q8_0 activations (MatMulQ8 for T ≥ 2).
//
// A group of L rows (L = 16 in ZMM registers, 8 in YMM) is repacked once (repackQ8,
// repackQ4) so that, for each 32-quant block, vector k (k < 8) holds in its dword lane r
// the four quants 4k..4k+3 of row r as unsigned bytes u = w + off (off = 128 for q8_0:
// w XOR 0x80; off = 8 for q4_0: the nibbles as they are, low nibbles elements 0–15, high
// nibbles 16–31), followed by the L weight scales as f16 (float32 in ZMM groups:
// f32Scales). Then VPDPBUSD of vector k with
// the activation's dword k broadcast adds, in lane r, row r's part of the block's dot
// product: after the eight, each lane holds Σ_j u_j·x_j, an exact int32, and the caller's
// per token and block −off·Σ_j x_j (the initial value of the accumulator) makes it the
// block's s = Σ_j w_j·x_j. No horizontal sums: the conversion, the scales and the
// float32 sum cost one instruction per L rows and token:
//
//	sum_r += float32(float32(s_rb) · float32(dw_rb·dx_b))
//
// exactly the reference's order for every lane, so the results are the reference's bit
// for bit, whatever the tile or the group.
//
// The activations come prepared by the caller (package qgemm), per block and token 40
// bytes: the 32 quants, dx as float32, −off·Σx as int32; the tokens of a block are
// consecutive (40 bytes apart), the blocks xstride bytes apart.

// qgemmISA is one instruction set the GEMM is generated for.
type qgemmISA struct {
	suffix string
	lanes  int                           // rows per vector
	vec    func() VecVirtual             // a vector register of lanes dwords
	load   func(m Mem, v Op)             // an aligned-or-not vector load
	tokens int                           // most tokens a tile keeps in registers
	kGroup int                           // weight vectors held at once (of the block's 8)
	dot    func(acc, w Op, x Mem)        // acc += Σ u8(w)·s8(broadcast dword at x), per dword lane
	bcast  func(x Mem, dw, f VecVirtual) // f = broadcast float32 at x times dw
	zero   func(v VecVirtual)
	// pairTokens, if not 0, is the most tokens of the two-group tiles (genQGemmTile2).
	pairTokens int
	// f32Scales is whether the repack writes the scales as float32 (filling the vector
	// after the weights) rather than f16: converted once per group rather than on
	// every tile call, a load in the tiles rather than VCVTPH2PS's two µops (2048×768,
	// T = 128, one thread, test binaries interleaved: q4_0 419–457 → 441–459 GOP/s,
	// q8_0 packed 447–456 → 455–465).
	f32Scales bool
	// ints, if set, leaves in s[t] the block's integer dot products instead of vnniInts.
	ints func(isa qgemmISA, s []VecVirtual, wp, xp Register)
	// abs is whether the group holds, after each of a block's 8 weight vectors, their
	// absolute values (repackQ8A: blocks of qgemmBlockBytesAbs bytes), which the
	// VPMADDUBSW q8_0 tiles then load rather than compute.
	abs bool
	// table is whether the activations come as tables of ±x (prepareQ8T: xTableBytes
	// per block and token) and the group's first vector of each step (of an abs repack)
	// as VPSHUFB's indices into them, for x·sign(w) (see qgemmMaddQ8A).
	table bool
	// sweep is whether a tile call sweeps n ≥ 1 tiles of nt tokens over the group (the
	// next one's nt tokens 40·nt bytes on in x, nt·ldd floats on in dst), prefetching
	// per block the line of pf, pf+step, pf+2·step, … up to pf+pflen−1, then that last
	// one again (the next group's rows, spread over the sweep: the caller's Go loop
	// and its prefetch calls cost 2% of a T = 128 product, one thread).
	sweep bool
	// bias is whether the tiles take a bias (a last argument, nil for none) that they add
	// to each row's sum before storing it.
	bias bool
	// pfX, if set, is how many blocks ahead the tile prefetches its tokens' prepared
	// activations (PREFETCHT0, the lines of the nt·40 bytes at x + (b+pfX)·xstride; past
	// the last block they are whatever follows, which a prefetch may touch).
	pfX int
	// The repack's gathers: rowMask prepares the mask of rows r < rows, gather loads
	// into v (zeroed first) the dwords at m for those rows, index vector in m.Index.
	rowMask   func(rows Register) Op
	gather    func(mask Op, m Mem, v VecVirtual)
	bcastGP   func(r Register, v VecVirtual)                   // v = r's low dword in every lane
	andConst  func(c uint32, name string, src, dst VecVirtual) // dst = src & c in every lane
	xorConst  func(c uint32, name string, v VecVirtual)
	packWords func(v VecVirtual, m Mem) // the low words of v's dwords to m
}

// xTableBytes is the size of one block and token of the activations prepareQ8T writes:
// the 64 bytes of ±x tables (xTableOff), a cache line; their scales dx go apart.
const xTableBytes = 64

// xBytes is the size of one prepared block and token of the isa's activations.
func (isa qgemmISA) xBytes() int {
	if isa.table {
		return xTableBytes
	}
	return 40
}

// xTableOff is where, in a block of prepareQ8T's activations, the 16-byte table of steps
// k and k^1 starts: x's dwords k and k^1 (k even) each followed by its bytes negated (as
// VPSIGNB negates them: −(−128) = −128), per 128-bit lane of VPUNPCKLDQ/VPUNPCKHDQ of
// x and −x, which put steps 0, 1 | 4, 5 at 0 and 2, 3 | 6, 7 at 32.
func xTableOff(k int) int { return 32*(k%4/2) + 16*(k/4) }

// widenScales, with f32Scales, rewrites the lanes f16 scales at m as float32.
func (isa qgemmISA) widenScales(m Mem) {
	if !isa.f32Scales {
		return
	}
	v := isa.vec()
	VCVTPH2PS(m, v) // the f16 just stored, through memory
	storeVec(isa, v, m)
}

// loadScales loads the lanes scales at m as float32 into dw.
func (isa qgemmISA) loadScales(m Mem, dw VecVirtual) {
	if isa.f32Scales {
		VMOVUPS(m, dw)
		return
	}
	VCVTPH2PS(m, dw)
}

// qgemmBlockBytes is the size of one repacked block of a group of lanes rows: 8 vectors of
// lanes dwords, then lanes f16 scales padded to 4·lanes bytes (a whole vector; or lanes
// float32 scales, f32Scales).
func qgemmBlockBytes(lanes int) int { return 36 * lanes }

// qgemmBlockBytesAbs is the size of one block of a group repacked by repackQ8A: per k <
// 8 the vector of signed quants and that of their absolute values, then the scales as in
// qgemmBlockBytes.
func qgemmBlockBytesAbs(lanes int) int { return 68 * lanes }

// blockBytes is the size of one block of the isa's repacked groups.
func (isa qgemmISA) blockBytes() int {
	if isa.abs {
		return qgemmBlockBytesAbs(isa.lanes)
	}
	return qgemmBlockBytes(isa.lanes)
}

// scaleOffset is where the scales start in a block of the isa's repacked groups.
func (isa qgemmISA) scaleOffset() int {
	if isa.abs {
		return 64 * isa.lanes
	}
	return 32 * isa.lanes
}

var qgemmZMM = qgemmISA{
	suffix: "Z", lanes: 16, vec: ZMM, tokens: 8, kGroup: 8, pairTokens: 7, f32Scales: true, bias: true,
	load: func(m Mem, v Op) { VMOVDQU32(m, v) },
	dot: func(acc, w Op, x Mem) {
		// avo v0.5.0 lacks the AVX512_VNNI instructions; the Go assembler has them.
		Instruction(&ir.Instruction{
			Opcode: "VPDPBUSD", Suffixes: []string{"BCST"},
			Operands: []Op{x, w, acc}, Inputs: []Op{x, w, acc}, Outputs: []Op{acc},
			ISA: []string{"AVX512F", "AVX512_VNNI"},
		})
	},
	bcast: func(x Mem, dw, f VecVirtual) { VMULPS_BCST(x, dw, f) },
	// From memory: VXORPS on ZMM needs AVX512DQ, and avo takes VPXORD's inputs as read.
	zero: func(v VecVirtual) { VMOVUPS(zeros, v) },
	rowMask: func(rows Register) Op {
		t := GP64()
		LEAQ(rowMasks(), t)
		return Mem{Base: t, Index: rows, Scale: 2}
	},
	gather: func(mask Op, m Mem, v VecVirtual) {
		k := K()
		KMOVW(mask, k) // the gather clears it
		VMOVDQU32(zeros, v)
		VPGATHERDD(m, k, v)
	},
	bcastGP:   func(r Register, v VecVirtual) { VPBROADCASTD(r.(GPVirtual).As32(), v) },
	andConst:  func(c uint32, name string, src, dst VecVirtual) { VPANDD_BCST(vconst(name, c), src, dst) },
	xorConst:  func(c uint32, name string, v VecVirtual) { VPXORD_BCST(vconst(name, c), v, v) },
	packWords: func(v VecVirtual, m Mem) { VPMOVDW(v, m) },
}

var rowMaskTable Mem

// rowMasks is the table of 16-bit lane masks of rows r < n, n = 0..16.
func rowMasks() Mem {
	if rowMaskTable.Symbol.Name == "" {
		rowMaskTable = GLOBL("rowmasks", RODATA|NOPTR)
		for n := 0; n <= 16; n++ {
			DATA(2*n, U16(uint16(1<<n-1)))
		}
	}
	return rowMaskTable
}

var iotaTable Mem

// iota16 is the dwords 0..15.
func iota16() Mem {
	if iotaTable.Symbol.Name == "" {
		iotaTable = GLOBL("iota16", RODATA|NOPTR)
		for i := 0; i < 16; i++ {
			DATA(4*i, U32(uint32(i)))
		}
	}
	return iotaTable
}

// qgemmVEX is the AVX-VNNI form: the VEX-encoded VPDPBUSD on YMM registers, which the Go
// assembler does not have (it encodes VPDPBUSD Y, Y, Y as EVEX, an AVX512_VNNI+VL
// instruction). It is emitted as VPDPBUSD.VEX and turned into bytes once the registers
// are allocated (vexBytes).
var qgemmVEX = qgemmISA{
	suffix: "V", lanes: 8, vec: YMM, tokens: 4, kGroup: 4,
	load: func(m Mem, v Op) { VMOVDQU(m, v) },
	dot: func(acc, w Op, x Mem) {
		xb := YMM()
		VPBROADCASTD(x, xb)
		Instruction(&ir.Instruction{
			Opcode: "VPDPBUSD", Suffixes: []string{"VEX"},
			Operands: []Op{xb, w, acc}, Inputs: []Op{xb, w, acc}, Outputs: []Op{acc},
			ISA: []string{"AVX", "AVXVNNI"},
		})
	},
	bcast: func(x Mem, dw, f VecVirtual) {
		VBROADCASTSS(x, f)
		VMULPS(f, dw, f) // dw·dx, dw the first operand as in the ZMM form
	},
	zero: func(v VecVirtual) { VXORPS(v, v, v) },
	rowMask: func(rows Register) Op {
		m := YMM()
		VMOVDQU(maskAddr(rows), m)
		return m
	},
	gather: func(mask Op, m Mem, v VecVirtual) {
		k := YMM()
		VMOVDQA(mask, k) // the gather clears it
		VPXOR(v, v, v)
		VPGATHERDD(k, m, v)
	},
	bcastGP: func(r Register, v VecVirtual) {
		VMOVD(r.(GPVirtual).As32(), v.AsX())
		VPBROADCASTD(v.AsX(), v)
	},
	andConst: func(c uint32, name string, src, dst VecVirtual) { VPAND(vconst(name, c), src, dst) },
	xorConst: func(c uint32, name string, v VecVirtual) { VPXOR(vconst(name, c), v, v) },
	packWords: func(v VecVirtual, m Mem) {
		VPAND(vconst("lo16", 0xffff), v, v)
		VPACKUSDW(v, v, v)     // words 0–3 twice | words 4–7 twice
		VPERMQ(U8(0x08), v, v) // words 0–7 in the low half
		VMOVDQU(v.AsX(), m)
	},
}

// genQGemm emits the repack kernels and the tiles qgemm<suffix>x1..x<tokens>.
func genQGemm(isa qgemmISA) {
	genRepack(isa, false, false, false)
	genRepack(isa, true, false, false)
	genRepackFull(isa, false, false, false)
	genRepackFull(isa, true, false, false)
	for nt := 1; nt <= isa.tokens; nt++ {
		genQGemmTile(isa, nt)
	}
	for nt := 1; nt <= isa.pairTokens; nt++ {
		genQGemmTile2(isa, nt)
	}
}

// genRepack emits repackQ8 or repackQ4: rows (1 ≤ rows ≤ lanes) rows of nb blocks, ldw
// bytes apart, into the group layout at dst, by gathers of one dword of every row; the
// lanes of rows ≥ rows are zero.
//
// With abs (q8_0, signed), each weight vector k is followed by their absolute values,
// in blocks of qgemmBlockBytesAbs bytes (repackQ8A).
func genRepack(isa qgemmISA, q4, signed, abs bool) {
	lanes := isa.lanes
	name, bsz := "repackQ8", 34
	if q4 {
		name, bsz = "repackQ4", 18
	}
	doc := []string{fmt.Sprintf("%s repacks rows 0 ≤ r < rows (1 ≤ rows ≤ %d) of nb blocks of the %s matrix at w (rows", name, lanes, map[bool]string{false: "q8_0", true: "q4_0"}[q4]),
		"ldw bytes apart) for the int8 GEMM tiles: per block, dword lane r of vector k holds row r's",
		"quants 4k..4k+3 as unsigned bytes (q8_0: w+128; q4_0: the nibbles, low ones elements 0–15),",
		fmt.Sprintf("then the rows' scales (%s); the lanes of rows ≥ rows are zero.", map[bool]string{false: "f16", true: "float32"}[isa.f32Scales])}
	if signed {
		name += "S"
		doc = []string{fmt.Sprintf("%s is repackQ8 with the quants left as they are (signed bytes w): the layout of", name),
			"the VPMADDUBSW tiles qgemmMQ8x*."}
	}
	if abs {
		name = "repackQ8A"
		doc = []string{fmt.Sprintf("%s is repackQ8S with each of a block's 8 weight vectors k written as indices", name),
			"into prepareQ8T's ±x tables, byte j of a dword 8·(k%2) + j + 4·(w < 0), each followed by",
			"the weights' absolute values (VPABSB; blocks of 544 bytes, the scales at 512): the layout",
			"of the tiles qgemmMQ8Ax*."}
	}
	bb, so := qgemmBlockBytes(lanes), 32*lanes
	vecOff := func(k int) int { return 4 * lanes * k }
	if abs {
		bb, so = qgemmBlockBytesAbs(lanes), 64*lanes
		vecOff = func(k int) int { return 8 * lanes * k }
	}
	fn(name, "func(dst *byte, w *byte, ldw int, nb int, rows int)", doc...)
	out := Load(Param("dst"), GP64())
	wb := Load(Param("w"), GP64())
	idx := isa.vec()
	{
		l := Load(Param("ldw"), GP64())
		isa.bcastGP(l, idx)
		VPMULLD(iota16(), idx, idx) // lane r: r·ldw
	}
	// Row pointers for the prefetches: rows 4q..4q+3 from bases[q], ldw and 3·ldw apart.
	ldw, ldw3 := Load(Param("ldw"), GP64()), GP64()
	LEAQ(Mem{Base: ldw, Index: ldw, Scale: 2}, ldw3)
	bases := []Register{wb}
	for q := 1; q < lanes/4; q++ {
		b := GP64()
		LEAQ(Mem{Base: bases[q-1], Index: ldw, Scale: 4}, b)
		bases = append(bases, b)
	}
	rows := Load(Param("rows"), GP64())
	mask := isa.rowMask(rows)
	nb := Load(Param("nb"), GP64())
	blk := fmt.Sprintf("%s_block", name)
	Label(blk)
	gather := func(disp int) VecVirtual {
		v := isa.vec()
		isa.gather(mask, Mem{Base: wb, Index: idx, Scale: 1, Disp: disp}, v)
		return v
	}
	// The gathers touch lanes rows at a time, too many streams for the prefetchers.
	for _, b := range bases {
		for _, m := range []Mem{{Base: b}, {Base: b, Index: ldw, Scale: 1}, {Base: b, Index: ldw, Scale: 2}, {Base: b, Index: ldw3, Scale: 1}} {
			m.Disp = repackAhead
			PREFETCHT0(m)
		}
	}
	isa.packWords(gather(0), Mem{Base: out, Disp: so})
	isa.widenScales(Mem{Base: out, Disp: so})
	if q4 {
		for j := 0; j < 4; j++ {
			a := gather(2 + 4*j)
			lo := isa.vec()
			isa.andConst(0x0f0f0f0f, "nibble", a, lo)
			VPSRLD(U8(4), a, a)
			isa.andConst(0x0f0f0f0f, "nibble", a, a)
			storeVec(isa, lo, Mem{Base: out, Disp: 4 * lanes * j})
			storeVec(isa, a, Mem{Base: out, Disp: 4 * lanes * (j + 4)})
		}
	} else {
		for k := 0; k < 8; k++ {
			a := gather(2 + 4*k)
			if !signed {
				isa.xorConst(0x80808080, "signbytes", a)
			}
			if abs {
				storeAbs(isa, a, k, Mem{Base: out, Disp: vecOff(k)})
				continue
			}
			storeVec(isa, a, Mem{Base: out, Disp: vecOff(k)})
		}
	}
	for _, b := range bases {
		ADDQ(U8(bsz), b)
	}
	ADDQ(U32(bb), out)
	DECQ(nb)
	JNZ(LabelRef(blk))
	VZEROUPPER()
	RET()
}

// genRepackFull emits repackQ8Full or repackQ4Full: repackQ8 or repackQ4 for all lanes
// rows, by loads of each row's block and a transpose in registers (unpacks of dwords and
// qwords within 128-bit lanes, then a shuffle of the lanes): the gathers, 16 loads each
// from as many rows, left the repack at 80% of a T = 4 product; with the transpose the
// product is 2–3.5× faster (2048×768 q8_0, one thread).
func genRepackFull(isa qgemmISA, q4, signed, abs bool) {
	lanes := isa.lanes
	name, bsz := "repackQ8Full", 34
	if q4 {
		name, bsz = "repackQ4Full", 18
	}
	if signed {
		name = "repackQ8SFull"
	}
	bb, so := qgemmBlockBytes(lanes), 32*lanes
	vecOff := func(k int) int { return 4 * lanes * k }
	if abs {
		name = "repackQ8AFull"
		bb, so = qgemmBlockBytesAbs(lanes), 64*lanes
		vecOff = func(k int) int { return 8 * lanes * k }
	}
	fn(name, "func(dst *byte, w *byte, ldw int, nb int)",
		fmt.Sprintf("%s is %s for rows = %d, by a transpose in registers.", name, strings.TrimSuffix(name, "Full"), lanes))
	out := Load(Param("dst"), GP64())
	wb := Load(Param("w"), GP64())
	ldw, ldw3 := Load(Param("ldw"), GP64()), GP64()
	LEAQ(Mem{Base: ldw, Index: ldw, Scale: 2}, ldw3)
	bases := []Register{wb}
	for q := 1; q < lanes/4; q++ {
		b := GP64()
		LEAQ(Mem{Base: bases[q-1], Index: ldw, Scale: 4}, b)
		bases = append(bases, b)
	}
	row := func(r, disp int) Mem {
		m := []Mem{{Base: bases[r/4]}, {Base: bases[r/4], Index: ldw, Scale: 1}, {Base: bases[r/4], Index: ldw, Scale: 2}, {Base: bases[r/4], Index: ldw3, Scale: 1}}[r%4]
		m.Disp = disp
		return m
	}
	// The scales through general registers for 16 rows, and for repackQ8SFull's 8; the
	// others gather them.
	gprScales := lanes == 16 || signed
	var idx VecVirtual
	var mask Op
	if !gprScales {
		idx = isa.vec()
		isa.bcastGP(ldw, idx)
		VPMULLD(iota16(), idx, idx)
		n := GP64()
		MOVQ(U32(lanes), n)
		mask = isa.rowMask(n)
	}
	var pf Register
	if !signed {
		pf = GP64()
		LEAQ(Mem{Base: bases[len(bases)-1], Index: ldw, Scale: 4}, pf) // row lanes: the next group
	}
	nb := Load(Param("nb"), GP64())
	blk := fmt.Sprintf("%s_block", name)
	Label(blk)
	if !signed {
		// The next group's rows follow this one's (ldw = the row's bytes): prefetch them
		// as one stream, lanes·bsz bytes a block, while this group is repacked and
		// swept. (The caller of repackQ8SFull spreads them over the sweep instead.)
		for o := 0; o < lanes*bsz; o += 64 {
			PREFETCHT0(Mem{Base: pf, Disp: o})
		}
		ADDQ(U32(lanes*bsz), pf)
	}
	if gprScales {
		// The scales through general registers, four to a quadword: a gather of 16
		// rows cost a tenth of a T = 8 product (2048×768).
		for i := 0; i < lanes/4; i++ {
			g := GP64()
			for q := 4 * i; q < 4*i+4; q++ {
				if q%4 == 0 {
					MOVWQZX(row(q, 0), g)
					continue
				}
				t := GP64()
				MOVWQZX(row(q, 0), t)
				SHLQ(U8(16*(q%4)), t)
				ORQ(t, g)
			}
			MOVQ(g, Mem{Base: out, Disp: so + 8*i})
		}
	} else {
		sc := isa.vec()
		isa.gather(mask, Mem{Base: wb, Index: idx, Scale: 1}, sc)
		isa.packWords(sc, Mem{Base: out, Disp: so})
	}
	isa.widenScales(Mem{Base: out, Disp: so})

	// transpose4 transposes the 4×4 dwords of each 128-bit lane of r0..r3.
	transpose4 := func(r []VecVirtual) []VecVirtual {
		t := make([]VecVirtual, 4)
		for i := range t {
			t[i] = isa.vec()
		}
		VPUNPCKLDQ(r[1], r[0], t[0])
		VPUNPCKHDQ(r[1], r[0], t[1])
		VPUNPCKLDQ(r[3], r[2], t[2])
		VPUNPCKHDQ(r[3], r[2], t[3])
		b := make([]VecVirtual, 4)
		for i := range b {
			b[i] = isa.vec()
		}
		VPUNPCKLQDQ(t[2], t[0], b[0])
		VPUNPCKHQDQ(t[2], t[0], b[1])
		VPUNPCKLQDQ(t[3], t[1], b[2])
		VPUNPCKHQDQ(t[3], t[1], b[3])
		return b
	}
	store := func(v VecVirtual, k int) {
		if abs {
			storeAbs(isa, v, k, Mem{Base: out, Disp: vecOff(k)})
			return
		}
		storeVec(isa, v, Mem{Base: out, Disp: vecOff(k)})
	}
	if q4 {
		// Row r's 16 bytes of nibbles in 128-bit lane r/4 of register r%4: the transpose
		// leaves dword j of every row, in row order, in b[j].
		r := make([]VecVirtual, 4)
		for i := range r {
			r[i] = isa.vec()
			if lanes == 16 {
				VMOVDQU32(row(i, 2), r[i].AsX()) // EVEX: Z16–Z31 have no VEX encoding
			} else {
				VMOVDQU(row(i, 2), r[i].AsX())
			}
			for l := 1; l < lanes/4; l++ {
				if lanes == 16 {
					VINSERTI32X4(U8(l), row(i+4*l, 2), r[i], r[i])
				} else {
					VINSERTI128(U8(l), row(i+4*l, 2), r[i], r[i])
				}
			}
		}
		for j, b := range transpose4(r) {
			lo := isa.vec()
			isa.andConst(0x0f0f0f0f, "nibble", b, lo)
			VPSRLD(U8(4), b, b)
			isa.andConst(0x0f0f0f0f, "nibble", b, b)
			store(lo, j)
			store(b, j+4)
		}
	} else {
		// Row r's 32 quants: for 8 lanes in register r; for 16, rows i and i+4 in the
		// halves of register i (i < 4), rows 8+i and 12+i in register 4+i. The
		// transposes leave in b[j], lane by lane, dwords j and j+4 of rows 0–3 (and 4–7),
		// in c[j] those of rows 4–7 (8–11, 12–15); a shuffle of the lanes puts them in
		// row order.
		r := make([]VecVirtual, 8)
		for i := range r {
			r[i] = isa.vec()
			if lanes == 8 {
				VMOVDQU(row(i, 2), r[i])
				continue
			}
			lo := i%4 + 8*(i/4)
			VMOVDQU32(row(lo, 2), r[i].AsY())
			VINSERTI64X4(U8(1), row(lo+4, 2), r[i], r[i])
		}
		b, c := transpose4(r[:4]), transpose4(r[4:])
		for j := 0; j < 4; j++ {
			o0, o1 := isa.vec(), isa.vec()
			if lanes == 8 {
				VPERM2I128(U8(0x20), c[j], b[j], o0)
				VPERM2I128(U8(0x31), c[j], b[j], o1)
			} else {
				VSHUFI32X4(U8(0x88), c[j], b[j], o0)
				VSHUFI32X4(U8(0xdd), c[j], b[j], o1)
			}
			if !signed {
				isa.xorConst(0x80808080, "signbytes", o0)
				isa.xorConst(0x80808080, "signbytes", o1)
			}
			store(o0, j)
			store(o1, j+4)
		}
	}
	for _, b := range bases {
		ADDQ(U8(bsz), b)
	}
	ADDQ(U32(bb), out)
	DECQ(nb)
	JNZ(LabelRef(blk))
	VZEROUPPER()
	RET()
}

// storeAbs stores the repackQ8A pair of step k of weights a at m: VPSHUFB's indices
// into the step's ±x table, 8·(k%2) + j in byte j of a dword, + 4 where w < 0 (its
// negated copy), then |a| (VPABSB).
func storeAbs(isa qgemmISA, a VecVirtual, k int, m Mem) {
	z, s := isa.vec(), isa.vec()
	VPXOR(z, z, z)
	VPCMPGTB(a, z, s) // 0 > w
	VPAND(vconst("fours", 0x04040404), s, s)
	VPOR(vconst(fmt.Sprintf("shufidx%d", k%2), 0x03020100+0x08080808*uint32(k%2)), s, s)
	storeVec(isa, s, m)
	VPABSB(a, a)
	m.Disp += 4 * isa.lanes
	storeVec(isa, a, m)
}

// repackAhead is how far ahead of the block being repacked the repack prefetches each
// row, in bytes.
const repackAhead = 512

// storeVec stores a vector of the isa's width.
func storeVec(isa qgemmISA, v VecVirtual, m Mem) {
	if isa.lanes == 16 {
		VMOVDQU32(v, m)
	} else {
		VMOVDQU(v, m)
	}
}

// genQGemmTile emits qgemm<suffix>x<nt>: one group's repacked rows times nt tokens.
func genQGemmTile(isa qgemmISA, nt int) {
	name := fmt.Sprintf("qgemm%sx%d", isa.suffix, nt)
	sig := "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int)"
	doc := []string{fmt.Sprintf("%s computes, for the %d rows r of a repacked group w (repackQ8, repackQ4) and", name, isa.lanes),
		fmt.Sprintf("the tokens t < %d of the prepared activation blocks x (token t of block b at", nt),
		"x + b·xstride + 40·t: 32 quants, dx float32, −off·Σx int32),"}
	if isa.table {
		doc = []string{fmt.Sprintf("%s computes, for the %d rows r of a group w repacked by repackQ8A and", name, isa.lanes),
			fmt.Sprintf("the tokens t < %d of the activation blocks x prepared by prepareQ8T (token t of", nt),
			fmt.Sprintf("block b at x + b·xstride + %d·t, its dx at xd + b·(xstride/16) + 4·t),", isa.xBytes())}
	}
	doc = append(doc,
		"",
		"\tdst[t*ldd+r] = Σ_b float32(float32(s_rbt)·float32(dw_rb·dx_bt))",
		"",
		"in block order (nb ≥ 1 blocks), each sum exactly as the reference takes it.")
	if isa.bias {
		sig = "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, bias *float32)"
		doc = append(doc, fmt.Sprintf("Then, unless bias is nil, + bias[r] (the %d floats at bias), as the reference adds it.", isa.lanes))
	}
	if isa.sweep {
		sig = "func(n int, dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, bias *float32, pf *byte, pflen int, pfstep int, from int)"
		doc = append(doc, fmt.Sprintf("It does so n ≥ 1 times, for the next %d tokens each: x + %d·%d·i, dst + %d·ldd·i;", nt, isa.xBytes(), nt, nt),
			"unless from is 0, each sum starts from dst's value rather than 0 (the sum of the",
			"blocks before, continued to the same bits).",
			"Per block it prefetches the line of pf + pfstep·j (j the blocks swept so far), up to",
			"pf + pflen − 1 (pflen ≥ 1).")
	}
	if isa.table {
		sig = "func(n int, dst *float32, ldd int, w *byte, x *byte, xd *byte, xstride int, nb int, bias *float32, pf *byte, pflen int, pfstep int, from int)"
		doc[len(doc)-5] = fmt.Sprintf("It does so n ≥ 1 times, for the next %d tokens each: x + %d·%d·i, xd + 4·%d·i, dst + %d·ldd·i;", nt, isa.xBytes(), nt, nt, nt)
	}
	lb := fn(name, sig, doc...)
	dst := Load(Param("dst"), GP64())
	ldd := bytesOf("ldd")
	var wp, xp, xs, nb, xoff Register
	var x0, n, pf, pfLast, pfStep Register
	var xd0, dp, dxs Register // with table: the scales dx, per tile, per block, their stride
	var acc []VecVirtual
	// start loads the group's and x's pointers and zeroes the sums.
	start := func() {
		wp = Load(Param("w"), GP64())
		if isa.sweep {
			xp = GP64()
			MOVQ(x0, xp)
			if isa.table {
				dp = GP64()
				MOVQ(xd0, dp)
			}
		} else {
			xp = Load(Param("x"), GP64())
		}
		if xs == nil {
			xs = Load(Param("xstride"), GP64())
		}
		nb = Load(Param("nb"), GP64())
		acc = make([]VecVirtual, nt)
		for t := range acc {
			acc[t] = isa.vec()
			isa.zero(acc[t])
		}
		if isa.sweep {
			// from ≠ 0: the sums go on from dst's (the blocks before, swept by a call
			// before), the same bits as one sum.
			f := Load(Param("from"), GP64())
			fresh := lb.next("fresh")
			TESTQ(f, f)
			JZ(LabelRef(fresh))
			p := GP64()
			MOVQ(dst, p)
			for t := range acc {
				VMOVUPS(Mem{Base: p}, acc[t])
				if t < nt-1 {
					ADDQ(ldd, p)
				}
			}
			Label(fresh)
		}
	}
	var tileTop string
	if isa.sweep {
		xs = Load(Param("xstride"), GP64())
		x0, n = Load(Param("x"), GP64()), Load(Param("n"), GP64())
		if isa.table {
			xd0, dxs = Load(Param("xd"), GP64()), GP64()
			MOVQ(xs, dxs)
			SHRQ(U8(4), dxs) // xstride/16: T·4 bytes
		}
		pf = Load(Param("pf"), GP64())
		pfLast = Load(Param("pflen"), GP64())
		LEAQ(Mem{Base: pf, Index: pfLast, Scale: 1, Disp: -1}, pfLast) // the last byte
		pfStep = Load(Param("pfstep"), GP64())
		if isa.pfX > 0 && !isa.table {
			xoff = GP64()
			IMUL3Q(U8(isa.pfX), xs, xoff)
		}
		tileTop = lb.next("tile")
		Label(tileTop)
		start()
	} else {
		start()
		if isa.pfX > 0 {
			xoff = GP64()
			IMUL3Q(U8(isa.pfX), xs, xoff)
		}
	}
	blk := lb.next("block")
	Label(blk)
	s := make([]VecVirtual, nt)
	for t := range s {
		s[t] = isa.vec()
	}
	ints := isa.ints
	if ints == nil {
		ints = vnniInts
	}
	if isa.pfX > 0 {
		// The tokens' activations pfX blocks ahead: a tile's blocks are xstride = T·40
		// bytes apart, a stride the hardware prefetchers do not keep ahead of.
		// (With table, whose tile is short of general registers: pfX = 8, the address
		// scaled.)
		pa := Mem{Base: xp, Index: xs, Scale: 8}
		if !isa.table {
			pa = Mem{Base: GP64()}
			LEAQ(Mem{Base: xp, Index: xoff, Scale: 1}, pa.Base)
		} else if isa.pfX != 8 {
			panic("pfX")
		}
		for o := 0; o < isa.xBytes()*nt+63; o += 64 {
			pa.Disp = min(o, isa.xBytes()*nt-1)
			PREFETCHT0(pa)
		}
	}
	if isa.sweep {
		PREFETCHT0(Mem{Base: pf})
		ADDQ(pfStep, pf)
		CMPQ(pf, pfLast)
		CMOVQGT(pfLast, pf) // up to the last byte
	}
	ints(isa, s, wp, xp)
	dw := isa.vec()
	isa.loadScales(Mem{Base: wp, Disp: isa.scaleOffset()}, dw)
	for t := range s {
		f := isa.vec()
		dx := Mem{Base: xp, Disp: 40*t + 32}
		if isa.table {
			dx = Mem{Base: dp, Disp: 4 * t}
		}
		isa.bcast(dx, dw, f) // float32(dw·dx)
		VCVTDQ2PS(s[t], s[t])
		VMULPS(f, s[t], s[t])        // float32(s)·that
		VADDPS(s[t], acc[t], acc[t]) // sum += that
	}
	ADDQ(U32(isa.blockBytes()), wp)
	ADDQ(xs, xp)
	if isa.table {
		ADDQ(dxs, dp)
	}
	DECQ(nb)
	JNZ(LabelRef(blk))
	if isa.bias {
		bp := Load(Param("bias"), GP64())
		store := lb.next("store")
		TESTQ(bp, bp)
		JZ(LabelRef(store))
		for t := range acc {
			VADDPS(Mem{Base: bp}, acc[t], acc[t]) // the sum, then + bias
		}
		Label(store)
	}
	for t := range acc {
		VMOVUPS(acc[t], Mem{Base: dst})
		if t < nt-1 || isa.sweep {
			ADDQ(ldd, dst)
		}
	}
	if isa.sweep {
		ADDQ(U32(isa.xBytes()*nt), x0)
		if isa.table {
			ADDQ(U32(4*nt), xd0)
		}
		DECQ(n)
		JNZ(LabelRef(tileTop))
	}
	VZEROUPPER()
	RET()
}

// vnniInts leaves in s[t] the integer dot products s of the block at wp with token t's
// block at xp, by VPDPBUSD (isa.dot) from −off·Σx.
func vnniInts(isa qgemmISA, s []VecVirtual, wp, xp Register) {
	for t := range s {
		VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 36}, s[t]) // −off·Σx
	}
	for k0 := 0; k0 < 8; k0 += isa.kGroup {
		w := make([]VecVirtual, isa.kGroup)
		for j := range w {
			w[j] = isa.vec()
			isa.load(Mem{Base: wp, Disp: 4 * isa.lanes * (k0 + j)}, w[j])
		}
		for t := range s {
			for j := range w {
				isa.dot(s[t], w[j], Mem{Base: xp, Disp: 40*t + 4*(k0+j)})
			}
		}
	}
}

// The AVX2 forms for CPUs without AVX-VNNI, 8 rows × up to 6 tokens in YMM registers,
// exact with VPMADDUBSW's int16 pair sums: q4_0 as the repack leaves it (nibbles u ≤ 15:
// pairs ≤ 2·15·128, and the eight of a block summed as words, ≤ 30720, before VPMADDWD;
// then −8·Σx added), q8_0 by the sign trick of the x8 kernels on quants repacked signed
// (repackQ8S: |w| ≤ 128 unsigned times x·sign(w), |x| ≤ 127 as QuantizeQ8 writes it:
// pairs ≤ 2·128·127; no correction).
//
// Per 32 quants of a row and a token the q8_0 tile takes four vector instructions,
// VPSIGNB, VPMADDUBSW, VPMADDWD (by ones) and VPADDD, against two for q4_0 (VPMADDUBSW,
// VPADDW): no other exact form found takes fewer (VPMADDWD on quants widened to int16
// takes two per 16; quants split into nibbles two VPMADDUBSW and two VPADDW), and a
// Zen 5 core runs about 3.5 of them a cycle. What is left per block and token — the
// conversion, dw·dx, the product and the sum (4), VPABSB per weight vector shared by
// the tile's tokens — is what more tokens per tile and the signed repack cut. The q8_0
// tiles prefetch the activations 8 blocks ahead (pfX; one thread, T = 128, the best of
// 60 products: 2304×768, 768×768, 3072×768, 768×3072 at 185, 188, 181, 178 GOP/s
// without, 188, 192, 187, 186 with).
var (
	qgemmMaddQ8 = qgemmISA{suffix: "MQ8", lanes: 8, vec: YMM, tokens: 6, kGroup: 1, pfX: 8, bias: true,
		load: func(m Mem, v Op) { VMOVDQU(m, v) }, bcast: qgemmVEX.bcast, zero: qgemmVEX.zero, ints: maddQ8Ints}
	// qgemmMaddQ8A is qgemmMaddQ8 on groups repacked with the weights' absolute values
	// (repackQ8A), for those repacked on every product: no VPABSB per weight vector and
	// tile call (768×2304 at T = 128, one thread: 0–5% faster), at
	// twice the bytes, too many to keep a matrix packed so at load.
	//
	// Its tile is bound by its vector µops (per block and token 31 for the integer dot
	// products, 4 for the float epilogue, and VCVTPH2PS's two per block): with VPSIGNB,
	// as it was then, but without it (wrong sums, 23% fewer µops) it ran 20% faster
	// (2048×768 q8_0, T = 128, one thread, 116–122 → 134–147 GOP/s). No exact form with fewer was found: two
	// VPMADDUBSW results summed as words before one VPMADDWD overflow (each word up to
	// 2·128·127 = 32512, two 65024; 64516 with |w| ≤ 127); unsigned weights w+128 against
	// signed x saturate VPMADDUBSW's pairs (2·255·127); the activations' nibbles or
	// signs split apart take as many µops or more.
	// Tried, no gain (that benchmark, interleaved test binaries):
	//   - the quants widened to int16 pairs for VPMADDWD against broadcast int16 pairs of
	//     x (two VPMADDWD, two VPADDD per 4 quants: as many vector µops, twice the
	//     broadcasts; its instruction mix timed): 117–122 → 109–114 GOP/s;
	//   - the scales as float32 (f32Scales, widened by the repack; two µops a block fewer):
	//     median of 20 runs 121.2 → 121.0 GOP/s;
	//   - 7 or 8 tokens a tile: they do not fit, each token holds an int32 and a float32
	//     accumulator (6 tokens, the weights, their absolute values, the ones and the
	//     broadcast fill the 16 YMM registers);
	//   - x·sign(w) as (x XOR m) − m, m = 0xFF where w < 0 written by the repack in place
	//     of w, two µops that may go to port 5 (see below) for VPSIGNB's one, in 2 of the
	//     8 steps: 119.0–121.9 → 121.9–124.1 GOP/s (in 4 of 8: 118–122, 5: 119, all 8:
	//     108–111; for 1 to 4 of the 6 tokens of every step, rotating, with m a memory
	//     operand: 91–120); the tables below gain more;
	//   - the tables below with dx after them in each block (80 bytes, the loads kept
	//     within lines): 1% over the XOR form; dx apart, 64 bytes a line, gained 3–5%;
	//   - sweeping 32 blocks at a time rather than 64 (768×2048: two chunks rather than
	//     one): medians 123.6 → 124.0 GOP/s (later, with 128 tokens as 20·6 + 2·4 calls,
	//     24 blocks paid: backends/avx2's gemmMadd);
	//   - the activations prefetched for the tile's next call (its tokens + nt, the same
	//     block) in place of 8 blocks ahead, so that a call's first 8 blocks are not
	//     left to the hardware: T = 128, 4 shapes, −1.8 to +0.4%; pp128 GPT-2 +0.8%,
	//     stories110M −0.6% (noise);
	//   - the small calls of a sweep (20·6 + 4 + 4) before the others rather than
	//     after: −0.3 to +1.3%;
	//   - repackQ8A's table indices from w's signs by VPSRLW and VPAND (no zeroed
	//     register, no VPCMPGTB): the repack no faster (6.61 → 6.66 µs, 256×768).
	//
	// On Intel cores (Skylake to Golden Cove) VPSIGNB, VPMADDUBSW, VPMADDWD, VCVTDQ2PS
	// and VMULPS issue on ports 0 and 1 only, and port 5 was mostly idle; VPSHUFB runs
	// on port 5 (and 1 from Ice Lake on; on Haswell the multiplies have port 0 alone). So the tile forms x·sign(w) by VPSHUFB from a
	// table of the step's x and −x (prepareQ8T, per block and token a line of 64 bytes:
	// two steps' to each 16, broadcast to both lanes by a load; the scales dx apart)
	// with the indices the repack writes in place of the weights (8·(k%2) + j + 4·(w < 0)
	// in byte j of a dword): the same bytes where w ≠ 0, x where w = 0, which |w| = 0
	// zeroes in VPMADDUBSW's products as VPSIGNB's 0 is; as many µops and registers,
	// 68 activation bytes a block and token rather than 40 (and a token's slot more a
	// block: qgemm.ScratchLayout.XBytes). One thread, T = 128, test binaries
	// interleaved, against the VPSIGNB tile: 2048×768 q8_0 120.7 → 125.6–128.5 GOP/s,
	// 768×768 116.0–121.4 → 123.5–130.2, 768×2048 118.1–119.3 → 123.3–125.0, 768×3072
	// 111.7–116.7 → 119.8–123.6, 3072×768 115.6–121.2 → 127.6–129.9. On AVX2-only AMD (Zen 1–3) the multiplies (VPMADDUBSW, VPMADDWD) are
	// the bound and VPSHUFB goes to other FP pipes as VPSIGNB does; not measured there.
	qgemmMaddQ8A = qgemmISA{suffix: "MQ8A", lanes: 8, vec: YMM, tokens: 6, kGroup: 1, pfX: 8, bias: true, abs: true, table: true, sweep: true,
		load: func(m Mem, v Op) { VMOVDQU(m, v) }, bcast: qgemmVEX.bcast, zero: qgemmVEX.zero, ints: maddQ8Ints}
	qgemmMaddQ4 = qgemmISA{suffix: "MQ4", lanes: 8, vec: YMM, tokens: 6, kGroup: 2,
		load: func(m Mem, v Op) { VMOVDQU(m, v) }, bcast: qgemmVEX.bcast, zero: qgemmVEX.zero, ints: maddQ4Ints}
)

// maddQ8Ints is vnniInts for q8_0 weights with VPMADDUBSW (see qgemmMaddQ8).
func maddQ8Ints(isa qgemmISA, s []VecVirtual, wp, xp Register) {
	// The ones in a register, not a memory operand: a Zen 5 core loads two vectors a
	// cycle, and each step has its broadcast of x (2048×768, T = 128: 2-7% faster).
	ones := YMM()
	VMOVDQU(vconst("ones16", 0x00010001), ones)
	for k0 := 0; k0 < 8; k0 += isa.kGroup {
		w, a := make([]VecVirtual, isa.kGroup), make([]VecVirtual, isa.kGroup)
		for j := range w {
			w[j], a[j] = YMM(), YMM()
			if isa.abs {
				VMOVDQU(Mem{Base: wp, Disp: 8 * isa.lanes * (k0 + j)}, w[j])         // table indices (repackQ8A)
				VMOVDQU(Mem{Base: wp, Disp: 8*isa.lanes*(k0+j) + 4*isa.lanes}, a[j]) // |w|
				continue
			}
			VMOVDQU(Mem{Base: wp, Disp: 4 * isa.lanes * (k0 + j)}, w[j]) // w (repackQ8S)
			VPABSB(w[j], a[j])                                           // |w|
		}
		for t := range s {
			for j := range w {
				xb := YMM()
				if isa.table {
					VBROADCASTI128(Mem{Base: xp, Disp: isa.xBytes()*t + xTableOff(k0+j)}, xb)
					VPSHUFB(w[j], xb, xb) // x·sign(w) where w ≠ 0
				} else {
					VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 4*(k0+j)}, xb)
					VPSIGNB(w[j], xb, xb) // x·sign(w)
				}
				VPMADDUBSW(xb, a[j], xb) // pairs of |w|·x·sign(w)
				if k0+j == 0 {
					VPMADDWD(ones, xb, s[t]) // quads
					continue
				}
				VPMADDWD(ones, xb, xb)
				VPADDD(xb, s[t], s[t])
			}
		}
	}
}

// maddQ4Ints is vnniInts for q4_0 weights with VPMADDUBSW (see qgemmMaddQ4).
func maddQ4Ints(isa qgemmISA, s []VecVirtual, wp, xp Register) {
	for t := range s {
		VPXOR(s[t], s[t], s[t])
	}
	for k0 := 0; k0 < 8; k0 += isa.kGroup {
		w := make([]VecVirtual, isa.kGroup)
		for j := range w {
			w[j] = YMM()
			VMOVDQU(Mem{Base: wp, Disp: 4 * isa.lanes * (k0 + j)}, w[j])
		}
		for t := range s {
			for j := range w {
				xb := YMM()
				VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 4*(k0+j)}, xb)
				VPMADDUBSW(xb, w[j], xb) // pairs of u·x, as words
				VPADDW(xb, s[t], s[t])
			}
		}
	}
	for t := range s {
		c := YMM()
		VPMADDWD(vconst("ones16", 0x00010001), s[t], s[t])
		VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 36}, c) // −8·Σx
		VPADDD(c, s[t], s[t])
	}
}

// genQGemmMaddQ8 emits the VPMADDUBSW q8_0 tiles and their repack, which leaves the
// quants signed (repackQ8S, repackQ8SFull), prepareQ8 and prefetchLines.
func genQGemmMaddQ8() {
	genRepack(qgemmVEX, false, true, false)
	genRepackFull(qgemmVEX, false, true, false)
	genQGemmTiles(qgemmMaddQ8)
	genRepack(qgemmVEX, false, true, true)
	genRepackFull(qgemmVEX, false, true, true)
	genQGemmTiles(qgemmMaddQ8A)

	genPrepareQ8()
	genPrepareQ8T()

	lb := fn("prefetchLines", "func(p *byte, n int)",
		"prefetchLines prefetches (PREFETCHT0) the n ≥ 1 cache lines from p on, 64 bytes apart.")
	p := Load(Param("p"), GP64())
	n := Load(Param("n"), GP64())
	top := lb.next("line")
	Label(top)
	PREFETCHT0(Mem{Base: p})
	ADDQ(U8(64), p)
	DECQ(n)
	JNZ(LabelRef(top))
	RET()
}

// genQGemmTiles emits only the tiles of isa (whose repack another isa emitted).
func genQGemmTiles(isa qgemmISA) {
	for nt := 1; nt <= isa.tokens; nt++ {
		genQGemmTile(isa, nt)
	}
}

// vexPass rewrites, in the generated assembly at path, every VPDPBUSD.VEX and
// VPDPWSSD.VEX of three YMM registers as the bytes of its VEX encoding (vexVNNI),
// preceded by a comment naming the instruction. It fails on registers past Y15, which
// VEX cannot encode.
func vexPass(path string) error {
	if path == "" || path == "-" {
		return fmt.Errorf("-out FILE is needed: the VEX instructions are encoded in the file written")
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	re := regexp.MustCompile(`(?m)^(\t)(VPDPBUSD|VPDPWSSD)\.VEX Y(\d+), Y(\d+), Y(\d+)$`)
	var bad error
	out := re.ReplaceAllStringFunc(string(b), func(line string) string {
		m := re.FindStringSubmatch(line)
		var r [3]int
		for i := range r {
			r[i], _ = strconv.Atoi(m[3+i])
		}
		enc, err := vexVNNI(m[2], r[2], r[1], r[0])
		if err != nil {
			bad = err
			return line
		}
		bs := make([]string, len(enc))
		for i, c := range enc {
			bs[i] = fmt.Sprintf("BYTE $0x%02x", c)
		}
		return fmt.Sprintf("\t// %s Y%d, Y%d, Y%d (VEX, AVX-VNNI)\n\t%s", m[2], r[0], r[1], r[2], strings.Join(bs, "; "))
	})
	if bad != nil {
		return bad
	}
	if strings.Contains(out, ".VEX") {
		return fmt.Errorf("%s: a VNNI .VEX instruction left unencoded", path)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

// vexVPDPBUSD returns the VEX encoding of VPDPBUSD ymm(dst), ymm(src1), ymm(src2) in
// Intel operand order (Go's: VPDPBUSD Y<src2>, Y<src1>, Y<dst>).
func vexVPDPBUSD(dst, src1, src2 int) ([]byte, error) { return vexVNNI("VPDPBUSD", dst, src1, src2) }

// genPrepareQ8 emits prepareQ8, the preparation of the activations for the VPMADDUBSW
// q8_0 tiles (which need no −128·Σx): per token and block the 32 quants and dx as
// float32, block b of token t at xs + (b·T+t)·40.
func genPrepareQ8() {
	lb := fn("prepareQ8", "func(xs *byte, xq *byte, T int, nb int, xb int)",
		"prepareQ8 writes, for T ≥ 1 tokens of nb ≥ 1 q8_0 blocks (token t's at xq + t·xb), block b",
		"of token t at xs + (b·T+t)·40: its 32 quants, then its scale as float32 (bytes 36..39",
		"are left as they were).")
	xs := Load(Param("xs"), GP64())
	xq := Load(Param("xq"), GP64())
	T := Load(Param("T"), GP64())
	xb := Load(Param("xb"), GP64())
	stride := GP64()
	IMUL3Q(U8(40), T, stride) // between the blocks of a token
	tok := lb.next("token")
	Label(tok)
	src, dst := GP64(), GP64()
	MOVQ(xq, src)
	MOVQ(xs, dst)
	n := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	q, h := YMM(), GP32()
	VMOVDQU(Mem{Base: src, Disp: 2}, q)
	VMOVDQU(q, Mem{Base: dst})
	MOVWLZX(Mem{Base: src}, h)
	VMOVD(h, q.AsX())
	VCVTPH2PS(q.AsX(), q.AsX())
	VMOVSS(q.AsX(), Mem{Base: dst, Disp: 32})
	ADDQ(U8(34), src)
	ADDQ(stride, dst)
	DECQ(n)
	JNZ(LabelRef(blk))
	ADDQ(xb, xq)
	ADDQ(U8(40), xs)
	DECQ(T)
	JNZ(LabelRef(tok))
	VZEROUPPER()
	RET()
}

// genPrepareQ8T emits prepareQ8T, the activations of the tiles qgemmMQ8Ax*: block by
// block, so that it writes them in order.
func genPrepareQ8T() {
	lb := fn("prepareQ8T", "func(xs *byte, xd *byte, xq *byte, T int, nb int, xb int)",
		"prepareQ8T writes, for T ≥ 1 tokens of nb ≥ 1 q8_0 blocks (token t's at xq + t·xb), block b",
		fmt.Sprintf("of token t at xs + (b·(T+1)+t)·%d: for each pair of quant dwords k, k+1 (k even) 16", xTableBytes),
		"bytes, dword k, its bytes negated (−(−128) = −128), dword k+1, its bytes negated (dwords 0,",
		"1 at 0, 2, 3 at 32, 4, 5 at 16, 6, 7 at 48); and its scale as float32 at xd + (b·(T+1)+t)·4.")
	xs := Load(Param("xs"), GP64())
	xd := Load(Param("xd"), GP64())
	xq := Load(Param("xq"), GP64())
	xb := Load(Param("xb"), GP64())
	nb := Load(Param("nb"), GP64())
	zero := YMM()
	VPXOR(zero, zero, zero)
	blk := lb.next("block")
	Label(blk)
	src := GP64()
	MOVQ(xq, src)
	n := Load(Param("T"), GP64())
	tok := lb.next("token")
	Label(tok)
	q, neg, lo, hi, h := YMM(), YMM(), YMM(), YMM(), GP32()
	VMOVDQU(Mem{Base: src, Disp: 2}, q)
	VPSUBB(q, zero, neg) // −x
	VPUNPCKLDQ(neg, q, lo)
	VPUNPCKHDQ(neg, q, hi)
	VMOVDQU(lo, Mem{Base: xs})
	VMOVDQU(hi, Mem{Base: xs, Disp: 32})
	MOVWLZX(Mem{Base: src}, h)
	VMOVD(h, q.AsX())
	VCVTPH2PS(q.AsX(), q.AsX())
	VMOVSS(q.AsX(), Mem{Base: xd})
	ADDQ(xb, src)
	ADDQ(U8(xTableBytes), xs)
	ADDQ(U8(4), xd)
	DECQ(n)
	JNZ(LabelRef(tok))
	ADDQ(U8(xTableBytes), xs) // the slot after the tokens
	ADDQ(U8(4), xd)
	ADDQ(U8(34), xq)
	DECQ(nb)
	JNZ(LabelRef(blk))
	VZEROUPPER()
	RET()
}

// genQGemmTile2 emits qgemm<suffix>2x<nt>: the tile qgemm<suffix>x<nt> for two groups at
// once, the second's blocks nb·blockBytes after the first's (consecutive groups, as
// Pack leaves them), 2·lanes rows × nt tokens. Per block, quant dword k and token t,
// one broadcast of the activation dword into a register feeds both groups' VPDPBUSD
// (register operands), where the one-group tile's VPDPBUSD each load it: half the
// loads per multiply-add, and the weight vectors of both groups loaded once per token
// sweep. The float epilogue is the one-group tile's, per group, so the results are
// the same bits.
//
// Measured on a Sapphire Rapids-class Xeon, one thread, T = 128, GOP/s of the one-group
// tiles (8 tokens) against these (7 tokens; 6 is slower), alternating in one run:
// 2048×768 q8_0 370 → 393, packed 384 → 420; q4_0 401 → 424; 768×2048 q4_0 363 → 381;
// 768×768 q8_0 357 → 374. With the weights and activations in L1 (24 blocks,
// repeated): 457 → 483.
//
// Tried on the one-group tile, no gain (the same run, T = 128): the VPDPBUSD in
// k-major order (for k, for t) rather than token-major; each token's chain of 8
// VPDPBUSD split into two accumulators (4% slower: the extra VPADDD, so the tile is
// bound by its vector µops, not the chain's latency); prefetching the activations 4
// blocks ahead (pfX); the next group's rows prefetched spread over a group's tile
// calls (PrefetchQ8; the model's pp128 no faster). On the pairs, the next pair's rows
// prefetched spread over its tile calls (the first group's repackQ8Full prefetches
// only the second's): repackQ8Full fell from 12.6% to 7.7% of a stories110m q8_0
// pp128 profile, but the prefetch loop took 6.8%, and pp128 was no faster (with
// PREFETCHT1 no faster either); the tiles' own prefetch, two lines a block, is what
// paid. In the pair tiles, the tokens' activations prefetched 4 blocks ahead: pp128
// no faster. Long rows (768×2048, 768×3072, 2–5% slower than 2048×768) swept in
// chunks of 16, 24 or 32 blocks for all the tokens, each sum going on from dst, so
// that a chunk of the pair stays in L1: within 2%, no gain. The next pair's prefetch
// held back to the pair's last calls (to find the lines in L1 rather than L2 at the
// repack): pp128 no faster.
func genQGemmTile2(isa qgemmISA, nt int) {
	name := fmt.Sprintf("qgemm%s2x%d", isa.suffix, nt)
	lb := fn(name, "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, pf *byte, pflen int, bias *float32)",
		fmt.Sprintf("%s is qgemm%sx%d for the %d rows of two groups, the second's blocks nb·%d bytes", name, isa.suffix, nt, 2*isa.lanes, isa.blockBytes()),
		fmt.Sprintf("after w: row r < %d's sums at dst[t*ldd+r], the second group's row r at dst[t*ldd+%d+r].", isa.lanes, isa.lanes),
		"Per block it prefetches the two lines at pf + 128·j (j the blocks so far), up to pf + pflen − 1",
		fmt.Sprintf("(pflen ≥ 1). Then, unless bias is nil, + bias[r] (the %d floats at bias), as the reference", 2*isa.lanes),
		"adds it.")
	dst := Load(Param("dst"), GP64())
	ldd := bytesOf("ldd")
	wp := Load(Param("w"), GP64())
	xp := Load(Param("x"), GP64())
	xs := Load(Param("xstride"), GP64())
	nb := Load(Param("nb"), GP64())
	gb := GP64()
	IMUL3Q(U32(isa.blockBytes()), nb, gb)
	pf, pfLast := Load(Param("pf"), GP64()), Load(Param("pflen"), GP64())
	LEAQ(Mem{Base: pf, Index: pfLast, Scale: 1, Disp: -1}, pfLast) // the last byte
	acc := [2][]VecVirtual{make([]VecVirtual, nt), make([]VecVirtual, nt)}
	for g := range acc {
		for t := range acc[g] {
			acc[g][t] = isa.vec()
			isa.zero(acc[g][t])
		}
	}
	blk := lb.next("block")
	Label(blk)
	// The next rows, two lines a block: a stream from DRAM at a pace the tiles hide.
	PREFETCHT0(Mem{Base: pf})
	PREFETCHT0(Mem{Base: pf, Disp: 64})
	ADDQ(U8(128), pf)
	CMPQ(pf, pfLast)
	CMOVQGT(pfLast, pf)
	s := [2][]VecVirtual{make([]VecVirtual, nt), make([]VecVirtual, nt)}
	for g := range s {
		for t := range s[g] {
			s[g][t] = isa.vec()
			VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 36}, s[g][t])
		}
	}
	for k := 0; k < 8; k++ {
		w0, w1 := isa.vec(), isa.vec()
		isa.load(Mem{Base: wp, Disp: 4 * isa.lanes * k}, w0)
		isa.load(Mem{Base: wp, Index: gb, Scale: 1, Disp: 4 * isa.lanes * k}, w1)
		for t := 0; t < nt; t++ {
			xb := isa.vec()
			VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 4*k}, xb)
			for g, w := range []VecVirtual{w0, w1} {
				// VPDPBUSD xb, w, s (avo lacks it).
				Instruction(&ir.Instruction{
					Opcode:   "VPDPBUSD",
					Operands: []Op{xb, w, s[g][t]}, Inputs: []Op{xb, w, s[g][t]}, Outputs: []Op{s[g][t]},
					ISA: []string{"AVX512F", "AVX512_VNNI"},
				})
			}
		}
	}
	for g := 0; g < 2; g++ {
		dw := isa.vec()
		m := Mem{Base: wp, Disp: isa.scaleOffset()}
		if g == 1 {
			m.Index, m.Scale = gb, 1
		}
		isa.loadScales(m, dw)
		for t := 0; t < nt; t++ {
			f := isa.vec()
			isa.bcast(Mem{Base: xp, Disp: 40*t + 32}, dw, f)
			VCVTDQ2PS(s[g][t], s[g][t])
			VMULPS(f, s[g][t], s[g][t])
			VADDPS(s[g][t], acc[g][t], acc[g][t])
		}
	}
	ADDQ(U32(isa.blockBytes()), wp)
	ADDQ(xs, xp)
	DECQ(nb)
	JNZ(LabelRef(blk))
	// The bias in the tile, not in a pass over dst of the caller's (GPT-2 q8_0 pp128,
	// one thread: that pass was 7.7% of the profile).
	bp := Load(Param("bias"), GP64())
	store := lb.next("store")
	TESTQ(bp, bp)
	JZ(LabelRef(store))
	for g := range acc {
		for t := range acc[g] {
			VADDPS(Mem{Base: bp, Disp: 4 * isa.lanes * g}, acc[g][t], acc[g][t]) // the sum, then + bias
		}
	}
	Label(store)
	for t := 0; t < nt; t++ {
		VMOVUPS(acc[0][t], Mem{Base: dst})
		VMOVUPS(acc[1][t], Mem{Base: dst, Disp: 4 * isa.lanes})
		if t < nt-1 {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// genPrepareSum emits prepareSum, the preparation of the activations for the VPDPBUSD
// tiles (package qgemm's prepare, in assembly: a call of runtime.memmove per block left
// prepare at 5% of a stories110m q8_0 pp128): per token and block the 32 quants, dx as
// float32 and mul·Σx, Σx by VPSADBW of the quants XOR 0x80 (x+128 as unsigned bytes,
// summed exactly) less 32·128.
func genPrepareSum() {
	lb := fn("prepareSum", "func(xs *byte, xq *byte, T int, nb int, xb int, mul int)",
		"prepareSum writes, for T ≥ 1 tokens of nb ≥ 1 q8_0 blocks (token t's at xq + t·xb), block b",
		"of token t at xs + (b·T+t)·40: its 32 quants, its scale as float32, then mul·Σx as int32",
		"(mul = −128 for q8_0 weights, −8 for q4_0).")
	xs := Load(Param("xs"), GP64())
	xq := Load(Param("xq"), GP64())
	T := Load(Param("T"), GP64())
	xb := Load(Param("xb"), GP64())
	mul := Load(Param("mul"), GP64())
	stride := GP64()
	IMUL3Q(U8(40), T, stride) // between the blocks of a token
	signs, zr := YMM(), YMM()
	VMOVDQU(vconst("signbytes", 0x80808080), signs)
	zero(zr)
	tok := lb.next("token")
	Label(tok)
	src, dst := GP64(), GP64()
	MOVQ(xq, src)
	MOVQ(xs, dst)
	n := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	q, f, hi := YMM(), YMM(), YMM()
	h, sum := GP32(), GP32()
	VMOVDQU(Mem{Base: src, Disp: 2}, q)
	VMOVDQU(q, Mem{Base: dst})
	MOVWLZX(Mem{Base: src}, h)
	VMOVD(h, f.AsX())
	VCVTPH2PS(f.AsX(), f.AsX())
	VMOVSS(f.AsX(), Mem{Base: dst, Disp: 32})
	VPXOR(signs, q, q) // x+128
	VPSADBW(zr, q, q)  // four sums of 8
	VEXTRACTI128(U8(1), q, hi.AsX())
	VPADDQ(hi.AsX(), q.AsX(), q.AsX())
	VPSHUFD(U8(0x4e), q.AsX(), hi.AsX())
	VPADDQ(hi.AsX(), q.AsX(), q.AsX())
	VMOVD(q.AsX(), sum)
	SUBL(U32(32*128), sum) // Σx
	IMULL(mul.(GPVirtual).As32(), sum)
	MOVL(sum, Mem{Base: dst, Disp: 36})
	ADDQ(U8(34), src)
	ADDQ(stride, dst)
	DECQ(n)
	JNZ(LabelRef(blk))
	ADDQ(xb, xq)
	ADDQ(U8(40), xs)
	DECQ(T)
	JNZ(LabelRef(tok))
	VZEROUPPER()
	RET()
}
