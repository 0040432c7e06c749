package gguf

import (
	"archive/zip"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format/npy"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// kquantFiles are the k-quant fixtures (testdata/gguf/kquant/README.md): together they
// hold Q4_K, Q5_K and Q6_K tensors.
var kquantFiles = []string{"tiny-Q4_K_M.gguf", "tiny-Q5_K_M.gguf", "tiny-Q6_K.gguf"}

// kquantTensor is one entry of a fixture's .dequant.json.
type kquantTensor struct {
	Name      string   `json:"name"`
	Type      string   `json:"type"`
	NE        []uint64 `json:"ne"`
	NBytes    int      `json:"nbytes"`
	SHA256Raw string   `json:"sha256_raw"`
	SHA256F32 string   `json:"sha256_f32"`
	RowsInNPZ int      `json:"rows_in_npz"`
}

// readNPZ returns the float32 arrays of a .npz file (a zip of .npy files) by name, the
// .npy suffix dropped.
func readNPZ(t *testing.T, path string) map[string][]float32 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]float32{}
	for _, f := range z.File {
		r, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(r)
		r.Close()
		if err != nil {
			t.Fatal(err)
		}
		_, v, err := npy.Read(raw)
		if err != nil {
			t.Fatalf("%s: %v", f.Name, err)
		}
		out[strings.TrimSuffix(f.Name, ".npy")] = v
	}
	return out
}

// TestKQuantDequantize: every quantized tensor of the k-quant fixtures maps to its lmc
// dtype as it is, and dequantizes exactly as ggml does — its first 16 rows equal the
// .npz rows bit for bit, and the sha256 of the whole tensor as little-endian float32
// equals the .json's. Together the files cover Q4_K, Q5_K and Q6_K.
func TestKQuantDequantize(t *testing.T) {
	seen := map[dtype.DType]int{}
	for _, name := range kquantFiles {
		t.Run(name, func(t *testing.T) {
			f, err := Open(fixtures.Path(t, "gguf", "kquant", name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			var meta struct {
				Tensors []kquantTensor `json:"tensors"`
			}
			if err := json.Unmarshal(fixtures.ReadFile(t, "gguf", "kquant", name+".dequant.json"), &meta); err != nil {
				t.Fatal(err)
			}
			npz := readNPZ(t, fixtures.Path(t, "gguf", "kquant", name+".dequant.npz"))
			quantized := 0
			for _, e := range meta.Tensors {
				ti := f.Tensor(e.Name)
				if ti == nil {
					t.Fatalf("%s: not in the file", e.Name)
				}
				if ti.Type.String() != e.Type {
					t.Fatalf("%s: type %s, the json says %s", e.Name, ti.Type, e.Type)
				}
				dt, ok := ti.Type.DType()
				if !ok {
					t.Fatalf("%s: %s has no lmc dtype", e.Name, ti.Type)
				}
				raw, err := f.TensorData(ti)
				if err != nil {
					t.Fatal(err)
				}
				if h := sha256.Sum256(raw); hex.EncodeToString(h[:]) != e.SHA256Raw || len(raw) != e.NBytes {
					t.Fatalf("%s: raw bytes differ from the json's", e.Name)
				}
				cols := int(e.NE[0])
				vals, err := dtype.Dequantize(dt, raw, cols)
				if err != nil {
					t.Fatalf("%s: %v", e.Name, err)
				}
				if dt == dtype.F32 {
					continue
				}
				if !dt.KQuant() {
					t.Fatalf("%s: %s is not a k-quant", e.Name, dt)
				}
				quantized++
				seen[dt]++
				want, ok := npz[e.Name]
				if !ok || e.RowsInNPZ != 16 || len(want) != 16*cols {
					t.Fatalf("%s: %d values in the npz (rows_in_npz %d)", e.Name, len(want), e.RowsInNPZ)
				}
				for i, w := range want {
					if math.Float32bits(vals[i]) != math.Float32bits(w) {
						t.Fatalf("%s (%s): row %d column %d = %v (%#08x), ggml %v (%#08x)", e.Name, dt, i/cols, i%cols,
							vals[i], math.Float32bits(vals[i]), w, math.Float32bits(w))
					}
				}
				if h := sha256.Sum256(dtype.F32ToBytes(vals)); hex.EncodeToString(h[:]) != e.SHA256F32 {
					t.Fatalf("%s (%s): sha256 of the dequantized tensor differs from ggml's", e.Name, dt)
				}
			}
			if quantized != 15 {
				t.Fatalf("%d quantized tensors checked, want 15", quantized)
			}
		})
	}
	for _, dt := range []dtype.DType{dtype.Q4_K, dtype.Q5_K, dtype.Q6_K} {
		if seen[dt] == 0 {
			t.Errorf("no %s tensor checked", dt)
		}
	}
}

// TestKQuantRoundTrip: a k-quant GGUF imports with its Q4_K, Q5_K and Q6_K tensors as
// they are (the tied output.weight absent: token_embd serves), and exports back to GGUF
// with every tensor's type and bytes unchanged, the k-quant file type and the
// quantization version set.
func TestKQuantRoundTrip(t *testing.T) {
	for _, name := range kquantFiles {
		t.Run(name, func(t *testing.T) {
			path := fixtures.Path(t, "gguf", "kquant", name)
			orig, err := Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer orig.Close()
			ck, err := Import(path)
			if err != nil {
				t.Fatal(err)
			}
			if ck.Source("output.weight") != nil {
				t.Fatal("a tied classifier was imported as output.weight")
			}
			out := t.TempDir() + "/x.gguf"
			if err := ExportFile(ck, out, nil); err != nil {
				t.Fatal(err)
			}
			back, err := Open(out)
			if err != nil {
				t.Fatal(err)
			}
			defer back.Close()
			if len(back.Tensors) != len(orig.Tensors) {
				t.Fatalf("%d tensors, the original has %d", len(back.Tensors), len(orig.Tensors))
			}
			for i := range orig.Tensors {
				a := &orig.Tensors[i]
				b := back.Tensor(a.Name)
				if b == nil || b.Type != a.Type || !sameShape(Shape(b.Dims), Shape(a.Dims)) {
					t.Fatalf("%s: %v, the original %s %v", a.Name, b, a.Type, a.Dims)
				}
				da, err := orig.TensorData(a)
				if err != nil {
					t.Fatal(err)
				}
				db, err := back.TensorData(b)
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(da, db) {
					t.Fatalf("%s (%s): bytes changed", a.Name, a.Type)
				}
			}
			ft, _ := back.Value("general.file_type")
			qv, _ := back.Value("general.quantization_version")
			want, _ := orig.Value("general.file_type")
			if ft != want || qv != uint32(2) {
				t.Errorf("file type %v (the original %v), quantization version %v", ft, want, qv)
			}
		})
	}
}
