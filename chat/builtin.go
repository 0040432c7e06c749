package chat

import "sort"

// Builtin returns the source of a built-in template by name, for models that carry
// none: "chatml" (<|im_start|>role … <|im_end|>, Qwen, Hermes, many fine-tunes) and
// "llama3" (<|start_header_id|>role<|end_header_id|> … <|eot_id|>).
func Builtin(name string) (string, bool) {
	s, ok := builtins()[name]
	return s, ok
}

// BuiltinNames returns the names Builtin knows, sorted.
func BuiltinNames() []string {
	var names []string
	for n := range builtins() {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func builtins() map[string]string {
	return map[string]string{
		"chatml": "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
			"{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}",
		"llama3": "{{ bos_token }}{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}" +
			"{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}",
	}
}

// EndOfTurn lists the strings chat templates end a turn with; a model's tokens among
// them stop a reply.
func EndOfTurn() []string {
	return []string{"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<|end|>", "</s>", "<end_of_turn>",
		"<|END_OF_TURN_TOKEN|>", "<｜end▁of▁sentence｜>", "<|endoftext|>"}
}
