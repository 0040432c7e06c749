package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
)

// genProbes emits fmaLoop, the 16-lane FMA peak probe: 16 independent chains (4-cycle
// latency × 2 pipes with room to spare), 512 flops per iteration.
func genProbes() {
	lb := fn("fmaLoop", "func(n int)",
		"fmaLoop runs n ≥ 1 iterations of 16 independent 16-lane FMAs (512 flops per",
		"iteration).")
	n := Load(Param("n"), GP64())
	acc := make([]reg.VecVirtual, 16)
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
		VFMADD231PS(a, b, acc[i])
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()
}
