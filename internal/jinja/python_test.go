package jinja_test

import (
	"strings"
	"testing"

	"github.com/lmrun/lmrun/internal/jinja"
)

// TestPythonErrors checks the templates Python's jinja2 (default Undefined) raises on.
func TestPythonErrors(t *testing.T) {
	data := map[string]any{
		"none": nil, "d": map[string]any{"a": 1}, "l": []any{1, 2}, "s": "x", "n": 3,
		"tools": []any{map[string]any{"function": map[string]any{"name": "f"}}},
	}
	for src, want := range map[string]string{
		`{% for x in none %}{% endfor %}`:              "'NoneType' object is not iterable",
		`{% for x in n %}{% endfor %}`:                 "'int' object is not iterable",
		`{{ s + l }}`:                                  `can only concatenate str (not "list") to str`,
		`{{ s + d }}`:                                  `can only concatenate str (not "dict") to str`,
		`{{ l + s }}`:                                  `can only concatenate list (not "str") to list`,
		`{{ s + n }}`:                                  `can only concatenate str (not "int") to str`,
		`{{ n + none }}`:                               "unsupported operand type(s) for +",
		`{{ missing + 1 }}`:                            "'missing' is undefined",
		`{{ "a" + d.b }}`:                              "'dict object' has no attribute 'b'",
		`{{ "a" + d["b"] }}`:                           "'dict object' has no attribute 'b'",
		`{{ -missing }}`:                               "'missing' is undefined",
		`{{ missing < 1 }}`:                            "'missing' is undefined",
		`{{ missing.x }}`:                              "'missing' is undefined",
		`{{ missing[0] }}`:                             "'missing' is undefined",
		`{{ none.strip() }}`:                           "'None' has no attribute 'strip'",
		`{{ d.nope() }}`:                               "'dict object' has no attribute 'nope'",
		`{{ +missing }}`:                               "'missing' is undefined",
		`{{ [1, "a"]|sort }}`:                          "'<' not supported",
		`{{ none|sort }}`:                              "'NoneType' object is not iterable",
		`{{ "hello"|truncate(2) }}`:                    "truncate",
		`{% for a, b in [(1, 2, 3)] %}{% endfor %}`:    "too many values to unpack (expected 2)",
		`{% for a, b in l %}{% endfor %}`:              "cannot unpack non-iterable int object",
		`{% for a, b in ["abc"] %}{% endfor %}`:        "too many values to unpack",
		`{{ "%s %s" % l }}`:                            "not enough arguments for format string",
		`{{ "%s" % (1, 2) }}`:                          "not all arguments converted",
		`{{ missing|int }}`:                            "'missing' is undefined",
		`{{ missing|float }}`:                          "'missing' is undefined",
		`{{ "1"|from_json }}`:                          "unknown filter",
		`{{ 1 in none }}`:                              "argument of type 'NoneType' is not iterable",
		`{{ missing|tojson }}`:                         "Undefined is not JSON serializable",
		`{{ tools|map(attribute="function")|tojson }}`: "generator is not JSON serializable",
		`{{ l|select|length }}`:                        "object of type 'generator' has no len()",
		`{{ none|length }}`:                            "object of type 'NoneType' has no len()",
		`{{ (l|select)[0] }}`:                          "'generator' object is not subscriptable",
		`{{ l|select|last }}`:                          "'generator' object is not reversible",
		`{{ 1 / 0 }}`:                                  "division by zero",
		`{{ 1 // 0.0 }}`:                               "division by zero",
		`{{ 1 % 0 }}`:                                  "division by zero",
		`{{ s - 1 }}`:                                  "unsupported operand type(s) for -: 'str' and 'int'",
		`{{ s * s }}`:                                  "unsupported operand type(s) for *: 'str' and 'str'",
		`{{ none * 2 }}`:                               "unsupported operand type(s) for *",
		`{{ none < 1 }}`:                               "'<' not supported between instances of 'NoneType' and 'int'",
		`{{ s >= 1 }}`:                                 "'>=' not supported",
		`{{ tools|selectattr("function")|tojson(indent=2) }}`: "generator is not JSON serializable",
	} {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tmpl.Render(data)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %q, %v; want an error with %q", src, got, err, want)
		}
	}
}

