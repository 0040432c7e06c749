package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// vec is a vector slot of a streaming loop: element i (a byte offset register) plus a
// displacement; for the tail, m (YMM: the address of the tail mask) or k (ZMM: its
// opmask), both nil when the vector is whole.
type vec struct {
	i    Register
	disp int
	m    *Mem
	k    Register
	w    width
}

// tail reports that the slot is the masked tail.
func (v vec) tail() bool { return v.m != nil || v.k != nil }

// mask loads the YMM tail mask into a new register.
func (v vec) mask() VecVirtual {
	y := YMM()
	VMOVUPS(*v.m, y)
	return y
}

// load loads the slot's vector of the array at p; a masked load zeroes the lanes past
// the end (and, as VMASKMOVPS, an opmask load never touches their memory).
func (v vec) load(p Register) VecVirtual {
	y := v.w.vec()
	a := Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	switch {
	case !v.tail():
		VMOVUPS(a, y)
	case v.w.zmm:
		VMOVUPS_Z(a, v.k, y)
	default:
		VMASKMOVPS(a, v.mask(), y)
	}
	return y
}

// operand returns the slot of the array at p as an instruction operand: memory when the
// vector is whole, else a masked load.
func (v vec) operand(p Register) Op {
	if !v.tail() {
		return Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	}
	return v.load(p)
}

// store writes y to the slot of the array at p; a masked store leaves memory past the
// end untouched.
func (v vec) store(y VecVirtual, p Register) {
	a := Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	switch {
	case !v.tail():
		VMOVUPS(y, a)
	case v.w.zmm:
		VMOVUPS(y, v.k, a)
	default:
		VMASKMOVPS(y, v.mask(), a)
	}
}

// zeroTail clears y's lanes past the end in the tail slot (the masked load's zeros may
// have become something else); nothing for a whole vector.
func (v vec) zeroTail(y VecVirtual) {
	switch {
	case !v.tail():
	case v.w.zmm:
		VMOVAPS_Z(y, v.k, y)
	default:
		VANDPS(*v.m, y, y)
	}
}

// stream emits a loop over the n (parameter nParam) floats of one or more arrays:
// body runs for unroll whole vectors per iteration, then for single whole vectors, then
// once for the masked tail.
func stream(w width, lb *labels, nParam string, unroll int, body func(v vec)) {
	streamBatch(w, lb, nParam, unroll, func(vs []vec) {
		for _, v := range vs {
			body(v)
		}
	})
}

// streamBatch is stream with body given all the iteration's vectors at once, so that it
// can interleave their instructions (for kernels whose per-vector work is a long chain).
func streamBatch(w width, lb *labels, nParam string, unroll int, body func(vs []vec)) {
	vb := w.bytes()
	kmain := Load(Param(nParam), GP64())
	ANDQ(I32(-w.lanes()), kmain)
	SHLQ(U8(2), kmain)
	i := GP64()
	XORQ(i, i)
	if unroll > 1 {
		ku := GP64()
		MOVQ(kmain, ku)
		ANDQ(I32(-vb*unroll), ku)
		bodyU, checkU := lb.next("bodyu"), lb.next("checku")
		JMP(LabelRef(checkU))
		Label(bodyU)
		vs := make([]vec, unroll)
		for u := range vs {
			vs[u] = vec{i: i, disp: vb * u, w: w}
		}
		body(vs)
		ADDQ(U32(vb*unroll), i)
		Label(checkU)
		CMPQ(i, ku)
		JL(LabelRef(bodyU))
	}
	body1, check1, done := lb.next("body"), lb.next("check"), lb.next("tail_done")
	JMP(LabelRef(check1))
	Label(body1)
	body([]vec{{i: i, w: w}})
	ADDQ(U8(vb), i)
	Label(check1)
	CMPQ(i, kmain)
	JL(LabelRef(body1))

	rem := Load(Param(nParam), GP64())
	ANDQ(U8(w.lanes()-1), rem)
	JZ(LabelRef(done))
	if w.zmm {
		body([]vec{{i: i, k: laneMask(rem), w: w}})
	} else {
		m := maskAddr(rem)
		body([]vec{{i: i, m: &m, w: w}})
	}
	Label(done)
}
