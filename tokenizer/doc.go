// Package tokenizer converts between text and token ids for the tokenizers a checkpoint
// can describe in its `tokenizer.*` metadata (format/SPEC.md lists the keys; the
// importers in format/tokfile write them). Tokenizers are immutable and safe for
// concurrent use; [Stream] turns generated ids into text incrementally without ever
// splitting a UTF-8 sequence.
//
// The kinds, by `tokenizer.model`:
//
//   - "gpt2": byte-level BPE (GPT-2, RoBERTa, …): GPT-2's pre-tokenizer regular
//     expression, implemented by hand over Unicode classes, then merges by rank.
//     Exact against OpenAI's encoder on the test data.
//   - "sentencepiece_bpe": SentencePiece BPE (Llama 2's tokenizer.model):
//     SentencePiece normalization, then merges by piece score, byte fallback.
//   - "unigram": SentencePiece Unigram: normalization (the model's precompiled
//     charsmap, or NFKC from golang.org/x/text), then Viterbi over piece
//     log-probabilities.
//   - "llama2c": llama2.c's tokenizer.bin, encoded exactly as run.c encode() does.
//   - "whitespace": words split on Unicode white space, looked up whole.
//   - "bytes": one id per byte, for synthetic models.
//
// GGUF's keys (`tokenizer.ggml.*`, model "gpt2", "llama" or "t5") are read too, when
// a checkpoint has them instead of lmrun's own ([TranslateGGUF]).
//
// Encode never interprets special tokens written in the text: "<|endoftext|>" is
// seven pieces of text, as OpenAI's encoder and llama.cpp's default make it. BOS and
// EOS come only from the addBOS and addEOS arguments. [EncodeSpecial] matches them
// (gpt2 and sentencepiece_bpe), as llama_tokenize(parse_special) and Hugging Face's
// default do; user-defined entries (non-special added tokens) are matched by both.
//
// # Current models
//
// Llama 3 ("gpt2" with `tokenizer.pre` "llama-bpe" and ignore_merges), Qwen2 and
// Qwen2.5 ("qwen2", NFC from tokenizer.json), SmolLM2 ("smollm"), Mistral v0.3
// ("sentencepiece_bpe" from tokenizer.model.v3, or from tokenizer.json with
// `tokenizer.prefix_unless_space`) and Phi-3 (its GGUF vocabulary) encode id for id
// as their references on the test data. The pre-tokenizer regular expressions are
// implemented by hand (pretok.go); a tokenizer.json whose pre-tokenizer is not one of
// them is refused when it is read, never split differently.
//
// # llama2c
//
// "llama2c" is SentencePiece BPE with a score per piece, encoded exactly as
// karpathy/llama2.c run.c encode() does:
//
//  1. If the text is not empty, the id of the " " piece comes first (SentencePiece's
//     dummy prefix; pieces store "▁" as a space). A vocabulary without " " gets none.
//  2. The text is cut as run.c cuts it: a byte plus at most three following
//     continuation bytes, which for valid UTF-8 is one code point. A group that is a
//     piece becomes its id; otherwise every byte b of it becomes its byte-fallback
//     id: the id of the piece "<0xXX>" (looked up by name; for llama2.c exports these
//     are ids 3..258, i.e. run.c's b+3), or, when there is no such piece and id 3+b
//     is the raw one-byte piece b, 3+b. If a byte has neither, the whole group
//     becomes one unk id, and Encode fails when there is no unk id either.
//  3. Then, as long as some adjacent pair concatenates to a piece scoring above
//     -1e10, the pair giving the highest-scoring piece is merged (the leftmost on
//     ties). Pieces are concatenated as stored, so byte-fallback ids take part as
//     their literal "<0xXX>", as in run.c.
//
// The one deliberate difference from run.c: BOS is added after merging, so it never
// takes part in a merge (in run.c it could only if "\n<s>\n" followed by a piece were
// itself a piece). On the test data (the Llama 2 and stories260K vocabularies, 26
// tricky strings each and 100 kB of Shakespeare) this gives exactly the ids
// SentencePiece itself gives.
//
// Decoding follows run.c decode(): BOS and EOS give nothing, a piece right after BOS
// loses one leading space (the dummy prefix), "<0xXX>" pieces give the raw byte, and
// every other piece (unk included) gives its stored bytes. So, for vocabularies like
// llama2.c's (a " " piece and the 256 byte pieces, none of which merges can form),
// Decode(Encode(s, true, false)) == s for every byte string s, valid UTF-8 or not.
//
// # sentencepiece_bpe and unigram
//
// Both normalize first, as SentencePiece's normalizer does (normalizer): the rules
// replace the longest matching prefix at each position, a byte of invalid UTF-8
// becomes U+FFFD, a space becomes "▁" (so does a "▁" in the text), white space is
// trimmed and collapsed when remove_extra_whitespaces is set, and "▁" is prepended
// when add_dummy_prefix is. Decoding is SentencePiece's: control pieces give nothing,
// unk gives " ⁇ ", byte pieces their byte, "▁" a space, and the first piece of the
// text (or the first after a control piece such as BOS) loses its leading space. So
// Decode(Encode(s)) == s for valid UTF-8 when the normalizer is the identity and
// nothing is unk (Llama 2's case).
//
// # gpt2
//
// Byte-level: any byte string encodes, and Decode(Encode(s)) == s for every s. A byte
// that is not part of valid UTF-8 counts as punctuation for the pre-tokenizer.
//
// # bytes
//
// "bytes" is a byte-level tokenizer for synthetic models: ids 0..255 are the bytes,
// Encode maps each byte of the text to its id, Decode concatenates pieces (BOS and
// EOS give nothing). See [BytesMetadata].
package tokenizer
