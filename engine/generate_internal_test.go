package engine

import (
	"slices"
	"testing"
)

// TestStopMatcher feeds chunks of text and checks what may be emitted after each.
func TestStopMatcher(t *testing.T) {
	for _, c := range []struct {
		name   string
		stops  []string
		chunks []string
		want   []string // emitted after each chunk
		held   string   // held back at the end
		stop   bool
	}{
		{"none", nil, []string{"ab", "END"}, []string{"ab", "END"}, "", false},
		{"inside one chunk", []string{"END"}, []string{"abENDcd"}, []string{"ab"}, "", true},
		{"across chunks", []string{"END"}, []string{"abc E", "N", "D tail"}, []string{"abc ", "", ""}, "", true},
		{"prefix that is not", []string{"END"}, []string{"xE", "Nough"}, []string{"x", "ENough"}, "", false},
		{"held at the end", []string{"END"}, []string{"ab", "EN"}, []string{"ab", ""}, "EN", false},
		{"restarting prefix", []string{"abc"}, []string{"aab", "abc"}, []string{"a", "ab"}, "", true},
		{"earliest wins", []string{"cd", "bcde"}, []string{"abcde"}, []string{"a"}, "", true},
		{"longest held", []string{"xy", "yyz"}, []string{"ayy", "z!"}, []string{"a", ""}, "", true},
		{"multi-byte", []string{"é!"}, []string{"café", "?"}, []string{"caf", "é?"}, "", false},
	} {
		m := stopMatcher{stops: c.stops}
		var got []string
		stopped := false
		for _, ch := range c.chunks {
			out, s := m.add(ch)
			got = append(got, out)
			stopped = s
		}
		if !slices.Equal(got, c.want) || m.held != c.held || stopped != c.stop {
			t.Errorf("%s: emitted %q, held %q, stopped %v; want %q, %q, %v", c.name, got, m.held, stopped, c.want, c.held, c.stop)
		}
	}
}
