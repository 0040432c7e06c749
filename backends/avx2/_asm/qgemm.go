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
// nibbles 16–31), followed by the L weight scales as f16. Then VPDPBUSD of vector k with
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
}

// qgemmBlockBytes is the size of one repacked block of a group of lanes rows: 8 vectors of
// lanes dwords, then lanes f16 scales padded to 4·lanes bytes (a whole vector).
func qgemmBlockBytes(lanes int) int { return 36 * lanes }

var qgemmZMM = qgemmISA{
	suffix: "Z", lanes: 16, vec: ZMM, tokens: 8, kGroup: 8,
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
}

// genQGemm emits the repack kernels and the tiles qgemm<suffix>x1..x<tokens>.
func genQGemm(isa qgemmISA) {
	genRepack(isa.lanes, false)
	genRepack(isa.lanes, true)
	for nt := 1; nt <= isa.tokens; nt++ {
		genQGemmTile(isa, nt)
	}
}

// genRepack emits repackQ8 or repackQ4: rows (≤ lanes) rows of nb blocks, ldw bytes
// apart, into the group layout at dst; the lanes of rows ≥ rows are left as they are.
func genRepack(lanes int, q4 bool) {
	name, bsz := "repackQ8", 34
	if q4 {
		name, bsz = "repackQ4", 18
	}
	lb := fn(name, "func(dst *byte, w *byte, ldw int, nb int, rows int)",
		fmt.Sprintf("%s repacks rows 0 ≤ r < rows (≤ %d) of nb blocks of the %s matrix at w (rows ldw", name, lanes, map[bool]string{false: "q8_0", true: "q4_0"}[q4]),
		"bytes apart) for the int8 GEMM tiles: per block, dword lane r of vector k holds row r's",
		"quants 4k..4k+3 as unsigned bytes (q8_0: w+128; q4_0: the nibbles, low ones elements 0–15),",
		"then the rows' f16 scales.")
	outW := Load(Param("dst"), GP64()) // row r's lane of the weight vectors: 4r bytes in
	outS := GP64()                     // row r's scale: 2r bytes into the scales
	MOVQ(outW, outS)
	wr := Load(Param("w"), GP64())
	rows := Load(Param("rows"), GP64())
	bb := qgemmBlockBytes(lanes)
	row := lb.next("row")
	Label(row)
	ow, os2, wb := GP64(), GP64(), GP64()
	MOVQ(outW, ow)
	MOVQ(outS, os2)
	MOVQ(wr, wb)
	nb := Load(Param("nb"), GP64())
	blk := lb.next("block")
	Label(blk)
	a, b := GP32(), GP32()
	MOVWLZX(Mem{Base: wb}, a)
	MOVW(a.As16(), Mem{Base: os2, Disp: 32 * lanes})
	if q4 {
		for j := 0; j < 4; j++ {
			MOVL(Mem{Base: wb, Disp: 2 + 4*j}, a)
			MOVL(a, b)
			ANDL(U32(0x0f0f0f0f), a)
			SHRL(U8(4), b)
			ANDL(U32(0x0f0f0f0f), b)
			MOVL(a, Mem{Base: ow, Disp: 4 * lanes * j})
			MOVL(b, Mem{Base: ow, Disp: 4 * lanes * (j + 4)})
		}
	} else {
		for k := 0; k < 8; k++ {
			MOVL(Mem{Base: wb, Disp: 2 + 4*k}, a)
			XORL(U32(0x80808080), a)
			MOVL(a, Mem{Base: ow, Disp: 4 * lanes * k})
		}
	}
	ADDQ(U32(bb), ow)
	ADDQ(U32(bb), os2)
	ADDQ(U8(bsz), wb)
	DECQ(nb)
	JNZ(LabelRef(blk))
	ldw := Load(Param("ldw"), GP64())
	ADDQ(ldw, wr)
	ADDQ(U8(4), outW)
	ADDQ(U8(2), outS)
	DECQ(rows)
	JNZ(LabelRef(row))
	RET()
}

