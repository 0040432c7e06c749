package format

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/lmrun/lmrun/dtype"
)

func sampleCheckpoint() (Metadata, []Source) {
	meta := Metadata{
		"general.architecture": "llama",
		"lm.dim":               int64(8),
		"lm.norm_eps":          1e-5,
		"lm.final_norm":        true,
		"tokenizer.tokens":     []string{"a", "b\x00\xff", ""},
		"tokenizer.scores":     []float32{0, -1.5, float32(math.Inf(-1))},
		"lm.attn_windows":      []int64{0, 4, -3},
	}
	w := make([]float32, 3*8)
	for i := range w {
		w[i] = float32(i) * 0.5
	}
	q := make([]byte, 34*2) // two q8_0 blocks
	for i := range q {
		q[i] = byte(i * 7)
	}
	return meta, []Source{
		Float32s("w", []int{3, 8}, w),
		Bytes("q", dtype.Q8_0, []int{64}, q),
		Bytes("h", dtype.F16, []int{1, 3}, []byte{1, 2, 3, 4, 5, 6}),
	}
}

func writeSample(t *testing.T) (string, []byte) {
	t.Helper()
	meta, ts := sampleCheckpoint()
	path := filepath.Join(t.TempDir(), "x.lmc")
	if err := WriteFile(path, meta, ts, nil); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, b
}

func TestRoundTrip(t *testing.T) {
	path, raw := writeSample(t)
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	meta, ts := sampleCheckpoint()
	if !reflect.DeepEqual(map[string]any(f.Meta), map[string]any(meta)) {
		t.Fatalf("metadata round trip:\n got %#v\nwant %#v", f.Meta, meta)
	}
	if len(f.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
	}
	for i, s := range ts {
		got := f.Tensors[i]
		want, _ := s.Data()
		if got.Name != s.Name || got.DType != s.DType || !reflect.DeepEqual(got.Shape, s.Shape) || !bytes.Equal(got.Data, want) {
			t.Errorf("tensor %d: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, s.Name, s.DType, s.Shape)
		}
		if got.Offset%Alignment != 0 {
			t.Errorf("tensor %s at unaligned offset %d", got.Name, got.Offset)
		}
		if got.CRC != Checksum(want) {
			t.Errorf("tensor %s: crc %08x", got.Name, got.CRC)
		}
	}
	v, err := f.Tensor("w").F32()
	if err != nil || v[5] != 2.5 {
		t.Fatalf("F32 view: %v %v", v, err)
	}
	if _, err := f.Tensor("q").F32(); err == nil {
		t.Fatal("F32 of a q8_0 tensor succeeded")
	}
	if err := f.Verify(nil); err != nil {
		t.Fatal(err)
	}
	// Writing is deterministic.
	_, raw2 := writeSample(t)
	if !bytes.Equal(raw, raw2) {
		t.Fatal("two writes of the same checkpoint differ")
	}
	// Data is 64-byte aligned in memory too (mmap is page aligned).
	if p := &f.Tensor("w").Data[0]; uintptrOf(p)%Alignment != 0 {
		t.Fatal("tensor data not aligned in the mapping")
	}
}

func TestVerifyDetectsCorruptData(t *testing.T) {
	_, raw := writeSample(t)
	f, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range f.Tensors {
		bad := append([]byte(nil), raw...)
		dataStart := int(binary.LittleEndian.Uint64(raw[32:]))
		bad[dataStart+int(tt.Offset)] ^= 0x40
		g, err := Parse(bad)
		if err != nil {
			t.Fatalf("flipping a data byte broke the index: %v", err)
		}
		if err := g.Verify(nil); err == nil || !errors.Is(err, ErrFormat) {
			t.Errorf("corrupting %s: Verify said %v", tt.Name, err)
		}
	}
}

func TestRejectsMalformed(t *testing.T) {
	_, raw := writeSample(t)
	le := binary.LittleEndian
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), raw...)) }
	cases := map[string][]byte{
		"empty":          {},
		"short header":   raw[:20],
		"bad magic":      mod(func(b []byte) []byte { copy(b, "GGUF"); return b }),
		"version 2":      mod(func(b []byte) []byte { le.PutUint32(b[4:], 2); return b }),
		"truncated":      raw[:len(raw)-1],
		"padded":         append(append([]byte(nil), raw...), 0),
		"truncated data": raw[:len(raw)/2],
		"index flipped":  mod(func(b []byte) []byte { b[HeaderSize+5] ^= 1; return b }),
		"huge index":     mod(func(b []byte) []byte { le.PutUint64(b[24:], 1<<62); return b }),
		"huge counts":    mod(func(b []byte) []byte { le.PutUint64(b[16:], 1<<60); return b }),
		"odd data offset": mod(func(b []byte) []byte {
			le.PutUint64(b[32:], le.Uint64(b[32:])+1)
			return b
		}),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := Parse(b); err == nil || !errors.Is(err, ErrFormat) {
				t.Fatalf("got %v, want an ErrFormat error", err)
			}
		})
	}
}

