package safetensors

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// file builds a safetensors file from a header string and a data area.
func file(header string, data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, data...)
}

func f32bytes(v ...float32) []byte { return append([]byte(nil), dtype.F32ToBytes(v)...) }

func validFile(t testing.TB) []byte {
	var buf bytes.Buffer
	err := Write(&buf, []TensorData{
		{Name: "a", DType: F32, Shape: []int{2, 3}, Data: f32bytes(1, 2, 3, 4, 5, 6)},
		{Name: "b", DType: F16, Shape: []int{2}, Data: []byte{0x00, 0x3c, 0x00, 0xc0}},
		{Name: "c", DType: BF16, Shape: []int{1}, Data: []byte{0x80, 0x3f}},
		{Name: "scalar", DType: F32, Shape: []int{}, Data: f32bytes(7)},
		{Name: "empty", DType: F32, Shape: []int{0, 4}, Data: nil},
	}, map[string]string{"format": "pt"})
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestParseValid(t *testing.T) {
	f, err := Parse(validFile(t))
	if err != nil {
		t.Fatal(err)
	}
	if f.Metadata["format"] != "pt" {
		t.Errorf("metadata %v", f.Metadata)
	}
	want := map[string][]float32{"a": {1, 2, 3, 4, 5, 6}, "b": {1, -2}, "c": {1}, "scalar": {7}, "empty": {}}
	if got := strings.Join(f.Names(), ","); got != "a,b,c,empty,scalar" {
		t.Errorf("names %s", got)
	}
	for name, w := range want {
		tt := f.Tensor(name)
		if tt == nil {
			t.Fatalf("tensor %s missing", name)
		}
		v, err := tt.Float32()
		if err != nil {
			t.Fatal(err)
		}
		if len(v) != len(w) || tt.NumElements() != len(w) {
			t.Fatalf("%s: %v, want %v", name, v, w)
		}
		for i := range v {
			if v[i] != w[i] {
				t.Errorf("%s[%d] = %v, want %v", name, i, v[i], w[i])
			}
		}
	}
	if s := f.Tensor("a").Shape; len(s) != 2 || s[0] != 2 || s[1] != 3 {
		t.Errorf("shape of a: %v", s)
	}
}

func TestMalformed(t *testing.T) {
	data := make([]byte, 64)
	hugeDims := `{"x":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}`
	cases := []struct {
		name, want string
		b          []byte
	}{
		{"short", "shorter than", []byte{1, 2, 3}},
		{"header past end", "runs past the end", binary.LittleEndian.AppendUint64(nil, 100)},
		{"header length huge", "runs past the end", append(binary.LittleEndian.AppendUint64(nil, math.MaxUint64), '{', '}')},
		{"header too short", "cannot hold", file("{", nil)},
		{"not json", "not JSON", file("hello", nil)},
		{"not object", "not a JSON object", file("[1,2]", nil)},
		{"truncated json", "unexpected EOF", file(`{"x":{"dtype":"F32"`, nil)},
		{"trailing", "data after", file(`{} {}`, nil)},
		{"unknown dtype", "unknown dtype", file(`{"x":{"dtype":"F33","shape":[1],"data_offsets":[0,4]}}`, data)},
		{"no dtype", "no dtype", file(`{"x":{"shape":[1],"data_offsets":[0,4]}}`, data)},
		{"no shape", "no shape", file(`{"x":{"dtype":"F32","data_offsets":[0,4]}}`, data)},
		{"size mismatch", "needs 8 bytes", file(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}`, data)},
		{"begin after end", "end before", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}}`, data)},
		{"past data", "run past", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[64,68]}}`, data)},
		{"negative dim", "bad dimension", file(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, data)},
		{"fractional dim", "bad dimension", file(`{"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`, data)},
		{"negative offset", "bad data_offsets", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}}`, data)},
		{"huge offset", "bad data_offsets", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,1e999]}}`, data)},
		{"three offsets", "2 numbers", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`, data)},
		{"overflow", "more than 2^64", file(hugeDims, data)},
		{"dim too large", "too large", file(`{"x":{"dtype":"F32","shape":[999999999999999],"data_offsets":[0,4]}}`, data)},
		{"overlap", "overlap", file(`{"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"y":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}`, data)},
		{"duplicate", "twice", file(`{"x":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"x":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`, data)},
		{"bad metadata", "__metadata__", file(`{"__metadata__":{"a":1}}`, nil)},
		{"empty name", "empty tensor name", file(`{"":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}`, data)},
		{"shape not array", "tensor", file(`{"x":{"dtype":"F32","shape":"big","data_offsets":[0,4]}}`, data)},
		{"entry not object", "tensor", file(`{"x":7}`, data)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse(c.b)
			if err == nil {
				t.Fatalf("no error")
			}
			if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %q, want it to wrap ErrFormat and mention %q", err, c.want)
			}
			// Open must agree with Parse.
			p := filepath.Join(t.TempDir(), "x.safetensors")
			if err := os.WriteFile(p, c.b, 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := Open(p); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Open: error %v, want one mentioning %q", err, c.want)
			}
		})
	}
}

