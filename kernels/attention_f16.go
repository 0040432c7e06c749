package kernels

import "github.com/lmrun/lmrun/dtype"

// AttentionF16 implements Kernels: Attention over a cache stored as IEEE half floats,
// each key and value converted to float32 as it is read. The products and sums are those
// of Attention on the converted cache, in the same order.
func (Reference) AttentionF16(out, q []float32, k, v []uint16, n, stride int, scale float32, scores []float32) {
	hd := len(q)
	s := scores[:n]
	for j := range s {
		kj := k[j*stride : j*stride+hd]
		var s0, s1, s2, s3 float32
		i := 0
		for ; i+4 <= hd; i += 4 {
			s0 += q[i] * dtype.F16ToF32(kj[i])
			s1 += q[i+1] * dtype.F16ToF32(kj[i+1])
			s2 += q[i+2] * dtype.F16ToF32(kj[i+2])
			s3 += q[i+3] * dtype.F16ToF32(kj[i+3])
		}
		for ; i < hd; i++ {
			s0 += q[i] * dtype.F16ToF32(kj[i])
		}
		s[j] = ((s0 + s1) + (s2 + s3)) * scale
	}
	softmax(s)
	clear(out[:hd])
	for j, p := range s {
		vj := v[j*stride : j*stride+hd]
		for i := range out[:hd] {
			out[i] += p * dtype.F16ToF32(vj[i])
		}
	}
}
