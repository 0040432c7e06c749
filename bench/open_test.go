package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/convert"
	"github.com/lmrun/lmrun/convert/synth"
	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/engine"
	"github.com/lmrun/lmrun/format/gguf"
)

// BenchmarkOpenGGUF times opening a GGUF model for inference — convert.Open (map, parse
// the header, import the index in place) and engine.FromFile (bind every matrix) —
// and closing it, on gpt2-124m-shaped files of about 500 MB (f32) and 250 MB (f16).
// rss-KB is how much resident memory the first open added (Linux): the weights stay on
// disk until a token uses them.
//
//	go test -run '^$' -bench OpenGGUF -benchtime 20x ./bench
func BenchmarkOpenGGUF(b *testing.B) {
	p, err := synth.Lookup("gpt2-124m")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16} {
		ck, err := synth.Build(p.Config, 1)
		if err != nil {
			b.Fatal(err)
		}
		if ck, err = convert.WithDType(ck, dt); err != nil {
			b.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("gpt2-124m-%s.gguf", dt))
		if err := gguf.ExportFile(ck, path, nil); err != nil {
			b.Fatal(err)
		}
		st, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		b.Run(fmt.Sprintf("%s-%dMB", dt, st.Size()>>20), func(b *testing.B) {
			before := resident()
			first := true
			for i := 0; i < b.N; i++ {
				f, err := convert.Open(path, convert.Options{})
				if err != nil {
					b.Fatal(err)
				}
				m, err := engine.FromFile(f, engine.Options{Threads: 1})
				if err != nil {
					b.Fatal(err)
				}
				if first && before > 0 {
					b.ReportMetric(float64(resident()-before)/1024, "rss-KB")
					first = false
				}
				m.Close()
			}
		})
	}
}

// resident returns this process's resident memory in bytes, 0 where /proc/self/statm
// is not there.
func resident() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0
	}
	n, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0
	}
	return n * int64(os.Getpagesize())
}
