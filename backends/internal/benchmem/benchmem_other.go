//go:build !linux

package benchmem

import (
	"testing"
	"time"
)

// SmallPages returns n bytes of ordinary memory where small pages cannot be asked for.
func SmallPages(_ testing.TB, n int) []byte { return make([]byte, n) }

// ThreadTime is the wall clock where the thread's CPU time is not at hand.
func ThreadTime() time.Duration { return time.Duration(time.Now().UnixNano()) }
