package kernels

// XPreparer is implemented by backends whose products over several tokens first lay x
// out in an order of their own — the columns in the order a row is summed in, tokens a
// padded stride apart, long rows part by part — so that the engine can lay x out once
// per product instead of once per call: a product split across threads is several calls
// (the engine's pool hands a thread several row ranges), each of which would lay out
// all T tokens again. The engine calls PrepareX on ranges of the tokens, in parallel,
// and then MatMulPrepared on its row ranges with the result.
type XPreparer interface {
	// XLayout returns how a product of T rows of x with w takes x laid out: 0 when it
	// takes x as it is (the caller then calls MatMul), otherwise a value that two
	// matrices share exactly when PrepareX lays out the same x the same way for both,
	// so that one prepared x serves every product of a call that multiplies the same x
	// with matrices of equal layout.
	XLayout(T int, w *Mat) int

	// PreparedXSize returns how many float32s PrepareX writes at most for T rows of x of
	// cols columns, whatever the matrix; it never decreases as T or cols grow.
	PreparedXSize(T, cols int) int

	// PrepareX lays out tokens [t0, t1) of x (T rows of w.Cols) in xp for a product with
	// w (XLayout(T, w) ≠ 0). Calls on disjoint token ranges of one xp may run at once,
	// each with its own scratch (at least ScratchSize(T, w.Cols) floats).
	PrepareX(xp, x []float32, T int, w *Mat, t0, t1 int, scratch Scratch)

	// MatMulPrepared is MatMul with x also laid out in xp by PrepareX for a matrix of
	// w's layout: the same results, bit for bit.
	MatMulPrepared(dst []float32, ld int, x, xp []float32, T int, w *Mat, bias []float32, r0, r1 int, scratch Scratch)
}
