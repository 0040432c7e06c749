package hf

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/fixtures"
)

func TestNeoOPTMetadata(t *testing.T) {
	cases := []struct {
		dir  string
		want map[string]any
	}{
		{"gpt_neo_tiny_hf", map[string]any{"lm.attn_windows": []int64{0, 8, 0, 8}, "lm.attn_scale": 1.0,
			"lm.activation": "gelu_tanh", "general.architecture": "gpt_neo", "lm.ffn_dim": int64(256)}},
		{"opt_tiny_hf", map[string]any{"lm.position_offset": int64(2), "lm.norm_position": "pre", "lm.final_norm": true,
			"lm.activation": "relu"}},
		{"opt_postnorm_tiny_hf", map[string]any{"lm.norm_position": "post", "lm.final_norm": false, "lm.embedding_dim": int64(32)}},
	}
	for _, c := range cases {
		ck, err := Import(fixtures.Path(t, "expected", c.dir))
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range c.want {
			if !reflect.DeepEqual(ck.Meta[k], v) {
				t.Errorf("%s: %s = %#v, want %#v", c.dir, k, ck.Meta[k], v)
			}
		}
		_, hasProj := ck.Meta["lm.embedding_dim"]
		if (ck.Source("proj_in.weight") != nil) != hasProj || (ck.Source("output_norm.weight") != nil) != (ck.Meta["lm.final_norm"] == true) {
			t.Errorf("%s: projections/final norm tensors disagree with the metadata", c.dir)
		}
	}
}

// TestNeoOPTUnsupportedConfigs: settings the engine cannot honour are errors, not
// silent approximations.
func TestNeoOPTUnsupportedConfigs(t *testing.T) {
	cases := []struct {
		dir, from, to, want string
	}{
		{"opt_tiny_hf", `"enable_bias": true`, `"enable_bias": false`, "enable_bias"},
		{"opt_tiny_hf", `"layer_norm_elementwise_affine": true`, `"layer_norm_elementwise_affine": false`, "layer_norm_elementwise_affine"},
		{"opt_tiny_hf", `"activation_function": "relu"`, `"activation_function": "swish"`, "activation_function"},
		{"gpt_neo_tiny_hf", `2
    ]
  ]`, `3
    ]
  ]`, "attention"},
		{"gpt_neo_tiny_hf", `"local"
      ],`, `"sparse"
      ],`, "attention type"},
	}
	for _, c := range cases {
		src := fixtures.Path(t, "expected", c.dir)
		dir := t.TempDir()
		cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cfg), c.from) {
			t.Fatalf("%s: config.json lacks %q", c.dir, c.from)
		}
		os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cfg), c.from, c.to, 1)), 0o644)
		os.Symlink(filepath.Join(src, "model.safetensors"), filepath.Join(dir, "model.safetensors"))
		if _, err := Import(dir); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s with %s: error %v, want one about %s", c.dir, c.to, err, c.want)
		}
	}
}
