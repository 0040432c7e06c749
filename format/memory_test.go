package format

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"github.com/lmrun/lmrun/dtype"
)

// sameMemory reports whether a and b are the same bytes in memory (not copies).
func sameMemory(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || unsafe.SliceData(a) == unsafe.SliceData(b))
}

// TestNewFile: a File built in memory has the metadata, tensors and offsets the written
// and reopened file has; bytes a Source returns are used in place, copied only when
// misaligned for their elements; Close releases once.
func TestNewFile(t *testing.T) {
	meta, ts := sampleCheckpoint()
	path, _ := writeSample(t)
	disk, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Close()

	// Misaligned bytes: f32 at an odd address must be copied, q8_0 need not be.
	buf := make([]byte, 4*8+1+34*2)
	f32Odd := buf[1 : 1+4*8]
	copy(f32Odd, dtype.F32ToBytes([]float32{1, 2, 3, 4, 5, 6, 7, 8}))
	q8Odd := buf[1+4*8:]
	for i := range q8Odd {
		q8Odd[i] = byte(i)
	}
	computed := 0
	ts = append(ts,
		Bytes("f32odd", dtype.F32, []int{8}, f32Odd),
		Bytes("q8odd", dtype.Q8_0, []int{64}, q8Odd),
		Source{Name: "computed", DType: dtype.F32, Shape: []int{2}, Data: func() ([]byte, error) {
			computed++
			return dtype.F32ToBytes([]float32{1, 2}), nil
		}})
	released := 0
	f, err := NewFile(meta, ts, func() error { released++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if computed != 1 {
		t.Fatalf("a computed Source ran %d times, want once", computed)
	}
	if !reflect.DeepEqual(map[string]any(f.Meta), map[string]any(disk.Meta)) {
		t.Fatalf("metadata:\n got %#v\nwant %#v", f.Meta, disk.Meta)
	}
	if len(f.Tensors) != len(ts) {
		t.Fatalf("%d tensors, want %d", len(f.Tensors), len(ts))
	}
	for i, s := range ts {
		got := f.Tensors[i]
		if f.Tensor(s.Name) != got {
			t.Fatalf("Tensor(%s) is not tensor %d", s.Name, i)
		}
		want, _ := s.Data()
		if got.Name != s.Name || got.DType != s.DType || !reflect.DeepEqual(got.Shape, s.Shape) || !bytes.Equal(got.Data, want) {
			t.Errorf("tensor %d: got %s %s %v, want %s %s %v", i, got.Name, got.DType, got.Shape, s.Name, s.DType, s.Shape)
		}
		if cap(got.Data) != len(got.Data) {
			t.Errorf("tensor %s: spare capacity %d past its bytes", got.Name, cap(got.Data)-len(got.Data))
		}
		if i < len(disk.Tensors) && (got.Offset != disk.Tensors[i].Offset || got.Size != disk.Tensors[i].Size) {
			t.Errorf("tensor %s at %d+%d, the written file has it at %d+%d", got.Name, got.Offset, got.Size, disk.Tensors[i].Offset, disk.Tensors[i].Size)
		}
		if s.Name == "computed" {
			continue
		}
		inPlace := sameMemory(got.Data, want)
		if wantCopy := s.Name == "f32odd"; inPlace == wantCopy {
			t.Errorf("tensor %s: used in place %v, want %v", s.Name, inPlace, !wantCopy)
		}
	}
	if v, err := f.Tensor("f32odd").F32(); err != nil || !sameMemory(dtype.F32ToBytes(v), f.Tensor("f32odd").Data) {
		t.Fatalf("f32 view of the realigned tensor is a copy or fails: %v", err)
	}
	if err := f.Verify(nil); !errors.Is(err, ErrNoChecksums) {
		t.Fatalf("Verify of an in-memory file: %v", err)
	}
	if f.DataSize() != disk.DataSize()+4*8+34*2+4*2 {
		t.Fatalf("DataSize %d", f.DataSize())
	}
	if err := f.Close(); err != nil || released != 1 {
		t.Fatalf("Close: %v, released %d times", err, released)
	}
	if err := f.Close(); err != nil || released != 1 {
		t.Fatalf("second Close: %v, released %d times", err, released)
	}
	if f, err := NewFile(meta, nil, nil); err != nil || f.Close() != nil {
		t.Fatalf("empty file without release: %v", err)
	}
}

// TestNewFileRejects: what Open refuses in an index, NewFile refuses in its arguments,
// without releasing the caller's memory.
func TestNewFileRejects(t *testing.T) {
	meta, good := sampleCheckpoint()
	fail := errors.New("read failed")
	for name, c := range map[string]struct {
		meta Metadata
		src  []Source
		want string
	}{
		"bad metadata":   {Metadata{"x": 1}, good, "unsupported value type"},
		"duplicate":      {meta, append(good[:1:1], good[0]), "duplicate tensor w"},
		"empty name":     {meta, []Source{Bytes("", dtype.F32, []int{1}, make([]byte, 4))}, "length must be"},
		"long name":      {meta, []Source{Bytes(strings.Repeat("n", MaxNameLen+1), dtype.F32, []int{1}, make([]byte, 4))}, "length must be"},
		"unknown dtype":  {meta, []Source{Bytes("x", dtype.DType(999), []int{1}, make([]byte, 4))}, "unknown dtype"},
		"no dims":        {meta, []Source{Bytes("x", dtype.F32, nil, nil)}, "dimensions"},
		"too many dims":  {meta, []Source{Bytes("x", dtype.F32, make([]int, MaxDims+1), nil)}, "dimensions"},
		"negative dim":   {meta, []Source{Bytes("x", dtype.F32, []int{-1}, nil)}, "tensor x"},
		"partial block":  {meta, []Source{Bytes("x", dtype.Q8_0, []int{33}, make([]byte, 68))}, "tensor x"},
		"short data":     {meta, []Source{Bytes("x", dtype.F32, []int{2}, make([]byte, 4))}, "4 bytes of data"},
		"no data":        {meta, []Source{{Name: "x", DType: dtype.F32, Shape: []int{1}}}, "no data"},
		"failing source": {meta, []Source{{Name: "x", DType: dtype.F32, Shape: []int{1}, Data: func() ([]byte, error) { return nil, fail }}}, "read failed"},
	} {
		released := false
		_, err := NewFile(c.meta, c.src, func() error { released = true; return nil })
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", name, err, c.want)
		}
		if released {
			t.Errorf("%s: NewFile released the caller's memory on failure", name)
		}
	}
}
