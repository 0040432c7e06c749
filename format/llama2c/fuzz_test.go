package llama2c

import (
	"encoding/binary"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/model"
)

// FuzzHeader checks that no header, with any claimed file size, panics or passes
// validation without describing exactly that size.
func FuzzHeader(f *testing.F) {
	f.Add(header(64, 172, 5, 8, 4, 512, 512), int64(1056540))
	f.Add(header(64, 172, 5, 8, 4, -512, 512), int64(1056540+4*512*64))
	v1 := make([]byte, 256)
	binary.LittleEndian.PutUint32(v1, Magic)
	binary.LittleEndian.PutUint32(v1[4:], 1)
	copy(v1[8:], header(64, 172, 5, 8, 4, 512, 512))
	v1[36] = 1
	f.Add(v1, int64(1040384))
	v2 := append([]byte(nil), v1...)
	v2[4] = 2
	binary.LittleEndian.PutUint32(v2[37:], 32)
	f.Add(v2, int64(294816))
	f.Add(header(1<<30, 1<<30, 1<<30, 1<<20, 1<<20, 1<<30, 1<<30), int64(1<<40))
	f.Fuzz(func(t *testing.T, b []byte, size int64) {
		if size < 0 {
			return
		}
		h, err := parseHeader(b, size)
		if err != nil {
			return
		}
		var ts []tensor
		want, err := h.layout(&ts)
		if err != nil || want != size {
			t.Fatalf("accepted header implies %d bytes (%v), file has %d", want, err, size)
		}
		for _, x := range ts {
			if x.offset < h.dataOffset || x.offset > size {
				t.Fatalf("tensor %s at %d outside the file", x.name, x.offset)
			}
		}
	})
}

// FuzzTokenizer checks that no tokenizer file panics the parser.
func FuzzTokenizer(f *testing.F) {
	tok := []byte{7, 0, 0, 0}
	for _, s := range []string{"<unk>", "\n<s>\n", "\n</s>\n", "a"} {
		tok = binary.LittleEndian.AppendUint32(tok, 0)
		tok = binary.LittleEndian.AppendUint32(tok, uint32(len(s)))
		tok = append(tok, s...)
	}
	f.Add(tok, 4)
	f.Add(tok[:20], 4)
	f.Fuzz(func(t *testing.T, b []byte, vocab int) {
		md, err := parseTokenizer(b, vocab)
		if err != nil {
			return
		}
		if toks, _, _ := md.Strings("tokenizer.tokens"); len(toks) != vocab {
			t.Fatalf("%d tokens for vocab %d", len(toks), vocab)
		}
	})
}

// FuzzImport imports checkpoints whose header holds fuzzed fields, in files (sparse: the
// data is a hole) exactly as long as the header implies, give or take delta bytes. The
// import must end quickly with an error or a valid model whose tensors fit in the file.
func FuzzImport(f *testing.F) {
	f.Add(uint8(1), int32(8), int32(16), int32(1), int32(2), int32(2), int32(32), int32(8), int32(0), int8(0))
	f.Add(uint8(0), int32(8), int32(16), int32(2), int32(2), int32(1), int32(-32), int32(8), int32(0), int8(0))
	f.Add(uint8(2), int32(8), int32(16), int32(1), int32(2), int32(2), int32(32), int32(8), int32(8), int8(0))
	f.Add(uint8(1), int32(8), int32(16), int32(2000), int32(2), int32(2), int32(32), int32(1<<30), int32(0), int8(0))
	f.Add(uint8(0), int32(1<<30), int32(1<<30), int32(1<<30), int32(1<<20), int32(1<<20), int32(1<<30), int32(1<<30), int32(0), int8(4))
	f.Fuzz(func(t *testing.T, version uint8, dim, hidden, layers, heads, kvHeads, vocab, seqLen, gs int32, delta int8) {
		v := int(version % 3)
		fl := fields{dim, hidden, layers, heads, kvHeads, vocab, seqLen}
		size := int64(4096)
		if want, err := impliedSize(v, fl, gs); err == nil && want+int64(delta) <= 1<<30 {
			size = max(want+int64(delta), 0)
		}
		p := sparseCheckpoint(t, v, fl, gs, size)
		ck, err := Import(p, "")
		if err != nil {
			return
		}
		cfg, err := model.Parse(ck.Meta)
		if err != nil {
			t.Fatalf("imported metadata does not parse: %v", err)
		}
		var elems int64
		for _, s := range ck.Tensors {
			elems += int64(dtype.NumElements(s.Shape))
		}
		if elems > size || len(ck.Tensors) > 3+9*cfg.NLayers {
			t.Fatalf("%d tensors of %d elements from a %d-byte file", len(ck.Tensors), elems, size)
		}
		if size <= 1<<20 {
			for _, s := range ck.Tensors {
				b, err := s.Data()
				if err != nil || len(b) != 4*dtype.NumElements(s.Shape) {
					t.Fatalf("%s: %d bytes for %v (%v)", s.Name, len(b), s.Shape, err)
				}
			}
		}
	})
}
