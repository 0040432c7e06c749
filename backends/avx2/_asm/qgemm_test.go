package main

import (
	"fmt"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestVEXVNNI decodes vexVNNI's encodings of VPDPBUSD and VPDPWSSD for every choice of
// three YMM registers and checks that each is the VEX-encoded instruction of those
// registers.
func TestVEXVNNI(t *testing.T) {
	for _, op := range []string{"VPDPBUSD", "VPDPWSSD"} {
		for d := 0; d < 16; d++ {
			for a := 0; a < 16; a++ {
				for b := 0; b < 16; b++ {
					enc, err := vexVNNI(op, d, a, b)
					if err != nil {
						t.Fatal(err)
					}
					inst, err := x86asm.Decode(enc, 64)
					if err != nil {
						t.Fatalf("%s Y%d, Y%d, Y%d: %x: %v", op, d, a, b, enc, err)
					}
					got := fmt.Sprintf("%v %v, %v, %v", inst.Op, inst.Args[0], inst.Args[1], inst.Args[2])
					want := fmt.Sprintf("%s Y%d, Y%d, Y%d", op, d, a, b)
					if got != want || inst.Len != len(enc) || enc[0] != 0xc4 || inst.Args[3] != nil {
						t.Fatalf("%x decodes as %q (%d bytes), want the VEX %q", enc, got, inst.Len, want)
					}
				}
			}
		}
		if _, err := vexVNNI(op, 16, 0, 0); err == nil {
			t.Errorf("%s Y16 encoded: VEX has no encoding for it", op)
		}
	}
	if enc, err := vexVPDPBUSD(1, 2, 3); err != nil || enc[3] != 0x50 {
		t.Errorf("vexVPDPBUSD(1, 2, 3) = %x, %v", enc, err)
	}
	if _, err := vexVNNI("VPDPBUSDS", 0, 0, 0); err == nil {
		t.Error("VPDPBUSDS encoded: vexVNNI does not know it")
	}
}
