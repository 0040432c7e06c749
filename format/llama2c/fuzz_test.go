package llama2c

import (
	"encoding/binary"
	"testing"
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
