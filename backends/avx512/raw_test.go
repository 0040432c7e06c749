//go:build amd64 && !purego

package avx512

import (
	"bufio"
	"encoding/binary"
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// TestRawInstructions disassembles every instruction the generator emitted as machine
// code (a "// raw: INSTRUCTION" comment, then LONG, WORD and BYTE directives: the Go
// assembler has no mnemonic for them) in the generated assembly of backends/avx512 and
// backends/avx2, and checks that the bytes are exactly that instruction, operands
// included, in Go syntax.
func TestRawInstructions(t *testing.T) {
	seen := 0
	for _, path := range []string{"kernels_amd64.s", "../avx2/kernels_amd64.s"} {
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		var want string // the pending instruction
		var enc []byte
		check := func(line int) {
			if want == "" {
				return
			}
			inst, err := x86asm.Decode(enc, 64)
			switch {
			case err != nil:
				t.Errorf("%s:%d: % x (%s) does not decode: %v", path, line, enc, want, err)
			case inst.Len != len(enc):
				t.Errorf("%s:%d: % x (%s) decodes as %d bytes", path, line, enc, want, inst.Len)
			default:
				if got := x86asm.GoSyntax(inst, 0, nil); got != want {
					t.Errorf("%s:%d: % x is %q, want %q", path, line, enc, got, want)
				}
			}
			seen++
			want, enc = "", nil
		}
		s := bufio.NewScanner(f)
		for n := 1; s.Scan(); n++ {
			fields := strings.Fields(s.Text())
			if len(fields) == 0 {
				continue
			}
			if text, ok := strings.CutPrefix(strings.TrimSpace(s.Text()), "// raw: "); ok {
				check(n)
				want = text
				continue
			}
			size := map[string]int{"BYTE": 1, "WORD": 2, "LONG": 4}[fields[0]]
			if want == "" || size == 0 || len(fields) != 2 {
				check(n)
				continue
			}
			v, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "$"), 0, 8*size)
			if err != nil {
				t.Fatalf("%s:%d: %v", path, n, err)
			}
			enc = binary.LittleEndian.AppendUint64(enc, v)[:len(enc)+size]
		}
		check(0)
		if err := s.Err(); err != nil {
			t.Fatal(err)
		}
		f.Close()
	}
	if seen == 0 {
		t.Fatal("no raw instructions in the generated assembly")
	}
	t.Logf("%d raw instructions checked", seen)
}
