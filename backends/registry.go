// Package backends is the registry of kernel implementations. Each backend declares the
// CPU features it needs; Select picks the most preferred one the CPU has, unless the
// caller (--backend) or the LMRUN_BACKEND environment variable names one.
//
// The pure-Go reference ("generic") is always registered. SIMD backends live in
// sub-packages that register themselves in init; import backends/all to get every one
// this build has.
package backends

import (
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"

	"github.com/klauspost/cpuid/v2"

	"github.com/lmrun/lmrun/kernels"
)

// EnvVar names the environment variable that overrides backend selection.
const EnvVar = "LMRUN_BACKEND"

// DisableEnvVar names the environment variable listing CPU features (cpuid's names,
// comma-separated, e.g. "AVX512F,AVXVNNI") that the backends treat as absent, read once
// at start-up: to run, test and measure this machine as a lesser CPU would (an AVX2-only
// one, or one without AVX-VNNI). Resolve reports a name it does not know.
const DisableEnvVar = "LMRUN_CPU_DISABLE"

// disableErr is the error of $LMRUN_CPU_DISABLE, set once by init.
var disableErr error

// init runs before any backend package's variables are initialized (they import this
// package), so the features are gone before a backend asks for them.
func init() { disableErr = disableFeatures(os.Getenv(DisableEnvVar)) }

func disableFeatures(list string) error {
	var unknown []string
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		id := cpuid.ParseFeature(strings.ToUpper(name))
		if id == cpuid.UNKNOWN {
			unknown = append(unknown, name)
			continue
		}
		cpuid.CPU.Disable(id)
	}
	if len(unknown) > 0 {
		return fmt.Errorf("$%s: unknown CPU features %s (cpuid names, e.g. AVX512F, AVXVNNI)", DisableEnvVar, strings.Join(unknown, ", "))
	}
	return nil
}

// Backend describes one kernel implementation.
type Backend struct {
	// Name is what --backend and LMRUN_BACKEND accept.
	Name string
	// Priority orders backends; Select prefers the highest available one.
	Priority int
	// Requires lists the CPU features the backend needs (empty: none).
	Requires []cpuid.FeatureID
	// Arch is the GOARCH the backend's code is for ("" for any).
	Arch string
	// New returns the kernels. It is only called when the backend is available.
	New func() kernels.Kernels
}

// Available reports whether the running CPU has every feature the backend requires.
func (b Backend) Available() bool {
	if b.Arch != "" && b.Arch != runtime.GOARCH {
		return false
	}
	return len(b.Requires) == 0 || cpuid.CPU.Supports(b.Requires...)
}

// Missing lists the required features the CPU lacks.
func (b Backend) Missing() []string {
	var m []string
	if b.Arch != "" && b.Arch != runtime.GOARCH {
		m = append(m, "GOARCH="+b.Arch)
	}
	for _, f := range b.Requires {
		if !cpuid.CPU.Supports(f) {
			m = append(m, f.String())
		}
	}
	return m
}

// The registry: the only package-level mutable state in lmrun.
var (
	mu       sync.RWMutex
	registry = map[string]Backend{}
)

// Register adds a backend. It panics on a duplicate name or a nil constructor, which are
// programming errors caught by any test that imports the backend.
func Register(b Backend) {
	mu.Lock()
	defer mu.Unlock()
	if b.Name == "" || b.New == nil {
		panic("backends: Register needs a name and a constructor")
	}
	if _, dup := registry[b.Name]; dup {
		panic("backends: duplicate backend " + b.Name)
	}
	registry[b.Name] = b
}

func init() {
	Register(Backend{Name: "generic", Priority: 0, New: func() kernels.Kernels { return kernels.Reference{} }})
}

// List returns every registered backend, most preferred first.
func List() []Backend {
	mu.RLock()
	defer mu.RUnlock()
	l := make([]Backend, 0, len(registry))
	for _, b := range registry {
		l = append(l, b)
	}
	sort.Slice(l, func(i, j int) bool {
		if l[i].Priority != l[j].Priority {
			return l[i].Priority > l[j].Priority
		}
		return l[i].Name < l[j].Name
	})
	return l
}

// Lookup returns the named backend.
func Lookup(name string) (Backend, bool) {
	mu.RLock()
	defer mu.RUnlock()
	b, ok := registry[name]
	return b, ok
}

// Best returns the most preferred available backend.
func Best() Backend {
	for _, b := range List() {
		if b.Available() {
			return b
		}
	}
	b, _ := Lookup("generic")
	return b
}

// Resolve picks a backend: name if not empty, else $LMRUN_BACKEND if set, else Best.
// Naming an unknown backend, or one whose CPU features are missing, is an error (never
// a SIGILL later), as is an unknown feature in $LMRUN_CPU_DISABLE.
func Resolve(name string) (Backend, error) {
	if disableErr != nil {
		return Backend{}, disableErr
	}
	if name == "" {
		name = strings.TrimSpace(os.Getenv(EnvVar))
	}
	if name == "" || name == "auto" {
		return Best(), nil
	}
	b, ok := Lookup(name)
	if !ok {
		var names []string
		for _, b := range List() {
			names = append(names, b.Name)
		}
		return Backend{}, fmt.Errorf("unknown backend %q (this build has: %s)", name, strings.Join(names, ", "))
	}
	if !b.Available() {
		return Backend{}, fmt.Errorf("backend %q needs CPU features this machine lacks: %s", name, strings.Join(b.Missing(), ", "))
	}
	return b, nil
}

// Select resolves a backend (see Resolve) and returns its kernels.
func Select(name string) (kernels.Kernels, error) {
	b, err := Resolve(name)
	if err != nil {
		return nil, err
	}
	return b.New(), nil
}
