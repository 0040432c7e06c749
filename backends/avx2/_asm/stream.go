package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// vec is a vector slot of a streaming loop: element i (a byte offset register) plus a
// displacement, with m the address of the tail mask (nil when the vector is whole).
type vec struct {
	i    Register
	disp int
	m    *Mem
}

// mask loads the tail mask into a new register.
func (v vec) mask() VecVirtual {
	y := YMM()
	VMOVUPS(*v.m, y)
	return y
}

// load loads the slot's vector of the array at p; a masked load zeroes the lanes past
// the end.
func (v vec) load(p Register) VecVirtual {
	y := YMM()
	a := Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	if v.m == nil {
		VMOVUPS(a, y)
	} else {
		VMASKMOVPS(a, v.mask(), y)
	}
	return y
}

// operand returns the slot of the array at p as an instruction operand: memory when the
// vector is whole, else a masked load.
func (v vec) operand(p Register) Op {
	if v.m == nil {
		return Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	}
	return v.load(p)
}

// store writes y to the slot of the array at p; a masked store leaves memory past the
// end untouched.
func (v vec) store(y VecVirtual, p Register) {
	a := Mem{Base: p, Index: v.i, Scale: 1, Disp: v.disp}
	if v.m == nil {
		VMOVUPS(y, a)
	} else {
		VMASKMOVPS(y, v.mask(), a)
	}
}

// stream emits a loop over the n (parameter nParam) floats of one or more arrays:
// body runs for unroll whole vectors per iteration, then for single whole vectors, then
// once for the masked tail.
func stream(lb *labels, nParam string, unroll int, body func(v vec)) {
	streamBatch(lb, nParam, unroll, func(vs []vec) {
		for _, v := range vs {
			body(v)
		}
	})
}

// streamBatch is stream with body given all the iteration's vectors at once, so that it
// can interleave their instructions (for kernels whose per-vector work is a long chain).
func streamBatch(lb *labels, nParam string, unroll int, body func(vs []vec)) {
	kmain := Load(Param(nParam), GP64())
	ANDQ(I32(-8), kmain)
	SHLQ(U8(2), kmain)
	i := GP64()
	XORQ(i, i)
	if unroll > 1 {
		ku := GP64()
		MOVQ(kmain, ku)
		ANDQ(I32(-32*unroll), ku)
		bodyU, checkU := lb.next("bodyu"), lb.next("checku")
		JMP(LabelRef(checkU))
		Label(bodyU)
		vs := make([]vec, unroll)
		for u := range vs {
			vs[u] = vec{i: i, disp: 32 * u}
		}
		body(vs)
		ADDQ(U32(32*unroll), i)
		Label(checkU)
		CMPQ(i, ku)
		JL(LabelRef(bodyU))
	}
	body1, check1, done := lb.next("body"), lb.next("check"), lb.next("tail_done")
	JMP(LabelRef(check1))
	Label(body1)
	body([]vec{{i: i}})
	ADDQ(U8(32), i)
	Label(check1)
	CMPQ(i, kmain)
	JL(LabelRef(body1))

	rem := Load(Param(nParam), GP64())
	ANDQ(U8(7), rem)
	JZ(LabelRef(done))
	m := maskAddr(rem)
	body([]vec{{i: i, m: &m}})
	Label(done)
}

// bcast broadcasts the float32 parameter name into a new register.
func bcast(name string) VecVirtual {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	y := YMM()
	VBROADCASTSS(b.Addr, y)
	return y
}
