//go:build !purego

// NEON kernels for arm64. Go declarations and contracts: stubs_arm64.go. The pure-Go
// semantics they reproduce: kernels/reference.go. Every routine is a leaf with no frame;
// R16, R17 (linker veneers), R18 (platform), R27 (assembler temporary), R28 (g) and R29
// (frame pointer) are left alone.

#include "textflag.h"

// Go 1.26's arm64 assembler has no mnemonics for the vector floating-point arithmetic
// below (it has VFMLA and VFMLS, and integer VADD, VSHL, VEOR), so these macros emit the
// A64 encodings. Arguments are register numbers in Go's operand order — sources first,
// destination last — so FSUB4S(m, n, d) is Vd = Vn - Vm, like Go's SUB.

// FADD Vd.4S, Vn.4S, Vm.4S
#define FADD4S(m, n, d) WORD $(0x4E20D400 | ((m)<<16) | ((n)<<5) | (d))
// FSUB Vd.4S, Vn.4S, Vm.4S
#define FSUB4S(m, n, d) WORD $(0x4EA0D400 | ((m)<<16) | ((n)<<5) | (d))
// FMUL Vd.4S, Vn.4S, Vm.4S
#define FMUL4S(m, n, d) WORD $(0x6E20DC00 | ((m)<<16) | ((n)<<5) | (d))
// FDIV Vd.4S, Vn.4S, Vm.4S
#define FDIV4S(m, n, d) WORD $(0x6E20FC00 | ((m)<<16) | ((n)<<5) | (d))
// FMAX Vd.4S, Vn.4S, Vm.4S (NaN if either operand is NaN)
#define FMAX4S(m, n, d) WORD $(0x4E20F400 | ((m)<<16) | ((n)<<5) | (d))
// FMIN Vd.4S, Vn.4S, Vm.4S (NaN if either operand is NaN)
#define FMIN4S(m, n, d) WORD $(0x4EA0F400 | ((m)<<16) | ((n)<<5) | (d))
// FADDP Vd.4S, Vn.4S, Vm.4S: Vd = {n0+n1, n2+n3, m0+m1, m2+m3}
#define FADDP4S(m, n, d) WORD $(0x6E20D400 | ((m)<<16) | ((n)<<5) | (d))
// FADDP Sd, Vn.2S: Sd = n0+n1 (the rest of Vd is zeroed)
#define FADDP2S(n, d) WORD $(0x7E30D800 | ((n)<<5) | (d))
// FMAXV Sd, Vn.4S (NaN if any lane is NaN)
#define FMAXV4S(n, d) WORD $(0x6E30F800 | ((n)<<5) | (d))
// FCVTNS Vd.4S, Vn.4S: to int32, rounding to nearest (ties to even)
#define FCVTNS4S(n, d) WORD $(0x4E21A800 | ((n)<<5) | (d))
// SCVTF Vd.4S, Vn.4S: from int32
#define SCVTF4S(n, d) WORD $(0x4E21D800 | ((n)<<5) | (d))

// Horizontal sum of the four lanes of Vv into Sv (the other lanes of Vv are zeroed).
#define HSUM(v) \
	FADDP4S(v, v, v); \
	FADDP2S(v, v)

// exp, four lanes (Cephes expf): clamp x to [-88, 88.8], n = round(x·log2e) ∈ [-127, 128],
// r = x - n·C1 - n·C2 with C1 + C2 = ln 2, e^r ≈ 1 + r + r²·P(r), times 2^n built in the
// exponent field. Relative error about 2 ulp. At the ends of the range 2^n saturates
// exactly: n = -127 gives the bits of +0 and n = 128 those of +Inf, so exp(x) is 0 below
// about -87.7 (the reference gives subnormals down to -103.9) and +Inf above about 88.4
// (the reference: above 88.72). NaN propagates (FMIN/FMAX keep it; FCVTNS makes n = 0).
// Input V0 (clobbered), output V6, scratch V1-V5; constants from EXP_CONSTS.
#define EXP_CONSTS \
	MOVW $0x7f, R4; \
	VDUP R4, V18.S4; /* 127, the exponent bias */ \
	MOVW $0x3f800000, R4; \
	VDUP R4, V19.S4; /* 1.0 */ \
	MOVW $0x42b1999a, R4; \
	VDUP R4, V21.S4; /* hi = 88.8 */ \
	MOVW $0xc2b00000, R4; \
	VDUP R4, V22.S4; /* lo = -88.0 */ \
	MOVW $0x3fb8aa3b, R4; \
	VDUP R4, V23.S4; /* log2 e */ \
	MOVW $0x3f318000, R4; \
	VDUP R4, V24.S4; /* C1 = 0.693359375 */ \
	MOVW $0xb95e8083, R4; \
	VDUP R4, V25.S4; /* C2 = -2.12194440e-4 */ \
	MOVW $0x39506967, R4; \
	VDUP R4, V26.S4; /* p0 = 1.9875691500e-4 */ \
	MOVW $0x3ab743ce, R4; \
	VDUP R4, V27.S4; /* p1 = 1.3981999507e-3 */ \
	MOVW $0x3c088908, R4; \
	VDUP R4, V28.S4; /* p2 = 8.3334519073e-3 */ \
	MOVW $0x3d2aa9c1, R4; \
	VDUP R4, V29.S4; /* p3 = 4.1665795894e-2 */ \
	MOVW $0x3e2aaaaa, R4; \
	VDUP R4, V30.S4; /* p4 = 1.6666665459e-1 */ \
	MOVW $0x3f000000, R4; \
	VDUP R4, V31.S4 /* p5 = 0.5 */

#define EXP \
	FMIN4S(21, 0, 0); \
	FMAX4S(22, 0, 0); \
	FMUL4S(23, 0, 1); \
	FCVTNS4S(1, 2); \
	SCVTF4S(2, 1); \
	VFMLS V24.S4, V1.S4, V0.S4; \
	VFMLS V25.S4, V1.S4, V0.S4; \
	VMOV V27.B16, V3.B16; \
	VFMLA V26.S4, V0.S4, V3.S4; \
	VMOV V28.B16, V4.B16; \
	VFMLA V3.S4, V0.S4, V4.S4; \
	VMOV V29.B16, V3.B16; \
	VFMLA V4.S4, V0.S4, V3.S4; \
	VMOV V30.B16, V4.B16; \
	VFMLA V3.S4, V0.S4, V4.S4; \
	VMOV V31.B16, V3.B16; \
	VFMLA V4.S4, V0.S4, V3.S4; \
	FMUL4S(0, 0, 5); \
	FADD4S(19, 0, 6); \
	VFMLA V5.S4, V3.S4, V6.S4; \
	VADD V18.S4, V2.S4, V2.S4; \
	VSHL $23, V2.S4, V2.S4; \
	FMUL4S(2, 6, 6)

#define ZERO(v) VEOR v.B16, v.B16, v.B16

// func dotAsm(a, b []float32) float32
TEXT ·dotAsm(SB), NOSPLIT, $0-52
	MOVD a_base+0(FP), R0
	MOVD a_len+8(FP), R2
	MOVD b_base+24(FP), R1
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	ZERO(V20)
	ZERO(V21)
	ZERO(V22)
	ZERO(V23)
	LSR  $5, R2, R3
	CBZ  R3, vec4

