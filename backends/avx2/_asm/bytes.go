package main

import (
	"encoding/binary"
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Instructions the Go assembler has no mnemonic for (VDPBF16PS and VCVTNE2PS2BF16, say)
// go into the output as their machine code: LONG, WORD and BYTE directives inside the
// TEXT block, which the assembler copies as they are. Each is preceded by the comment
//
//	// raw: <the instruction in Go syntax>
//
// and a test of the main module (backends/avx512's TestRawInstructions) disassembles
// every such run of directives in the generated files and checks it is that
// instruction, operands included.
//
// The machine code names physical registers, so the operands of a raw instruction must
// be physical registers; emitRaw passes the registers it reads and writes on to avo's
// liveness analysis, so that the register allocator keeps virtual registers out of them
// while they are live.

// emitRaw emits the machine code enc of the instruction text (Go syntax), which reads
// inputs and writes outputs (physical registers).
func emitRaw(enc []byte, text string, inputs, outputs []Op) {
	emitCode("raw: "+text, enc, inputs, outputs)
}

// emitCode emits the comment, then the machine code enc as LONG, WORD and BYTE
// directives, which read inputs and write outputs (physical registers).
func emitCode(comment string, enc []byte, inputs, outputs []Op) {
	Comment(comment)
	first := true
	dir := func(op string, v Constant) {
		i := &ir.Instruction{Opcode: op, Operands: []Op{v}}
		if first { // the registers, once, for liveness
			i.Inputs, i.Outputs = inputs, outputs
			first = false
		}
		Instruction(i)
	}
	for len(enc) >= 4 {
		dir("LONG", U32(binary.LittleEndian.Uint32(enc)))
		enc = enc[4:]
	}
	if len(enc) >= 2 {
		dir("WORD", U16(binary.LittleEndian.Uint16(enc)))
		enc = enc[2:]
	}
	if len(enc) == 1 {
		dir("BYTE", U8(enc[0]))
	}
}

// evexMap and evexPrefix are the opcode map (0F, 0F38, 0F3A) and implied legacy prefix
// (none, 66, F3, F2) fields of an EVEX prefix.
type (
	evexMap    uint8
	evexPrefix uint8
)

const (
	map0F   evexMap = 1
	map0F38 evexMap = 2
	map0F3A evexMap = 3

	pNone evexPrefix = 0
	p66   evexPrefix = 1
	pF3   evexPrefix = 2
	pF2   evexPrefix = 3
)

// zmmNum returns the number (0–31) of a physical ZMM register.
func zmmNum(r Register) uint8 {
	p, ok := r.(Physical)
	if !ok || p.Kind() != KindVector || r.Size() != 64 {
		panic(fmt.Sprintf("raw instruction operand %v is not a physical ZMM register", r))
	}
	return uint8(p.PhysicalIndex())
}

// evexZZZ returns the 6-byte EVEX encoding of the 512-bit, unmasked instruction
// op dst, src1, src2 (Intel operand order: ModRM.reg = dst, EVEX.vvvv = src1,
// ModRM.rm = src2) with opcode map m, implied prefix pp and EVEX.W w.
func evexZZZ(m evexMap, pp evexPrefix, w uint8, op byte, dst, src1, src2 Register) []byte {
	d, s1, s2 := zmmNum(dst), zmmNum(src1), zmmNum(src2)
	inv := func(v, bit uint8) byte { return byte(^(v >> bit) & 1) }
	p0 := inv(d, 3)<<7 | inv(s2, 4)<<6 | inv(s2, 3)<<5 | inv(d, 4)<<4 | byte(m)
	p1 := w<<7 | (^s1&0xf)<<3 | 1<<2 | byte(pp)
	p2 := byte(2)<<5 | inv(s1, 4)<<3 // L'L = 512 bits, no masking, no broadcast
	modrm := byte(0xc0) | (d&7)<<3 | s2&7
	return []byte{0x62, p0, p1, p2, op, modrm}
}

// VDPBF16PSraw emits VDPBF16PS src2, src1, dst (Go operand order; AVX512_BF16):
// for each of the 16 float32 lanes, dst += src1.hi·src2.hi, then += src1.lo·src2.lo,
// the lanes' two bfloat16 halves multiplied exactly and each sum rounded to nearest
// even, with denormal inputs and results flushed to zero.
func VDPBF16PSraw(src2, src1, dst Register) {
	emitRaw(evexZZZ(map0F38, pF3, 0, 0x52, dst, src1, src2),
		fmt.Sprintf("VDPBF16PS %v, %v, %v", src2.Asm(), src1.Asm(), dst.Asm()),
		[]Op{src2, src1, dst}, []Op{dst})
}
