package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The AMX-INT8 tiles of the q8_0 and q4_0 GEMM (backends/avx512 on CPUs with AMX_TILE
// and AMX_INT8, for 16 tokens at a time): the repacked groups of the VPDPBUSD tiles
// (per block 8 vectors of 16 dwords, lane r holding the quants 4k..4k+3 of row r as
// unsigned bytes w + off) are already an AMX B tile (8 rows × 64 bytes), and the
// prepared activations of 16 consecutive tokens an A tile (16 rows × 32 bytes, 40 bytes
// apart). TDPBSUD (A signed, B unsigned) leaves in C[t][r] Σ_j x_tj·(w_rj + off), an
// exact int32; stored to the stack, each token's row of C plus −off·Σx (VPADDD from
// the prepared block) is the block's s exactly as the VPDPBUSD tiles leave it, and the
// float epilogue is theirs, instruction for instruction:
//
//	sum_rt += float32(float32(s_rbt) · float32(dw_rb·dx_bt))
//
// so the results are the same bits. 16 tokens × 16 rows of float32 sums fill Z0–Z15.
//
// The Go assembler has no AMX mnemonics: the instructions are emitted as machine code,
// each preceded by "// amx: <the instruction in objdump's Intel syntax>" (backends/avx512's
// TestAMXInstructions disassembles them), with physical registers, so the whole kernel
// uses physical registers.

// amxStart loads the tile configuration and sets the registers both AMX kernels share:
// BX 64 (B's and C's row stride), DI and R10 the two C buffers (64-byte aligned in buf,
// 2048 + 64 bytes), R13 pf, and pfLast its last byte (pf + pflen − 1).
func amxStart(buf, pfLast Mem) {
	LEAQ(amxConfig(), RAX)
	LDTILECFGraw(RAX)
	MOVQ(U32(64), RBX)
	LEAQ(buf, RDI)
	ADDQ(U8(63), RDI)
	ANDQ(I8(-64), RDI) // C's rows, 64-byte aligned
	LEAQ(Mem{Base: RDI, Disp: 1024}, R10)
	Load(Param("pf"), R13)
	Load(Param("pflen"), RCX)
	LEAQ(Mem{Base: R13, Index: RCX, Scale: 1, Disp: -1}, RCX)
	MOVQ(RCX, pfLast)
}

// amxPrefetch prefetches the two lines at R13 and moves it on by 128 bytes, up to
// pfLast: a block's share of the next rows.
func amxPrefetch(pfLast Mem) {
	PREFETCHT0(Mem{Base: R13})
	PREFETCHT0(Mem{Base: R13, Disp: 64})
	ADDQ(U8(128), R13)
	CMPQ(R13, pfLast)
	CMOVQGT(pfLast, R13)
}

// emitAMX is emitRaw with the comment "amx: text" (text in objdump's Intel syntax, which
// x86asm, and so TestRawInstructions, does not decode).
func emitAMX(enc []byte, text string, inputs, outputs []Op) {
	emitCode("amx: "+text, enc, inputs, outputs)
}

// Tile registers of the AMX kernel.
const (
	tmmC0 = 0 // C: a block's sums, 16 tokens × 16 rows of int32
	tmmC1 = 1 // the next block's (two blocks a step)
	tmmA0 = 2 // A: 16 tokens × 32 quants
	tmmA1 = 3
	tmmB0 = 4 // B: 8 × 64 bytes, the repacked block
	tmmB1 = 5
)

// gpNames are the Intel names of the GP registers by number.
var gpNames = [16]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}

// gpNum returns the number (0–15) of a physical 64-bit GP register.
func gpNum(r Register) uint8 {
	p, ok := r.(Physical)
	if !ok || p.Kind() != KindGP || r.Size() != 8 {
		panic(fmt.Sprintf("AMX operand %v is not a physical 64-bit GP register", r))
	}
	return uint8(p.PhysicalIndex())
}

