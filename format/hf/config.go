package hf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"strconv"
)

// maxConfigSize bounds config.json (real ones are a few KB).
const maxConfigSize = 16 << 20

// config is a parsed config.json. JSON null counts as absent.
type config struct {
	path string
	m    map[string]any
}

func readConfig(path string) (*config, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxConfigSize {
		return nil, fmt.Errorf("%s: %d bytes is too large for a config", path, st.Size())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %w", path, err)
	}
	if m == nil {
		return nil, fmt.Errorf("%s: not a JSON object", path)
	}
	return &config{path: path, m: m}, nil
}

func (c *config) errorf(format string, args ...any) error {
	return fmt.Errorf("%s: %s", c.path, fmt.Sprintf(format, args...))
}

func (c *config) get(key string) (any, bool) {
	v, ok := c.m[key]
	if !ok || v == nil {
		return nil, false
	}
	return v, true
}

// has reports whether key is present and not null.
func (c *config) has(key string) bool {
	_, ok := c.get(key)
	return ok
}

// int returns an integer value, def when absent.
func (c *config) int(key string, def int) (int, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, c.errorf("%s is %v, want an integer", key, v)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		// Accept integral floats such as 2048.0.
		f, ferr := strconv.ParseFloat(string(n), 64)
		if ferr != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, c.errorf("%s is %s, want an integer", key, n)
		}
		i = int64(f)
	}
	if i < math.MinInt32 || i > math.MaxInt32 {
		return 0, c.errorf("%s = %d is out of range", key, i)
	}
	return int(i), nil
}

// positive returns a required integer that must be > 0.
func (c *config) positive(key string) (int, error) {
	if !c.has(key) {
		return 0, c.errorf("missing %s", key)
	}
	n, err := c.int(key, 0)
	if err != nil {
		return 0, err
	}
	if n <= 0 {
		return 0, c.errorf("%s = %d, want > 0", key, n)
	}
	return n, nil
}

// float returns a number, def when absent.
func (c *config) float(key string, def float64) (float64, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	n, isNum := v.(json.Number)
	if !isNum {
		return 0, c.errorf("%s is %v, want a number", key, v)
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, c.errorf("%s is %s, want a finite number", key, n)
	}
	return f, nil
}

// bool returns a boolean, def when absent.
func (c *config) bool(key string, def bool) (bool, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	b, isBool := v.(bool)
	if !isBool {
		return false, c.errorf("%s is %v, want true or false", key, v)
	}
	return b, nil
}

// str returns a string, def when absent.
func (c *config) str(key, def string) (string, error) {
	v, ok := c.get(key)
	if !ok {
		return def, nil
	}
	s, isStr := v.(string)
	if !isStr {
		return "", c.errorf("%s is %v, want a string", key, v)
	}
	return s, nil
}

// strings returns a list of strings (nil when absent).
func (c *config) strings(key string) ([]string, error) {
	v, ok := c.get(key)
	if !ok {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, c.errorf("%s is %v, want a list of strings", key, v)
	}
	out := make([]string, len(list))
	for i, x := range list {
		s, isStr := x.(string)
		if !isStr {
			return nil, c.errorf("%s[%d] is %v, want a string", key, i, x)
		}
		out[i] = s
	}
	return out, nil
}

// checkArchitectures accepts a config whose "architectures" (if any) are all in allowed.
func (c *config) checkArchitectures(allowed ...string) error {
	archs, err := c.strings("architectures")
	if err != nil {
		return err
	}
	for _, a := range archs {
		ok := false
		for _, w := range allowed {
			ok = ok || a == w
		}
		if !ok {
			return c.errorf("unsupported architecture %s (supported: %v)", a, allowed)
		}
	}
	return nil
}

// positives reads each key as a positive int into the matching destination.
func (c *config) positives(keys []string, dsts ...*int) error {
	for i, k := range keys {
		n, err := c.positive(k)
		if err != nil {
			return err
		}
		*dsts[i] = n
	}
	return nil
}

// activation maps activation_function (default def) to lmrun's lm.activation.
func (c *config) activation(def string) (string, error) {
	name, err := c.str("activation_function", def)
	if err != nil {
		return "", err
	}
	act, ok := gpt2Activations[name]
	if !ok {
		return "", c.errorf("unsupported activation_function %q (supported: gelu_new, gelu_pytorch_tanh, gelu_fast, gelu, relu)", name)
	}
	return act, nil
}
