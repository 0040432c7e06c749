package tokenizer

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/lmrun/lmrun/format"
	l2c "github.com/lmrun/lmrun/format/llama2c"
	"github.com/lmrun/lmrun/internal/fixtures"
)

// testdataDir returns the test data directory, the repository's testdata/ with its .gz
// files decompressed (see internal/fixtures).
func testdataDir(tb testing.TB) string { return fixtures.Dir(tb) }

// readLlama2cTokenizer reads one of the fixtures' llama2.c tokenizer.bin files with the
// production reader; tok512.bin has 512 tokens, the Llama 2 vocabulary 32000.
func readLlama2cTokenizer(path string) (format.Metadata, error) {
	vocab := 32000
	if filepath.Base(path) == "tok512.bin" {
		vocab = 512
	}
	return l2c.ReadTokenizer(path, vocab)
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
