package gguf

import (
	"io"
	"testing"
)

// FuzzParse parses arbitrary bytes as GGUF; whatever parses must be self-consistent,
// and whatever imports must produce tensors of the sizes their shapes imply and export
// again.
func FuzzParse(f *testing.F) {
	for i, arch := range []string{"llama", "gpt2"} {
		kvs, ts := synthetic(arch, []Type{TypeQ8_0, TypeF16}[i], 9)
		b := encode(f, kvs, ts)
		f.Add(b)
		f.Add(b[:200])
	}
	f.Add([]byte("GGUF\x03\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := parseBytes(b)
		if err != nil {
			return
		}
		for _, ti := range file.Tensors {
			if end := uint64(file.DataOffset) + ti.Offset + ti.Size; end > uint64(len(b)) {
				t.Fatalf("tensor %s ends at %d, past the %d-byte file", ti.Name, end, len(b))
			}
			if _, err := file.TensorData(&ti); err != nil {
				t.Fatalf("tensor %s: %v", ti.Name, err)
			}
		}
		ck, err := FromFile(file)
		if err != nil {
			return
		}
		for _, s := range ck.Tensors {
			data, err := s.Data()
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			if n, err := s.DType.ByteSize(s.Shape); err != nil || int64(len(data)) != n {
				t.Fatalf("%s: %d bytes for %s %v (%v)", s.Name, len(data), s.DType, s.Shape, err)
			}
		}
		if kvs, ts, err := Export(ck); err == nil {
			if err := Write(io.Discard, kvs, ts, nil); err != nil {
				t.Fatalf("writing the export of an import: %v", err)
			}
		}
	})
}
