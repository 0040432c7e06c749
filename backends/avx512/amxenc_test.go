//go:build amd64 && !purego

package avx512

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// amxInstructions returns the AMX instructions of kernels_amd64.s: the text of each
// "// amx: " comment (objdump's Intel syntax) and its bytes.
func amxInstructions(t *testing.T) []codeRun {
	return codeRuns(t, "kernels_amd64.s", "// amx: ")
}

var gpNames = [16]string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}

// decodeAMX decodes the few AMX forms the generator emits (VEX, map 0F38, W0, L0),
// by hand, into objdump's Intel syntax.
func decodeAMX(b []byte) (string, error) {
	if len(b) < 5 || b[0] != 0xc4 || b[1]&0x1f != 2 || b[2]&0x84 != 0 {
		return "", fmt.Errorf("not a VEX.L0.0F38.W0 instruction")
	}
	rx, xx, bx := ^b[1]>>7&1, ^b[1]>>6&1, ^b[1]>>5&1
	vvvv := ^b[2] >> 3 & 0xf
	pp := b[2] & 3
	op, modrm := b[3], b[4]
	mod, reg, rm := modrm>>6, modrm>>3&7|rx<<3, modrm&7|bx<<3
	mem := func() (string, int, error) { // [base+index*1], mod 00
		if mod != 0 || modrm&7 != 4 || len(b) != 6 || b[5]>>6 != 0 || b[5]&7 == 5 {
			return "", 0, fmt.Errorf("not [base+index*1]")
		}
		return fmt.Sprintf("[%s+%s*1]", gpNames[b[5]&7|bx<<3], gpNames[b[5]>>3&7|xx<<3]), 6, nil
	}
	if reg > 7 {
		return "", fmt.Errorf("tile register %d", reg)
	}
	switch {
	case op == 0x49 && pp == 0 && modrm == 0xc0 && vvvv == 0 && len(b) == 5:
		return "tilerelease", nil
	case op == 0x49 && pp == 0 && mod == 0 && reg == 0 && modrm&7 != 4 && modrm&7 != 5 && vvvv == 0 && len(b) == 5:
		return fmt.Sprintf("ldtilecfg [%s]", gpNames[rm]), nil
	case op == 0x49 && pp == 3 && mod == 3 && modrm&7 == 0 && vvvv == 0 && len(b) == 5:
		return fmt.Sprintf("tilezero tmm%d", reg), nil
	case op == 0x4b && (pp == 3 || pp == 2) && vvvv == 0:
		m, _, err := mem()
		if err != nil {
			return "", err
		}
		if pp == 3 {
			return fmt.Sprintf("tileloadd tmm%d,%s", reg, m), nil
		}
		return fmt.Sprintf("tilestored %s,tmm%d", m, reg), nil
	case op == 0x5e && pp == 2 && mod == 3 && len(b) == 5 && rm < 8 && vvvv < 8:
		return fmt.Sprintf("tdpbsud tmm%d,tmm%d,tmm%d", reg, rm, vvvv), nil
	case op == 0x5e && pp == 3 && mod == 3 && len(b) == 5 && rm < 8 && vvvv < 8:
		return fmt.Sprintf("tdpbssd tmm%d,tmm%d,tmm%d", reg, rm, vvvv), nil
	}
	return "", fmt.Errorf("unknown form")
}

// TestAMXInstructions checks every AMX instruction the generator emitted as machine
// code ("// amx: INSTRUCTION", then BYTE directives) in kernels_amd64.s: decoded by hand,
// and disassembled by objdump (GNU binutils) when it is on the PATH, each must be
// exactly the instruction of its comment, operands included.
func TestAMXInstructions(t *testing.T) {
	insts := amxInstructions(t)
	if len(insts) == 0 {
		t.Fatal("no AMX instructions in the generated assembly")
	}
	var all []byte
	for _, in := range insts {
		got, err := decodeAMX(in.enc)
		if err != nil || got != in.want {
			t.Errorf("kernels_amd64.s:%d: % x decodes as %q (%v), want %q", in.line, in.enc, got, err, in.want)
		}
		all = append(all, in.enc...)
	}
	objdump, err := exec.LookPath("objdump")
	if err != nil {
		t.Logf("%d AMX instructions decoded; objdump not found, not disassembled", len(insts))
		return
	}
	bin := filepath.Join(t.TempDir(), "amx.bin")
	if err := os.WriteFile(bin, all, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(objdump, "-D", "-b", "binary", "-m", "i386:x86-64", "-M", "intel", bin).CombinedOutput()
	if err != nil {
		t.Fatalf("objdump: %v\n%s", err, out)
	}
	// Lines "   off:\tbytes\tinstruction".
	var dis [][2]string
	for _, l := range strings.Split(string(out), "\n") {
		parts := strings.Split(l, "\t")
		if len(parts) != 3 || !strings.HasSuffix(strings.TrimSpace(parts[0]), ":") {
			continue
		}
		dis = append(dis, [2]string{strings.TrimSpace(parts[1]), strings.Join(strings.Fields(parts[2]), " ")})
	}
	if len(dis) != len(insts) {
		t.Fatalf("objdump decodes %d instructions, want %d:\n%s", len(dis), len(insts), out)
	}
	for i, in := range insts {
		if enc := fmt.Sprintf("% x", in.enc); dis[i][0] != enc || dis[i][1] != in.want {
			t.Errorf("kernels_amd64.s:%d: % x is %q (%s) to objdump, want %q", in.line, in.enc, dis[i][1], dis[i][0], in.want)
		}
	}
	t.Logf("%d AMX instructions checked", len(insts))
}
