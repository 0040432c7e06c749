package layers

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/lmrun/lmrun/"

// allowed lists, for each package (a path relative to the module root; "x/..." is x and
// everything below it), the project packages its non-test files may import. A package
// not listed may import anything below it; the rules name the ones a reader relies on.
var allowed = map[string][]string{
	"dtype":                 {},
	"model":                 {},
	"engine/parallel":       {},
	"chat":                  {"internal/jinja"},
	"internal/jinja":        {},
	"kernels":               {"dtype"},
	"format/...":            {"dtype", "model", "format/..."},
	"quant":                 {"dtype"},
	"tokenizer":             {"format", "format/tokfile"},
	"backends":              {"kernels", "dtype"},
	"backends/internal/...": {"kernels", "dtype", "backends/internal/..."},
	"backends/avx2":         {"backends", "backends/internal/...", "kernels", "dtype"},
	"backends/avx512":       {"backends", "backends/avx2", "backends/internal/...", "kernels", "dtype"},
	"backends/neon":         {"backends", "kernels", "dtype"},
	"engine":                {"backends", "kernels", "dtype", "model", "format", "tokenizer", "engine/parallel"},
	"convert/...":           {"dtype", "model", "format/...", "tokenizer", "quant", "convert/..."},
	"serve":                 {"engine", "chat", "tokenizer", "convert/...", "model", "format/..."},
	"serve/loadtest":        {},
}

func matches(pattern, pkg string) bool {
	if base, ok := strings.CutSuffix(pattern, "/..."); ok {
		return pkg == base || strings.HasPrefix(pkg, base+"/")
	}
	return pattern == pkg
}

// rule returns the most specific rule that covers pkg.
func rule(pkg string) (string, []string, bool) {
	best := ""
	for p := range allowed {
		if matches(p, pkg) && len(p) > len(best) && (best == "" || !strings.HasSuffix(p, "/...") || strings.HasSuffix(best, "/...")) {
			best = p
		}
	}
	if best == "" {
		return "", nil, false
	}
	return best, allowed[best], true
}

// imports returns, for each package directory under root, the project packages its
// non-test Go files import (build tags ignored: every file counts).
func imports(t *testing.T, root string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || strings.HasPrefix(name, "_") || name == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") || strings.HasSuffix(name, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, im := range f.Imports {
			p, _ := strconv.Unquote(im.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok {
				out[rel] = append(out[rel], dep)
			}
		}
		if _, ok := out[rel]; !ok {
			out[rel] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestImportsPointDown(t *testing.T) {
	graph := imports(t, filepath.Join("..", ".."))
	for _, must := range []string{"dtype", "model", "kernels", "format", "format/gguf", "engine", "backends/avx2", "tokenizer", "convert"} {
		if _, ok := graph[must]; !ok {
			t.Fatalf("package %s not found: the walk is broken", must)
		}
	}
	pkgs := make([]string, 0, len(graph))
	for p := range graph {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	for _, pkg := range pkgs {
		name, ok2, ok := rule(pkg)
		if !ok {
			continue
		}
		for _, dep := range graph[pkg] {
			fine := false
			for _, a := range ok2 {
				if matches(a, dep) {
					fine = true
				}
			}
			if !fine {
				t.Errorf("%s imports %s, which rule %q does not allow (allowed: %v)", pkg, dep, name, ok2)
			}
		}
	}
}

// TestRuleSelection pins the rule lookup the check relies on.
func TestRuleSelection(t *testing.T) {
	for pkg, want := range map[string]string{
		"format":          "format/...",
		"format/gguf":     "format/...",
		"engine":          "engine",
		"engine/parallel": "engine/parallel",
		"convert/synth":   "convert/...",
		"backends/avx2":   "backends/avx2",
		"backends/avx512": "backends/avx512",
	} {
		if got, _, _ := rule(pkg); got != want {
			t.Errorf("rule(%s) = %q, want %q", pkg, got, want)
		}
	}
	if _, _, ok := rule("cmd/lmrun"); ok {
		t.Error("cmd/lmrun has a rule; the command may import anything")
	}
}
