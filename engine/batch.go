package engine

import (
	"errors"
	"fmt"
)

// Batch runs one forward pass for several sessions of a model at once — the step of
// continuous batching: each session brings its next tokens (one to decode, or a chunk of
// a prompt), and every matrix product multiplies the rows of all of them together, so
// the weights are read once per step for all the sequences instead of once for each.
// Each session attends over its own KV cache at its own position.
//
// A row computes the same numbers whatever pass it is part of (the kernels' MatMul
// promises each row's result independently of the others), so a session's logits are
// bit for bit those it gets from Session.Forward alone.
//
// A Batch holds the pass's working memory and is not safe for concurrent use; the
// sessions it runs must not be used by anything else during Forward.
type Batch struct {
	m    *Model
	p    *pass
	seqs int
	segs []segment
}

// BatchItem is one session's part of a batched step.
type BatchItem struct {
	// Session runs Tokens at its position; it must be a session of the Batch's model.
	Session *Session
	// Tokens are the session's next tokens (at least one).
	Tokens []int
	// Logits asks for the logits after the last of Tokens, in Session.Logits.
	Logits bool
}

// NewBatch returns a Batch for steps of up to rows tokens in all, from up to seqs
// sessions.
func (m *Model) NewBatch(rows, seqs int) (*Batch, error) {
	if rows < 1 || seqs < 1 || seqs > rows {
		return nil, fmt.Errorf("batch of %d rows for %d sequences: want 1 ≤ sequences ≤ rows", rows, seqs)
	}
	const maxRows = 1 << 16
	if rows > maxRows {
		return nil, fmt.Errorf("batch of %d rows: at most %d", rows, maxRows)
	}
	p := newPass(m, rows)
	if seqs > 1 {
		p.logits = make([]float32, seqs*m.cfg.VocabSize)
	}
	return &Batch{m: m, p: p, seqs: seqs, segs: make([]segment, 0, seqs)}, nil
}

// Rows returns the most tokens a step can run.
func (b *Batch) Rows() int { return b.p.rows }

// Sequences returns the most sessions a step can run.
func (b *Batch) Sequences() int { return b.seqs }

// Forward runs one step: every item's tokens through the model at its session's
// position, appended to the session's KV cache. Items that ask for them find the logits
// after their last token in Session.Logits. Nothing runs when an item is invalid (a
// session of another model or twice in the step, no tokens or ids out of the
// vocabulary, more tokens than the session's context holds) or the step exceeds the
// Batch's rows or sequences; the error names the item.
func (b *Batch) Forward(items []BatchItem) error {
	if len(items) == 0 {
		return errors.New("batch: no items")
	}
	if len(items) > b.seqs {
		return fmt.Errorf("batch: %d sequences, the batch takes %d", len(items), b.seqs)
	}
	rows := 0
	for i, it := range items {
		s := it.Session
		if s == nil {
			return fmt.Errorf("batch: item %d has no session", i)
		}
		if s.m != b.m {
			return fmt.Errorf("batch: item %d: a session of another model", i)
		}
		for j := range i {
			if items[j].Session == s {
				return fmt.Errorf("batch: items %d and %d run the same session", j, i)
			}
		}
		if err := s.check(it.Tokens); err != nil {
			return fmt.Errorf("batch: item %d: %w", i, err)
		}
		rows += len(it.Tokens)
	}
	if rows > b.p.rows {
		return fmt.Errorf("batch: %d tokens, the batch takes %d", rows, b.p.rows)
	}
	b.segs = b.segs[:0]
	for _, it := range items {
		b.segs = append(b.segs, segment{s: it.Session, tokens: it.Tokens, logits: it.Logits})
	}
	b.p.forward(b.segs, nil)
	return nil
}

// Logits returns the logits after the last token whose logits were computed — by
// Forward, ForwardAll, or a Batch step that asked for them. The slice is owned by the
// session and overwritten by the next such pass.
func (s *Session) Logits() []float32 { return s.logits }