// TestPythonRenders checks what jinja2's default Undefined and None allow.
func TestPythonRenders(t *testing.T) {
	data := map[string]any{"none": nil, "d": map[string]any{"a": 1}, "l": []any{1, 2}, "s": "x",
		"dl": []any{map[string]any{"x": 1}, map[string]any{"x": 2}}}
	for src, want := range map[string]string{
		`[{{ missing }}]`: "[]",
		`{% for x in missing %}x{% else %}e{% endfor %}`:                                           "e",
		`{{ missing is defined }}{{ d.b is defined }}`:                                             "FalseFalse",
		`{{ not missing }}{{ missing == none }}`:                                                   "TrueFalse",
		`{{ missing|default("z") }}{{ d.b or "y" }}`:                                               "zy",
		`{{ s ~ missing }}{{ "%s%s" % (missing, none) }}`:                                          "xNone",
		`{{ none }}{{ none.x is defined }}{{ none["x"] }}`:                                         "NoneFalse",
		`{{ 1 in missing }}{{ l + l }}{{ s + s }}`:                                                 "False[1, 2, 1, 2]xx",
		`{{ s * 2 }}{{ 2 * l }}{{ true + 1 }}{{ 7 // 2 }}{{ 7 % 3 }}{{ 2 ** 3 }}`:                  "xx[1, 2, 1, 2]2318",
		`{{ l < [1, 3] }}{{ 1 < 2.5 }}{{ s < "y" }}{{ l|list|length }}`:                            "TrueTrueTrue2",
		`{{ "%.2f|%s|%s"|format(1.234, true, l) }}{{ "%d%s" % (true, none) }}`:                     "1.23|True|[1, 2]1None",
		`{{ d|items|list }}{{ d.items()|list }}`:                                                   "[('a', 1)][('a', 1)]",
		`{% for a, b in [(1, 2), "xy", [3, 4]] %}{{ a }}{{ b }}{% endfor %}`:                       "12xy34",
		`{{ {"b": 2, "a": 3}|dictsort(by="value") }}{{ {"b": 2, "A": 3}|dictsort(reverse=true) }}`: "[('b', 2), ('a', 3)][('b', 2), ('A', 3)]",
		`{{ "it's a-b (c) 1st"|title }}|{{ "it's"|title == "it's".title() }}`:                      "It's A-B (C) 1st|False",
		`{{ ["a", "B", "c"]|sort }}{{ ["a", "B"]|sort(case_sensitive=true) }}{{ [3, 1, 2]|sort(true) }}{{ dl|sort(attribute="x", reverse=true)|map(attribute="x")|list }}`: "['a', 'B', 'c']['B', 'a'][3, 2, 1][2, 1]",
		`{{ "cba"|sort }}{{ {"b": 1, "a": 2}|sort }}{{ [[2], [1]]|sort }}{{ [1, 2.5, true, 0]|sort }}`:                                                                     "['a', 'b', 'c']['a', 'b'][[1], [2]][0, 1, True, 2.5]",
		`{{ dl|sort(attribute="y") }}`:                                            "[{'x': 1}, {'x': 2}]",
		`{{ "hello world foo"|truncate(9) }}|{{ "hello"|truncate(3, true, "") }}`: "hello...|hello",
		`{{ "a"|center(5) }}|{{ "ab"|center }}|{{ 7|center(4) }}`:                 "  a  |                                       ab                                       | 7  ",
		`{{ "hello world foo bar baz"|truncate(10, leeway=0) }}|{{ "hello world"|truncate(12) }}|{{ "hello wonderful world"|truncate(11, false, "!") }}|{{ "abcdefghijklmnop"|truncate(8) }}`: "hello...|hello world|hello!|abcde...",
		`{{ "x" is escaped }}{{ "x"|safe is escaped }}{{ "x"|e is escaped }}`:               "FalseTrueTrue",
		`{{ "%s|%d|%r|%5.1f%%" % ("a", 2.7, "b", 2.25) }}{{ (1,) + (2,) }}{{ d|dictsort }}`: "a|2|'b'|  2.2%(1, 2)[('a', 1)]",
		`{% if s is mapping %}{{ s|from_json }}{% endif %}`:                                 "",
		`{{ l|map("string")|join(",") }}`:                                                   "1,2",
		`{{ l|map("string")|list|tojson }}`:                                                 `["1", "2"]`,
		`{{ "<a '>"|safe + "<b \"&>" + ("<c>"|safe) }}`:                                     `<a '>&lt;b &#34;&amp;&gt;<c>`,
		`{{ "<a>" + "<b>"|safe }}{{ "<" ~ "<"|safe }}`:                                      "&lt;a&gt;<b><<",
		`{{ "<"|e + "<" }}{{ ("<"|e)|e }}{{ 1|safe + "<" }}`:                                "&lt;&lt;&lt;1&lt;",
	} {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tmpl.Render(data)
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", src, got, err, want)
		}
	}
}