// vexAMX returns the VEX encoding (3-byte prefix, map 0F38, W0, L0) of an AMX
// instruction with implied prefix pp, opcode op, ModRM.reg reg, vvvv and either
// register rm (mem false) or the memory operand [base+index*1] (mem true).
func vexAMX(pp evexPrefix, op byte, reg, vvvv, rm uint8, mem bool, base, index uint8) []byte {
	inv := func(v uint8) byte { return byte(^v & 1) }
	var x, b uint8
	if mem {
		x, b = index>>3, base>>3
	} else {
		b = rm >> 3
	}
	p1 := inv(reg>>3)<<7 | inv(x)<<6 | inv(b)<<5 | byte(map0F38)
	p2 := (^vvvv&0xf)<<3 | byte(pp)
	if !mem {
		return []byte{0xc4, p1, p2, op, 0xc0 | (reg&7)<<3 | rm&7}
	}
	if base&7 == 5 || index == 4 {
		panic("AMX memory operand: no rbp/r13 base, no rsp index")
	}
	return []byte{0xc4, p1, p2, op, (reg&7)<<3 | 4, (index&7)<<3 | base&7}
}

// LDTILECFGraw loads the tile configuration at [base] (base not rsp, rbp, r12, r13).
func LDTILECFGraw(base Register) {
	b := gpNum(base)
	if b&7 == 4 || b&7 == 5 {
		panic("LDTILECFG: base must not be rsp, rbp, r12 or r13")
	}
	inv := func(v uint8) byte { return byte(^v & 1) }
	enc := []byte{0xc4, 1<<7 | 1<<6 | inv(b>>3)<<5 | byte(map0F38), 0x78, 0x49, b & 7}
	emitAMX(enc, fmt.Sprintf("ldtilecfg [%s]", gpNames[b]), []Op{base}, nil)
}

// TILERELEASEraw releases the tiles (their state back to init).
func TILERELEASEraw() {
	emitAMX([]byte{0xc4, 0xe2, 0x78, 0x49, 0xc0}, "tilerelease", nil, nil)
}

// TILEZEROraw zeroes tile t.
func TILEZEROraw(t uint8) {
	emitAMX(vexAMX(pF2, 0x49, t, 0, 0, false, 0, 0), fmt.Sprintf("tilezero tmm%d", t), nil, nil)
}

// TILELOADDraw loads tile t from [base+index*1] (rows index bytes apart).
func TILELOADDraw(t uint8, base, index Register) {
	b, i := gpNum(base), gpNum(index)
	emitAMX(vexAMX(pF2, 0x4b, t, 0, 0, true, b, i), fmt.Sprintf("tileloadd tmm%d,[%s+%s*1]", t, gpNames[b], gpNames[i]), []Op{base, index}, nil)
}

// TILESTOREDraw stores tile t to [base+index*1].
func TILESTOREDraw(t uint8, base, index Register) {
	b, i := gpNum(base), gpNum(index)
	emitAMX(vexAMX(pF3, 0x4b, t, 0, 0, true, b, i), fmt.Sprintf("tilestored [%s+%s*1],tmm%d", gpNames[b], gpNames[i], t), []Op{base, index}, nil)
}

// TDPBSUDraw computes c += a·b: per element C[m][n] += Σ_k s8(A[m][4k+i])·u8(B[k][4n+i]).
func TDPBSUDraw(c, a, b uint8) {
	emitAMX(vexAMX(pF3, 0x5e, c, b, a, false, 0, 0), fmt.Sprintf("tdpbsud tmm%d,tmm%d,tmm%d", c, a, b), nil, nil)
}

// TDPBSSDraw computes c += a·b: per element C[m][n] += Σ_k s8(A[m][4k+i])·s8(B[k][4n+i]).
func TDPBSSDraw(c, a, b uint8) {
	emitAMX(vexAMX(pF2, 0x5e, c, b, a, false, 0, 0), fmt.Sprintf("tdpbssd tmm%d,tmm%d,tmm%d", c, a, b), nil, nil)
}

// amxTileConfig is the tile configuration of qgemmAMX (palette 1): C tiles 16 × 64
// bytes, A tiles 16 × 32, B tiles 8 × 64.
var amxTileConfig Mem

func amxConfig() Mem {
	if amxTileConfig.Symbol.Name == "" {
		amxTileConfig = GLOBL("amxcfg", RODATA|NOPTR)
		var c [64]byte
		c[0] = 1
		set := func(t, rows, colsb int) {
			c[16+2*t] = byte(colsb)
			c[16+2*t+1] = byte(colsb >> 8)
			c[48+t] = byte(rows)
		}
		set(tmmC0, 16, 64)
		set(tmmC1, 16, 64)
		set(tmmA0, 16, 32)
		set(tmmA1, 16, 32)
		set(tmmB0, 8, 64)
		set(tmmB1, 8, 64)
		for i := 0; i < 64; i += 8 {
			var v uint64
			for j := 7; j >= 0; j-- {
				v = v<<8 | uint64(c[i+j])
			}
			DATA(i, U64(v))
		}
	}
	return amxTileConfig
}

