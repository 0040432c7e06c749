package engine_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"strings"
	"testing"
)

// TestREADMEExample: the README's Go API snippet is the body of Example, copied, so it
// compiles and its output is checked with the examples.
func TestREADMEExample(t *testing.T) {
	src, err := os.ReadFile("example_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "example_test.go", src, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	var body string
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Name.Name == "Example" {
			body = string(src[fset.Position(fn.Body.Lbrace).Offset+1 : fset.Position(fn.Body.Rbrace).Offset])
		}
	}
	if body == "" {
		t.Fatal("example_test.go has no func Example")
	}
	var lines []string
	for _, l := range strings.Split(strings.Trim(body, "\n"), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "// Output:") {
			break
		}
		lines = append(lines, strings.TrimPrefix(l, "\t"))
	}
	want := strings.Join(lines, "\n")

	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, api, ok := strings.Cut(string(readme), "## The Go API")
	if !ok {
		t.Fatal("README has no \"## The Go API\" section")
	}
	_, block, ok := strings.Cut(api, "```go\n")
	if !ok {
		t.Fatal("README's Go API section has no go code block")
	}
	block, _, _ = strings.Cut(block, "```")
	if got := strings.TrimRight(block, "\n"); got != want {
		t.Errorf("README's Go API snippet differs from the body of Example in engine/example_test.go.\nREADME:\n%s\nExample:\n%s", got, want)
	}
}
