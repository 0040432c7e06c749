// Package testdata locates the shared test fixtures (real models, tokenizers, text and
// reference outputs) for tests. They live outside the repository: $LMRUN_TESTDATA, or
// ../shared/testdata next to the module root.
package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Dir returns the test data directory. When it is missing the test is skipped, or fails
// under CI=true, where a missing directory means the suite would silently test nothing.
func Dir(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LMRUN_TESTDATA")
	if dir == "" {
		root, err := moduleRoot()
		if err == nil {
			dir = filepath.Join(root, "..", "shared", "testdata")
		}
	}
	if st, err := os.Stat(dir); dir == "" || err != nil || !st.IsDir() {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test data directory %q not found (set LMRUN_TESTDATA)", dir)
		}
		t.Skipf("test data directory %q not found (set LMRUN_TESTDATA)", dir)
	}
	return dir
}

// Path joins elements onto Dir and fails the test if the file does not exist.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	p := filepath.Join(append([]string{Dir(t)}, elem...)...)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("test data: %v", err)
	}
	return p
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}