loop32: // 8 independent accumulators hide the FMA latency
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R1), [V4.S4, V5.S4, V6.S4, V7.S4]
	VLD1.P 64(R0), [V8.S4, V9.S4, V10.S4, V11.S4]
	VLD1.P 64(R1), [V12.S4, V13.S4, V14.S4, V15.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	VFMLA  V1.S4, V5.S4, V17.S4
	VFMLA  V2.S4, V6.S4, V18.S4
	VFMLA  V3.S4, V7.S4, V19.S4
	VFMLA  V8.S4, V12.S4, V20.S4
	VFMLA  V9.S4, V13.S4, V21.S4
	VFMLA  V10.S4, V14.S4, V22.S4
	VFMLA  V11.S4, V15.S4, V23.S4
	SUBS   $1, R3, R3
	BNE    loop32

vec4:
	LSR $2, R2, R3
	AND $7, R3, R3
	CBZ R3, reduce

loop4:
	VLD1.P 16(R0), [V0.S4]
	VLD1.P 16(R1), [V4.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	SUBS   $1, R3, R3
	BNE    loop4

reduce:
	FADD4S(17, 16, 16)
	FADD4S(19, 18, 18)
	FADD4S(21, 20, 20)
	FADD4S(23, 22, 22)
	FADD4S(18, 16, 16)
	FADD4S(22, 20, 20)
	FADD4S(20, 16, 16)
	HSUM(16)
	ANDS $3, R2, R3
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FMOVS.P 4(R1), F1
	FMADDS  F0, F16, F1, F16
	SUBS    $1, R3, R3
	BNE     tail

done:
	FMOVS F16, ret+48(FP)
	RET

// func sumAsm(x []float32) float32
TEXT ·sumAsm(SB), NOSPLIT, $0-28
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	LSR  $4, R2, R3
	CBZ  R3, vec4

loop16:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	FADD4S(0, 16, 16)
	FADD4S(1, 17, 17)
	FADD4S(2, 18, 18)
	FADD4S(3, 19, 19)
	SUBS   $1, R3, R3
	BNE    loop16

vec4:
	LSR $2, R2, R3
	AND $3, R3, R3
	CBZ R3, reduce

loop4:
	VLD1.P 16(R0), [V0.S4]
	FADD4S(0, 16, 16)
	SUBS   $1, R3, R3
	BNE    loop4

reduce:
	FADD4S(17, 16, 16)
	FADD4S(19, 18, 18)
	FADD4S(18, 16, 16)
	HSUM(16)
	ANDS $3, R2, R3
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FADDS   F0, F16, F16
	SUBS    $1, R3, R3
	BNE     tail

done:
	FMOVS F16, ret+24(FP)
	RET

// func sumSqDevAsm(x []float32, m float32) float32
TEXT ·sumSqDevAsm(SB), NOSPLIT, $0-36
	MOVD  x_base+0(FP), R0
	MOVD  x_len+8(FP), R2
	FMOVS m+24(FP), F20
	VDUP  V20.S[0], V20.S4
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	LSR   $4, R2, R3
	CBZ   R3, vec4

loop16:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	FSUB4S(20, 0, 0)
	FSUB4S(20, 1, 1)
	FSUB4S(20, 2, 2)
	FSUB4S(20, 3, 3)
	VFMLA  V0.S4, V0.S4, V16.S4
	VFMLA  V1.S4, V1.S4, V17.S4
	VFMLA  V2.S4, V2.S4, V18.S4
	VFMLA  V3.S4, V3.S4, V19.S4
	SUBS   $1, R3, R3
	BNE    loop16

vec4:
	LSR $2, R2, R3
	AND $3, R3, R3
	CBZ R3, reduce

loop4:
	VLD1.P 16(R0), [V0.S4]
	FSUB4S(20, 0, 0)
	VFMLA  V0.S4, V0.S4, V16.S4
	SUBS   $1, R3, R3
	BNE    loop4

reduce:
	FADD4S(17, 16, 16)
	FADD4S(19, 18, 18)
	FADD4S(18, 16, 16)
	HSUM(16)
	ANDS $3, R2, R3
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FSUBS   F20, F0, F0
	FMADDS  F0, F16, F0, F16
	SUBS    $1, R3, R3
	BNE     tail

done:
	FMOVS F16, ret+32(FP)
	RET

// func maxAsm(x []float32) float32
TEXT ·maxAsm(SB), NOSPLIT, $0-28
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	MOVW $0xff800000, R4 // -Inf
	VDUP R4, V16.S4
	VMOV V16.B16, V17.B16
	VMOV V16.B16, V18.B16
	VMOV V16.B16, V19.B16
	LSR  $4, R2, R3
	CBZ  R3, vec4

loop16:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	FMAX4S(0, 16, 16)
	FMAX4S(1, 17, 17)
	FMAX4S(2, 18, 18)
	FMAX4S(3, 19, 19)
	SUBS   $1, R3, R3
	BNE    loop16

vec4:
	LSR $2, R2, R3
	AND $3, R3, R3
	CBZ R3, reduce

loop4:
	VLD1.P 16(R0), [V0.S4]
	FMAX4S(0, 16, 16)
	SUBS   $1, R3, R3
	BNE    loop4

reduce:
	FMAX4S(17, 16, 16)
	FMAX4S(19, 18, 18)
	FMAX4S(18, 16, 16)
	FMAXV4S(16, 16)
	ANDS $3, R2, R3
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FMAXS   F0, F16, F16
	SUBS    $1, R3, R3
	BNE     tail

done:
	FMOVS F16, ret+24(FP)
	RET

// func expSubAsm(x []float32, m float32) float32
TEXT ·expSubAsm(SB), NOSPLIT, $0-36
	MOVD  x_base+0(FP), R0
	MOVD  x_len+8(FP), R1
	FMOVS m+24(FP), F20
	VDUP  V20.S[0], V20.S4
	EXP_CONSTS
	ZERO(V16)
	LSR   $2, R1, R2
	CBZ   R2, reduce

loop4:
	VLD1   (R0), [V0.S4]
	FSUB4S(20, 0, 0)
	EXP
	VST1.P [V6.S4], 16(R0)
	FADD4S(6, 16, 16)
	SUBS   $1, R2, R2
	BNE    loop4

reduce:
	HSUM(16)
	ANDS $3, R1, R2
	BEQ  done

tail: // one element in lane 0 (a scalar load zeroes lanes 1-3); only lane 0 is kept
	FMOVS   (R0), F0
	FSUB4S(20, 0, 0)
	EXP
	FMOVS.P F6, 4(R0)
	FADDS   F6, F16, F16
	SUBS    $1, R2, R2
	BNE     tail

done:
	FMOVS F16, ret+32(FP)
	RET

// func siluAsm(x []float32)
TEXT ·siluAsm(SB), NOSPLIT, $0-24
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R1
	EXP_CONSTS
	MOVW $0x80000000, R4
	VDUP R4, V17.S4      // sign bit
	LSR  $2, R1, R2
	CBZ  R2, tail4

loop4:
	VLD1   (R0), [V7.S4]
	VEOR   V17.B16, V7.B16, V0.B16 // -x
	EXP
	FADD4S(19, 6, 6)               // 1 + e^-x
	FDIV4S(6, 7, 7)                // x / (1 + e^-x)
	VST1.P [V7.S4], 16(R0)
	SUBS   $1, R2, R2
	BNE    loop4

tail4:
	ANDS $3, R1, R2
	BEQ  done

tail:
	FMOVS   (R0), F7
	VEOR    V17.B16, V7.B16, V0.B16
	EXP
	FADD4S(19, 6, 6)
	FDIV4S(6, 7, 7)
	FMOVS.P F7, 4(R0)
	SUBS    $1, R2, R2
	BNE     tail

done:
	RET

// func swigluAsm(gate, up []float32)
TEXT ·swigluAsm(SB), NOSPLIT, $0-48
	MOVD gate_base+0(FP), R0
	MOVD gate_len+8(FP), R1
	MOVD up_base+24(FP), R3
	EXP_CONSTS
	MOVW $0x80000000, R4
	VDUP R4, V17.S4
	LSR  $2, R1, R2
	CBZ  R2, tail4

loop4:
	VLD1   (R0), [V7.S4]
	VLD1.P 16(R3), [V8.S4]
	VEOR   V17.B16, V7.B16, V0.B16
	EXP
	FADD4S(19, 6, 6)
	FDIV4S(6, 7, 7)                // silu(gate)
	FMUL4S(8, 7, 7)                // · up
	VST1.P [V7.S4], 16(R0)
	SUBS   $1, R2, R2
	BNE    loop4

tail4:
	ANDS $3, R1, R2
	BEQ  done

tail:
	FMOVS   (R0), F7
	FMOVS.P 4(R3), F8
	VEOR    V17.B16, V7.B16, V0.B16
	EXP
	FADD4S(19, 6, 6)
	FDIV4S(6, 7, 7)
	FMUL4S(8, 7, 7)
	FMOVS.P F7, 4(R0)
	SUBS    $1, R2, R2
	BNE     tail

done:
	RET

// func geluAsm(x []float32)
// 0.5·x·(1 + tanh u) = x / (1 + e^{-2u}), -2u = x·(k1 + k2·x²) with k1 = -2√(2/π),
// k2 = -2√(2/π)·0.044715.
TEXT ·geluAsm(SB), NOSPLIT, $0-24
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R1
	EXP_CONSTS
	MOVW $0xbfcc422a, R4
	VDUP R4, V20.S4      // k1 = -1.5957692
	MOVW $0xbd922279, R4
	VDUP R4, V17.S4      // k2 = -0.071354814
	LSR  $2, R1, R2
	CBZ  R2, tail4

loop4:
	VLD1   (R0), [V7.S4]
	FMUL4S(7, 7, 8)                // x²
	VMOV   V20.B16, V0.B16
	VFMLA  V17.S4, V8.S4, V0.S4    // k1 + k2·x²
	FMUL4S(7, 0, 0)                // -2u
	EXP
	FADD4S(19, 6, 6)
	FDIV4S(6, 7, 7)
	VST1.P [V7.S4], 16(R0)
	SUBS   $1, R2, R2
	BNE    loop4

tail4:
	ANDS $3, R1, R2
	BEQ  done

tail:
	FMOVS   (R0), F7
	FMUL4S(7, 7, 8)
	VMOV    V20.B16, V0.B16
	VFMLA   V17.S4, V8.S4, V0.S4
	FMUL4S(7, 0, 0)
	EXP
	FADD4S(19, 6, 6)
	FDIV4S(6, 7, 7)
	FMOVS.P F7, 4(R0)
	SUBS    $1, R2, R2
	BNE     tail

done:
	RET

// func addAsm(dst, x []float32)
TEXT ·addAsm(SB), NOSPLIT, $0-48
	MOVD dst_base+0(FP), R0
	MOVD dst_len+8(FP), R2
	MOVD x_base+24(FP), R1
	MOVD R0, R3             // R0 loads, R3 stores
	LSR  $4, R2, R4
	CBZ  R4, vec4

loop16:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R1), [V4.S4, V5.S4, V6.S4, V7.S4]
	FADD4S(4, 0, 0)
	FADD4S(5, 1, 1)
	FADD4S(6, 2, 2)
	FADD4S(7, 3, 3)
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R3)
	SUBS   $1, R4, R4
	BNE    loop16

