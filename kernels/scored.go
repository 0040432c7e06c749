package kernels

// ScoredAttention is implemented by backends whose Attention takes its scores as MatMul
// does: score i is row i of the product of the f32 key rows with q (T = 1). By MatMul's
// contract a product over several queries (T > 1, a query a row of x) gives each query
// those same bits, so a caller with many queries over the same keys — a prompt's, head
// by head — can take their scores in one matrix product and finish each query with
// AttendScores, and get exactly what Attention gives it.
type ScoredAttention interface {
	// AttendScores is the rest of Attention once s[:n] holds the products q·k_i as
	// MatMul computes them: it scales them, replaces them by their softmax and writes
	// the weighted sum of the n values (stride apart in vc) to out, len(out) of them —
	// bit for bit what Attention writes for that q.
	AttendScores(out, s, vc []float32, n, stride int, scale float32)
}
