package convert

import (
	"fmt"

	"github.com/lmrun/lmrun/dtype"
	"github.com/lmrun/lmrun/format"
	"github.com/lmrun/lmrun/quant"
)

// WithDType returns a copy of ck whose tensors are stored as dt where that makes sense
// (format/SPEC.md, "Quantization"):
//
//   - dt f32: every tensor becomes f32.
//   - otherwise every matrix (2-D tensor) but the position table becomes dt; with q8_0
//     and q4_0, a matrix whose rows are not a multiple of 32 elements becomes f16
//     instead. Vectors (norms, biases) and position_embd.weight become f32.
//   - with q4_0, the classifier (output.weight, or token_embd.weight when the classifier
//     is tied to it) becomes q8_0: the logits are the most sensitive product of the model,
//     which is why llama.cpp's quantizer also keeps its output tensor at higher precision.
//
// dt must be a type lmrun can write (dtype.DType.Quantizable: not a k-quant). A tensor
// already stored as its target dtype keeps its bytes; any other is converted through f32
// (so q8_0 → q4_0 requantizes the dequantized values). Conversion happens
// when the checkpoint is written, one tensor at a time, and is deterministic: f16 and
// bf16 round to nearest even, q8_0 is ggml's reference quantizer, q4_0 ggml's layout
// with least-squares block scales (quant.QuantizeSearch; format/SPEC.md). quant/calib
// quantizes to q4_0 with GPTQ instead, for the same tensors.
func WithDType(ck *format.Checkpoint, dt dtype.DType) (*format.Checkpoint, error) {
	if !dt.Valid() {
		return nil, fmt.Errorf("unknown dtype %d", uint32(dt))
	}
	if !dt.Quantizable() {
		return nil, fmt.Errorf("lmrun cannot quantize to %s: k-quant tensors come from GGUF files as they are (want f32, f16, bf16, q8_0 or q4_0)", dt)
	}
	out := &format.Checkpoint{Meta: ck.Meta, Tensors: make([]format.Source, len(ck.Tensors))}
	classifier := "token_embd.weight"
	if ck.Source("output.weight") != nil {
		classifier = "output.weight"
	}
	for i, s := range ck.Tensors {
		target := TargetDType(s.Name, s.Shape, dt)
		if target == dtype.Q4_0 && s.Name == classifier {
			target = dtype.Q8_0
		}
		out.Tensors[i] = convertSource(s, target)
	}
	return out, nil
}

// TargetDType returns the dtype WithDType gives a tensor of the given name and shape.
func TargetDType(name string, shape []int, dt dtype.DType) dtype.DType {
	if dt == dtype.F32 || len(shape) != 2 || name == "position_embd.weight" {
		return dtype.F32
	}
	if (dt == dtype.Q8_0 || dt == dtype.Q4_0) && shape[1]%dtype.QBlock != 0 {
		return dtype.F16
	}
	return dt
}

// convertSource returns s stored as dt.
func convertSource(s format.Source, dt dtype.DType) format.Source {
	if s.DType == dt {
		return s
	}
	src := s
	cols := s.Shape[len(s.Shape)-1]
	return format.Source{Name: s.Name, DType: dt, Shape: s.Shape, Data: func() ([]byte, error) {
		b, err := src.Data()
		if err != nil {
			return nil, err
		}
		v, err := dtype.Dequantize(src.DType, b, cols)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", src.Name, err)
		}
		q, err := quant.QuantizeSearch(dt, v, cols)
		if err != nil {
			return nil, fmt.Errorf("tensor %s: %w", src.Name, err)
		}
		return q, nil
	}}
}

// FromLMC returns a checkpoint whose tensors are those of an open lmc file (aliasing its
// mapping: f must stay open until the checkpoint is written), for re-encoding it with
// WithDType or exporting it.
func FromLMC(f *format.File) *format.Checkpoint {
	meta := format.Metadata{}
	for k, v := range f.Meta {
		meta[k] = v
	}
	ck := &format.Checkpoint{Meta: meta}
	for _, t := range f.Tensors {
		ck.Tensors = append(ck.Tensors, format.Bytes(t.Name, t.DType, t.Shape, t.Data))
	}
	return ck
}
