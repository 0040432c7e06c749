package hf

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/format/safetensors"
	"github.com/lmrun/lmrun/model"
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
	return parseConfig(path, b)
}

// parseConfig parses the contents of config.json; path names it in errors.
func parseConfig(path string, b []byte) (*config, error) {
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

// resolve fills in cfg's defaults and validates it (model.Config.Resolve). A rejected
// value is reported under its config.json key when keys maps the metadata key the model
// package names it by.
func (c *config) resolve(cfg *model.Config, keys map[string]string) error {
	err := cfg.Resolve()
	if err == nil {
		return nil
	}
	var ce *model.ConfigError
	if errors.As(err, &ce) {
		if k, ok := keys[ce.Key]; ok {
			return c.errorf("%s = %v: %v", k, ce.Value, err)
		}
	}
	return c.errorf("%v", err)
}

// checkLayers rejects a layer count (the value of key) larger than the number of layers
// the weights hold tensors for, before anything loops over the layers.
func (c *config) checkLayers(key string, layers int, st *safetensors.File, prefix string) error {
	if n := layerCount(st, prefix); layers > n {
		return c.errorf("%s = %d, but %s holds tensors for at most %d layers", key, layers, weightsName(st), n)
	}
	return nil
}

// checkShape rejects hyper-parameters (what: "key = value and ...") that imply a shape
// other than the one the named tensor has, before anything is sized by them. A missing
// tensor is left to the builder, which lists every missing tensor.
func (c *config) checkShape(st *safetensors.File, name, what string, shape ...int) error {
	t := st.Tensor(name)
	if t == nil || sameShape(t.Shape, shape) {
		return nil
	}
	return c.errorf("%s imply %s of shape %v, but %s has it as %v", what, name, shape, weightsName(st), t.Shape)
}

// keyValues formats key, value pairs as "k1 = v1 and k2 = v2" for error messages.
func keyValues(kv ...any) string {
	parts := make([]string, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, fmt.Sprintf("%v = %v", kv[i], kv[i+1]))
	}
	return strings.Join(parts, " and ")
}

// layerCount returns how many distinct layer indices n the tensor names of st hold as
// prefix + n + ".".
func layerCount(st *safetensors.File, prefix string) int {
	names := make([]string, len(st.Tensors))
	for i, t := range st.Tensors {
		names[i] = t.Name
	}
	return format.CountLayers(names, prefix)
}

// weightsName names the safetensors file of st in messages: its base name when st is
// one file, else a description.
func weightsName(st *safetensors.File) string {
	path := ""
	for i, t := range st.Tensors {
		if i > 0 && t.Path != path {
			return "the safetensors shards"
		}
		path = t.Path
	}
	if path == "" {
		return "the safetensors weights"
	}
	return filepath.Base(path)
}

// null reports whether key is present with the value null (which get treats as absent).
func (c *config) null(key string) bool {
	v, ok := c.m[key]
	return ok && v == nil
}

// object returns the JSON object under key as a config whose errors name it as
// "key.field" (nil when absent or null).
func (c *config) object(key string) (*config, error) {
	v, ok := c.get(key)
	if !ok {
		return nil, nil
	}
	m, isObj := v.(map[string]any)
	if !isObj {
		return nil, c.errorf("%s is %v, want an object", key, v)
	}
	return &config{path: c.path + ": " + key, m: m}, nil
}

// floats returns a list of numbers (nil when absent).
func (c *config) floats(key string) ([]float64, error) {
	v, ok := c.get(key)
	if !ok {
		return nil, nil
	}
	list, isList := v.([]any)
	if !isList {
		return nil, c.errorf("%s is %v, want a list of numbers", key, v)
	}
	out := make([]float64, len(list))
	for i, x := range list {
		n, isNum := x.(json.Number)
		if !isNum {
			return nil, c.errorf("%s[%d] is %v, want a number", key, i, x)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil || math.IsInf(f, 0) {
			return nil, c.errorf("%s[%d] is %s, want a finite number", key, i, n)
		}
		out[i] = f
	}
	return out, nil
}
