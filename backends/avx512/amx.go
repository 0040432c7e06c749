//go:build amd64 && !purego

package avx512

import (
	"sync"
	"unsafe"

	"github.com/klauspost/cpuid/v2"
	"golang.org/x/sys/unix"
)

// The Linux arch_prctl codes and the XSAVE feature of the AMX tile data.
const (
	archGetXcompPerm  = 0x1022
	archReqXcompPerm  = 0x1023
	xfeatureXtiledata = 18
)

// hasAMX is whether the CPU has AMX_TILE and AMX_INT8 (and the AVX512_VNNI the GEMM's
// other tiles need), as cpuid reports them ($LMRUN_CPU_DISABLE=AMXINT8 clears it).
var hasAMX = cpuid.CPU.Supports(cpuid.AMXTILE, cpuid.AMXINT8, cpuid.AVX512VNNI)

// amxPermitted asks Linux, once per process, for the permission to use the AMX tiles
// (without it the first TILELOADD raises SIGILL) and reports whether the process has it.
var amxPermitted = sync.OnceValue(func() bool {
	if _, _, e := unix.Syscall(unix.SYS_ARCH_PRCTL, archReqXcompPerm, xfeatureXtiledata, 0); e != 0 {
		return false
	}
	var mask uint64
	if _, _, e := unix.Syscall(unix.SYS_ARCH_PRCTL, archGetXcompPerm, uintptr(unsafe.Pointer(&mask)), 0); e != 0 {
		return false
	}
	return mask&(1<<xfeatureXtiledata) != 0
})

// useAMX is whether MatMulQ8 may run the AMX tiles (the CPU has them); tests clear it to
// check the VNNI tiles on the same machine.
var useAMX = hasAMX

// amxBlocks is the most blocks (16 tokens × 16 rows × 32 quants each) one qgemmAMX call
// takes: a call is not preemptible, and its set-up (LDTILECFG, TILERELEASE) costs
// about as much as a few blocks.
const amxBlocks = 2048

// amxFrom is the fewest tokens MatMulQ8 runs the AMX tiles for (16 of them at a time,
// the VPDPBUSD tiles taking the rest), but for T = 16 on packed weights. One thread,
// interleaved (BenchmarkAMX, 2048×768 and 768×2048, GOP/s, VPDPBUSD → AMX), q8_0 as
// loaded: T = 16 282–290 → 262–275, 24 325–331 → 262–314, 32 327–359 → 336–358,
// 48 334–383 → 376–404, 64 382–390 → 397–434; packed: T = 16 430–448 → 478–514,
// 24 435–451 → 390–453 (16 + 8 tokens), 32 450–464 → 495–514, 64 441–456 → 510–526.
const amxFrom = 32

// amxLoadedFrom is the fewest tokens MatMulQ8 runs the AMX tiles for on q8_0 weights as
// loaded (qgemmAMXW, no repack; fewer take the matrix–vector kernels). One thread,
// interleaved (BenchmarkAMX, 2048×768 and 768×2048, GOP/s, VPDPBUSD → qgemmAMXW):
// T = 9 229–231 and 203–204 → 257–263, 10 238–240 and 217–218 → 278–289, 12 263–265 and
// 240–242 → 322–346, 16 262–292 → 427–450, 20 294–320 → 305–324, 24 302–331 → 362–385,
// 33 339–361 → 356–372, 40 345–371 → 424–448.
const amxLoadedFrom = 9

// gemmAMX is gemm with the AMX tiles for every 16 tokens of a product.
var gemmAMX = func() qgemmKernels {
	k := gemm
	k.TileAMX, k.AMXTokens, k.AMXBlocks = qgemmAMX, 16, amxBlocks
	k.TileAMXQ8, k.GatherAMXQ8 = qgemmAMXW, amxGatherQ8
	return k
}()

// q8gemm returns the GEMM MatMulQ8 runs: gemmAMX when the CPU has AMX and the process
// the permission to use it, else gemm.
func q8gemm() *qgemmKernels {
	if useAMX && amxPermitted() {
		return &gemmAMX
	}
	return &gemm
}
