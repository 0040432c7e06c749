package format

import (
	"fmt"
	"sort"
)

// Metadata is the typed key/value section of a checkpoint. Values have one of the Go
// types int64, float64, bool, string, []int64, []float32 or []string (SPEC.md lists
// the encoding of each).
type Metadata map[string]any

// Metadata value type codes, as stored in the file.
const (
	tInt     = 1
	tFloat   = 2
	tBool    = 3
	tString  = 4
	tInts    = 5
	tFloats  = 6
	tStrings = 7
)

// Keys returns the keys in sorted order.
func (m Metadata) Keys() []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Int returns an int value, with ok false when the key is missing. It is an error for
// the key to hold another type or a value that does not fit in an int.
func (m Metadata) Int(key string) (v int, ok bool, err error) {
	x, present := m[key]
	if !present {
		return 0, false, nil
	}
	i, isInt := x.(int64)
	if !isInt {
		return 0, true, fmt.Errorf("metadata %s: want int, have %T", key, x)
	}
	if int64(int(i)) != i {
		return 0, true, fmt.Errorf("metadata %s: %d does not fit this platform's int", key, i)
	}
	return int(i), true, nil
}

// Float returns a float value (an int is accepted and converted).
func (m Metadata) Float(key string) (v float64, ok bool, err error) {
	x, present := m[key]
	if !present {
		return 0, false, nil
	}
	switch f := x.(type) {
	case float64:
		return f, true, nil
	case int64:
		return float64(f), true, nil
	}
	return 0, true, fmt.Errorf("metadata %s: want float, have %T", key, x)
}

// String returns a string value.
func (m Metadata) String(key string) (v string, ok bool, err error) {
	x, present := m[key]
	if !present {
		return "", false, nil
	}
	s, isStr := x.(string)
	if !isStr {
		return "", true, fmt.Errorf("metadata %s: want string, have %T", key, x)
	}
	return s, true, nil
}

// Bool returns a bool value.
func (m Metadata) Bool(key string) (v bool, ok bool, err error) {
	x, present := m[key]
	if !present {
		return false, false, nil
	}
	b, isBool := x.(bool)
	if !isBool {
		return false, true, fmt.Errorf("metadata %s: want bool, have %T", key, x)
	}
	return b, true, nil
}

// Ints returns an ints value.
func (m Metadata) Ints(key string) (v []int64, ok bool, err error) {
	x, present := m[key]
	if !present {
		return nil, false, nil
	}
	s, isInts := x.([]int64)
	if !isInts {
		return nil, true, fmt.Errorf("metadata %s: want ints, have %T", key, x)
	}
	return s, true, nil
}

// Floats returns a floats value.
func (m Metadata) Floats(key string) (v []float32, ok bool, err error) {
	x, present := m[key]
	if !present {
		return nil, false, nil
	}
	s, isFloats := x.([]float32)
	if !isFloats {
		return nil, true, fmt.Errorf("metadata %s: want floats, have %T", key, x)
	}
	return s, true, nil
}

// Strings returns a strings value.
func (m Metadata) Strings(key string) (v []string, ok bool, err error) {
	x, present := m[key]
	if !present {
		return nil, false, nil
	}
	s, isStrs := x.([]string)
	if !isStrs {
		return nil, true, fmt.Errorf("metadata %s: want strings, have %T", key, x)
	}
	return s, true, nil
}

// Validate checks that every value has a type the format can store.
func (m Metadata) Validate() error {
	for k, v := range m {
		if len(k) == 0 || len(k) > MaxNameLen {
			return fmt.Errorf("metadata key %q: length must be 1..%d", k, MaxNameLen)
		}
		switch v.(type) {
		case int64, float64, bool, string, []int64, []float32, []string:
		default:
			return fmt.Errorf("metadata %s: unsupported value type %T", k, v)
		}
	}
	return nil
}
