package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// IndexName and SingleName are the file names Hugging Face gives a sharded checkpoint's
// index and an unsharded checkpoint.
const (
	IndexName  = "model.safetensors.index.json"
	SingleName = "model.safetensors"
)

// maxIndexSize bounds the index JSON a reader accepts.
const maxIndexSize = 100 << 20

// OpenDir opens the checkpoint in a Hugging Face model directory: the shards listed by
// model.safetensors.index.json when there is one, else model.safetensors.
func OpenDir(dir string) (*File, error) {
	index := filepath.Join(dir, IndexName)
	if _, err := os.Stat(index); err == nil {
		return OpenIndex(index)
	}
	single := filepath.Join(dir, SingleName)
	if _, err := os.Stat(single); err == nil {
		return Open(single)
	}
	return nil, fmt.Errorf("%s: neither %s nor %s found", dir, SingleName, IndexName)
}

// OpenIndex opens a sharded checkpoint through its index file ({"weight_map": {tensor:
// shard file}}), presenting the tensors of all shards as one set. Shard names must be
// plain file names in the index's directory. Every tensor the index lists must be in the
// shard it names, and every tensor of a shard must be listed there.
func OpenIndex(path string) (*File, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if st.Size() > maxIndexSize {
		return nil, fmt.Errorf("%s: index of %d bytes is larger than the %d-byte limit", path, st.Size(), maxIndexSize)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var index struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(raw, &index); err != nil {
		return nil, fmt.Errorf("%s: %w: index: %v", path, ErrFormat, err)
	}
	if len(index.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: %w: index has no weight_map entries", path, ErrFormat)
	}
	shardNames := map[string]bool{}
	for name, shard := range index.WeightMap {
		if err := checkShardName(shard); err != nil {
			return nil, fmt.Errorf("%s: %w: tensor %q: %v", path, ErrFormat, name, err)
		}
		shardNames[shard] = true
	}
	shards := make([]string, 0, len(shardNames))
	for s := range shardNames {
		shards = append(shards, s)
	}
	sort.Strings(shards)

	dir := filepath.Dir(path)
	var all []*Tensor
	meta := map[string]string{}
	for _, shard := range shards {
		f, err := Open(filepath.Join(dir, shard))
		if err != nil {
			return nil, fmt.Errorf("%s: shard: %w", path, err)
		}
		for k, v := range f.Metadata {
			if _, ok := meta[k]; !ok {
				meta[k] = v
			}
		}
		for _, t := range f.Tensors {
			switch want, listed := index.WeightMap[t.Name]; {
			case !listed:
				return nil, fmt.Errorf("%s: %w: shard %s holds tensor %q, which the index does not list", path, ErrFormat, shard, t.Name)
			case want != shard:
				return nil, fmt.Errorf("%s: %w: shard %s holds tensor %q, which the index puts in %s", path, ErrFormat, shard, t.Name, want)
			}
			all = append(all, t)
		}
	}
	set := newFile(all, meta)
	var missing []string
	for name, shard := range index.WeightMap {
		if set.byName[name] == nil {
			missing = append(missing, fmt.Sprintf("%s (in %s)", name, shard))
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("%s: %w: tensors listed in the index but missing from their shard: %s", path, ErrFormat, strings.Join(missing, ", "))
	}
	return set, nil
}

func checkShardName(s string) error {
	switch {
	case s == "":
		return errors.New("empty shard file name")
	case strings.ContainsAny(s, `/\`) || strings.ContainsRune(s, 0) || strings.Contains(s, ".."),
		filepath.IsAbs(s), filepath.VolumeName(s) != "", filepath.Base(s) != s:
		return fmt.Errorf("shard file name %q is not a plain file name in the index's directory", s)
	}
	return nil
}