vec4:
	LSR $2, R2, R4
	AND $3, R4, R4
	CBZ R4, tail4

loop4:
	VLD1.P 16(R0), [V0.S4]
	VLD1.P 16(R1), [V4.S4]
	FADD4S(4, 0, 0)
	VST1.P [V0.S4], 16(R3)
	SUBS   $1, R4, R4
	BNE    loop4

tail4:
	ANDS $3, R2, R4
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FMOVS.P 4(R1), F1
	FADDS   F1, F0, F0
	FMOVS.P F0, 4(R3)
	SUBS    $1, R4, R4
	BNE     tail

done:
	RET

// func scaleAsm(x []float32, s float32)
TEXT ·scaleAsm(SB), NOSPLIT, $0-28
	MOVD  x_base+0(FP), R0
	MOVD  x_len+8(FP), R2
	FMOVS s+24(FP), F16
	VDUP  V16.S[0], V16.S4
	MOVD  R0, R3
	LSR   $4, R2, R4
	CBZ   R4, vec4

loop16:
	VLD1.P 64(R0), [V0.S4, V1.S4, V2.S4, V3.S4]
	FMUL4S(16, 0, 0)
	FMUL4S(16, 1, 1)
	FMUL4S(16, 2, 2)
	FMUL4S(16, 3, 3)
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R3)
	SUBS   $1, R4, R4
	BNE    loop16

vec4:
	LSR $2, R2, R4
	AND $3, R4, R4
	CBZ R4, tail4

loop4:
	VLD1.P 16(R0), [V0.S4]
	FMUL4S(16, 0, 0)
	VST1.P [V0.S4], 16(R3)
	SUBS   $1, R4, R4
	BNE    loop4

tail4:
	ANDS $3, R2, R4
	BEQ  done

tail:
	FMOVS.P 4(R0), F0
	FMULS   F16, F0, F0
	FMOVS.P F0, 4(R3)
	SUBS    $1, R4, R4
	BNE     tail

done:
	RET

// func mulScaleAsm(dst, x, w []float32, s float32)
TEXT ·mulScaleAsm(SB), NOSPLIT, $0-76
	MOVD  dst_base+0(FP), R0
	MOVD  dst_len+8(FP), R3
	MOVD  x_base+24(FP), R1
	MOVD  w_base+48(FP), R2
	FMOVS s+72(FP), F16
	VDUP  V16.S[0], V16.S4
	LSR   $4, R3, R4
	CBZ   R4, vec4

loop16:
	VLD1.P 64(R1), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R2), [V4.S4, V5.S4, V6.S4, V7.S4]
	FMUL4S(16, 0, 0)
	FMUL4S(16, 1, 1)
	FMUL4S(16, 2, 2)
	FMUL4S(16, 3, 3)
	FMUL4S(4, 0, 0)
	FMUL4S(5, 1, 1)
	FMUL4S(6, 2, 2)
	FMUL4S(7, 3, 3)
	VST1.P [V0.S4, V1.S4, V2.S4, V3.S4], 64(R0)
	SUBS   $1, R4, R4
	BNE    loop16

vec4:
	LSR $2, R3, R4
	AND $3, R4, R4
	CBZ R4, tail4

loop4:
	VLD1.P 16(R1), [V0.S4]
	VLD1.P 16(R2), [V4.S4]
	FMUL4S(16, 0, 0)
	FMUL4S(4, 0, 0)
	VST1.P [V0.S4], 16(R0)
	SUBS   $1, R4, R4
	BNE    loop4

tail4:
	ANDS $3, R3, R4
	BEQ  done

tail:
	FMOVS.P 4(R1), F0
	FMOVS.P 4(R2), F4
	FMULS   F16, F0, F0
	FMULS   F4, F0, F0
	FMOVS.P F0, 4(R0)
	SUBS    $1, R4, R4
	BNE     tail

done:
	RET

// func layerNormAsm(dst, x, w, b []float32, mean, inv float32)
TEXT ·layerNormAsm(SB), NOSPLIT, $0-104
	MOVD  dst_base+0(FP), R0
	MOVD  dst_len+8(FP), R4
	MOVD  x_base+24(FP), R1
	MOVD  w_base+48(FP), R2
	MOVD  b_base+72(FP), R3
	MOVD  b_len+80(FP), R5
	FMOVS mean+96(FP), F16
	VDUP  V16.S[0], V16.S4
	FMOVS inv+100(FP), F17
	VDUP  V17.S[0], V17.S4
	LSR   $2, R4, R6
	AND   $3, R4, R7
	CBZ   R5, nobias
	CBZ   R6, tail4

loop4:
	VLD1.P 16(R1), [V0.S4]
	VLD1.P 16(R2), [V1.S4]
	VLD1.P 16(R3), [V2.S4]
	FSUB4S(16, 0, 0)
	FMUL4S(17, 0, 0)
	FMUL4S(1, 0, 0)
	FADD4S(2, 0, 0)
	VST1.P [V0.S4], 16(R0)
	SUBS   $1, R6, R6
	BNE    loop4

tail4:
	CBZ R7, done

tail:
	FMOVS.P 4(R1), F0
	FMOVS.P 4(R2), F1
	FMOVS.P 4(R3), F2
	FSUBS   F16, F0, F0
	FMULS   F17, F0, F0
	FMULS   F1, F0, F0
	FADDS   F2, F0, F0
	FMOVS.P F0, 4(R0)
	SUBS    $1, R7, R7
	BNE     tail
	RET

nobias:
	CBZ R6, nbtail4

nbloop4:
	VLD1.P 16(R1), [V0.S4]
	VLD1.P 16(R2), [V1.S4]
	FSUB4S(16, 0, 0)
	FMUL4S(17, 0, 0)
	FMUL4S(1, 0, 0)
	VST1.P [V0.S4], 16(R0)
	SUBS   $1, R6, R6
	BNE    nbloop4

nbtail4:
	CBZ R7, done

nbtail:
	FMOVS.P 4(R1), F0
	FMOVS.P 4(R2), F1
	FSUBS   F16, F0, F0
	FMULS   F17, F0, F0
	FMULS   F1, F0, F0
	FMOVS.P F0, 4(R0)
	SUBS    $1, R7, R7
	BNE     nbtail

done:
	RET

// func ropeAsm(x, cos, sin []float32)
TEXT ·ropeAsm(SB), NOSPLIT, $0-72
	MOVD x_base+0(FP), R0
	MOVD cos_base+24(FP), R1
	MOVD cos_len+32(FP), R3
	MOVD sin_base+48(FP), R2
	LSR  $2, R3, R4
	CBZ  R4, tail4

loop4: // four pairs: VLD2 splits them into a (V0) and b (V1)
	VLD2   (R0), [V0.S4, V1.S4]
	VLD1.P 16(R1), [V2.S4]
	VLD1.P 16(R2), [V3.S4]
	FMUL4S(2, 0, 4)                  // a·cos
	VFMLS  V3.S4, V1.S4, V4.S4       // - b·sin
	FMUL4S(3, 0, 5)                  // a·sin
	VFMLA  V2.S4, V1.S4, V5.S4       // + b·cos
	VST2.P [V4.S4, V5.S4], 32(R0)
	SUBS   $1, R4, R4
	BNE    loop4

tail4:
	ANDS $3, R3, R4
	BEQ  done

tail:
	FMOVS   (R0), F0
	FMOVS   4(R0), F1
	FMOVS.P 4(R1), F2
	FMOVS.P 4(R2), F3
	FMULS   F2, F0, F4
	FMSUBS  F3, F4, F1, F4 // a·cos - b·sin
	FMULS   F3, F0, F5
	FMADDS  F2, F5, F1, F5 // a·sin + b·cos
	FMOVS   F4, (R0)
	FMOVS   F5, 4(R0)
	ADD     $8, R0, R0
	SUBS    $1, R4, R4
	BNE     tail

