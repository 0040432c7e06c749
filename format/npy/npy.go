// Package npy reads and writes float32 arrays in NumPy's .npy format (version 1.0),
// the format lmrun uses to exchange logits with reference implementations.
package npy

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"regexp"
	"strconv"
	"strings"
)

const magic = "\x93NUMPY"

// Write stores data as a C-ordered little-endian float32 array of the given shape.
func Write(w io.Writer, shape []int, data []float32) error {
	n := 1
	for _, s := range shape {
		n *= s
	}
	if n != len(data) {
		return fmt.Errorf("npy: %d values for shape %v", len(data), shape)
	}
	dims := make([]string, len(shape))
	for i, s := range shape {
		dims[i] = strconv.Itoa(s)
	}
	tuple := strings.Join(dims, ", ")
	if len(shape) == 1 {
		tuple += ","
	}
	header := fmt.Sprintf("{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }", tuple)
	// Pad with spaces so that magic + 2 + 2 + header + '\n' is a multiple of 64.
	total := len(magic) + 4 + len(header) + 1
	header += strings.Repeat(" ", (64-total%64)%64) + "\n"
	bw := bufio.NewWriter(w)
	bw.WriteString(magic)
	bw.Write([]byte{1, 0})
	binary.Write(bw, binary.LittleEndian, uint16(len(header)))
	bw.WriteString(header)
	var buf [4]byte
	for _, v := range data {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(v))
		bw.Write(buf[:])
	}
	return bw.Flush()
}

// WriteFile writes an array to path.
func WriteFile(path string, shape []int, data []float32) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := Write(f, shape, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

var shapeRe = regexp.MustCompile(`'shape':\s*\(([0-9,\s]*)\)`)

// Read parses a little-endian float32 .npy file (C order) and returns its shape and data.
func Read(b []byte) ([]int, []float32, error) {
	if len(b) < 10 || string(b[:6]) != magic {
		return nil, nil, errors.New("npy: bad magic")
	}
	var hlen, off int
	switch b[6] {
	case 1:
		hlen, off = int(binary.LittleEndian.Uint16(b[8:])), 10
	case 2, 3:
		if len(b) < 12 {
			return nil, nil, errors.New("npy: truncated header")
		}
		hlen, off = int(binary.LittleEndian.Uint32(b[8:])), 12
	default:
		return nil, nil, fmt.Errorf("npy: version %d", b[6])
	}
	if hlen > len(b)-off {
		return nil, nil, errors.New("npy: truncated header")
	}
	h := string(b[off : off+hlen])
	if !strings.Contains(h, "'descr': '<f4'") {
		return nil, nil, fmt.Errorf("npy: only little-endian float32 is supported, header %q", h)
	}
	if strings.Contains(h, "'fortran_order': True") {
		return nil, nil, errors.New("npy: fortran order is not supported")
	}
	m := shapeRe.FindStringSubmatch(h)
	if m == nil {
		return nil, nil, fmt.Errorf("npy: no shape in header %q", h)
	}
	var shape []int
	n := 1
	for _, f := range strings.Split(m[1], ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := strconv.Atoi(f)
		if err != nil || d < 0 || d > len(b) {
			return nil, nil, fmt.Errorf("npy: bad dimension %q", f)
		}
		shape = append(shape, d)
		n *= d
		if n > len(b) {
			return nil, nil, fmt.Errorf("npy: shape %v larger than the file", shape)
		}
	}
	data := b[off+hlen:]
	if len(data) != 4*n {
		return nil, nil, fmt.Errorf("npy: %d data bytes for shape %v", len(data), shape)
	}
	out := make([]float32, n)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
	}
	return shape, out, nil
}

// ReadFile reads an array from path.
func ReadFile(path string) ([]int, []float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	shape, data, err := Read(b)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return shape, data, nil
}