// genQGemmAMX emits qgemmAMX, the AMX-INT8 tile (see above). It is software-pipelined:
// while the float epilogue of block b reads its C (stored by the step before), the
// tiles compute block b+1's into the other C tile and buffer (2048×768 q8_0 packed,
// T = 128, one thread: 488 → 505–511 GOP/s).
//
// On this generation's cores the tiles' work and the vector epilogue hardly overlap: per
// block of 16 tokens × 16 rows (weights in L1, activations in L2, one thread, all-zero
// quants) the tiles alone (loads, TDPBSUD, store) take 12 ns, the epilogue alone 15,
// both 26.5–27 (the VPDPBUSD tile 37–38; on random quants 29 against 37.6: the tiles'
// speed depends on the data). Tried, no gain (that kernel, ns a block, or the product
// BenchmarkAMX, interleaved):
//   - the epilogue first, the product two blocks ahead after it (the C it reads stored
//     two steps before): 26.6 → 27.9–28.4;
//   - two products, then the two epilogues: 27.4–28.7;
//   - the product's instructions spread through the epilogue: 28.0–28.4 (the product
//     0–6% faster, within the noise);
//   - without the −off·Σx correction (what weights repacked signed, TDPBSSD, would
//     save: 16 vector µops and broadcasts of the 96 a block): 26.9–27.7 as with it;
//   - TDPBF16PS on the quants as bfloat16 (exact integers: no conversion, no
//     correction, 3 vector µops a token): 24.4–27.1, for twice the weights' bytes;
//   - the A tile's rows 64 bytes apart, not 40 (no row across two lines; a layout of
//     its own): 26.5 → 25.5;
//   - the token tiles outer and the pair's groups inner in a call (the 16 tokens' blocks
//     kept in L1 for both): 467–470 → 457–465 GOP/s;
//   - a pair's two groups sharing the A tile (two B and C tiles a block, the second
//     group's sums on the stack; random quants): 28.8–29.0 → 28.0–28.3, too little for
//     a second kernel;
//   - PREFETCHT0 of the activations 2 or 4 blocks ahead, more lines of the next rows a
//     block (up to 8), no TILERELEASE between calls: no change.
// Left to try: the C rows of block b loaded into registers before the next block's
// product is issued (a tile store seems to hold up the loads after it). A timing test
// (15 tokens, without dw·dx: the registers do not hold 16) took 25.4 ns a block for 15/16
// of the work, against 29.2: tiles of 15 tokens (A and C tiles of 15 rows) might gain 5%.

