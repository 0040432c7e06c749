package engine_test

import (
	"slices"
	"testing"

	"github.com/lmrun/lmrun/engine"
)

// TestRewind checks that a rewound session continues as if the dropped tokens had
// never been processed, and that a ring that has wrapped refuses to rewind.
func TestRewind(t *testing.T) {
	cfg := preset(t, "tiny")
	m := synthModel(t, cfg, engine.Options{Threads: 1})
	a, b, c := randomTokens(20, cfg.VocabSize, 1), randomTokens(7, cfg.VocabSize, 2), randomTokens(9, cfg.VocabSize, 3)
	fresh := m.NewSession(engine.SessionOptions{})
	want, err := fresh.Forward(append(slices.Clone(a), b...))
	if err != nil {
		t.Fatal(err)
	}
	want = slices.Clone(want)
	s := m.NewSession(engine.SessionOptions{})
	if _, err := s.Forward(append(slices.Clone(a), c...)); err != nil {
		t.Fatal(err)
	}
	if s.Rewind(len(a)+len(c)+1) || s.Rewind(-1) {
		t.Fatal("Rewind past the sequence or below 0 succeeded")
	}
	if !s.Rewind(len(a)) || s.Pos() != len(a) {
		t.Fatalf("Rewind(%d) failed, Pos %d", len(a), s.Pos())
	}
	got, err := s.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, want) {
		t.Error("logits after Rewind differ from a fresh session's")
	}

	cfg.AttnWindows = []int{0, 8}
	m = synthModel(t, cfg, engine.Options{Threads: 1})
	s = m.NewSession(engine.SessionOptions{})
	if _, err := s.Forward(a[:6]); err != nil {
		t.Fatal(err)
	}
	if !s.Rewind(3) {
		t.Error("Rewind within an unwrapped ring failed")
	}
	if _, err := s.Forward(a[:10]); err != nil {
		t.Fatal(err)
	}
	if s.Rewind(5) || s.Pos() != 13 {
		t.Errorf("Rewind over a wrapped ring succeeded (Pos %d)", s.Pos())
	}
	if !s.Rewind(13) {
		t.Error("Rewind to the current position failed")
	}
}