// TestRejectsBadIndex re-signs hand-made indexes so that the checks behind the checksum
// are reached: a tensor past the data, a wrong size, overlapping tensors, a bad dtype.
func TestRejectsBadIndex(t *testing.T) {
	build := func(infos []TensorInfo, dataSize int64) []byte {
		index := encodeIndex(Metadata{}, infos)
		dataOff := align(int64(HeaderSize + len(index)))
		b := header(0, len(infos), len(index), dataOff, dataSize, Checksum(index))
		b = append(b, index...)
		b = append(b, make([]byte, int(dataOff)-len(b)+int(dataSize))...)
		return b
	}
	ok := []TensorInfo{{Name: "a", DType: dtype.F32, Shape: []int{4}, Size: 16}}
	if _, err := Parse(build(ok, 16)); err != nil {
		t.Fatalf("valid index rejected: %v", err)
	}
	cases := map[string][]TensorInfo{
		"past the end":  {{Name: "a", DType: dtype.F32, Shape: []int{8}, Size: 32}},
		"wrong size":    {{Name: "a", DType: dtype.F32, Shape: []int{4}, Size: 12}},
		"bad dtype":     {{Name: "a", DType: 77, Shape: []int{4}, Size: 16}},
		"zero dim":      {{Name: "a", DType: dtype.F32, Shape: []int{0}, Size: 0}},
		"q8 not blocks": {{Name: "a", DType: dtype.Q8_0, Shape: []int{8}, Size: 8}},
		"overflow":      {{Name: "a", DType: dtype.F32, Shape: []int{math.MaxInt32, math.MaxInt32, math.MaxInt32}, Size: 16}},
		"duplicate":     {{Name: "a", DType: dtype.F32, Shape: []int{1}, Size: 4}, {Name: "a", DType: dtype.F32, Shape: []int{1}, Size: 4, Offset: 64}},
		"overlap":       {{Name: "a", DType: dtype.F32, Shape: []int{4}, Size: 16}, {Name: "b", DType: dtype.F32, Shape: []int{4}, Size: 16}},
		"misaligned":    {{Name: "a", DType: dtype.F32, Shape: []int{1}, Size: 4, Offset: 4}},
	}
	for name, infos := range cases {
		if _, err := Parse(build(infos, 16)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

func FuzzParse(f *testing.F) {
	meta, ts := sampleCheckpoint()
	var buf seekBuffer
	if err := Write(&buf, meta, ts, nil); err != nil {
		f.Fatal(err)
	}
	f.Add(buf.b)
	f.Add(buf.b[:HeaderSize+10])
	f.Add([]byte("LMRC\x01\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := Parse(b)
		if err != nil {
			return
		}
		// Whatever parses must be internally consistent.
		for _, tt := range file.Tensors {
			if int64(len(tt.Data)) != tt.Size {
				t.Fatalf("tensor %s: %d bytes, size %d", tt.Name, len(tt.Data), tt.Size)
			}
		}
		_ = file.Verify(nil)
	})
}

// seekBuffer is an in-memory io.WriteSeeker.
type seekBuffer struct {
	b   []byte
	pos int
}

func (s *seekBuffer) Write(p []byte) (int, error) {
	if need := s.pos + len(p); need > len(s.b) {
		s.b = append(s.b, make([]byte, need-len(s.b))...)
	}
	copy(s.b[s.pos:], p)
	s.pos += len(p)
	return len(p), nil
}

func (s *seekBuffer) Seek(off int64, whence int) (int64, error) {
	switch whence {
	case 0:
		s.pos = int(off)
	case 1:
		s.pos += int(off)
	case 2:
		s.pos = len(s.b) + int(off)
	}
	return int64(s.pos), nil
}

func TestCountLayers(t *testing.T) {
	names := []string{"token_embd.weight", "blk.0.attn_q.weight", "blk.0.ffn_up.weight", "blk.1.attn_q.weight",
		"blk.7.x", "blk.x.y", "blk..z", "blk.3", "blk.-1.q", "blk.+2.q", "blkx.5.q", "output.weight"}
	if n := CountLayers(names, "blk."); n != 3 {
		t.Errorf("CountLayers = %d, want 3 (indices 0, 1 and 7)", n)
	}
	if n := CountLayers(nil, "blk."); n != 0 {
		t.Errorf("CountLayers(nil) = %d", n)
	}
}
