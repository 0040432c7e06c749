package tokfile

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/lmrun/lmrun/format"
)

// ParseGPT2 converts a byte-level BPE vocabulary (OpenAI's encoder.json or Hugging
// Face's vocab.json: a JSON object from piece to id) and its merges (vocab.bpe or
// merges.txt: an optional "#version" line, then one "left right" pair a line, in
// priority order) to "gpt2" tokenizer metadata. "<|endoftext|>", when present, is BOS
// and EOS and a control token; BOS is not added to prompts (GPT-2's convention).
func ParseGPT2(vocabJSON, merges []byte) (format.Metadata, error) {
	var vocab map[string]int64
	if err := json.Unmarshal(vocabJSON, &vocab); err != nil {
		return nil, fmt.Errorf("gpt2 vocabulary: %w", err)
	}
	tokens, err := denseTokens(vocab, nil)
	if err != nil {
		return nil, fmt.Errorf("gpt2 vocabulary: %w", err)
	}
	ml, err := parseMerges(merges)
	if err != nil {
		return nil, err
	}
	md := gpt2Metadata(tokens, ml)
	if id, ok := vocab["<|endoftext|>"]; ok {
		md["tokenizer.bos_id"] = id
		md["tokenizer.eos_id"] = id
		md["tokenizer.token_type"].([]int64)[id] = 3
	}
	return md, nil
}

func gpt2Metadata(tokens, merges []string) format.Metadata {
	types := make([]int64, len(tokens))
	for i := range types {
		types[i] = 1
	}
	return format.Metadata{
		"tokenizer.model":      "gpt2",
		"tokenizer.pre":        "gpt-2",
		"tokenizer.tokens":     tokens,
		"tokenizer.merges":     merges,
		"tokenizer.token_type": types,
		"tokenizer.add_bos":    false,
	}
}

// denseTokens turns piece -> id maps into the piece of every id. Ids must be
// distinct and dense from 0 except where added tokens fill them in.
func denseTokens(vocab map[string]int64, added map[int64]string) ([]string, error) {
	n := int64(0)
	for p, id := range vocab {
		if id < 0 || id >= maxPieces {
			return nil, fmt.Errorf("piece %q has id %d", p, id)
		}
		n = max(n, id+1)
	}
	for id := range added {
		if id < 0 || id >= maxPieces {
			return nil, fmt.Errorf("added token id %d", id)
		}
		n = max(n, id+1)
	}
	tokens := make([]string, n)
	set := make([]bool, n)
	for p, id := range vocab {
		if set[id] && tokens[id] != p {
			return nil, fmt.Errorf("pieces %q and %q share id %d", tokens[id], p, id)
		}
		tokens[id], set[id] = p, true
	}
	for id, p := range added {
		if set[id] && tokens[id] != p {
			return nil, fmt.Errorf("added token %q has the id %d of %q", p, id, tokens[id])
		}
		tokens[id], set[id] = p, true
	}
	for id, ok := range set {
		if !ok {
			return nil, fmt.Errorf("no piece has id %d (ids must be 0..%d)", id, n-1)
		}
	}
	return tokens, nil
}

// parseMerges reads a merges.txt / vocab.bpe.
func parseMerges(b []byte) ([]string, error) {
	var merges []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		s := strings.TrimRight(sc.Text(), "\r")
		if line == 1 && strings.HasPrefix(s, "#version") {
			continue
		}
		if s == "" {
			continue
		}
		if f := strings.Split(s, " "); len(f) != 2 || f[0] == "" || f[1] == "" {
			return nil, fmt.Errorf("merges line %d %q: want two pieces separated by one space", line, s)
		}
		merges = append(merges, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("merges: %w", err)
	}
	return merges, nil
}

