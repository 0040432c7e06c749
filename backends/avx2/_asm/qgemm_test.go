package main

import (
	"fmt"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestVEXVPDPBUSD decodes vexVPDPBUSD's encoding for every choice of three YMM registers
// and checks that it is the VEX-encoded VPDPBUSD of those registers.
func TestVEXVPDPBUSD(t *testing.T) {
	for d := 0; d < 16; d++ {
		for a := 0; a < 16; a++ {
			for b := 0; b < 16; b++ {
				enc, err := vexVPDPBUSD(d, a, b)
				if err != nil {
					t.Fatal(err)
				}
				inst, err := x86asm.Decode(enc, 64)
				if err != nil {
					t.Fatalf("Y%d, Y%d, Y%d: %x: %v", d, a, b, enc, err)
				}
				got := fmt.Sprintf("%v %v, %v, %v", inst.Op, inst.Args[0], inst.Args[1], inst.Args[2])
				want := fmt.Sprintf("VPDPBUSD Y%d, Y%d, Y%d", d, a, b)
				if got != want || inst.Len != len(enc) || enc[0] != 0xc4 || inst.Args[3] != nil {
					t.Fatalf("%x decodes as %q (%d bytes), want the VEX %q", enc, got, inst.Len, want)
				}
			}
		}
	}
	if _, err := vexVPDPBUSD(16, 0, 0); err == nil {
		t.Error("Y16 encoded: VEX has no encoding for it")
	}
}
