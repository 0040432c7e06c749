package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genProbes emits the machine-limit probes the benchmarks compare against: FMA
// throughput, and streaming read bandwidth with plain loads.
func genProbes() {
	lb := fn("fmaLoop", "func(n int)",
		"fmaLoop runs n ≥ 1 iterations of 12 independent 8-lane FMAs (192 flops per",
		"iteration): enough chains to cover the FMA latency on every core lmrun targets.")
	n := Load(Param("n"), GP64())
	acc := ymms(12)
	zero(acc...)
	a, b := YMM(), YMM()
	zero(a, b)
	top := lb.next("loop")
	Label(top)
	for i := range acc {
		VFMADD231PS(a, b, acc[i])
	}
	DECQ(n)
	JNZ(LabelRef(top))
	VZEROUPPER()
	RET()

	genReadStreams("readBW2", 2)
	genReadStreams("readBW4", 4)
}

// genReadStreams emits a probe that sums n floats (n a positive multiple of 256) read
// as the given number of concurrent sequential streams, one per part of the buffer, as
// a matrix–vector product reads its rows.
func genReadStreams(name string, streams int) {
	lb := fn(name, "func(p *float32, n int) float32",
		name+" sums the n floats at p (n a positive multiple of 256), reading them as",
		itoa(streams)+" concurrent streams: a read-bandwidth probe.")
	p := Load(Param("p"), GP64())
	part := Load(Param("n"), GP64())
	SHLQ(U8(2), part) // bytes
	for s := streams; s > 1; s /= 2 {
		SHRQ(U8(1), part)
	}
	ps := []Register{p}
	for s := 1; s < streams; s++ {
		r := GP64()
		LEAQ(Mem{Base: ps[s-1], Index: part, Scale: 1}, r)
		ps = append(ps, r)
	}
	i := GP64()
	XORQ(i, i)
	sums := ymms(4)
	zero(sums...)
	top := lb.next("loop")
	Label(top)
	per := 16 / streams // 512 bytes per iteration in all
	for s := 0; s < streams; s++ {
		for u := 0; u < per; u++ {
			VADDPS(Mem{Base: ps[s], Index: i, Scale: 1, Disp: 32 * u}, sums[(u+s)%4], sums[(u+s)%4])
		}
	}
	ADDQ(U32(32*per), i)
	CMPQ(i, part)
	JB(LabelRef(top))
	VADDPS(sums[1], sums[0], sums[0])
	VADDPS(sums[3], sums[2], sums[2])
	VADDPS(sums[2], sums[0], sums[0])
	Store(hsum(sums[0]), ReturnIndex(0))
	VZEROUPPER()
	RET()
}