// looksLikeMerges reports whether b reads as a merges file.
func looksLikeMerges(b []byte) bool {
	head := b[:min(len(b), 4096)]
	if bytes.HasPrefix(head, []byte("#version")) {
		return true
	}
	lines := strings.Split(string(head), "\n")
	if len(lines) > 1 {
		lines = lines[:len(lines)-1] // possibly cut
	}
	n := 0
	for _, l := range lines {
		l = strings.TrimRight(l, "\r")
		if l == "" {
			continue
		}
		if f := strings.Split(l, " "); len(f) != 2 || f[0] == "" || f[1] == "" {
			return false
		}
		n++
	}
	return n > 0
}

// HFConfig is what a Hugging Face model directory says about special tokens, from
// tokenizer_config.json (and config.json for the ids); all optional.
type HFConfig struct {
	BOS, EOS, Unk, Pad string // token contents
	AddBOS             *bool
	BOSID, EOSID       *int64 // config.json
	// ChatTemplate is tokenizer_config.json's chat_template (the "default" one of a
	// list of named templates), stored as tokenizer.chat_template.
	ChatTemplate string
}

// hfToken is a special token in tokenizer_config.json: a string or {"content": …}.
type hfToken string

// UnmarshalJSON accepts both forms.
func (t *hfToken) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*t = hfToken(s)
		return nil
	}
	var o struct {
		Content string `json:"content"`
	}
	if err := json.Unmarshal(b, &o); err != nil {
		return err
	}
	*t = hfToken(o.Content)
	return nil
}

// ParseHFConfig reads tokenizer_config.json and config.json contents (either may be nil).
func ParseHFConfig(tokenizerConfig, config []byte) (*HFConfig, error) {
	c := &HFConfig{}
	if tokenizerConfig != nil {
		var tc struct {
			BOS    *hfToken        `json:"bos_token"`
			EOS    *hfToken        `json:"eos_token"`
			Unk    *hfToken        `json:"unk_token"`
			Pad    *hfToken        `json:"pad_token"`
			AddBOS *bool           `json:"add_bos_token"`
			Chat   json.RawMessage `json:"chat_template"`
		}
		if err := json.Unmarshal(tokenizerConfig, &tc); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: %w", err)
		}
		if err := c.parseChatTemplate(tc.Chat); err != nil {
			return nil, fmt.Errorf("tokenizer_config.json: chat_template: %w", err)
		}
		for _, x := range []struct {
			src *hfToken
			dst *string
		}{{tc.BOS, &c.BOS}, {tc.EOS, &c.EOS}, {tc.Unk, &c.Unk}, {tc.Pad, &c.Pad}} {
			if x.src != nil {
				*x.dst = string(*x.src)
			}
		}
		c.AddBOS = tc.AddBOS
	}
	if config != nil {
		var mc struct {
			BOS json.RawMessage `json:"bos_token_id"`
			EOS json.RawMessage `json:"eos_token_id"`
		}
		if err := json.Unmarshal(config, &mc); err != nil {
			return nil, fmt.Errorf("config.json: %w", err)
		}
		c.BOSID, c.EOSID = firstID(mc.BOS), firstID(mc.EOS)
	}
	return c, nil
}

// parseChatTemplate reads chat_template: a string, or a list of {"name", "template"}
// of which the one named "default" is kept.
func (c *HFConfig) parseChatTemplate(raw json.RawMessage) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if err := json.Unmarshal(raw, &c.ChatTemplate); err == nil {
		return nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return errors.New("want a string or a list of {\"name\", \"template\"}")
	}
	for _, t := range named {
		if t.Name == "default" {
			c.ChatTemplate = t.Template
		}
	}
	return nil
}

