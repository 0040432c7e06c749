package format

import (
	"fmt"
	"strings"
)

// Checkpoint is a model ready to be written: metadata plus tensor sources in file order.
// Importers of other formats produce one; WriteFile stores it.
type Checkpoint struct {
	Meta    Metadata
	Tensors []Source
}

// Source returns the named tensor source, or nil.
func (c *Checkpoint) Source(name string) *Source {
	for i := range c.Tensors {
		if c.Tensors[i].Name == name {
			return &c.Tensors[i]
		}
	}
	return nil
}

// WriteFile writes the checkpoint to path (see the package-level WriteFile).
func (c *Checkpoint) WriteFile(path string, progress func(done, total int)) error {
	if c == nil {
		return fmt.Errorf("nil checkpoint")
	}
	return WriteFile(path, c.Meta, c.Tensors, progress)
}

// CountLayers returns how many distinct layer indices n the tensor names hold as prefix
// + n + "." (prefix "blk." for lmrun's names): a bound, taken from a file, on the layers
// it can describe, for checking a layer count from the same file's metadata before
// anything loops over it.
func CountLayers(names []string, prefix string) int {
	seen := make(map[string]bool)
	for _, name := range names {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		idx, _, ok := strings.Cut(rest, ".")
		if !ok || idx == "" || strings.Trim(idx, "0123456789") != "" {
			continue
		}
		seen[idx] = true
	}
	return len(seen)
}
