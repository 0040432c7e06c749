//go:build amd64 && !purego

package avx2

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestVEXEncodings disassembles every instruction the generator emitted as bytes (the
// AVX-VNNI VPDPBUSD and VPDPWSSD, which the Go assembler encodes only as EVEX) and
// checks that it is the VEX-encoded instruction its comment names, with the same
// registers, and that no byte in the assembly is outside such an instruction.
func TestVEXEncodings(t *testing.T) {
	src, err := os.ReadFile("kernels_amd64.s")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(src), "\n")
	comment := regexp.MustCompile(`^\t// (VPDPBUSD|VPDPWSSD) Y(\d+), Y(\d+), Y(\d+) \(VEX, AVX-VNNI\)$`)
	byteRe := regexp.MustCompile(`BYTE \$0x([0-9a-f]{2})`)
	n := map[string]int{}
	for i, l := range lines {
		if !strings.Contains(l, "BYTE") {
			continue
		}
		m := comment.FindStringSubmatch(lines[i-1])
		if m == nil {
			t.Fatalf("line %d: bytes without the instruction they encode: %q", i+1, l)
		}
		var enc []byte
		for _, b := range byteRe.FindAllStringSubmatch(l, -1) {
			v, _ := strconv.ParseUint(b[1], 16, 8)
			enc = append(enc, byte(v))
		}
		if len(enc) == 0 || enc[0] != 0xc4 {
			t.Fatalf("line %d: %x is not a 3-byte VEX encoding", i+1, enc)
		}
		inst, err := x86asm.Decode(enc, 64)
		if err != nil {
			t.Fatalf("line %d: %x: %v", i+1, enc, err)
		}
		if inst.Len != len(enc) {
			t.Fatalf("line %d: %x decodes as %d bytes (%v)", i+1, enc, inst.Len, inst)
		}
		// Go order (src2, src1, dst); x86asm's is Intel's (dst, src1, src2).
		want := fmt.Sprintf("%s Y%s, Y%s, Y%s", m[1], m[4], m[3], m[2])
		got := inst.Op.String() + " " + strings.Join(argStrings(inst.Args), ", ")
		if got != want {
			t.Fatalf("line %d: %x decodes as %q, want %q", i+1, enc, got, want)
		}
		n[m[1]]++
	}
	for _, op := range []string{"VPDPBUSD", "VPDPWSSD"} {
		if n[op] == 0 {
			t.Errorf("no VEX %s in kernels_amd64.s", op)
		}
	}
	t.Logf("VEX encodings checked: %v", n)
}

// argStrings returns the non-nil arguments of an instruction, as x86asm names them
// (Y0..Y15).
func argStrings(args x86asm.Args) []string {
	var s []string
	for _, a := range args {
		if a == nil {
			break
		}
		s = append(s, a.String())
	}
	return s
}