func TestHeaderLimit(t *testing.T) {
	// A sparse file larger than the header limit whose header claims all of it.
	p := filepath.Join(t.TempDir(), "big.safetensors")
	size := int64(MaxHeaderSize + 4096)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(binary.LittleEndian.AppendUint64(nil, uint64(size-8)))
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := Open(p); err == nil || !strings.Contains(err.Error(), "limit") {
		t.Fatalf("error %v, want the header limit", err)
	}
}

func TestOpenReadsLazily(t *testing.T) {
	p := filepath.Join(t.TempDir(), "m.safetensors")
	if err := os.WriteFile(p, validFile(t), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := f.Tensor("a").Float32()
	if err != nil || len(v) != 6 || v[5] != 6 {
		t.Fatalf("a = %v, %v", v, err)
	}
	// Truncating the file afterwards makes reads fail cleanly.
	if err := os.Truncate(p, 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Tensor("a").Bytes(); err == nil {
		t.Fatal("read of a truncated file succeeded")
	}
}

func TestF16(t *testing.T) {
	cases := []struct {
		h uint16
		f float32
	}{
		{0x0000, 0}, {0x3c00, 1}, {0xc000, -2}, {0x3555, 0.333251953125},
		{0x7bff, 65504}, {0x0001, 5.9604644775390625e-08}, {0x03ff, 6.097555160522461e-05},
		{0x0400, 6.103515625e-05}, {0x8001, -5.9604644775390625e-08},
		{0x7c00, float32(math.Inf(1))}, {0xfc00, float32(math.Inf(-1))},
	}
	for _, c := range cases {
		if got := dtype.F16ToF32(c.h); got != c.f {
			t.Errorf("F16ToF32(%#04x) = %v, want %v", c.h, got, c.f)
		}
		if got := dtype.F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
	if got := math.Float32bits(dtype.F16ToF32(0x8000)); got != 0x80000000 {
		t.Errorf("-0 converts to bits %#x", got)
	}
	for _, h := range []uint16{0x7e00, 0x7c01, 0xfe00, 0x7fff} {
		if f := dtype.F16ToF32(h); !math.IsNaN(float64(f)) {
			t.Errorf("F16ToF32(%#04x) = %v, want NaN", h, f)
		}
	}
	// Every non-NaN half converts to float32 and back unchanged.
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		f := dtype.F16ToF32(h)
		if math.IsNaN(float64(f)) {
			if g := dtype.F32ToF16(f); g&0x7c00 != 0x7c00 || g&0x3ff == 0 {
				t.Fatalf("NaN %#04x came back as %#04x", h, g)
			}
			continue
		}
		if g := dtype.F32ToF16(f); g != h {
			t.Fatalf("%#04x -> %v -> %#04x", h, f, g)
		}
	}
	// Rounding: ties to even, overflow to infinity, underflow to zero.
	round := []struct {
		f float32
		h uint16
	}{
		{1 + 1.0/2048, 0x3c00}, {1 + 3.0/2048, 0x3c02}, {65519, 0x7bff}, {65520, 0x7c00},
		{1e10, 0x7c00}, {0x1p-25, 0x0000}, {0x1.8p-25, 0x0001}, {0x1p-26, 0}, {-0x1p-30, 0x8000},
		{0x1.ffcp-15, 0x0400}, // largest subnormal + half a unit: rounds to the smallest normal
	}
	for _, c := range round {
		if got := dtype.F32ToF16(c.f); got != c.h {
			t.Errorf("F32ToF16(%v) = %#04x, want %#04x", c.f, got, c.h)
		}
	}
}

func TestBF16(t *testing.T) {
	if got := dtype.BF16ToF32(0x3f80); got != 1 {
		t.Errorf("BF16ToF32(0x3f80) = %v", got)
	}
	if got := dtype.BF16ToF32(0xc0a0); got != -5 {
		t.Errorf("BF16ToF32(0xc0a0) = %v", got)
	}
	if got := dtype.F32ToBF16(1 + 0x1p-8); got != 0x3f80 { // tie, even
		t.Errorf("F32ToBF16 tie: %#04x", got)
	}
	if got := dtype.F32ToBF16(1 + 0x1.8p-8); got != 0x3f81 {
		t.Errorf("F32ToBF16 round up: %#04x", got)
	}
	if f := dtype.BF16ToF32(dtype.F32ToBF16(float32(math.NaN()))); !math.IsNaN(float64(f)) {
		t.Errorf("NaN became %v", f)
	}
}

func TestWriteRoundTrip(t *testing.T) {
	p := filepath.Join(t.TempDir(), "w.safetensors")
	in := []TensorData{
		{Name: "z", DType: F32, Shape: []int{3}, Data: f32bytes(1, 2, 3)},
		{Name: "a", DType: I64, Shape: []int{1}, Data: make([]byte, 8)},
	}
	if err := WriteFile(p, in, nil); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(p)
	if n := binary.LittleEndian.Uint64(raw); n%8 != 0 {
		t.Errorf("header length %d not padded to 8", n)
	}
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.Tensors[0].Name != "z" || f.Tensors[1].Name != "a" {
		t.Errorf("file order %s, %s", f.Tensors[0].Name, f.Tensors[1].Name)
	}
	b, err := f.Tensor("z").Bytes()
	if err != nil || !bytes.Equal(b, in[0].Data) {
		t.Errorf("z = %v, %v", b, err)
	}
	if _, err := f.Tensor("a").Float32(); err == nil {
		t.Error("I64 converted to float32")
	}
	// Invalid input to the writer.
	bad := [][]TensorData{
		{{Name: "x", DType: F32, Shape: []int{2}, Data: f32bytes(1)}},
		{{Name: "x", DType: "F7", Shape: []int{1}, Data: f32bytes(1)}},
		{{Name: "x", DType: F32, Shape: []int{1}, Data: f32bytes(1)}, {Name: "x", DType: F32, Shape: []int{1}, Data: f32bytes(1)}},
		{{Name: "", DType: F32, Shape: []int{1}, Data: f32bytes(1)}},
	}
	for i, ts := range bad {
		if err := WriteFile(p, ts, nil); err == nil {
			t.Errorf("bad input %d written", i)
		}
	}
}

// writeShards writes tensors t0..t5 over two shards and an index; it returns the index
// path and the expected data.
func writeShards(t *testing.T, dir string) (string, map[string][]float32) {
	want := map[string][]float32{}
	var s1, s2 []TensorData
	wm := map[string]string{}
	for i := 0; i < 6; i++ {
		name := "t" + string(rune('0'+i))
		v := []float32{float32(i), float32(i) + 0.5, -float32(i)}
		want[name] = v
		td := TensorData{Name: name, DType: F32, Shape: []int{3}, Data: f32bytes(v...)}
		if i%2 == 0 {
			s1 = append(s1, td)
			wm[name] = "model-00001-of-00002.safetensors"
		} else {
			s2 = append(s2, td)
			wm[name] = "model-00002-of-00002.safetensors"
		}
	}
	if err := WriteFile(filepath.Join(dir, "model-00001-of-00002.safetensors"), s1, nil); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(dir, "model-00002-of-00002.safetensors"), s2, nil); err != nil {
		t.Fatal(err)
	}
	writeIndex(t, dir, wm)
	return filepath.Join(dir, IndexName), want
}

func writeIndex(t *testing.T, dir string, wm map[string]string) {
	var sb strings.Builder
	sb.WriteString(`{"metadata": {"total_size": 72}, "weight_map": {`)
	first := true
	for k, v := range wm {
		if !first {
			sb.WriteString(",")
		}
		first = false
		sb.WriteString(`"` + k + `": "` + strings.ReplaceAll(v, `\`, `\\`) + `"`)
	}
	sb.WriteString("}}")
	if err := os.WriteFile(filepath.Join(dir, IndexName), []byte(sb.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSharded(t *testing.T) {
	dir := t.TempDir()
	_, want := writeShards(t, dir)
	f, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Tensors) != 6 {
		t.Fatalf("%d tensors", len(f.Tensors))
	}
	for name, w := range want {
		v, err := f.Tensor(name).Float32()
		if err != nil {
			t.Fatal(err)
		}
		for i := range w {
			if v[i] != w[i] {
				t.Errorf("%s = %v, want %v", name, v, w)
			}
		}
	}

	bad := []struct {
		name string
		wm   map[string]string
		want string
	}{
		{"traversal", map[string]string{"t0": "../model-00001-of-00002.safetensors"}, "plain file name"},
		{"separator", map[string]string{"t0": "sub/model.safetensors"}, "plain file name"},
		{"backslash", map[string]string{"t0": `sub\model.safetensors`}, "plain file name"},
		{"absolute", map[string]string{"t0": filepath.Join(dir, "model-00001-of-00002.safetensors")}, "plain file name"},
		{"unlisted", map[string]string{"t0": "model-00001-of-00002.safetensors"}, "does not list"},
		{"wrong shard", map[string]string{"t0": "model-00001-of-00002.safetensors", "t1": "model-00001-of-00002.safetensors", "t2": "model-00001-of-00002.safetensors", "t3": "model-00002-of-00002.safetensors", "t4": "model-00001-of-00002.safetensors", "t5": "model-00002-of-00002.safetensors"}, "puts"},
		{"missing shard", map[string]string{"t0": "nope.safetensors"}, "nope.safetensors"},
		{"empty", map[string]string{}, "no weight_map"},
	}
	for _, c := range bad {
		t.Run(c.name, func(t *testing.T) {
			writeIndex(t, dir, c.wm)
			_, err := OpenDir(dir)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one mentioning %q", err, c.want)
			}
		})
	}
	// A tensor listed but absent from its shard.
	d2 := t.TempDir()
	writeShards(t, d2)
	os.WriteFile(filepath.Join(d2, "model-00002-of-00002.safetensors"), validFile(t), 0o644)
	if _, err := OpenIndex(filepath.Join(d2, IndexName)); err == nil {
		t.Fatal("inconsistent shard accepted")
	}
}

func TestEqual(t *testing.T) {
	var buf bytes.Buffer
	Write(&buf, []TensorData{
		{Name: "a", DType: F32, Shape: []int{2}, Data: f32bytes(1, 2)},
		{Name: "b", DType: F32, Shape: []int{2}, Data: f32bytes(1, 2)},
		{Name: "c", DType: F32, Shape: []int{2}, Data: f32bytes(1, 3)},
		{Name: "d", DType: F32, Shape: []int{1, 2}, Data: f32bytes(1, 2)},
	}, nil)
	p := filepath.Join(t.TempDir(), "e.safetensors")
	os.WriteFile(p, buf.Bytes(), 0o644)
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		a, b string
		eq   bool
	}{{"a", "b", true}, {"a", "c", false}, {"a", "d", false}, {"a", "a", true}} {
		got, err := Equal(f.Tensor(c.a), f.Tensor(c.b))
		if err != nil || got != c.eq {
			t.Errorf("Equal(%s, %s) = %v, %v", c.a, c.b, got, err)
		}
	}
}

func TestRealFile(t *testing.T) {
	p := fixtures.Path(t, "hf", "tiny_gpt2", "model.safetensors")
	f, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	wte := f.Tensor("wte.weight")
	if wte == nil || wte.DType != F32 || len(wte.Shape) != 2 || wte.Shape[0] != 21 || wte.Shape[1] != 2 {
		t.Fatalf("wte.weight: %+v", wte)
	}
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	// The header says wte.weight is at data offsets [8504, 8672).
	hdrLen := int64(binary.LittleEndian.Uint64(raw))
	if wte.Offset != 8+hdrLen+8504 || wte.Size != 168 {
		t.Errorf("wte at %d, %d bytes", wte.Offset, wte.Size)
	}
	v, err := wte.Float32()
	if err != nil {
		t.Fatal(err)
	}
	if got := math.Float32frombits(binary.LittleEndian.Uint32(raw[wte.Offset+4*41:])); v[41] != got {
		t.Errorf("wte[41] = %v, file has %v", v[41], got)
	}
	mem, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(mem.Tensors) != len(f.Tensors) || len(f.Tensors) != 16 {
		t.Errorf("%d tensors in memory, %d from the file", len(mem.Tensors), len(f.Tensors))
	}
}

func FuzzParse(f *testing.F) {
	valid := validFile(f)
	f.Add(valid)
	f.Add(file(`{}`, nil))
	f.Add(file(`{"__metadata__":{"a":"b"}}`, nil))
	f.Add(file(`{"x":{"dtype":"F16","shape":[2,2],"data_offsets":[0,8]}}`, make([]byte, 8)))
	f.Add(file(`{"x":{"dtype":"BF16","shape":[],"data_offsets":[0,2]},"y":{"dtype":"F32","shape":[1],"data_offsets":[2,6]}}`, make([]byte, 6)))
	f.Add(file(`{"x":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}`, make([]byte, 4)))
	f.Add(file(`{"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}}`, nil))
	f.Add(valid[:len(valid)/2])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		sf, err := Parse(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error does not wrap ErrFormat: %v", err)
			}
			return
		}
		var end int64
		for _, tt := range sf.Tensors {
			if tt.Offset < end || tt.Offset+tt.Size > int64(len(b)) {
				t.Fatalf("tensor %s at [%d, %d) overlaps or leaves the %d-byte file", tt.Name, tt.Offset, tt.Offset+tt.Size, len(b))
			}
			end = tt.Offset + tt.Size
			data, err := tt.Bytes()
			if err != nil || int64(len(data)) != tt.Size || int64(tt.NumElements())*int64(tt.DType.Size()) != tt.Size {
				t.Fatalf("tensor %s: %d bytes (%v), size %d", tt.Name, len(data), err, tt.Size)
			}
			if _, ok := tt.DType.Format(); ok {
				v, err := tt.Float32()
				if err != nil || len(v) != tt.NumElements() {
					t.Fatalf("tensor %s: Float32: %d elements, %v", tt.Name, len(v), err)
				}
			}
		}
	})
}
