package tokenizer

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/format"
)

// testdataDir returns the shared test data directory: $LMRUN_TESTDATA, or
// ../shared/testdata next to the directory holding go.mod. When it is missing the
// test is skipped, or fails when CI=true.
func testdataDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("LMRUN_TESTDATA")
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			tb.Fatal(err)
		}
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				dir = filepath.Join(d, "..", "shared", "testdata")
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if dir != "" {
		if st, err := os.Stat(dir); err == nil && st.IsDir() {
			return dir
		}
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("test data not found (dir %q); set LMRUN_TESTDATA", dir)
	}
	tb.Skipf("test data not found (dir %q); set LMRUN_TESTDATA", dir)
	return ""
}

// readLlama2cTokenizer reads a llama2.c tokenizer.bin (int32 max_token_length, then
// per token: float32 score, int32 length, bytes) into "llama2c" metadata, with
// llama2.c's fixed special ids (unk 0, BOS 1, EOS 2). A test-only reader: the
// production one lives in format/llama2c.
func readLlama2cTokenizer(path string) (format.Metadata, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) < 4 {
		return nil, fmt.Errorf("%s: too short", path)
	}
	maxLen := int(int32(binary.LittleEndian.Uint32(data)))
	var tokens []string
	var scores []float32
	for off := 4; off < len(data); {
		if off+8 > len(data) {
			return nil, fmt.Errorf("%s: truncated at %d", path, off)
		}
		score := math.Float32frombits(binary.LittleEndian.Uint32(data[off:]))
		n := int(int32(binary.LittleEndian.Uint32(data[off+4:])))
		off += 8
		if n < 0 || n > maxLen || off+n > len(data) {
			return nil, fmt.Errorf("%s: bad token length %d at %d", path, n, off)
		}
		tokens = append(tokens, string(data[off:off+n]))
		scores = append(scores, score)
		off += n
	}
	return format.Metadata{
		KeyModel:  KindLlama2c,
		KeyTokens: tokens,
		KeyScores: scores,
		KeyBOS:    int64(1),
		KeyEOS:    int64(2),
		KeyUnk:    int64(0),
		KeyAddBOS: true,
	}, nil
}

var (
	tokCacheMu sync.Mutex
	tokCache   = map[string]Tokenizer{}
)

// loadLlama2c returns the tokenizer of testdata file rel (e.g. "llama2c/tok512.bin").
func loadLlama2c(tb testing.TB, rel string) Tokenizer {
	tb.Helper()
	path := filepath.Join(testdataDir(tb), rel)
	tokCacheMu.Lock()
	defer tokCacheMu.Unlock()
	if t, ok := tokCache[path]; ok {
		return t
	}
	m, err := readLlama2cTokenizer(path)
	if err != nil {
		tb.Fatal(err)
	}
	t, err := FromMetadata(m)
	if err != nil {
		tb.Fatal(err)
	}
	tokCache[path] = t
	return t
}
