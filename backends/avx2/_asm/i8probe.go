package main

import (
	. "github.com/mmcloughlin/avo/build"
	"github.com/mmcloughlin/avo/ir"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The int8 peak probes: loops of independent multiply-adds of byte pairs into int32
// lanes, as the int8 GEMM (qgemm.go) does them, to measure the machine's int8 peak the
// way llama.cpp and Intel count it: 2 operations per multiply-add of a byte pair. One
// VPDPBUSD on 8 dword lanes does 32 such multiply-adds (64 ops), on 16 lanes 64 (128
// ops); VPMADDUBSW on a YMM register 32 (its word pair sums), the VPMADDWD by ones and
// the VPADDD that widen and accumulate them doing none.

// i8ProbeChains is how many independent accumulators the probes keep: more than
// latency × pipes of VPDPBUSD (4-5 cycles × 2 pipes on the cores lmrun targets).
const (
	i8ProbeChainsY = 12 // within Y0–Y15 with the two sources: VEX encodes no others
	i8ProbeChainsZ = 16
)

// genI8ProbesVEX emits the AVX2 backend's int8 probes: i8VNNILoop (AVX-VNNI, the
// VEX-encoded VPDPBUSD that vexPass turns into bytes) and i8MaddLoop (VPMADDUBSW,
// VPMADDWD, VPADDD, for CPUs without AVX-VNNI).
func genI8ProbesVEX() {
	lb := fn("i8VNNILoop", "func(n int)",
		"i8VNNILoop runs n ≥ 1 iterations of 12 independent VPDPBUSD (AVX-VNNI) on 8 dword",
		"lanes: 384 multiply-adds of byte pairs, 768 int8 ops, per iteration.")
	n := Load(Param("n"), GP64())
	acc := ymms(i8ProbeChainsY)
	zero(acc...)
	a, b := YMM(), YMM()
	zero(a, b)
	top := lb.next("loop")
	Label(top)
	for i := range acc {
		Instruction(&ir.Instruction{
			Opcode: "VPDPBUSD", Suffixes: []string{"VEX"},
			Operands: []Op{a, b, acc[i]}, Inputs: []Op{a, b, acc[i]}, Outputs: []Op{acc[i]},
			ISA: []string{"AVX", "AVXVNNI"},
		})
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()

	// Each step is three instructions, the first two multiplies: 6 chains with their
	// temporaries and the three sources stay within 16 registers, and the chains'
	// only loop-carried dependency is the 1-cycle VPADDD.
	const chains = 6
	lb = fn("i8MaddLoop", "func(n int)",
		"i8MaddLoop runs n ≥ 1 iterations of 12 steps VPMADDUBSW, VPMADDWD (by ones), VPADDD",
		"on 8 dword lanes into 6 accumulators, the int8 product of CPUs without AVX-VNNI: 384",
		"multiply-adds of byte pairs, 768 int8 ops, per iteration.")
	n = Load(Param("n"), GP64())
	acc = ymms(chains)
	zero(acc...)
	a, b, ones := YMM(), YMM(), YMM()
	zero(a, b)
	VMOVDQU(vconst("ones16", 0x00010001), ones)
	top = lb.next("loop")
	Label(top)
	for s := 0; s < 2*chains; s++ {
		t := YMM()
		VPMADDUBSW(b, a, t)
		VPMADDWD(ones, t, t)
		VPADDD(t, acc[s%chains], acc[s%chains])
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()
}

// genI8ProbeZMM emits the AVX-512 backend's int8 probe: i8VNNILoop, 16 independent
// VPDPBUSD (AVX512_VNNI) on 16 dword lanes.
func genI8ProbeZMM() {
	lb := fnStack("i8VNNILoop", "func(n int)",
		"i8VNNILoop runs n ≥ 1 iterations of 16 independent VPDPBUSD (AVX512_VNNI) on 16",
		"dword lanes: 1024 multiply-adds of byte pairs, 2048 int8 ops, per iteration.")
	n := Load(Param("n"), GP64())
	acc := make([]VecVirtual, i8ProbeChainsZ)
	for i := range acc {
		acc[i] = ZMM()
		VMOVUPS(zeros, acc[i])
	}
	a, b := ZMM(), ZMM()
	VMOVUPS(zeros, a)
	VMOVUPS(zeros, b)
	top := lb.next("loop")
	Label(top)
	for i := range acc {
		// avo v0.5.0 lacks the AVX512_VNNI instructions; the Go assembler has them.
		Instruction(&ir.Instruction{
			Opcode:   "VPDPBUSD",
			Operands: []Op{a, b, acc[i]}, Inputs: []Op{a, b, acc[i]}, Outputs: []Op{acc[i]},
			ISA: []string{"AVX512F", "AVX512_VNNI"},
		})
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()
}
