package format

import "fmt"

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
