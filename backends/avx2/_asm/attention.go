package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// genAttention emits wsum for width w, the value half of attention: out = Σ_j p[j]·v_j.
// Column chunks of 8 vectors (64 floats in YMM, 128 in ZMM) keep their 8 accumulators
// in registers for the whole pass over the n cached rows, so each v_j element is loaded
// once and out is written once; narrower chunks take two or four rows at a time into
// as many sets of accumulators, so that the FMA chains still overlap.
//
// With half, it emits wsumH instead, over binary16 values (VCVTPH2PS as they are
// loaded; ZMM only: backends/avx2's wsumH is genWsumHalf's).
func genAttention(w width, half bool) {
	es := 4 // bytes per value
	var lb *labels
	if half {
		es = 2
		lb = fn("wsumH", "func(out *float32, v *uint16, stride int, p *float32, n int, hd int)",
			"wsumH computes out[i] = Σ_{j<n} p[j]·v[j*stride+i] for i < hd (n ≥ 1, v binary16, hd a multiple of 8).")
	} else {
		lb = fn("wsum", "func(out *float32, v *float32, stride int, p *float32, n int, hd int)",
			"wsum computes out[i] = Σ_{j<n} p[j]·v[j*stride+i] for i < hd (n ≥ 1).")
	}
	out := Load(Param("out"), GP64())
	v := Load(Param("v"), GP64())
	hd := Load(Param("hd"), GP64())
	var stride Register
	if half {
		stride = Load(Param("stride"), GP64())
		SHLQ(U8(1), stride)
	} else {
		stride = bytesOf("stride")
	}
	// val returns vector m of the values at vp as an FMA operand.
	val := func(vp Register, m int) Op {
		a := Mem{Base: vp, Disp: es * w.lanes() * m}
		if !half {
			return a
		}
		t := w.vec()
		VCVTPH2PS(a, t)
		return t
	}

	// chunk handles W vectors of columns, unrolling the rows by U (U accumulator sets).
	chunk := func(W, U int, loop bool) {
		top, skip := lb.next("chunk"), lb.next("chunk_done")
		Label(top)
		CMPQ(hd, U8(w.lanes()*W))
		JL(LabelRef(skip))
		acc := make([][]VecVirtual, U)
		for u := range acc {
			acc[u] = w.vecs(W)
			w.zero(acc[u]...)
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
			pv := w.bcastMem(Mem{Base: pp, Disp: 4 * u})
			for m := 0; m < W; m++ {
				VFMADD231PS(val(vp, m), pv, acc[u][m])
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
			pv := w.bcastMem(Mem{Base: pp})
			for m := 0; m < W; m++ {
				VFMADD231PS(val(vp, m), pv, acc[0][m])
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
			VMOVUPS(acc[0][m], Mem{Base: out, Disp: w.bytes() * m})
		}
		ADDQ(U32(w.bytes()*W), out)
		ADDQ(U32(es*w.lanes()*W), v)
		SUBQ(U8(w.lanes()*W), hd)
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
	if half {
		// hd is a multiple of 8: the 8 columns left are one YMM step, in bounds.
		acc := YMM()
		VPXORD(acc, acc, acc)
		pp := Load(Param("p"), GP64())
		cnt := Load(Param("n"), GP64())
		rows := lb.next("rows")
		Label(rows)
		pv, vv := YMM(), YMM()
		VBROADCASTSS(Mem{Base: pp}, pv)
		VCVTPH2PS(Mem{Base: v}, vv)
		VFMADD231PS(vv, pv, acc)
		ADDQ(stride, v)
		ADDQ(U8(4), pp)
		DECQ(cnt)
		JNZ(LabelRef(rows))
		VMOVUPS(acc, Mem{Base: out})
		Label(done)
		w.done()
		return
	}
	var m VecVirtual // YMM: the tail mask
	var k Register   // ZMM: its opmask
	if !w.zmm {
		m = YMM()
	}
	acc := w.vec()
	if w.zmm {
		k = laneMask(hd)
	} else {
		loadMask(hd, m)
	}
	w.zero(acc)
	pp := Load(Param("p"), GP64())
	cnt := Load(Param("n"), GP64())
	rows := lb.next("rows")
	Label(rows)
	pv, vv := w.vec(), w.vec()
	VBROADCASTSS(Mem{Base: pp}, pv)
	if w.zmm {
		VMOVUPS_Z(Mem{Base: v}, k, vv)
	} else {
		VMASKMOVPS(Mem{Base: v}, m, vv)
	}
	VFMADD231PS(vv, pv, acc)
	ADDQ(stride, v)
	ADDQ(U8(4), pp)
	DECQ(cnt)
	JNZ(LabelRef(rows))
	if w.zmm {
		VMOVUPS(acc, k, Mem{Base: out})
	} else {
		VMASKMOVPS(acc, m, Mem{Base: out})
	}
	Label(done)
	w.done()
}
