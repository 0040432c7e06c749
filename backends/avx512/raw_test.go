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

// codeRun is one instruction the generator emitted as machine code: the text of its
// comment and its bytes.
type codeRun struct {
	line int
	want string
	enc  []byte
}

// codeRuns returns the instructions of the generated file at path that the generator
// emitted as machine code: a "prefix INSTRUCTION" comment, then LONG, WORD and BYTE
// directives.
func codeRuns(t *testing.T, path, prefix string) []codeRun {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []codeRun
	cur := -1
	s := bufio.NewScanner(f)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if text, ok := strings.CutPrefix(line, prefix); ok {
			out = append(out, codeRun{line: n, want: text})
			cur = len(out) - 1
			continue
		}
		fields := strings.Fields(line)
		size := 0
		if len(fields) == 2 {
			size = map[string]int{"BYTE": 1, "WORD": 2, "LONG": 4}[fields[0]]
		}
		if cur < 0 || size == 0 {
			cur = -1
			continue
		}
		v, err := strconv.ParseUint(strings.TrimPrefix(fields[1], "$"), 0, 8*size)
		if err != nil {
			t.Fatalf("%s:%d: %v", path, n, err)
		}
		out[cur].enc = binary.LittleEndian.AppendUint64(out[cur].enc, v)[:len(out[cur].enc)+size]
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRawInstructions disassembles every instruction the generator emitted as machine
// code (a "// raw: INSTRUCTION" comment, then LONG, WORD and BYTE directives: the Go
// assembler has no mnemonic for them) in the generated assembly of backends/avx512 and
// backends/avx2, and checks that the bytes are exactly that instruction, operands
// included, in Go syntax.
func TestRawInstructions(t *testing.T) {
	seen := 0
	for _, path := range []string{"kernels_amd64.s", "../avx2/kernels_amd64.s"} {
		for _, r := range codeRuns(t, path, "// raw: ") {
			inst, err := x86asm.Decode(r.enc, 64)
			switch {
			case err != nil:
				t.Errorf("%s:%d: % x (%s) does not decode: %v", path, r.line, r.enc, r.want, err)
			case inst.Len != len(r.enc):
				t.Errorf("%s:%d: % x (%s) decodes as %d bytes", path, r.line, r.enc, r.want, inst.Len)
			default:
				if got := x86asm.GoSyntax(inst, 0, nil); got != r.want {
					t.Errorf("%s:%d: % x is %q, want %q", path, r.line, r.enc, got, r.want)
				}
			}
			seen++
		}
	}
	if seen == 0 {
		t.Fatal("no raw instructions in the generated assembly")
	}
	t.Logf("%d raw instructions checked", seen)
}