func genQGemmAMX() {
	const lanes = 16
	bb := qgemmBlockBytes(lanes)
	lb := fnStack("qgemmAMX", "func(n int, dst *float32, ldd int, w *byte, x *byte, xstride int, nb int, groups int, bias *float32, pf *byte, pflen int)",
		"qgemmAMX computes, with AMX-INT8, for the 16 rows r of each of groups ≥ 1 consecutive",
		fmt.Sprintf("repacked groups (group j's nb ≥ 1 blocks at w + j·nb·%d, its rows at dst + 16·j) and", bb),
		"n ≥ 1 tiles of 16 tokens (tile i's at x + 640·i, its results at dst + 16·ldd·i), token t",
		"of block b at x + b·xstride + 40·t (32 quants, dx float32, −off·Σx int32),",
		"",
		"\tdst[t*ldd+r] = Σ_b float32(float32(s_rbt)·float32(dw_rb·dx_bt))",
		"",
		"in block order, then + bias[r] (bias + 16·j for group j) unless bias is nil: the bits of",
		"qgemmZx8. Per block it prefetches the two lines at pf + 128·k (k the blocks so far), up to",
		"pf + pflen − 1 (pflen ≥ 1). The CPU must have AMX_TILE and AMX_INT8 and the thread the",
		"permission to use the tiles.")
	buf := AllocLocal(2048 + 64) // two C buffers
	ntl := AllocLocal(8)         // tiles left in this group
	gleft := AllocLocal(8)       // groups left
	pfLast := AllocLocal(8)
	gbytes := AllocLocal(8) // nb·576
	xtile := AllocLocal(8)  // this tile's x
	dtile := AllocLocal(8)  // this tile's dst
	wgroup := AllocLocal(8) // this group's blocks

	// Registers: AX 40 (A's row stride), BX 64 (B's and C's), CX the blocks left, DX and
	// SI this block's x and w, DI and R10 the C buffers, R8 and R9 the next block's x and
	// w, R12 xstride, R13 pf.
	amxStart(buf, pfLast)
	MOVQ(U32(40), RAX)
	Load(Param("xstride"), R12)
	Load(Param("nb"), RCX)
	IMUL3Q(U32(bb), RCX, RCX)
	MOVQ(RCX, gbytes)
	Load(Param("groups"), RCX)
	MOVQ(RCX, gleft)
	Load(Param("w"), RCX)
	MOVQ(RCX, wgroup)

	group := lb.next("group")
	Label(group)
	Load(Param("n"), RCX)
	MOVQ(RCX, ntl)
	Load(Param("x"), RCX)
	MOVQ(RCX, xtile)
	Load(Param("dst"), RCX)
	MOVQ(RCX, dtile)

	acc := []Register{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15}
	dw := Z16
	tmps := []Register{Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}

	// product computes the block at (xb, wb) into C tile c (A a, B b), stored at cb.
	product := func(xb, wb, cb Register, c, a, b uint8) {
		TILELOADDraw(a, xb, RAX)
		TILELOADDraw(b, wb, RBX)
		TILEZEROraw(c)
		TDPBSUDraw(c, a, b)
		TILESTOREDraw(c, cb, RBX)
	}
	// epilogue adds the block at (DX, SI), its C at cb, to the sums.
	epilogue := func(cb Register) {
		amxPrefetch(pfLast)
		VMOVUPS(Mem{Base: RSI, Disp: 32 * lanes}, dw)
		for t := range acc {
			s, f := tmps[(2*t)%len(tmps)], tmps[(2*t+1)%len(tmps)]
			VMOVDQU32(Mem{Base: cb, Disp: 64 * t}, s)
			VPADDD_BCST(Mem{Base: RDX, Disp: 40*t + 36}, s, s)  // + −off·Σx: the block's s
			VMULPS_BCST(Mem{Base: RDX, Disp: 40*t + 32}, dw, f) // float32(dw·dx)
			VCVTDQ2PS(s, s)
			VMULPS(f, s, s)
			VADDPS(s, acc[t], acc[t])
		}
	}
	// step: the next block's product (if any) into the other tiles, this one's epilogue,
	// then on to the next block; done when none is left.
	step := func(cur, next Register, c, a, b uint8, done string) {
		last := lb.next("last")
		CMPQ(RCX, U8(1))
		JE(LabelRef(last))
		LEAQ(Mem{Base: RDX, Index: R12, Scale: 1}, R8)
		LEAQ(Mem{Base: RSI, Disp: bb}, R9)
		product(R8, R9, next, c, a, b)
		Label(last)
		epilogue(cur)
		ADDQ(U32(bb), RSI)
		ADDQ(R12, RDX)
		DECQ(RCX)
		JZ(LabelRef(done))
	}

	tile := lb.next("tile")
	Label(tile)
	for _, a := range acc {
		VPXORD(a, a, a)
	}
	MOVQ(xtile, RDX)
	MOVQ(wgroup, RSI)
	Load(Param("nb"), RCX)
	product(RDX, RSI, RDI, tmmC0, tmmA0, tmmB0) // block 0
	blk := lb.next("block")
	done := lb.next("blocksdone")
	Label(blk)
	step(RDI, R10, tmmC1, tmmA1, tmmB1, done)
	step(R10, RDI, tmmC0, tmmA0, tmmB0, done)
	JMP(LabelRef(blk))
	Label(done)

	Load(Param("bias"), RCX)
	store := lb.next("store")
	TESTQ(RCX, RCX)
	JZ(LabelRef(store))
	for _, a := range acc {
		VADDPS(Mem{Base: RCX}, a, a) // the sum, then + bias
	}
	Label(store)
	MOVQ(dtile, RCX)
	Load(Param("ldd"), R9)
	SHLQ(U8(2), R9)
	for _, a := range acc {
		VMOVUPS(a, Mem{Base: RCX})
		ADDQ(R9, RCX)
	}
	MOVQ(RCX, dtile) // the next tile's: 16 tokens on
	ADDQ(U32(640), xtile)
	DECQ(ntl)
	JNZ(LabelRef(tile))

	// The next group: its blocks, its rows, its bias.
	MOVQ(gbytes, RCX)
	ADDQ(RCX, wgroup)
	Load(Param("dst"), RCX)
	ADDQ(U8(4*lanes), RCX)
	Store(RCX, Param("dst"))
	Load(Param("bias"), RCX)
	nob := lb.next("nobias")
	TESTQ(RCX, RCX)
	JZ(LabelRef(nob))
	ADDQ(U8(4*lanes), RCX)
	Store(RCX, Param("bias"))
	Label(nob)
	DECQ(gleft)
	JNZ(LabelRef(group))

	TILERELEASEraw()
	VZEROUPPER()
	RET()
}

