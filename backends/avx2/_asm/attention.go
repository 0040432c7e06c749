package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genAttention emits wsum, the value half of attention: out = Σ_j p[j]·v_j. Column
// chunks of 64 floats keep their 8 accumulators in registers for the whole pass over
// the n cached rows, so each v_j element is loaded once and out is written once.
func genAttention() {
	lb := fn("wsum", "func(out *float32, v *float32, stride int, p *float32, n int, hd int)",
		"wsum computes out[i] = Σ_{j<n} p[j]·v[j*stride+i] for i < hd (n ≥ 1).")
	out := Load(Param("out"), GP64())
	v := Load(Param("v"), GP64())
	hd := Load(Param("hd"), GP64())
	stride := bytesOf("stride")

	// chunk handles W vectors of columns, unrolling the rows by U (U accumulator sets).
	chunk := func(W, U int, loop bool) {
		top, skip := lb.next("chunk"), lb.next("chunk_done")
		Label(top)
		CMPQ(hd, U8(8*W))
		JL(LabelRef(skip))
		acc := make([][]VecVirtual, U)
		for u := range acc {
			acc[u] = ymms(W)
			zero(acc[u]...)
		}
		vp := GP64()
		MOVQ(v, vp)
		pp := Load(Param("p"), GP64())
		cnt := Load(Param("n"), GP64())
		rows, rowsDone := lb.next("rows"), lb.next("rows_done")
		Label(rows)
		CMPQ(cnt, U8(U))
		JL(LabelRef(rowsDone))
		for u := 0; u < U; u++ {
			pv := YMM()
			VBROADCASTSS(Mem{Base: pp, Disp: 4 * u}, pv)
			for m := 0; m < W; m++ {
				VFMADD231PS(Mem{Base: vp, Disp: 32 * m}, pv, acc[u][m])
			}
			ADDQ(stride, vp)
		}
		ADDQ(U8(4*U), pp)
		SUBQ(U8(U), cnt)
		JMP(LabelRef(rows))
		Label(rowsDone)
		if U > 1 {
			one, oneDone := lb.next("row"), lb.next("row_done")
			Label(one)
			TESTQ(cnt, cnt)
			JZ(LabelRef(oneDone))
			pv := YMM()
			VBROADCASTSS(Mem{Base: pp}, pv)
			for m := 0; m < W; m++ {
				VFMADD231PS(Mem{Base: vp, Disp: 32 * m}, pv, acc[0][m])
			}
			ADDQ(stride, vp)
			ADDQ(U8(4), pp)
			DECQ(cnt)
			JMP(LabelRef(one))
			Label(oneDone)
			for u := 1; u < U; u++ {
				for m := 0; m < W; m++ {
					VADDPS(acc[u][m], acc[0][m], acc[0][m])
				}
			}
		}
		for m := 0; m < W; m++ {
			VMOVUPS(acc[0][m], Mem{Base: out, Disp: 32 * m})
		}
		ADDQ(U32(32*W), out)
		ADDQ(U32(32*W), v)
		SUBQ(U8(8*W), hd)
		if loop {
			JMP(LabelRef(top))
		}
		Label(skip)
	}
	chunk(8, 1, true)
	chunk(4, 2, false)
	chunk(1, 4, true)

	done := lb.next("done")
	TESTQ(hd, hd)
	JZ(LabelRef(done))
	m, acc := YMM(), YMM()
	loadMask(hd, m)
	zero(acc)
	pp := Load(Param("p"), GP64())
	cnt := Load(Param("n"), GP64())
	rows := lb.next("rows")
	Label(rows)
	pv, vv := YMM(), YMM()
	VBROADCASTSS(Mem{Base: pp}, pv)
	VMASKMOVPS(Mem{Base: v}, m, vv)
	VFMADD231PS(vv, pv, acc)
	ADDQ(stride, v)
	ADDQ(U8(4), pp)
	DECQ(cnt)
	JNZ(LabelRef(rows))
	VMASKMOVPS(acc, m, Mem{Base: out})
	Label(done)
	VZEROUPPER()
	RET()
}