// TestImmutable checks that an Immutable template refuses to modify lists and dicts,
// and that a plain one still may.
func TestImmutable(t *testing.T) {
	for src, want := range map[string]string{
		`{% set l = [] %}{% set _ = l.append(1) %}`:                           "access to attribute 'append' of 'list' object is unsafe.",
		`{% set d = {} %}{{ d.update({"a": 1}) }}`:                            "access to attribute 'update' of 'dict' object is unsafe.",
		`{% set d = {"a": 1} %}{{ d.pop }}`:                                   "'pop' of 'dict' object",
		`{% set d = {"a": 1} %}{{ d.items()|list }}`:                          "",
		`{% set ns = namespace(a=[]) %}{% set ns.a = ns.a + [1] %}{{ ns.a }}`: "",
	} {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tmpl.Immutable().Render(nil)
		if want == "" && err != nil || want != "" && (err == nil || !strings.Contains(err.Error(), want)) {
			t.Errorf("%s: %q, %v; want an error with %q", src, got, err, want)
		}
		if _, err := tmpl.Render(nil); err != nil {
			t.Errorf("%s: not immutable: %v", src, err)
		}
	}
}

// TestPythonStringMethods checks the str methods the fork adds against Python's renders.
func TestPythonStringMethods(t *testing.T) {
	for src, want := range map[string]string{
		`{{ ",".join(["a", "b"]) }}|{{ "".join("abc") }}`:                                                                                                                                                               "a,b|abc",
		`{{ "a\nb\r\nc\rd\n".splitlines() }}{{ "a\nb\r\n".splitlines(true) }}{{ "".splitlines() }}{{ "\n".splitlines() }}`:                                                                                              "['a', 'b', 'c', 'd']['a\\n', 'b\\r\\n'][]['']",
		`{{ "abcabc".rfind("b") }}{{ "abc".rfind("z") }}{{ "éab".index("a") }}`:                                                                                                                                         "4-11",
		`{{ "123".isdigit() }}{{ "".isdigit() }}{{ "a1".isalnum() }}{{ "ab".isalpha() }}{{ " \n".isspace() }}{{ "AB1".isupper() }}{{ "1".isupper() }}{{ "ab".islower() }}`:                                              "TrueFalseTrueTrueTrueTrueFalseTrue",
		`{{ "abc".removeprefix("a") }}{{ "abc".removesuffix("c") }}{{ "a=b=c".partition("=") }}{{ "a=b=c".rpartition("=") }}{{ "abc".partition("x") }}{{ "abc".rpartition("x") }}`:                                      "bcab('a', '=', 'b=c')('a=b', '=', 'c')('abc', '', '')('', '', 'abc')",
		`[{{ "x".center(4) }}][{{ "x".center(5) }}][{{ "ab".center(5) }}][{{ "ab".center(6, "*") }}][{{ "abc".center(6) }}][{{ "abc".center(7) }}][{{ "x".ljust(3) }}][{{ "x".rjust(3, "0") }}][{{ "xyz".center(2) }}]`: "[ x  ][  x  ][  ab ][**ab**][ abc  ][  abc  ][x  ][00x][xyz]",
		`{{ "x".nope }}|{{ "x".nope is defined }}`: "|False",
	} {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tmpl.Render(nil)
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", src, got, err, want)
		}
	}
	for _, src := range []string{`{{ ",".join([1]) }}`, `{{ "abc".index("z") }}`, `{{ "x".nope() }}`} {
		tmpl, _ := jinja.Compile(src)
		if got, err := tmpl.Render(nil); err == nil {
			t.Errorf("%s: rendered %q", src, got)
		}
	}
}

// TestGroupby checks jinja2's groupby filter against Python's renders.
func TestGroupby(t *testing.T) {
	data := map[string]any{"ml": []any{
		map[string]any{"role": "user", "c": "a"}, map[string]any{"role": "User", "c": "b"},
		map[string]any{"role": "bot", "c": "c"}, map[string]any{"role": "user", "c": "d"},
	}}
	for src, want := range map[string]string{
		`{% for g in ml|groupby("role") %}{{ g.grouper }}:{{ g.list|map(attribute="c")|join(",") }};{% endfor %}`: "bot:c;user:a,b,d;",
		`{% for role, ms in ml|groupby("role") %}{{ role }}={{ ms|length }};{% endfor %}`:                         "bot=1;user=3;",
		`{{ ml|groupby("role", case_sensitive=true)|map(attribute="grouper")|list }}`:                             "['User', 'bot', 'user']",
		`{{ ml|groupby("nope", default="z")|length }}`:                                                            "1",
		`{{ ml|groupby("nope") }}`: "error",
		`{{ none|groupby("x") }}`:  "error",
	} {
		tmpl, err := jinja.Compile(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		got, err := tmpl.Render(data)
		if want == "error" && err == nil || want != "error" && (err != nil || got != want) {
			t.Errorf("%s: %q, %v; want %q", src, got, err, want)
		}
	}
}
