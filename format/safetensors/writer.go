package safetensors

import (
	"bufio"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// TensorData is a tensor to be written: raw little-endian bytes of the given dtype and
// shape.
type TensorData struct {
	Name  string
	DType DType
	Shape []int
	Data  []byte
}

type headerEntry struct {
	DType       DType    `json:"dtype"`
	Shape       []int    `json:"shape"`
	DataOffsets [2]int64 `json:"data_offsets"`
}

// Write writes a safetensors file to w: tensors in the given order, the header's keys
// sorted, the header padded with spaces to a multiple of 8 bytes. metadata may be nil.
func Write(w io.Writer, tensors []TensorData, metadata map[string]string) error {
	hdr := make(map[string]any, len(tensors)+1)
	if metadata != nil {
		hdr["__metadata__"] = metadata
	}
	var off int64
	for _, t := range tensors {
		if t.Name == "" || t.Name == "__metadata__" {
			return fmt.Errorf("safetensors: invalid tensor name %q", t.Name)
		}
		if _, dup := hdr[t.Name]; dup {
			return fmt.Errorf("safetensors: duplicate tensor %s", t.Name)
		}
		size := t.DType.Size()
		if size == 0 {
			return fmt.Errorf("safetensors: tensor %s: unknown dtype %q", t.Name, t.DType)
		}
		n := 1
		for _, s := range t.Shape {
			if s < 0 {
				return fmt.Errorf("safetensors: tensor %s: negative dimension in %v", t.Name, t.Shape)
			}
			n *= s
		}
		if int64(len(t.Data)) != int64(n)*int64(size) {
			return fmt.Errorf("safetensors: tensor %s: %d bytes of data, shape %v of %s needs %d", t.Name, len(t.Data), t.Shape, t.DType, n*size)
		}
		shape := t.Shape
		if shape == nil {
			shape = []int{}
		}
		hdr[t.Name] = headerEntry{DType: t.DType, Shape: shape, DataOffsets: [2]int64{off, off + int64(len(t.Data))}}
		off += int64(len(t.Data))
	}
	js, err := json.Marshal(hdr)
	if err != nil {
		return fmt.Errorf("safetensors: encoding header: %w", err)
	}
	for len(js)%8 != 0 {
		js = append(js, ' ')
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	var lb [8]byte
	binary.LittleEndian.PutUint64(lb[:], uint64(len(js)))
	bw.Write(lb[:])
	bw.Write(js)
	for _, t := range tensors {
		bw.Write(t.Data)
	}
	return bw.Flush()
}

// WriteFile writes a safetensors file (see Write) to path atomically: to a temporary file
// in the same directory, renamed over path once complete.
func WriteFile(path string, tensors []TensorData, metadata map[string]string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if err := Write(tmp, tensors, metadata); err != nil {
		tmp.Close()
		return fmt.Errorf("%s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