// genAMXGatherQ8 emits amxGatherQ8, which gathers the blocks of 16 q8_0 rows (or
// tokens) a stride apart into the layouts of qgemmAMXW: per block their 16 scales as
// float32 and, if quants, before them their quants as an AMX B tile (8 rows × 64 bytes,
// row k holding the quants 4k..4k+3 of each of the 16).
func genAMXGatherQ8() {
	lb := fnStack("amxGatherQ8", "func(dst *byte, src *byte, stride int, nb int, step int, quants int, rows int)",
		"amxGatherQ8 writes, for nb ≥ 1 blocks b of the 1 ≤ rows ≤ 16 q8_0 rows at src + i·stride",
		"(i < rows, 16·stride < 2³¹), block b's at dst + b·step: unless quants is 0, the B tile of",
		"its quants (dword k of row i at byte 64·k + 4·i) and its 16 scales as float32 at + 512;",
		"else the scales alone at + 0. The lanes of rows i ≥ rows are zeros (their memory not read).")
	Load(Param("stride"), RAX)
	VPBROADCASTD(EAX, Z0)
	VPMULLD(iota16(), Z0, Z0) // i·stride
	Load(Param("dst"), RDI)
	Load(Param("src"), RSI)
	Load(Param("nb"), RCX)
	Load(Param("step"), RDX)
	Load(Param("rows"), RAX)
	LEAQ(rowMasks(), R8)
	KMOVW(Mem{Base: R8, Index: RAX, Scale: 2}, K3) // rows i < rows
	Load(Param("quants"), RAX)
	scales := func(disp int) {
		KMOVW(K3, K1) // the gather clears it
		VPXORD(Z1, Z1, Z1)
		VPGATHERDD(Mem{Base: RSI, Index: Z0, Scale: 1}, K1, Z1)
		VPMOVDW(Z1, Y2)
		VCVTPH2PS(Y2, Z2)
		VMOVUPS(Z2, Mem{Base: RDI, Disp: disp})
	}
	q := lb.next("quants")
	TESTQ(RAX, RAX)
	JNZ(LabelRef(q))
	only := lb.next("scales")
	Label(only)
	scales(0)
	ADDQ(U8(34), RSI)
	ADDQ(RDX, RDI)
	DECQ(RCX)
	JNZ(LabelRef(only))
	VZEROUPPER()
	RET()
	Label(q)
	zs := []Register{Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10}
	loop := lb.next("loop")
	Label(loop)
	scales(512)
	for k, z := range zs {
		KMOVW(K3, K1)
		VPXORD(z, z, z)
		VPGATHERDD(Mem{Base: RSI, Index: Z0, Scale: 1, Disp: 2 + 4*k}, K1, z)
	}
	for k, z := range zs {
		VMOVDQU32(z, Mem{Base: RDI, Disp: 64 * k})
	}
	ADDQ(U8(34), RSI)
	ADDQ(RDX, RDI)
	DECQ(RCX)
	JNZ(LabelRef(loop))
	VZEROUPPER()
	RET()
}

