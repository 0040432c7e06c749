//go:build !linux && amd64 && !purego

package avx2

import (
	"testing"
	"time"
)

func smallPages(_ *testing.B, n int) []byte { return make([]byte, n) }

// threadTime is the wall clock where the thread's CPU time is not at hand.
func threadTime() time.Duration { return time.Duration(time.Now().UnixNano()) }

func lockThread(*testing.B) {}
