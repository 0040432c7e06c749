package gguf

import (
	"bytes"
	"io"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/model"
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
	// qwen2 (the llama model renamed, with q/k/v biases) and llama with Llama 3's
	// rope_freqs and a window.
	kvs, ts := synthetic("llama", TypeF32, 9)
	vec := func(name string, v []float32) TensorSource {
		b := dtype.F32ToBytes(v)
		return TensorSource{Name: name, Type: TypeF32, Dims: []uint64{uint64(len(v))}, Data: func() ([]byte, error) { return b, nil }}
	}
	f.Add(encode(f, append(withKV(kvs, "llama.attention.sliding_window", uint32(3)), KV{"llama.rope.scaling.attn_factor", float32(1.2)}),
		append(ts, vec("rope_freqs.weight", []float32{1, 1, 2, 4, 8, 8, 8, 8}))))
	var qkvs []KV
	for _, kv := range kvs {
		if name, ok := strings.CutPrefix(kv.Key, "llama."); ok {
			kv.Key = "qwen2." + name
		} else if kv.Key == "general.architecture" {
			kv.Value = "qwen2"
		}
		qkvs = append(qkvs, kv)
	}
	f.Add(encode(f, qkvs, append(ts, vec("blk.0.attn_q.bias", make([]float32, 32)), vec("blk.0.attn_k.bias", make([]float32, 16)),
		vec("blk.0.attn_v.bias", make([]float32, 16)))))
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

// fuzzKeys are the hyper-parameters FuzzImportMetadata sets, without the "arch." prefix.
var fuzzKeys = []string{"block_count", "attention.head_count", "attention.head_count_kv", "context_length",
	"embedding_length", "feed_forward_length", "attention.key_length", "rope.dimension_count", "vocab_size"}

// fuzzValue encodes n as GGUF metadata of the kind k selects (nil: the key is absent).
func fuzzValue(n int64, k uint64) any {
	switch k % 8 {
	case 1:
		return uint32(n)
	case 2:
		return n
	case 3:
		return uint64(n)
	case 4:
		return float32(n)
	case 5:
		return strconv.FormatInt(n, 10)
	case 6:
		return []int32{int32(n), int32(n)}
	case 7:
		return int8(n)
	}
	return nil
}

// FuzzImportMetadata writes the small synthetic llama or gpt2 file with its
// hyper-parameters replaced by fuzzed values of fuzzed types, and imports it: the import
// must end quickly with an error or a valid model whose tensors are no larger than the
// file could hold once widened to f32.
func FuzzImportMetadata(f *testing.F) {
	// vals: block_count, head_count, head_count_kv, context_length, embedding_length,
	// feed_forward_length, key_length, rope.dimension_count, vocab_size; kinds holds 3 bits
	// a key (octal digits, the first key lowest) choosing each one's type.
	f.Add(false, []byte{1, 2, 1, 4, 32, 64}, uint64(0o111111), int64(1))
	f.Add(true, []byte{1, 2, 2, 4, 32, 64}, uint64(0o222222), int64(1))
	f.Add(false, []byte{1, 2, 1, 4, 32, 64, 16, 16, 8}, uint64(0o137111111), int64(1))
	f.Add(false, []byte{1, 2, 1, 4, 32, 64}, uint64(0o111111), int64(1<<30))
	f.Add(true, []byte{2, 3, 3, 5, 33, 65, 17, 17, 9}, uint64(0o765432107), int64(-1))
	f.Fuzz(func(t *testing.T, gpt2 bool, vals []byte, kinds uint64, scale int64) {
		arch := "llama"
		if gpt2 {
			arch = "gpt2"
		}
		kvs, ts := synthetic(arch, TypeQ8_0, 1)
		for i, key := range fuzzKeys[:min(len(vals), len(fuzzKeys))] {
			n := int64(vals[i])
			if i == int(uint64(scale)%uint64(len(fuzzKeys))) {
				n *= scale // one key may be absurd
			}
			kvs = withKV(kvs, arch+"."+key, fuzzValue(n, kinds>>(3*i)))
		}
		var buf bytes.Buffer
		if err := Write(&buf, kvs, ts, nil); err != nil {
			return
		}
		file, err := parseBytes(buf.Bytes())
		if err != nil {
			t.Fatalf("the writer's output does not parse: %v", err)
		}
		ck, err := FromFile(file)
		if err != nil {
			return
		}
		if _, err := model.Parse(ck.Meta); err != nil {
			t.Fatalf("imported metadata does not parse: %v", err)
		}
		var total int64
		for _, s := range ck.Tensors {
			data, err := s.Data()
			if err != nil {
				t.Fatalf("%s: %v", s.Name, err)
			}
			if n, err := s.DType.ByteSize(s.Shape); err != nil || int64(len(data)) != n {
				t.Fatalf("%s: %d bytes for %s %v (%v)", s.Name, len(data), s.DType, s.Shape, err)
			}
			total += int64(len(data))
		}
		if total > 4*int64(buf.Len()) {
			t.Fatalf("%d bytes of tensors from a %d-byte file", total, buf.Len())
		}
	})
}