// genQGemmTile emits qgemm<suffix>x<nt>: one group's repacked rows times nt tokens.
func genQGemmTile(isa qgemmISA, nt int) {
	name := fmt.Sprintf("qgemm%sx%d", isa.suffix, nt)
	lb := fn(name, "func(dst *float32, ldd int, w *byte, x *byte, xstride int, nb int)",
		fmt.Sprintf("%s computes, for the %d rows r of a repacked group w (repackQ8, repackQ4) and", name, isa.lanes),
		fmt.Sprintf("the tokens t < %d of the prepared activation blocks x (token t of block b at", nt),
		"x + b·xstride + 40·t: 32 quants, dx float32, −off·Σx int32),",
		"",
		"\tdst[t*ldd+r] = Σ_b float32(float32(s_rbt)·float32(dw_rb·dx_bt))",
		"",
		"in block order (nb ≥ 1 blocks), each sum exactly as the reference takes it.")
	dst := Load(Param("dst"), GP64())
	ldd := bytesOf("ldd")
	wp := Load(Param("w"), GP64())
	xp := Load(Param("x"), GP64())
	xs := Load(Param("xstride"), GP64())
	nb := Load(Param("nb"), GP64())
	L := isa.lanes
	acc := make([]VecVirtual, nt)
	for t := range acc {
		acc[t] = isa.vec()
		isa.zero(acc[t])
	}
	blk := lb.next("block")
	Label(blk)
	s := make([]VecVirtual, nt)
	for t := range s {
		s[t] = isa.vec()
		VPBROADCASTD(Mem{Base: xp, Disp: 40*t + 36}, s[t]) // −off·Σx
	}
	for k0 := 0; k0 < 8; k0 += isa.kGroup {
		w := make([]VecVirtual, isa.kGroup)
		for j := range w {
			w[j] = isa.vec()
			isa.load(Mem{Base: wp, Disp: 4 * L * (k0 + j)}, w[j])
		}
		for t := range s {
			for j := range w {
				isa.dot(s[t], w[j], Mem{Base: xp, Disp: 40*t + 4*(k0+j)})
			}
		}
	}
	dw := isa.vec()
	VCVTPH2PS(Mem{Base: wp, Disp: 32 * L}, dw)
	for t := range s {
		f := isa.vec()
		isa.bcast(Mem{Base: xp, Disp: 40*t + 32}, dw, f) // float32(dw·dx)
		VCVTDQ2PS(s[t], s[t])
		VMULPS(f, s[t], s[t])        // float32(s)·that
		VADDPS(s[t], acc[t], acc[t]) // sum += that
	}
	ADDQ(U32(qgemmBlockBytes(L)), wp)
	ADDQ(xs, xp)
	DECQ(nb)
	JNZ(LabelRef(blk))
	for t := range acc {
		VMOVUPS(acc[t], Mem{Base: dst})
		if t < nt-1 {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
}

// vexPass rewrites, in the generated assembly at path, every VPDPBUSD.VEX of three YMM
// registers as the bytes of its VEX encoding (VEX.256.66.0F38.W0 50 /r), preceded by a
// comment naming the instruction. It fails on registers past Y15, which VEX cannot
// encode.
func vexPass(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	re := regexp.MustCompile(`(?m)^(\t)VPDPBUSD\.VEX Y(\d+), Y(\d+), Y(\d+)$`)
	var bad error
	out := re.ReplaceAllStringFunc(string(b), func(line string) string {
		m := re.FindStringSubmatch(line)
		var r [3]int
		for i := range r {
			r[i], _ = strconv.Atoi(m[2+i])
		}
		enc, err := vexVPDPBUSD(r[2], r[1], r[0])
		if err != nil {
			bad = err
			return line
		}
		bs := make([]string, len(enc))
		for i, c := range enc {
			bs[i] = fmt.Sprintf("BYTE $0x%02x", c)
		}
		return fmt.Sprintf("\t// VPDPBUSD Y%d, Y%d, Y%d (VEX, AVX-VNNI)\n\t%s", r[0], r[1], r[2], strings.Join(bs, "; "))
	})
	if bad != nil {
		return bad
	}
	if strings.Contains(out, ".VEX") {
		return fmt.Errorf("%s: a VPDPBUSD.VEX left unencoded", path)
	}
	return os.WriteFile(path, []byte(out), 0o644)
}

// vexVPDPBUSD returns the VEX encoding of VPDPBUSD ymm(dst), ymm(src1), ymm(src2) in
// Intel operand order (Go's: VPDPBUSD Y<src2>, Y<src1>, Y<dst>).
func vexVPDPBUSD(dst, src1, src2 int) ([]byte, error) {
	for _, r := range []int{dst, src1, src2} {
		if r < 0 || r > 15 {
			return nil, fmt.Errorf("VPDPBUSD (VEX) of Y%d: only Y0–Y15 have a VEX encoding", r)
		}
	}
	inv := func(b int) byte { return byte(^b & 1) }
	b1 := inv(dst>>3)<<7 | 1<<6 | inv(src2>>3)<<5 | 0x02 // R̄ X̄ B̄, map 0F38
	b2 := byte(^src1&0xf)<<3 | 1<<2 | 0x01               // W0, v̄v̄v̄v̄, L=256, pp=66
	modrm := 0xc0 | byte(dst&7)<<3 | byte(src2&7)
	return []byte{0xc4, b1, b2, 0x50, modrm}, nil
}