done:
	RET

// func attnScoresAsm(s, q, k []float32, stride int, scale float32)
TEXT ·attnScoresAsm(SB), NOSPLIT, $0-84
	MOVD  s_base+0(FP), R0
	MOVD  s_len+8(FP), R1
	MOVD  q_base+24(FP), R2
	MOVD  q_len+32(FP), R3
	MOVD  k_base+48(FP), R4
	MOVD  stride+72(FP), R5
	LSL   $2, R5, R5           // row stride in bytes
	FMOVS scale+80(FP), F30
	LSR   $4, R3, R6           // blocks of 16
	LSR   $2, R3, R7
	AND   $3, R7, R7           // then blocks of 4
	AND   $3, R3, R8           // then single elements
	CBZ   R1, done

row:
	MOVD R2, R9
	MOVD R4, R10
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	CBZ  R6, vec4
	MOVD R6, R11

loop16:
	VLD1.P 64(R9), [V0.S4, V1.S4, V2.S4, V3.S4]
	VLD1.P 64(R10), [V4.S4, V5.S4, V6.S4, V7.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	VFMLA  V1.S4, V5.S4, V17.S4
	VFMLA  V2.S4, V6.S4, V18.S4
	VFMLA  V3.S4, V7.S4, V19.S4
	SUBS   $1, R11, R11
	BNE    loop16

vec4:
	CBZ  R7, reduce
	MOVD R7, R11

loop4:
	VLD1.P 16(R9), [V0.S4]
	VLD1.P 16(R10), [V4.S4]
	VFMLA  V0.S4, V4.S4, V16.S4
	SUBS   $1, R11, R11
	BNE    loop4

reduce:
	FADD4S(17, 16, 16)
	FADD4S(19, 18, 18)
	FADD4S(18, 16, 16)
	HSUM(16)
	CBZ  R8, store
	MOVD R8, R11

tail:
	FMOVS.P 4(R9), F0
	FMOVS.P 4(R10), F1
	FMADDS  F0, F16, F1, F16
	SUBS    $1, R11, R11
	BNE     tail

store:
	FMULS   F30, F16, F16
	FMOVS.P F16, 4(R0)
	ADD     R5, R4, R4
	SUBS    $1, R1, R1
	BNE     row

done:
	RET

// func attnAccumAsm(out, p, v []float32, stride int)
// Rows of v are taken four at a time so that out is loaded and stored once per four.
TEXT ·attnAccumAsm(SB), NOSPLIT, $0-80
	MOVD out_base+0(FP), R0
	MOVD out_len+8(FP), R1
	MOVD p_base+24(FP), R2
	MOVD p_len+32(FP), R3
	MOVD v_base+48(FP), R4
	MOVD stride+72(FP), R5
	LSL  $2, R5, R5            // row stride in bytes
	LSR  $2, R1, R6            // out: blocks of 4
	AND  $3, R1, R7            // then single elements
	LSR  $2, R3, R8            // rows: groups of 4
	AND  $3, R3, R9            // then single rows
	CBZ  R8, single

group:
	VLD1R.P 4(R2), [V0.S4]
	VLD1R.P 4(R2), [V1.S4]
	VLD1R.P 4(R2), [V2.S4]
	VLD1R.P 4(R2), [V3.S4]
	MOVD    R4, R10
	ADD     R5, R10, R11
	ADD     R5, R11, R12
	ADD     R5, R12, R13
	MOVD    R0, R14
	CBZ     R6, gtail4
	MOVD    R6, R15

gloop4:
	VLD1   (R14), [V4.S4]
	VLD1.P 16(R10), [V5.S4]
	VLD1.P 16(R11), [V6.S4]
	VLD1.P 16(R12), [V7.S4]
	VLD1.P 16(R13), [V8.S4]
	VFMLA  V5.S4, V0.S4, V4.S4
	VFMLA  V6.S4, V1.S4, V4.S4
	VFMLA  V7.S4, V2.S4, V4.S4
	VFMLA  V8.S4, V3.S4, V4.S4
	VST1.P [V4.S4], 16(R14)
	SUBS   $1, R15, R15
	BNE    gloop4

gtail4:
	CBZ  R7, gnext
	MOVD R7, R15

gtail:
	FMOVS   (R14), F4
	FMOVS.P 4(R10), F5
	FMOVS.P 4(R11), F6
	FMOVS.P 4(R12), F7
	FMOVS.P 4(R13), F8
	FMADDS  F5, F4, F0, F4
	FMADDS  F6, F4, F1, F4
	FMADDS  F7, F4, F2, F4
	FMADDS  F8, F4, F3, F4
	FMOVS.P F4, 4(R14)
	SUBS    $1, R15, R15
	BNE     gtail

gnext:
	ADD  R5<<2, R4, R4
	SUBS $1, R8, R8
	BNE  group

single:
	CBZ R9, done

srow:
	VLD1R.P 4(R2), [V0.S4]
	MOVD    R4, R10
	MOVD    R0, R14
	CBZ     R6, stail4
	MOVD    R6, R15

sloop4:
	VLD1   (R14), [V4.S4]
	VLD1.P 16(R10), [V5.S4]
	VFMLA  V5.S4, V0.S4, V4.S4
	VST1.P [V4.S4], 16(R14)
	SUBS   $1, R15, R15
	BNE    sloop4

stail4:
	CBZ  R7, snext
	MOVD R7, R15

stail:
	FMOVS   (R14), F4
	FMOVS.P 4(R10), F5
	FMADDS  F5, F4, F0, F4
	FMOVS.P F4, 4(R14)
	SUBS    $1, R15, R15
	BNE     stail

snext:
	ADD  R5, R4, R4
	SUBS $1, R9, R9
	BNE  srow

done:
	RET

// The matrix kernels give every output dst[t*ld + r] the same summation order whatever
// row range, tile or batch size it is computed in, so results are bit-identical for every
// thread count and for decode and prefill: two accumulators A and B per output hold the
// lanes k mod 8 < 4 and ≥ 4, k advancing 8 at a time; then, when n&4, one more step of
// 4 into A; then A+B, and the lanes are summed as (l0+l1)+(l2+l3) by FADDP. The caller
// adds the last n%4 products.

// func rowDotAsm(x, w []float32) float32
// One output (the rows left over after groups of 4), over len(x)&^3 elements.
TEXT ·rowDotAsm(SB), NOSPLIT, $0-52
	MOVD x_base+0(FP), R0
	MOVD x_len+8(FP), R2
	MOVD w_base+24(FP), R1
	ZERO(V16)
	ZERO(V17)
	LSR  $3, R2, R3
	CBZ  R3, k4

k8:
	VLD1.P 32(R0), [V0.S4, V1.S4]
	VLD1.P 32(R1), [V2.S4, V3.S4]
	VFMLA  V2.S4, V0.S4, V16.S4
	VFMLA  V3.S4, V1.S4, V17.S4
	SUBS   $1, R3, R3
	BNE    k8

k4:
	TBZ   $2, R2, reduce
	VLD1  (R0), [V0.S4]
	VLD1  (R1), [V2.S4]
	VFMLA V2.S4, V0.S4, V16.S4

reduce:
	FADD4S(17, 16, 16)
	HSUM(16)
	FMOVS F16, ret+48(FP)
	RET

// func matmulF32(dst []float32, ld int, x []float32, T int, w []float32, n, rows int)
//
// For each group of 4 weight rows (kept hot in L1) and every token: tiles of 2 tokens ×
// 4 rows with 16 accumulators (token u, row r: A = V(16+8u+2r), B = V(17+8u+2r)), then,
// for an odd T, one tile of 1 token × 4 rows with 8. A tile's four row sums for one
// token end up in one vector and are stored with one VST1 at dst[t*ld + r .. r+3].
//
// R0 dst (current row group)  R1 ld in bytes     R2 x            R3 T
// R4 w (current row group)    R5 n in bytes      R6 k/8 count    R23 n&4
// R7 row groups left          R8 x (current)     R9 dst (current) R10 tokens left
// R11 R12 x row pointers      R15 R19 R20 R21 w row pointers      R22 k counter
TEXT ·matmulF32(SB), NOSPLIT, $0-104
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD x_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD n+88(FP), R5
	LSR  $3, R5, R6
	AND  $4, R5, R23
	LSL  $2, R5, R5
	MOVD rows+96(FP), R7
	LSR  $2, R7, R7
	CBZ  R7, done
	CBZ  R3, done

group:
	MOVD R2, R8
	MOVD R0, R9
	MOVD R3, R10
	CMP  $2, R10
	BLT  single

tile2:
	MOVD R8, R11
	ADD  R5, R11, R12
	MOVD R4, R15
	ADD  R5, R15, R19
	ADD  R5, R19, R20
	ADD  R5, R20, R21
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	ZERO(V20)
	ZERO(V21)
	ZERO(V22)
	ZERO(V23)
	ZERO(V24)
	ZERO(V25)
	ZERO(V26)
	ZERO(V27)
	ZERO(V28)
	ZERO(V29)
	ZERO(V30)
	ZERO(V31)
	CBZ  R6, t2k4
	MOVD R6, R22

t2k8:
	VLD1.P 32(R15), [V0.S4, V1.S4]   // w rows 0-3: V0:V1, V2:V3, V4:V5, V6:V7
	VLD1.P 32(R19), [V2.S4, V3.S4]
	VLD1.P 32(R20), [V4.S4, V5.S4]
	VLD1.P 32(R21), [V6.S4, V7.S4]
	VLD1.P 32(R11), [V8.S4, V9.S4]   // x tokens 0-1: V8:V9, V10:V11
	VLD1.P 32(R12), [V10.S4, V11.S4]
	VFMLA  V0.S4, V8.S4, V16.S4
	VFMLA  V1.S4, V9.S4, V17.S4
	VFMLA  V2.S4, V8.S4, V18.S4
	VFMLA  V3.S4, V9.S4, V19.S4
	VFMLA  V4.S4, V8.S4, V20.S4
	VFMLA  V5.S4, V9.S4, V21.S4
	VFMLA  V6.S4, V8.S4, V22.S4
	VFMLA  V7.S4, V9.S4, V23.S4
	VFMLA  V0.S4, V10.S4, V24.S4
	VFMLA  V1.S4, V11.S4, V25.S4
	VFMLA  V2.S4, V10.S4, V26.S4
	VFMLA  V3.S4, V11.S4, V27.S4
	VFMLA  V4.S4, V10.S4, V28.S4
	VFMLA  V5.S4, V11.S4, V29.S4
	VFMLA  V6.S4, V10.S4, V30.S4
	VFMLA  V7.S4, V11.S4, V31.S4
	SUBS   $1, R22, R22
	BNE    t2k8

t2k4:
	CBZ   R23, t2store
	VLD1  (R15), [V0.S4]
	VLD1  (R19), [V2.S4]
	VLD1  (R20), [V4.S4]
	VLD1  (R21), [V6.S4]
	VLD1  (R11), [V8.S4]
	VLD1  (R12), [V10.S4]
	VFMLA V0.S4, V8.S4, V16.S4
	VFMLA V2.S4, V8.S4, V18.S4
	VFMLA V4.S4, V8.S4, V20.S4
	VFMLA V6.S4, V8.S4, V22.S4
	VFMLA V0.S4, V10.S4, V24.S4
	VFMLA V2.S4, V10.S4, V26.S4
	VFMLA V4.S4, V10.S4, V28.S4
	VFMLA V6.S4, V10.S4, V30.S4

t2store:
	FADD4S(17, 16, 16) // token 0: A+B per row
	FADD4S(19, 18, 18)
	FADD4S(21, 20, 20)
	FADD4S(23, 22, 22)
	FADDP4S(18, 16, 0)
	FADDP4S(22, 20, 1)
	FADDP4S(1, 0, 0)   // {r0, r1, r2, r3}
	FADD4S(25, 24, 24) // token 1
	FADD4S(27, 26, 26)
	FADD4S(29, 28, 28)
	FADD4S(31, 30, 30)
	FADDP4S(26, 24, 1)
	FADDP4S(30, 28, 2)
	FADDP4S(2, 1, 1)
	VST1 [V0.S4], (R9)
	ADD  R1, R9, R9
	VST1 [V1.S4], (R9)
	ADD  R1, R9, R9
	ADD  R5<<1, R8, R8
	SUB  $2, R10, R10
	CMP  $2, R10
	BGE  tile2

single:
	CBZ R10, next

	// The last token of an odd T: 1 token × 4 rows, the same accumulators as token 0 above.
	MOVD R8, R11
	MOVD R4, R15
	ADD  R5, R15, R19
	ADD  R5, R19, R20
	ADD  R5, R20, R21
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	ZERO(V20)
	ZERO(V21)
	ZERO(V22)
	ZERO(V23)
	CBZ  R6, t1k4
	MOVD R6, R22

t1k8:
	VLD1.P 32(R15), [V0.S4, V1.S4]
	VLD1.P 32(R19), [V2.S4, V3.S4]
	VLD1.P 32(R20), [V4.S4, V5.S4]
	VLD1.P 32(R21), [V6.S4, V7.S4]
	VLD1.P 32(R11), [V8.S4, V9.S4]
	VFMLA  V0.S4, V8.S4, V16.S4
	VFMLA  V1.S4, V9.S4, V17.S4
	VFMLA  V2.S4, V8.S4, V18.S4
	VFMLA  V3.S4, V9.S4, V19.S4
	VFMLA  V4.S4, V8.S4, V20.S4
	VFMLA  V5.S4, V9.S4, V21.S4
	VFMLA  V6.S4, V8.S4, V22.S4
	VFMLA  V7.S4, V9.S4, V23.S4
	SUBS   $1, R22, R22
	BNE    t1k8

t1k4:
	CBZ   R23, t1store
	VLD1  (R15), [V0.S4]
	VLD1  (R19), [V2.S4]
	VLD1  (R20), [V4.S4]
	VLD1  (R21), [V6.S4]
	VLD1  (R11), [V8.S4]
	VFMLA V0.S4, V8.S4, V16.S4
	VFMLA V2.S4, V8.S4, V18.S4
	VFMLA V4.S4, V8.S4, V20.S4
	VFMLA V6.S4, V8.S4, V22.S4

t1store:
	FADD4S(17, 16, 16)
	FADD4S(19, 18, 18)
	FADD4S(21, 20, 20)
	FADD4S(23, 22, 22)
	FADDP4S(18, 16, 0)
	FADDP4S(22, 20, 1)
	FADDP4S(1, 0, 0)
	VST1 [V0.S4], (R9)

next:
	ADD  R5<<2, R4, R4
	ADD  $16, R0, R0
	SUBS $1, R7, R7
	BNE  group

done:
	RET

// ---------------------------------------------------------------------------------------
// Weights that are not float32.
//
// More encodings the assembler has no mnemonic for, in the same operand order as above
// (register numbers, sources first, destination last):

// SDOT Vd.4S, Vn.16B, Vm.16B (ARMv8.2 dot product): each lane of Vd += the sum of the
// four products of the signed bytes in the same lane of Vn and Vm
#define SDOT4S(m, n, d) WORD $(0x4E809400 | ((m)<<16) | ((n)<<5) | (d))
// SMULL Vd.8H, Vn.8B, Vm.8B: signed bytes 0-7 multiplied to halfwords
#define SMULL8H(m, n, d) WORD $(0x0E20C000 | ((m)<<16) | ((n)<<5) | (d))
// SMULL2 Vd.8H, Vn.16B, Vm.16B: the same for bytes 8-15
#define SMULL28H(m, n, d) WORD $(0x4E20C000 | ((m)<<16) | ((n)<<5) | (d))
// SMLAL Vd.8H, Vn.8B, Vm.8B: Vd += products of signed bytes 0-7
#define SMLAL8H(m, n, d) WORD $(0x0E208000 | ((m)<<16) | ((n)<<5) | (d))
// SMLAL2 Vd.8H, Vn.16B, Vm.16B: Vd += products of signed bytes 8-15
#define SMLAL28H(m, n, d) WORD $(0x4E208000 | ((m)<<16) | ((n)<<5) | (d))
// SADDLP Vd.4S, Vn.8H: Vd = sums of adjacent pairs of signed halfwords
#define SADDLP4S(n, d) WORD $(0x4E602800 | ((n)<<5) | (d))
// SADALP Vd.4S, Vn.8H: Vd += sums of adjacent pairs of signed halfwords
#define SADALP4S(n, d) WORD $(0x4E606800 | ((n)<<5) | (d))
// ADDP Vd.4S, Vn.4S, Vm.4S (integer): Vd = {n0+n1, n2+n3, m0+m1, m2+m3}
#define ADDP4S(m, n, d) WORD $(0x4EA0BC00 | ((m)<<16) | ((n)<<5) | (d))
// MOVI Vd.2D, #0
#define MOVI0(d) WORD $(0x6F00E400 | (d))
// FCVTL Vd.4S, Vn.4H: halves 0-3 of Vn to float32 (exact)
#define FCVTL4S(n, d) WORD $(0x0E217800 | ((n)<<5) | (d))
// FCVTL2 Vd.4S, Vn.8H: halves 4-7 of Vn to float32 (exact)
#define FCVTL24S(n, d) WORD $(0x4E217800 | ((n)<<5) | (d))
// SHLL Vd.4S, Vn.4H, #16: halfwords 0-3 of Vn to the high halves of words (bfloat16 to
// float32, exact)
#define SHLL4S(n, d) WORD $(0x2E613800 | ((n)<<5) | (d))
// SHLL2 Vd.4S, Vn.8H, #16: the same for halfwords 4-7
#define SHLL24S(n, d) WORD $(0x6E613800 | ((n)<<5) | (d))
// FMUL Vd.4S, Vn.4S, Vm.S[i] (by element)
#define FMULE4S(m, i, n, d) WORD $(0x4F809000 | (((i)&1)<<21) | (((i)>>1)<<11) | ((m)<<16) | ((n)<<5) | (d))

// ---------------------------------------------------------------------------------------
// q8_0 and q4_0 weights times q8_0 activations (MatMulQ8).
//
// func matQ8Sdot(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
// and matQ8Mull, matQ4Sdot, matQ4Mull with the same arguments: for t < T and r < rows
// (a multiple of 4),
//
//	dst[t*ld + r] = Σ_{b < nb} float32(Σ_j wq_j·xq_j) · (dw_b · dx_b)
//
// with weight row r at w[r*wstride:] (nb blocks of 34 bytes for q8_0, 18 for q4_0) and
// token t's activations at xq[t*nb*34:]. The block's integer dot product is exact (SDOT,
// or SMULL/SMLAL then SADDLP/SADALP where two products share a halfword, which holds for
// |xq| ≤ 127), so every output is the same sequence of float32 operations as in the
// reference — convert, multiply the scales, multiply, add, in block order — whatever
// tile it is computed in.
//
// Rows are taken four at a time, one per lane: for each group of 4 rows (kept hot in L1)
// the tokens go in tiles of 4, then one at a time; in a tile each block of the 4 rows is
// loaded (and, for q4_0, unpacked) once and applied to every token of the tile.
//
// R0 dst (row group)   R1 ld in bytes    R2 xq              R3 T
// R4 w (row group)     R5 wstride        R6 nb              R7 row groups left
// R8 xq (tile)         R9 dst (tile)     R10 tokens left    R11 blocks left
// R12 R13 R14 R22 activation pointers   R15 R19 R20 R21 weight row pointers
// R23 bytes per token  R24 bytes per 4 tokens               R25 R26 scratch
//
// V0-V7 the 4 weight rows' block (row r in V(2r), V(2r+1), elements 0-15 and 16-31)
// V8 dw per row        V9 dx per token  V16-V19 sums of tokens 0-3, lanes = rows
// V10 V11 / V24 V25 one token's block, V12-V15 / V20-V23 its 4 rows' integer sums and
// V26 / V27 its scales (two sets, alternating between tokens)
// V28 0x0f bytes, V29 8 bytes (q4_0)   V30 V31 scratch (no-SDOT products)

// The f16 values at (a), (b), (c), (d), each pointer advanced by 2, to the four float32
// lanes of Vv (f is Fv).
#define GATHER4(a, b, c, d, f, v) \
	MOVHU.P 2(a), R25; \
	MOVHU.P 2(b), R26; \
	ORR     R26<<16, R25, R25; \
	MOVHU.P 2(c), R26; \
	ORR     R26<<32, R25, R25; \
	MOVHU.P 2(d), R26; \
	ORR     R26<<48, R25, R25; \
	FMOVD   R25, f; \
	FCVTL4S(v, v)

// One q8_0 block of each of the 4 rows: scales to V8, values to V0-V7.
#define WLOADQ8 \
	GATHER4(R15, R19, R20, R21, F8, 8); \
	VLD1.P 32(R15), [V0.B16, V1.B16]; \
	VLD1.P 32(R19), [V2.B16, V3.B16]; \
	VLD1.P 32(R20), [V4.B16, V5.B16]; \
	VLD1.P 32(R21), [V6.B16, V7.B16]

// One q4_0 block of each of the 4 rows, unpacked to signed bytes: low nibbles − 8 are
// elements 0-15, high nibbles − 8 elements 16-31.
#define WLOADQ4 \
	GATHER4(R15, R19, R20, R21, F8, 8); \
	VLD1.P 16(R15), [V1.B16]; \
	VLD1.P 16(R19), [V3.B16]; \
	VLD1.P 16(R20), [V5.B16]; \
	VLD1.P 16(R21), [V7.B16]; \
	VAND   V28.B16, V1.B16, V0.B16; \
	VAND   V28.B16, V3.B16, V2.B16; \
	VAND   V28.B16, V5.B16, V4.B16; \
	VAND   V28.B16, V7.B16, V6.B16; \
	VUSHR  $4, V1.B16, V1.B16; \
	VUSHR  $4, V3.B16, V3.B16; \
	VUSHR  $4, V5.B16, V5.B16; \
	VUSHR  $4, V7.B16, V7.B16; \
	VSUB   V29.B16, V0.B16, V0.B16; \
	VSUB   V29.B16, V1.B16, V1.B16; \
	VSUB   V29.B16, V2.B16, V2.B16; \
	VSUB   V29.B16, V3.B16, V3.B16; \
	VSUB   V29.B16, V4.B16, V4.B16; \
	VSUB   V29.B16, V5.B16, V5.B16; \
	VSUB   V29.B16, V6.B16, V6.B16; \
	VSUB   V29.B16, V7.B16, V7.B16

// The integer dot products of the 4 rows' block (V0-V7) with one token's block (Vxa,
// Vxb), as 4 lanes of partial sums per row in Vi0-Vi3.
#define DOTSDOT(xa, xb, i0, i1, i2, i3) \
	MOVI0(i0); \
	MOVI0(i1); \
	MOVI0(i2); \
	MOVI0(i3); \
	SDOT4S(xa, 0, i0); \
	SDOT4S(xa, 2, i1); \
	SDOT4S(xa, 4, i2); \
	SDOT4S(xa, 6, i3); \
	SDOT4S(xb, 1, i0); \
	SDOT4S(xb, 3, i1); \
	SDOT4S(xb, 5, i2); \
	SDOT4S(xb, 7, i3)

// The same without SDOT: products of element j and j+16 added in a halfword (|w·x| ≤
// 128·127, two fit), pairs of halfwords added into words.
#define ROWMULL(wa, wb, xa, xb, i) \
	SMULL8H(xa, wa, 30); \
	SMULL28H(xa, wa, 31); \
	SMLAL8H(xb, wb, 30); \
	SMLAL28H(xb, wb, 31); \
	SADDLP4S(30, i); \
	SADALP4S(31, i)

#define DOTMULL(xa, xb, i0, i1, i2, i3) \
	ROWMULL(0, 1, xa, xb, i0); \
	ROWMULL(2, 3, xa, xb, i1); \
	ROWMULL(4, 5, xa, xb, i2); \
	ROWMULL(6, 7, xa, xb, i3)

// acc += float32(the rows' sums) · (dw · dx[lane]), lane by lane: the rows' partial sums
// are added up (exactly) into one vector of 4 rows first.
#define QFINISH(i0, i1, i2, i3, lane, s, acc) \
	ADDP4S(i1, i0, i0); \
	ADDP4S(i3, i2, i2); \
	ADDP4S(i2, i0, i0); \
	SCVTF4S(i0, i0); \
	FMULE4S(9, lane, 8, s); \
	FMUL4S(s, i0, i0); \
	FADD4S(i0, acc, acc)

// One token's block at (xp) (past its scale; xp advances to the next block) into
// V(acc), with register set A or B.
#define QTOKA(DOT, xp, lane, acc) \
	VLD1.P 32(xp), [V10.B16, V11.B16]; \
	DOT(10, 11, 12, 13, 14, 15); \
	QFINISH(12, 13, 14, 15, lane, 26, acc)

#define QTOKB(DOT, xp, lane, acc) \
	VLD1.P 32(xp), [V24.B16, V25.B16]; \
	DOT(24, 25, 20, 21, 22, 23); \
	QFINISH(20, 21, 22, 23, lane, 27, acc)

// The body of the four functions, after R0-R7 are loaded as above.
#define MATQ(WLOAD, DOT) \
	LSR   $2, R7, R7; \
	MOVD  $34, R23; \
	MUL   R6, R23, R23; \
	LSL   $2, R23, R24; \
	MOVW  $0x0f, R25; \
	VDUP  R25, V28.B16; \
	MOVW  $8, R25; \
	VDUP  R25, V29.B16; \
	CBZ   R7, done; \
	CBZ   R3, done; \
group: \
	MOVD  R2, R8; \
	MOVD  R0, R9; \
	MOVD  R3, R10; \
	CMP   $4, R10; \
	BLT   single; \
tile4: \
	MOVD  R8, R12; \
	ADD   R23, R12, R13; \
	ADD   R23, R13, R14; \
	ADD   R23, R14, R22; \
	MOVD  R4, R15; \
	ADD   R5, R15, R19; \
	ADD   R5, R19, R20; \
	ADD   R5, R20, R21; \
	ZERO(V16); \
	ZERO(V17); \
	ZERO(V18); \
	ZERO(V19); \
	CBZ   R6, t4store; \
	MOVD  R6, R11; \
t4blk: \
	WLOAD; \
	GATHER4(R12, R13, R14, R22, F9, 9); \
	QTOKA(DOT, R12, 0, 16); \
	QTOKB(DOT, R13, 1, 17); \
	QTOKA(DOT, R14, 2, 18); \
	QTOKB(DOT, R22, 3, 19); \
	SUBS  $1, R11, R11; \
	BNE   t4blk; \
t4store: \
	VST1  [V16.S4], (R9); \
	ADD   R1, R9, R9; \
	VST1  [V17.S4], (R9); \
	ADD   R1, R9, R9; \
	VST1  [V18.S4], (R9); \
	ADD   R1, R9, R9; \
	VST1  [V19.S4], (R9); \
	ADD   R1, R9, R9; \
	ADD   R24, R8, R8; \
	SUB   $4, R10, R10; \
	CMP   $4, R10; \
	BGE   tile4; \
single: \
	CBZ   R10, next; \
tile1: \
	MOVD  R8, R12; \
	MOVD  R4, R15; \
	ADD   R5, R15, R19; \
	ADD   R5, R19, R20; \
	ADD   R5, R20, R21; \
	ZERO(V16); \
	CBZ   R6, t1store; \
	MOVD  R6, R11; \
t1blk: \
	WLOAD; \
	MOVHU.P 2(R12), R25; \
	FMOVS R25, F9; \
	FCVTL4S(9, 9); \
	QTOKA(DOT, R12, 0, 16); \
	SUBS  $1, R11, R11; \
	BNE   t1blk; \
t1store: \
	VST1  [V16.S4], (R9); \
	ADD   R1, R9, R9; \
	ADD   R23, R8, R8; \
	SUBS  $1, R10, R10; \
	BNE   tile1; \
next: \
	ADD   R5<<2, R4, R4; \
	ADD   $16, R0, R0; \
	SUBS  $1, R7, R7; \
	BNE   group; \
done: \
	RET

// func matQ8Sdot(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
TEXT ·matQ8Sdot(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD xq_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD wstride+88(FP), R5
	MOVD nb+96(FP), R6
	MOVD rows+104(FP), R7
	MATQ(WLOADQ8, DOTSDOT)

// func matQ8Mull(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
TEXT ·matQ8Mull(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD xq_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD wstride+88(FP), R5
	MOVD nb+96(FP), R6
	MOVD rows+104(FP), R7
	MATQ(WLOADQ8, DOTMULL)

// func matQ4Sdot(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
TEXT ·matQ4Sdot(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD xq_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD wstride+88(FP), R5
	MOVD nb+96(FP), R6
	MOVD rows+104(FP), R7
	MATQ(WLOADQ4, DOTSDOT)

// func matQ4Mull(dst []float32, ld int, xq []byte, T int, w []byte, wstride, nb, rows int)
TEXT ·matQ4Mull(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD xq_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD wstride+88(FP), R5
	MOVD nb+96(FP), R6
	MOVD rows+104(FP), R7
	MATQ(WLOADQ4, DOTMULL)

// ---------------------------------------------------------------------------------------
// f16 and bf16 weights times float32 activations (MatMul).
//
// func matmulF16(dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int)
// and matmulBF16 with the same arguments: matmulF32 with the weights converted to float32
// (exactly: FCVTL, or SHLL #16 for bfloat16) as they are loaded, so every output has
// matmulF32's summation order and equals it on the converted matrix bit for bit. Weight
// row r is at w[r*wstride:]; rows must be a multiple of 4; the caller adds the last n%4
// products. Registers as in matmulF32, plus R24 wstride and V12-V15 the raw halves.

// The body of both, after R0-R5, R7 and R24 are loaded (R5 = n, in elements).
#define MATHALF(CVTLO, CVTHI) \
	LSR   $3, R5, R6; \
	AND   $4, R5, R23; \
	LSL   $2, R5, R5; \
	LSR   $2, R7, R7; \
	CBZ   R7, done; \
	CBZ   R3, done; \
group: \
	MOVD  R2, R8; \
	MOVD  R0, R9; \
	MOVD  R3, R10; \
	CMP   $2, R10; \
	BLT   single; \
tile2: \
	MOVD  R8, R11; \
	ADD   R5, R11, R12; \
	MOVD  R4, R15; \
	ADD   R24, R15, R19; \
	ADD   R24, R19, R20; \
	ADD   R24, R20, R21; \
	ZERO(V16); \
	ZERO(V17); \
	ZERO(V18); \
	ZERO(V19); \
	ZERO(V20); \
	ZERO(V21); \
	ZERO(V22); \
	ZERO(V23); \
	ZERO(V24); \
	ZERO(V25); \
	ZERO(V26); \
	ZERO(V27); \
	ZERO(V28); \
	ZERO(V29); \
	ZERO(V30); \
	ZERO(V31); \
	CBZ   R6, t2k4; \
	MOVD  R6, R22; \
t2k8: \
	VLD1.P 16(R15), [V12.B16]; \
	VLD1.P 16(R19), [V13.B16]; \
	VLD1.P 16(R20), [V14.B16]; \
	VLD1.P 16(R21), [V15.B16]; \
	VLD1.P 32(R11), [V8.S4, V9.S4]; \
	VLD1.P 32(R12), [V10.S4, V11.S4]; \
	CVTLO(12, 0); \
	CVTHI(12, 1); \
	CVTLO(13, 2); \
	CVTHI(13, 3); \
	CVTLO(14, 4); \
	CVTHI(14, 5); \
	CVTLO(15, 6); \
	CVTHI(15, 7); \
	VFMLA  V0.S4, V8.S4, V16.S4; \
	VFMLA  V1.S4, V9.S4, V17.S4; \
	VFMLA  V2.S4, V8.S4, V18.S4; \
	VFMLA  V3.S4, V9.S4, V19.S4; \
	VFMLA  V4.S4, V8.S4, V20.S4; \
	VFMLA  V5.S4, V9.S4, V21.S4; \
	VFMLA  V6.S4, V8.S4, V22.S4; \
	VFMLA  V7.S4, V9.S4, V23.S4; \
	VFMLA  V0.S4, V10.S4, V24.S4; \
	VFMLA  V1.S4, V11.S4, V25.S4; \
	VFMLA  V2.S4, V10.S4, V26.S4; \
	VFMLA  V3.S4, V11.S4, V27.S4; \
	VFMLA  V4.S4, V10.S4, V28.S4; \
	VFMLA  V5.S4, V11.S4, V29.S4; \
	VFMLA  V6.S4, V10.S4, V30.S4; \
	VFMLA  V7.S4, V11.S4, V31.S4; \
	SUBS   $1, R22, R22; \
	BNE    t2k8; \
t2k4: \
	CBZ   R23, t2store; \
	FMOVD (R15), F12; \
	FMOVD (R19), F13; \
	FMOVD (R20), F14; \
	FMOVD (R21), F15; \
	VLD1  (R11), [V8.S4]; \
	VLD1  (R12), [V10.S4]; \
	CVTLO(12, 0); \
	CVTLO(13, 2); \
	CVTLO(14, 4); \
	CVTLO(15, 6); \
	VFMLA V0.S4, V8.S4, V16.S4; \
	VFMLA V2.S4, V8.S4, V18.S4; \
	VFMLA V4.S4, V8.S4, V20.S4; \
	VFMLA V6.S4, V8.S4, V22.S4; \
	VFMLA V0.S4, V10.S4, V24.S4; \
	VFMLA V2.S4, V10.S4, V26.S4; \
	VFMLA V4.S4, V10.S4, V28.S4; \
	VFMLA V6.S4, V10.S4, V30.S4; \
t2store: \
	FADD4S(17, 16, 16); \
	FADD4S(19, 18, 18); \
	FADD4S(21, 20, 20); \
	FADD4S(23, 22, 22); \
	FADDP4S(18, 16, 0); \
	FADDP4S(22, 20, 1); \
	FADDP4S(1, 0, 0); \
	FADD4S(25, 24, 24); \
	FADD4S(27, 26, 26); \
	FADD4S(29, 28, 28); \
	FADD4S(31, 30, 30); \
	FADDP4S(26, 24, 1); \
	FADDP4S(30, 28, 2); \
	FADDP4S(2, 1, 1); \
	VST1  [V0.S4], (R9); \
	ADD   R1, R9, R9; \
	VST1  [V1.S4], (R9); \
	ADD   R1, R9, R9; \
	ADD   R5<<1, R8, R8; \
	SUB   $2, R10, R10; \
	CMP   $2, R10; \
	BGE   tile2; \
single: \
	CBZ   R10, next; \
	MOVD  R8, R11; \
	MOVD  R4, R15; \
	ADD   R24, R15, R19; \
	ADD   R24, R19, R20; \
	ADD   R24, R20, R21; \
	ZERO(V16); \
	ZERO(V17); \
	ZERO(V18); \
	ZERO(V19); \
	ZERO(V20); \
	ZERO(V21); \
	ZERO(V22); \
	ZERO(V23); \
	CBZ   R6, t1k4; \
	MOVD  R6, R22; \
t1k8: \
	VLD1.P 16(R15), [V12.B16]; \
	VLD1.P 16(R19), [V13.B16]; \
	VLD1.P 16(R20), [V14.B16]; \
	VLD1.P 16(R21), [V15.B16]; \
	VLD1.P 32(R11), [V8.S4, V9.S4]; \
	CVTLO(12, 0); \
	CVTHI(12, 1); \
	CVTLO(13, 2); \
	CVTHI(13, 3); \
	CVTLO(14, 4); \
	CVTHI(14, 5); \
	CVTLO(15, 6); \
	CVTHI(15, 7); \
	VFMLA  V0.S4, V8.S4, V16.S4; \
	VFMLA  V1.S4, V9.S4, V17.S4; \
	VFMLA  V2.S4, V8.S4, V18.S4; \
	VFMLA  V3.S4, V9.S4, V19.S4; \
	VFMLA  V4.S4, V8.S4, V20.S4; \
	VFMLA  V5.S4, V9.S4, V21.S4; \
	VFMLA  V6.S4, V8.S4, V22.S4; \
	VFMLA  V7.S4, V9.S4, V23.S4; \
	SUBS   $1, R22, R22; \
	BNE    t1k8; \
t1k4: \
	CBZ   R23, t1store; \
	FMOVD (R15), F12; \
	FMOVD (R19), F13; \
	FMOVD (R20), F14; \
	FMOVD (R21), F15; \
	VLD1  (R11), [V8.S4]; \
	CVTLO(12, 0); \
	CVTLO(13, 2); \
	CVTLO(14, 4); \
	CVTLO(15, 6); \
	VFMLA V0.S4, V8.S4, V16.S4; \
	VFMLA V2.S4, V8.S4, V18.S4; \
	VFMLA V4.S4, V8.S4, V20.S4; \
	VFMLA V6.S4, V8.S4, V22.S4; \
t1store: \
	FADD4S(17, 16, 16); \
	FADD4S(19, 18, 18); \
	FADD4S(21, 20, 20); \
	FADD4S(23, 22, 22); \
	FADDP4S(18, 16, 0); \
	FADDP4S(22, 20, 1); \
	FADDP4S(1, 0, 0); \
	VST1  [V0.S4], (R9); \
next: \
	ADD   R24<<2, R4, R4; \
	ADD   $16, R0, R0; \
	SUBS  $1, R7, R7; \
	BNE   group; \
done: \
	RET

// func matmulF16(dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int)
TEXT ·matmulF16(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD x_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD n+88(FP), R5
	MOVD wstride+96(FP), R24
	MOVD rows+104(FP), R7
	MATHALF(FCVTL4S, FCVTL24S)

// func matmulBF16(dst []float32, ld int, x []float32, T int, w []byte, n, wstride, rows int)
TEXT ·matmulBF16(SB), NOSPLIT, $0-112
	MOVD dst_base+0(FP), R0
	MOVD ld+24(FP), R1
	LSL  $2, R1, R1
	MOVD x_base+32(FP), R2
	MOVD T+56(FP), R3
	MOVD w_base+64(FP), R4
	MOVD n+88(FP), R5
	MOVD wstride+96(FP), R24
	MOVD rows+104(FP), R7
	MATHALF(SHLL4S, SHLL24S)

// ---------------------------------------------------------------------------------------
// Quantizing activations (QuantizeQ8).

// FABS Vd.4S, Vn.4S
#define FABS4S(n, d) WORD $(0x4EA0F800 | ((n)<<5) | (d))
// FCVTAS Vd.4S, Vn.4S: to int32, rounding to nearest with ties away from zero
#define FCVTAS4S(n, d) WORD $(0x4E21C800 | ((n)<<5) | (d))

// func quantQ8(dst *byte, x *float32, nb int) int
//
// What kernels.QuantizeRowQ8_0 (ggml's quantize_row_q8_0_ref) computes, byte for byte,
// for every block whose elements and 1/d are finite: amax = max |x| (with no NaN, a
// maximum whatever the order), d = amax/127 and id = 1/d (0 when d is 0) in float32, d
// stored by FCVT to binary16 (round to nearest even, the default FPCR), and
// q = round(x·id) with ties away from zero (FCVTAS on the float32 product), narrowed to
// bytes with UZP1 (|q| ≤ 127). It stops before the first block whose amax is not finite
// (FMAX keeps a NaN, so the bits of amax are ≥ those of +Inf exactly when the block holds
// an infinity or a NaN) or whose 1/d is +Inf (d so small it is subnormal), writing
// nothing of it, and returns how many blocks it wrote: the caller quantizes that block
// with the reference.
//
// R0 dst  R1 x  R2 nb  R3 blocks done  R4 R6 R7 scratch  R5 the bits of +Inf
// F30 127  F31 1  V16-V23 the block, then its quants  V0-V7 |x|  F1 d  V2 id
TEXT ·quantQ8(SB), NOSPLIT, $0-32
	MOVD  dst+0(FP), R0
	MOVD  x+8(FP), R1
	MOVD  nb+16(FP), R2
	MOVD  $0, R3
	MOVW  $0x42fe0000, R4 // 127
	FMOVS R4, F30
	FMOVS $1.0, F31
	MOVW  $0x7f800000, R5 // +Inf
	CMP   R2, R3
	BGE   done

block:
	VLD1.P 64(R1), [V16.S4, V17.S4, V18.S4, V19.S4]
	VLD1.P 64(R1), [V20.S4, V21.S4, V22.S4, V23.S4]
	FABS4S(16, 0)
	FABS4S(17, 1)
	FABS4S(18, 2)
	FABS4S(19, 3)
	FABS4S(20, 4)
	FABS4S(21, 5)
	FABS4S(22, 6)
	FABS4S(23, 7)
	FMAX4S(1, 0, 0)
	FMAX4S(3, 2, 2)
	FMAX4S(5, 4, 4)
	FMAX4S(7, 6, 6)
	FMAX4S(2, 0, 0)
	FMAX4S(6, 4, 4)
	FMAX4S(4, 0, 0)
	FMAXV4S(0, 0) // amax, NaN if any element is NaN
	FMOVS F0, R6
	CMPW  R5, R6
	BHS   done    // an infinity or a NaN: the reference's
	FDIVS F30, F0, F1 // d = amax/127
	VEOR  V2.B16, V2.B16, V2.B16 // id = 0 when d is 0
	FMOVS F1, R6
	CBZW  R6, scale
	FDIVS F1, F31, F2 // id = 1/d
	FMOVS F2, R6
	CMPW  R5, R6
	BHS   done        // 1/d overflowed: the reference's

scale:
	FCVTSH F1, F1 // d to binary16, the rest of V1 zeroed
	FMOVS  F1, R6
	MOVH   R6, (R0)
	FMULE4S(2, 0, 16, 16)
	FMULE4S(2, 0, 17, 17)
	FMULE4S(2, 0, 18, 18)
	FMULE4S(2, 0, 19, 19)
	FMULE4S(2, 0, 20, 20)
	FMULE4S(2, 0, 21, 21)
	FMULE4S(2, 0, 22, 22)
	FMULE4S(2, 0, 23, 23)
	FCVTAS4S(16, 16)
	FCVTAS4S(17, 17)
	FCVTAS4S(18, 18)
	FCVTAS4S(19, 19)
	FCVTAS4S(20, 20)
	FCVTAS4S(21, 21)
	FCVTAS4S(22, 22)
	FCVTAS4S(23, 23)
	VUZP1 V17.H8, V16.H8, V16.H8 // elements 0-7 as halfwords
	VUZP1 V19.H8, V18.H8, V18.H8 // 8-15
	VUZP1 V21.H8, V20.H8, V20.H8 // 16-23
	VUZP1 V23.H8, V22.H8, V22.H8 // 24-31
	VUZP1 V18.B16, V16.B16, V16.B16 // 0-15 as bytes
	VUZP1 V22.B16, V20.B16, V17.B16 // 16-31
	ADD   $2, R0, R7
	VST1  [V16.B16, V17.B16], (R7)
	ADD   $34, R0, R0
	ADD   $1, R3, R3
	CMP   R2, R3
	BLT   block

done:
	MOVD R3, ret+24(FP)
	RET
