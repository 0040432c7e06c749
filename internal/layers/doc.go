// Package layers holds the test that keeps the import graph pointing down the layers
// DESIGN.md draws: leaf packages import nothing from the project, format reads files into
// tensors and a model description without knowing kernels or the engine, kernels know only
// dtypes, and the engine links no concrete backend.
package layers