// genQGemmAMXW emits qgemmAMXW, the AMX-INT8 tile on q8_0 weights as loaded (no
// repack): a block of 16 consecutive rows is an A tile as it lies (16 rows × 32 quants,
// rb bytes apart), the 16 tokens' gathered quants the B tile (amxGatherQ8), and
// TDPBSSD leaves in C[r][t] the block's s_rbt exactly. The epilogue works on rows (a
// ZMM over the 16 tokens): float32(dw_rb·dx_bt) from the group's dw table and the
// tokens' dx, × float32(s), + the row's sum: the operations of qgemmAMX and the
// VPDPBUSD tiles in the same order (the products commute), so the same bits. After the
// last block (and the bias) the 16 × 16 sums are transposed in registers to the tokens'
// rows of dst. Pipelined as qgemmAMX. Tried, no gain (BenchmarkAMX, interleaved,
// GOP/s): 4 lines of the next group's rows prefetched a block rather than 2 (all the
// rows ahead for calls of up to 3 tiles): 2048×768 T = 32 502–509 → 514–525, 768×2048
// and T = 48–128 within the noise; none at all: up to 11% slower (768×2048 T = 128
// 537 → 481).
func genQGemmAMXW() {
	const blk = 34  // a q8_0 block
	const xbb = 576 // a gathered block of 16 tokens: the B tile, 16 dx
	lb := fnStack("qgemmAMXW", "func(n int, dst *float32, ldd int, w *byte, rb int, x *byte, nb int, bias *float32, dw *float32, pf *byte, pflen int, last int)",
		"qgemmAMXW computes, with AMX-INT8, for the 16 q8_0 rows r at w + r·rb (nb ≥ 1 blocks",
		"each) and n ≥ 1 tiles of 16 tokens (tile i's blocks gathered by amxGatherQ8 at",
		fmt.Sprintf("x + %d·nb·i, its results at dst + 16·ldd·i), with the rows' scales as float32 at", xbb),
		"dw + 16·b + r (block b), token t of a tile",
		"",
		"\tdst[t*ldd+r] = Σ_b float32(float32(s_rbt)·float32(dw_rb·dx_bt))",
		"",
		"in block order, then + bias[r] unless bias is nil: the bits of qgemmAMX; of the last tile",
		"it stores the first 1 ≤ last ≤ 16 tokens' alone (the others' zeros). Per block it",
		"prefetches the two lines at pf + 128·k (k the blocks so far), up to pf + pflen − 1",
		"(pflen ≥ 1). The CPU must have AMX_TILE and AMX_INT8 and the thread the permission to",
		"use the tiles.")
	buf := AllocLocal(2048 + 64) // two C buffers
	ntl := AllocLocal(8)         // tiles left
	pfLast := AllocLocal(8)
	xtile := AllocLocal(8) // this tile's x
	dtile := AllocLocal(8) // this tile's dst
	tbytes := AllocLocal(8)

	// Registers: AX rb (A's row stride), BX 64 (B's and C's), CX the blocks left, DX
	// and SI this block's x and quants, R11 its dw, DI and R10 the C buffers, R8 and R9
	// the next block's x and quants, R13 pf.
	amxStart(buf, pfLast)
	Load(Param("rb"), RAX)
	Load(Param("nb"), RCX)
	IMUL3Q(U32(xbb), RCX, RCX)
	MOVQ(RCX, tbytes)
	Load(Param("n"), RCX)
	MOVQ(RCX, ntl)
	Load(Param("x"), RCX)
	MOVQ(RCX, xtile)
	Load(Param("dst"), RCX)
	MOVQ(RCX, dtile)

	acc := []Register{Z0, Z1, Z2, Z3, Z4, Z5, Z6, Z7, Z8, Z9, Z10, Z11, Z12, Z13, Z14, Z15}
	tmps := []Register{Z16, Z17, Z18, Z19, Z20, Z21, Z22, Z23, Z24, Z25, Z26, Z27, Z28, Z29, Z30, Z31}
	dxv := Z16
	et := tmps[1:]

	product := func(xb, wb, cb Register, c, a, b uint8) {
		TILELOADDraw(a, wb, RAX)
		TILELOADDraw(b, xb, RBX)
		TILEZEROraw(c)
		TDPBSSDraw(c, a, b)
		TILESTOREDraw(c, cb, RBX)
	}
	epilogue := func(cb Register) {
		amxPrefetch(pfLast)
		VMOVUPS(Mem{Base: RDX, Disp: 512}, dxv)
		for r := range acc {
			s, f := et[(2*r)%len(et)], et[(2*r+1)%len(et)]
			VMOVDQU32(Mem{Base: cb, Disp: 64 * r}, s)
			VMULPS_BCST(Mem{Base: R11, Disp: 4 * r}, dxv, f) // float32(dw·dx)
			VCVTDQ2PS(s, s)
			VMULPS(f, s, s)
			VADDPS(s, acc[r], acc[r])
		}
	}
	step := func(cur, next Register, c, a, b uint8, done string) {
		last := lb.next("last")
		CMPQ(RCX, U8(1))
		JE(LabelRef(last))
		LEAQ(Mem{Base: RDX, Disp: xbb}, R8)
		LEAQ(Mem{Base: RSI, Disp: blk}, R9)
		product(R8, R9, next, c, a, b)
		Label(last)
		epilogue(cur)
		ADDQ(U8(blk), RSI)
		ADDQ(U32(xbb), RDX)
		ADDQ(U8(64), R11)
		DECQ(RCX)
		JZ(LabelRef(done))
	}

	tile := lb.next("tile")
	Label(tile)
	for _, a := range acc {
		VPXORD(a, a, a)
	}
	MOVQ(xtile, RDX)
	Load(Param("w"), RSI)
	ADDQ(U8(2), RSI) // the quants
	Load(Param("dw"), R11)
	Load(Param("nb"), RCX)
	product(RDX, RSI, RDI, tmmC0, tmmA0, tmmB0)
	blkl := lb.next("block")
	done := lb.next("blocksdone")
	Label(blkl)
	step(RDI, R10, tmmC1, tmmA1, tmmB1, done)
	step(R10, RDI, tmmC0, tmmA0, tmmB0, done)
	JMP(LabelRef(blkl))
	Label(done)

	Load(Param("bias"), RCX)
	nob := lb.next("nobias")
	TESTQ(RCX, RCX)
	JZ(LabelRef(nob))
	for r, a := range acc {
		VADDPS_BCST(Mem{Base: RCX, Disp: 4 * r}, a, a) // the sum, then + bias
	}
	Label(nob)
	// Transpose: rows r (acc) to tokens t (acc again).
	u, t := acc, tmps
	for i := 0; i < 8; i++ {
		VUNPCKLPS(u[2*i+1], u[2*i], t[2*i])
		VUNPCKHPS(u[2*i+1], u[2*i], t[2*i+1])
	}
	for j := 0; j < 4; j++ {
		VUNPCKLPD(t[4*j+2], t[4*j], u[4*j])
		VUNPCKHPD(t[4*j+2], t[4*j], u[4*j+1])
		VUNPCKLPD(t[4*j+3], t[4*j+1], u[4*j+2])
		VUNPCKHPD(t[4*j+3], t[4*j+1], u[4*j+3])
	}
	for c := 0; c < 4; c++ {
		VSHUFF32X4(U8(0x44), u[4+c], u[c], t[4*c])
		VSHUFF32X4(U8(0xee), u[4+c], u[c], t[4*c+1])
		VSHUFF32X4(U8(0x44), u[12+c], u[8+c], t[4*c+2])
		VSHUFF32X4(U8(0xee), u[12+c], u[8+c], t[4*c+3])
	}
	for c := 0; c < 4; c++ {
		v0, v1, v2, v3 := t[4*c], t[4*c+1], t[4*c+2], t[4*c+3]
		VSHUFF32X4(U8(0x88), v2, v0, u[c])
		VSHUFF32X4(U8(0xdd), v2, v0, u[c+4])
		VSHUFF32X4(U8(0x88), v3, v1, u[c+8])
		VSHUFF32X4(U8(0xdd), v3, v1, u[c+12])
	}
	MOVQ(dtile, RCX)
	Load(Param("ldd"), R9)
	SHLQ(U8(2), R9)
	MOVQ(U32(16), R8) // the tokens to store
	CMPQ(ntl, U8(1))
	full := lb.next("full")
	JNE(LabelRef(full))
	Load(Param("last"), R8)
	Label(full)
	stored := lb.next("stored")
	for t, a := range acc {
		if t > 0 {
			CMPQ(R8, U8(t))
			JLE(LabelRef(stored))
		}
		VMOVUPS(a, Mem{Base: RCX})
		ADDQ(R9, RCX)
	}
	Label(stored)
	MOVQ(dtile, RCX)
	MOVQ(R9, RAX)
	SHLQ(U8(4), RAX)
	ADDQ(RAX, RCX) // 16 tokens on
	Load(Param("rb"), RAX)
	MOVQ(RCX, dtile)
	MOVQ(tbytes, RCX)
	ADDQ(RCX, xtile)
	DECQ(ntl)
	JNZ(LabelRef(tile))

	TILERELEASEraw()
	VZEROUPPER()
	RET()
}