// firstID reads an id or the first of a list of ids (Llama 3 lists several EOS).
func firstID(raw json.RawMessage) *int64 {
	var id int64
	if json.Unmarshal(raw, &id) == nil {
		return &id
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil && len(ids) > 0 {
		return &ids[0]
	}
	return nil
}

// hfTokenizer is the part of a tokenizers JSON file read here.
type hfTokenizer struct {
	AddedTokens []struct {
		ID      int64  `json:"id"`
		Content string `json:"content"`
		Special bool   `json:"special"`
		LStrip  bool   `json:"lstrip"`
		RStrip  bool   `json:"rstrip"`
	} `json:"added_tokens"`
	Normalizer    *hfComponent `json:"normalizer"`
	PreTokenizer  *hfComponent `json:"pre_tokenizer"`
	PostProcessor *hfComponent `json:"post_processor"`
	Model         struct {
		Type         string          `json:"type"`
		Vocab        json.RawMessage `json:"vocab"`
		Merges       json.RawMessage `json:"merges"`
		UnkToken     *string         `json:"unk_token"`
		UnkID        *int64          `json:"unk_id"`
		ByteFallback bool            `json:"byte_fallback"`
		Prefix       string          `json:"continuing_subword_prefix"`
		Suffix       string          `json:"end_of_word_suffix"`
		IgnoreMerges bool            `json:"ignore_merges"`
	} `json:"model"`
}

// hfComponent is a normalizer, pre-tokenizer or post-processor, possibly a Sequence.
type hfComponent struct {
	Type            string          `json:"type"`
	AddPrefixSpace  *bool           `json:"add_prefix_space"`
	UseRegex        *bool           `json:"use_regex"`
	PrependScheme   string          `json:"prepend_scheme"`
	Replacement     string          `json:"replacement"`
	Charsmap        string          `json:"precompiled_charsmap"`
	Pattern         json.RawMessage `json:"pattern"`
	Content         string          `json:"content"`
	Prepend         string          `json:"prepend"`
	Split           *bool           `json:"split"`
	Behavior        string          `json:"behavior"`
	Invert          bool            `json:"invert"`
	Individual      bool            `json:"individual_digits"`
	Normalizers     []hfComponent   `json:"normalizers"`
	PreTokenizers   []hfComponent   `json:"pretokenizers"`
	Processors      []hfComponent   `json:"processors"`
	Single          []hfTemplate    `json:"single"`
	SpecialTokenIDs map[string]struct {
		IDs []int64 `json:"ids"`
	} `json:"special_tokens"`
}

type hfTemplate struct {
	SpecialToken *struct {
		ID string `json:"id"`
	} `json:"SpecialToken"`
}

// flatten returns the components of a Sequence, or c itself.
func (c *hfComponent) flatten() []hfComponent {
	if c == nil {
		return nil
	}
	switch {
	case len(c.Normalizers) > 0:
		return c.Normalizers
	case len(c.PreTokenizers) > 0:
		return c.PreTokenizers
	case len(c.Processors) > 0:
		return c.Processors
	}
	if c.Type == "Sequence" {
		return nil
	}
	return []hfComponent{*c}
}

// ParseHFTokenizer converts a Hugging Face tokenizers JSON file (tokenizer.json) to
// tokenizer metadata. Supported: model BPE with the ByteLevel pre-tokenizer (GPT-2's
// regular expression, no prefix space) and no normalizer, as kind "gpt2"; model
// Unigram with a Precompiled, NFKC or Nmt normalizer and a Metaspace pre-tokenizer,
// as kind "unigram"; model WordLevel with the WhitespaceSplit pre-tokenizer, as kind
// "whitespace". Added tokens take their ids (special ones become control tokens).
// cfg (may be nil) names BOS, EOS, unk and pad and the BOS policy; without it BOS is
// taken from a TemplateProcessing post-processor that starts with a special token,
// and "<|endoftext|>" is GPT-2's BOS and EOS.
func ParseHFTokenizer(b []byte, cfg *HFConfig) (format.Metadata, error) {
	var t hfTokenizer
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	if cfg == nil {
		cfg = &HFConfig{}
	}
	added := map[int64]string{}
	special := map[int64]bool{}
	for _, a := range t.AddedTokens {
		added[a.ID] = a.Content
		special[a.ID] = a.Special
	}
	var md format.Metadata
	var err error
	switch t.Model.Type {
	case "BPE":
		md, err = hfBPE(&t, added)
	case "Unigram":
		md, err = hfUnigram(&t, added)
	case "WordLevel":
		md, err = hfWordLevel(&t, added)
	case "":
		return nil, errors.New("tokenizer.json: no model type")
	default:
		return nil, fmt.Errorf("tokenizer.json: model type %s is not supported (BPE, Unigram and WordLevel are)", t.Model.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("tokenizer.json: %w", err)
	}
	tokens := md["tokenizer.tokens"].([]string)
	types, _ := md["tokenizer.token_type"].([]int64)
	if types == nil {
		types = make([]int64, len(tokens))
		for i := range types {
			types[i] = 1
		}
		md["tokenizer.token_type"] = types
	}
	for id := range added {
		switch {
		case types[id] != 1: // the unk piece, a byte piece: keep
		case special[id]:
			types[id] = 3
		default:
			types[id] = 4
		}
	}
	// Special ids: by content (tokenizer_config.json), else by id (config.json).
	lookup := func(content string) (int64, bool) {
		if content == "" {
			return 0, false
		}
		for id, c := range added {
			if c == content {
				return id, true
			}
		}
		for i, p := range tokens {
			if p == content {
				return int64(i), true
			}
		}
		return 0, false
	}
	setID := func(key, content string, byID *int64) {
		if id, ok := lookup(content); ok {
			md[key] = id
		} else if byID != nil && *byID >= 0 && *byID < int64(len(tokens)) {
			md[key] = *byID
		}
	}
	setID("tokenizer.bos_id", cfg.BOS, cfg.BOSID)
	setID("tokenizer.eos_id", cfg.EOS, cfg.EOSID)
	if _, ok := md["tokenizer.unk_id"]; !ok {
		setID("tokenizer.unk_id", cfg.Unk, nil)
	}
	setID("tokenizer.pad_id", cfg.Pad, nil)
	if _, ok := md["tokenizer.bos_id"]; !ok && md["tokenizer.model"] == "gpt2" {
		if id, ok := lookup("<|endoftext|>"); ok {
			md["tokenizer.bos_id"], md["tokenizer.eos_id"] = id, id
		}
	}
	// BOS policy: the config, else the post-processor's template.
	bos, hasBOS := md["tokenizer.bos_id"].(int64)
	addBOS := false
	if cfg.AddBOS != nil {
		addBOS = *cfg.AddBOS
	} else {
		for _, pp := range t.PostProcessor.flatten() {
			if pp.Type != "TemplateProcessing" || len(pp.Single) == 0 || pp.Single[0].SpecialToken == nil {
				continue
			}
			name := pp.Single[0].SpecialToken.ID
			if st, ok := pp.SpecialTokenIDs[name]; ok && len(st.IDs) == 1 {
				if !hasBOS {
					md["tokenizer.bos_id"], bos, hasBOS = st.IDs[0], st.IDs[0], true
				}
				addBOS = st.IDs[0] == bos
			}
		}
	}
	md["tokenizer.add_bos"] = addBOS && hasBOS
	if cfg.ChatTemplate != "" {
		md["tokenizer.chat_template"] = cfg.ChatTemplate
	}
	// Added tokens that take the white space around them when matched.
	var lstrip, rstrip []int64
	for _, a := range t.AddedTokens {
		if a.LStrip {
			lstrip = append(lstrip, a.ID)
		}
		if a.RStrip {
			rstrip = append(rstrip, a.ID)
		}
	}
	if lstrip != nil {
		md["tokenizer.lstrip_ids"] = lstrip
	}
	if rstrip != nil {
		md["tokenizer.rstrip_ids"] = rstrip
	}
	return md, nil
}

// The Split patterns of the byte-level pre-tokenizers lmrun implements, by the
// `tokenizer.pre` name it gives them (llama.cpp's names).
const (
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	qwen2Pattern  = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// byteLevelPre names the pre-tokenizer of a byte-level BPE tokenizer.json, which
// must be one lmrun implements exactly: ByteLevel alone (GPT-2's regular
// expression), a Split by Llama 3's or Qwen2's regular expression (Isolated, not
// inverted) followed by ByteLevel without its regex, or Digits(individual_digits)
// followed by ByteLevel with it (SmolLM). Anything else, a different regular
// expression above all, is an error: splitting differently would give other ids.
func byteLevelPre(c *hfComponent) (string, error) {
	pre := c.flatten()
	byteLevel := func(p hfComponent, regex bool) error {
		if p.Type != "ByteLevel" {
			return fmt.Errorf("pre-tokenizer %s where ByteLevel is expected", p.Type)
		}
		if p.AddPrefixSpace != nil && *p.AddPrefixSpace {
			return errors.New("ByteLevel with add_prefix_space is not supported")
		}
		if useRegex := p.UseRegex == nil || *p.UseRegex; useRegex != regex {
			return fmt.Errorf("ByteLevel with use_regex %v after %d other pre-tokenizers is not supported", useRegex, len(pre)-1)
		}
		return nil
	}
	switch {
	case len(pre) == 1:
		return "gpt-2", byteLevel(pre[0], true)
	case len(pre) == 2 && pre[0].Type == "Digits":
		if !pre[0].Individual {
			return "", errors.New("Digits without individual_digits is not supported")
		}
		return "smollm", byteLevel(pre[1], true)
	case len(pre) == 2 && pre[0].Type == "Split":
		var pat struct {
			Regex  *string `json:"Regex"`
			String *string `json:"String"`
		}
		if err := json.Unmarshal(pre[0].Pattern, &pat); err != nil || pat.Regex == nil {
			return "", errors.New("Split without a regular expression is not supported")
		}
		if pre[0].Behavior != "Isolated" || pre[0].Invert {
			return "", fmt.Errorf("Split with behavior %s, invert %v is not supported (Isolated, not inverted is)", pre[0].Behavior, pre[0].Invert)
		}
		var name string
		switch *pat.Regex {
		case llama3Pattern:
			name = "llama-bpe"
		case qwen2Pattern:
			name = "qwen2"
		default:
			return "", fmt.Errorf("Split regular expression %q is not implemented (Llama 3's and Qwen2's are)", *pat.Regex)
		}
		return name, byteLevel(pre[1], false)
	}
	types := make([]string, len(pre))
	for i, p := range pre {
		types[i] = p.Type
	}
	return "", fmt.Errorf("byte-level BPE with the pre-tokenizers %v is not supported", types)
}

func hfBPE(t *hfTokenizer, added map[int64]string) (format.Metadata, error) {
	if t.Model.ByteFallback {
		return hfSentencePieceBPE(t, added)
	}
	normName := "identity"
	switch ns := t.Normalizer.flatten(); {
	case len(ns) == 0:
	case len(ns) == 1 && ns[0].Type == "NFC":
		normName = "nfc"
	default:
		return nil, fmt.Errorf("BPE with a %s normalizer is not supported (byte-level BPE without a normalizer or with NFC is)", t.Normalizer.Type)
	}
	preName, err := byteLevelPre(t.PreTokenizer)
	if err != nil {
		return nil, err
	}
	if t.Model.Prefix != "" || t.Model.Suffix != "" {
		return nil, errors.New("BPE with a continuing-subword prefix or end-of-word suffix is not supported")
	}
	var vocab map[string]int64
	if err := json.Unmarshal(t.Model.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	tokens, err := denseTokens(vocab, added)
	if err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	merges, err := hfMerges(t.Model.Merges)
	if err != nil {
		return nil, err
	}
	md := gpt2Metadata(tokens, merges)
	md["tokenizer.pre"] = preName
	md["tokenizer.ignore_merges"] = t.Model.IgnoreMerges
	if normName != "identity" {
		md["tokenizer.normalizer"] = normName
	}
	if t.Model.UnkToken != nil {
		if id, ok := vocab[*t.Model.UnkToken]; ok {
			md["tokenizer.unk_id"] = id
		}
	}
	return md, nil
}

// hfMerges reads BPE merges: "a b" strings, or [a, b] pairs (tokenizers ≥ 0.20).
func hfMerges(raw json.RawMessage) ([]string, error) {
	var merges []string
	if err := json.Unmarshal(raw, &merges); err != nil {
		var pairs [][2]string
		if err2 := json.Unmarshal(raw, &pairs); err2 != nil {
			return nil, fmt.Errorf("BPE merges: %w", err)
		}
		merges = make([]string, len(pairs))
		for i, p := range pairs {
			if strings.Contains(p[0], " ") || strings.Contains(p[1], " ") {
				return nil, fmt.Errorf("BPE merge %d %q contains a space", i, p)
			}
			merges[i] = p[0] + " " + p[1]
		}
	}
	return merges, nil
}

// hfSentencePieceBPE converts a BPE model with byte fallback over "▁"-marked
// pieces (SentencePiece BPE exported by Hugging Face: Mistral, Llama 2) to
// "sentencepiece_bpe" metadata. SentencePiece merges the pair making the
// highest-scoring piece; the score of a piece is minus the rank of the first merge
// that makes it, so merges apply in their order, and a piece no merge makes
// (characters, bytes, added tokens) scores below the merge threshold. The space
// handling must be one of the two exports: the Metaspace pre-tokenizer ("▁" for
// spaces, prefixed unless the text starts with a space: tokenizer.prefix_unless_space)
// with no normalizer, or the normalizers Prepend("▁") and Replace(" ", "▁") with no
// pre-tokenizer (SentencePiece's own rule).
func hfSentencePieceBPE(t *hfTokenizer, added map[int64]string) (format.Metadata, error) {
	const meta = "\u2581"
	prefix, unlessSpace := false, false
	ns, pre := t.Normalizer.flatten(), t.PreTokenizer.flatten()
	switch {
	case len(ns) == 0 && len(pre) == 1 && pre[0].Type == "Metaspace":
		p := pre[0]
		if p.Replacement != meta || (p.Split != nil && *p.Split) {
			return nil, errors.New("Metaspace with another replacement than \"▁\" or with split is not supported")
		}
		switch p.PrependScheme {
		case "first", "always":
			prefix = true
		case "never":
		case "":
			prefix = p.AddPrefixSpace == nil || *p.AddPrefixSpace
		default:
			return nil, fmt.Errorf("Metaspace prepend_scheme %q is not supported", p.PrependScheme)
		}
		unlessSpace = prefix
	case len(pre) == 0 && len(ns) == 2 && ns[0].Type == "Prepend" && ns[0].Prepend == meta && spaceToMeta(ns[1]):
		prefix = true
	case len(pre) == 0 && len(ns) == 1 && spaceToMeta(ns[0]):
	default:
		return nil, errors.New("BPE with byte fallback is supported with the Metaspace pre-tokenizer or the Prepend and Replace normalizers only")
	}
	if t.Model.Prefix != "" || t.Model.Suffix != "" {
		return nil, errors.New("BPE with a continuing-subword prefix or end-of-word suffix is not supported")
	}
	var vocab map[string]int64
	if err := json.Unmarshal(t.Model.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	tokens, err := denseTokens(vocab, added)
	if err != nil {
		return nil, fmt.Errorf("BPE vocab: %w", err)
	}
	merges, err := hfMerges(t.Model.Merges)
	if err != nil {
		return nil, err
	}
	const never = -1e11 // below the merge threshold
	scores := make([]float32, len(tokens))
	types := make([]int64, len(tokens))
	for i, p := range tokens {
		scores[i], types[i] = never, 1
		if isBytePiece(p) {
			types[i] = 6
		}
	}
	for rank, mg := range merges {
		l, r, _ := strings.Cut(mg, " ")
		id, ok := vocab[l+r]
		if !ok {
			return nil, fmt.Errorf("BPE merge %d %q: %q is not in the vocabulary", rank, mg, l+r)
		}
		if scores[id] == never {
			scores[id] = -float32(rank)
		}
	}
	md := format.Metadata{
		"tokenizer.model":                    "sentencepiece_bpe",
		"tokenizer.tokens":                   tokens,
		"tokenizer.scores":                   scores,
		"tokenizer.token_type":               types,
		"tokenizer.normalizer":               "identity",
		"tokenizer.add_space_prefix":         prefix,
		"tokenizer.remove_extra_whitespaces": false,
		"tokenizer.byte_fallback":            true,
	}
	if unlessSpace {
		md["tokenizer.prefix_unless_space"] = true
	}
	if t.Model.UnkToken != nil {
		if id, ok := vocab[*t.Model.UnkToken]; ok {
			md["tokenizer.unk_id"] = id
			types[id] = 2
		}
	}
	return md, nil
}

// spaceToMeta reports whether c is the normalizer Replace(" ", "▁").
func spaceToMeta(c hfComponent) bool {
	var pat struct {
		String *string `json:"String"`
	}
	return c.Type == "Replace" && c.Content == "\u2581" && json.Unmarshal(c.Pattern, &pat) == nil && pat.String != nil && *pat.String == " "
}

func hfUnigram(t *hfTokenizer, added map[int64]string) (format.Metadata, error) {
	var vocab []struct {
		Piece string
		Score float64
	}
	var raw [][]json.RawMessage
	if err := json.Unmarshal(t.Model.Vocab, &raw); err != nil {
		return nil, fmt.Errorf("Unigram vocab: %w", err)
	}
	for i, r := range raw {
		if len(r) != 2 {
			return nil, fmt.Errorf("Unigram vocab entry %d: want [piece, score]", i)
		}
		var e struct {
			Piece string
			Score float64
		}
		if err := json.Unmarshal(r[0], &e.Piece); err != nil {
			return nil, fmt.Errorf("Unigram vocab entry %d: %w", i, err)
		}
		if err := json.Unmarshal(r[1], &e.Score); err != nil {
			return nil, fmt.Errorf("Unigram vocab entry %d: %w", i, err)
		}
		vocab = append(vocab, e)
	}
	if len(vocab) == 0 || len(vocab) > maxPieces {
		return nil, fmt.Errorf("Unigram vocabulary of %d pieces", len(vocab))
	}
	n := len(vocab)
	for id := range added {
		if id < 0 || id >= int64(n) {
			return nil, fmt.Errorf("added token id %d outside the Unigram vocabulary", id)
		}
	}
	tokens := make([]string, n)
	scores := make([]float32, n)
	types := make([]int64, n)
	for i, e := range vocab {
		tokens[i], scores[i], types[i] = e.Piece, float32(e.Score), 1
		if t.Model.ByteFallback && isBytePiece(e.Piece) {
			types[i] = 6
		}
	}
	if t.Model.UnkID == nil || *t.Model.UnkID < 0 || *t.Model.UnkID >= int64(n) {
		return nil, errors.New("Unigram without a valid unk_id")
	}
	types[*t.Model.UnkID] = 2
	md := format.Metadata{
		"tokenizer.model":                    "unigram",
		"tokenizer.tokens":                   tokens,
		"tokenizer.scores":                   scores,
		"tokenizer.token_type":               types,
		"tokenizer.unk_id":                   *t.Model.UnkID,
		"tokenizer.byte_fallback":            t.Model.ByteFallback,
		"tokenizer.normalizer":               "identity",
		"tokenizer.remove_extra_whitespaces": false,
		"tokenizer.add_space_prefix":         false,
	}
	var rules []string
	for _, c := range t.Normalizer.flatten() {
		switch c.Type {
		case "Precompiled":
			cm, err := base64.StdEncoding.DecodeString(c.Charsmap)
			if err != nil {
				return nil, fmt.Errorf("Precompiled charsmap: %w", err)
			}
			if len(cm) > 0 {
				md["tokenizer.precompiled_charsmap"] = string(cm)
			}
		case "NFKC":
			rules = append(rules, "nfkc")
		case "Nmt":
			rules = append(rules, "nmt")
		case "Replace":
			// T5/ALBERT collapse runs of spaces: SentencePiece's remove_extra_whitespaces.
			var pat struct {
				Regex  string `json:"Regex"`
				String string `json:"String"`
			}
			if json.Unmarshal(c.Pattern, &pat) == nil && pat.Regex == " {2,}" && c.Content == " " {
				md["tokenizer.remove_extra_whitespaces"] = true
				continue
			}
			return nil, fmt.Errorf("Unigram normalizer Replace %s is not supported", c.Pattern)
		default:
			return nil, fmt.Errorf("Unigram normalizer %s is not supported", c.Type)
		}
	}
	switch strings.Join(rules, "+") {
	case "":
	case "nfkc":
		md["tokenizer.normalizer"] = "nfkc"
	case "nmt+nfkc", "nmt":
		md["tokenizer.normalizer"] = "nmt_nfkc"
	default:
		return nil, fmt.Errorf("Unigram normalizers %v are not supported", rules)
	}
	for _, p := range t.PreTokenizer.flatten() {
		switch p.Type {
		case "WhitespaceSplit":
			md["tokenizer.remove_extra_whitespaces"] = true
		case "Metaspace":
			if p.Replacement != "" && p.Replacement != "\u2581" {
				return nil, fmt.Errorf("Metaspace replacement %q is not supported", p.Replacement)
			}
			prefix := p.PrependScheme == "always" || p.PrependScheme == "first" ||
				(p.PrependScheme == "" && (p.AddPrefixSpace == nil || *p.AddPrefixSpace))
			md["tokenizer.add_space_prefix"] = prefix
		default:
			return nil, fmt.Errorf("Unigram pre-tokenizer %s is not supported", p.Type)
		}
	}
	return md, nil
}

func isBytePiece(p string) bool {
	if len(p) != 6 || !strings.HasPrefix(p, "<0x") || p[5] != '>' {
		return false
	}
	return strings.Trim(p[3:5], "0123456789ABCDEFabcdef") == ""
}

func hfWordLevel(t *hfTokenizer, added map[int64]string) (format.Metadata, error) {
	if t.Normalizer != nil && len(t.Normalizer.flatten()) > 0 {
		return nil, errors.New("WordLevel with a normalizer is not supported")
	}
	pre := t.PreTokenizer.flatten()
	if len(pre) != 1 || pre[0].Type != "WhitespaceSplit" {
		return nil, errors.New("WordLevel is supported with the WhitespaceSplit pre-tokenizer only")
	}
	var vocab map[string]int64
	if err := json.Unmarshal(t.Model.Vocab, &vocab); err != nil {
		return nil, fmt.Errorf("WordLevel vocab: %w", err)
	}
	tokens, err := denseTokens(vocab, added)
	if err != nil {
		return nil, fmt.Errorf("WordLevel vocab: %w", err)
	}
	md := format.Metadata{
		"tokenizer.model":  "whitespace",
		"tokenizer.tokens": tokens,
	}
	if t.Model.UnkToken != nil {
		if id, ok := vocab[*t.Model.UnkToken]; ok {
			md["tokenizer.unk_id"] = id
		}
	}
	return md, nil
}
