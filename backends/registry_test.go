package backends

import (
	"strings"
	"testing"
)

// TestDisableFeaturesUnknown: names cpuid does not know are reported, all of them; an
// empty list disables nothing. (Disabling a real feature changes the process's CPU
// view, so cmd/lmrun's TestCPUDisable tests that in a subprocess.)
func TestDisableFeaturesUnknown(t *testing.T) {
	for _, list := range []string{"", " ", ",,"} {
		if err := disableFeatures(list); err != nil {
			t.Errorf("disableFeatures(%q) = %v", list, err)
		}
	}
	err := disableFeatures("nosuch, , UNKNOWN,alsonot")
	if err == nil {
		t.Fatal("unknown features accepted")
	}
	for _, n := range []string{"nosuch", "UNKNOWN", "alsonot"} {
		if !strings.Contains(err.Error(), n) {
			t.Errorf("error %q does not name %q", err, n)
		}
	}
}
