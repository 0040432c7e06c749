package jinja

import (
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file holds what the fork adds to make templates fail where Python's jinja2
// (default Undefined, as transformers' apply_chat_template runs it) raises.

// UndefinedError is the error jinja2 raises when a template uses an undefined value
// for anything but printing, iteration, truthiness, tests and equality.
type UndefinedError struct{ Hint string }

func (e *UndefinedError) Error() string { return "UndefinedError: " + e.Hint }

// TypeError is the error Python raises for an operation on values of the wrong types.
type TypeError struct{ Msg string }

func (e *TypeError) Error() string { return "TypeError: " + e.Msg }

// undefinedWith returns an undefined value that remembers why it is undefined.
func undefinedWith(format string, args ...any) Value {
	return Value{kind: KindUndefined, v: fmt.Sprintf(format, args...)}
}

// undefinedError is the error raised for using the undefined value v.
func undefinedError(v Value) error {
	if hint, ok := v.v.(string); ok && hint != "" {
		return &UndefinedError{Hint: hint}
	}
	return &UndefinedError{Hint: "value is undefined"}
}

// pyTypeName is Python's name for v's type, as its error messages print it.
func pyTypeName(v Value) string {
	switch v.kind {
	case KindUndefined:
		return "Undefined"
	case KindNone:
		return "NoneType"
	case KindBool:
		return "bool"
	case KindInt:
		return "int"
	case KindFloat:
		return "float"
	case KindString:
		return "str"
	case KindList:
		if v.AsList().generator {
			return "generator"
		}
		if v.AsList().tuple {
			return "tuple"
		}
		return "list"
	case KindDict:
		return "dict"
	}
	return "function"
}

// pyObjectName is how jinja2 names a value's type in an undefined hint ("'dict object'").
func pyObjectName(v Value) string {
	if v.IsNone() {
		return "None"
	}
	return pyTypeName(v) + " object"
}

// checkArith returns the error Python raises for the arithmetic operator op on a and
// b, or nil: any operand undefined, and + on anything but two numbers, two strings,
// two lists or two tuples.
func checkArith(op string, a, b Value) error {
	if a.IsUndefined() {
		return undefinedError(a)
	}
	if b.IsUndefined() && !(op == "%" && a.IsString()) {
		return undefinedError(b)
	}
	num := func(v Value) bool { return v.IsNumber() || v.IsBool() }
	seq := func(v Value) bool { return v.IsString() || v.IsList() && !v.AsList().generator }
	if op != "+" {
		switch {
		case op == "%" && a.IsString():
			return nil
		case op == "*" && (seq(a) && (b.IsInt() || b.IsBool()) || seq(b) && (a.IsInt() || a.IsBool())):
			return nil
		case !num(a) || !num(b):
			return &TypeError{Msg: fmt.Sprintf("unsupported operand type(s) for %s: '%s' and '%s'", op, pyTypeName(a), pyTypeName(b))}
		case (op == "/" || op == "//" || op == "%") && toFloat64(b) == 0:
			return &ZeroDivisionError{}
		case op == "**" && toFloat64(a) == 0 && toFloat64(b) < 0:
			return &ZeroDivisionError{}
		}
		return nil
	}
	switch {
	case num(a) && num(b), a.IsString() && b.IsString():
		return nil
	case a.IsList() && b.IsList() && !a.AsList().generator && !b.AsList().generator && a.AsList().tuple == b.AsList().tuple:
		return nil
	case a.IsString():
		return &TypeError{Msg: fmt.Sprintf("can only concatenate str (not %q) to str", pyTypeName(b))}
	case a.IsList() && !a.AsList().generator:
		return &TypeError{Msg: fmt.Sprintf("can only concatenate %s (not %q) to %s", pyTypeName(a), pyTypeName(b), pyTypeName(a))}
	}
	return &TypeError{Msg: fmt.Sprintf("unsupported operand type(s) for +: '%s' and '%s'", pyTypeName(a), pyTypeName(b))}
}

// asGenerator marks the lists fn returns as generators.
func asGenerator(fn func([]Value, map[string]Value) (Value, error)) func([]Value, map[string]Value) (Value, error) {
	return func(args []Value, kwargs map[string]Value) (Value, error) {
		v, err := fn(args, kwargs)
		if err == nil && v.IsList() {
			v.AsList().generator = true
		}
		return v, err
	}
}

// formatArg is the argument str % v passes to fmt: the undefined value formats as
// "" and None as "None", as Python's %s prints them.
func formatArg(v Value) any {
	switch v.kind {
	case KindUndefined:
		return ""
	case KindNone:
		return "None"
	case KindBool:
		return pyBool(v.AsBool())
	case KindList, KindDict, KindCallable:
		return v.String()
	}
	return v.v
}

// pyBool formats as Python's bool: True or False for %s, 1 or 0 for numbers.
type pyBool bool

func (b pyBool) Format(f fmt.State, verb rune) {
	switch verb {
	case 's', 'v', 'r':
		if b {
			fmt.Fprint(f, "True")
		} else {
			fmt.Fprint(f, "False")
		}
	default:
		n := 0
		if b {
			n = 1
		}
		format := "%"
		for _, flag := range "-+# 0" {
			if f.Flag(int(flag)) {
				format += string(flag)
			}
		}
		if w, ok := f.Width(); ok {
			format += fmt.Sprint(w)
		}
		if p, ok := f.Precision(); ok {
			format += "." + fmt.Sprint(p)
		}
		fmt.Fprintf(f, format+string(verb), n)
	}
}

// newMarkup returns s as a markupsafe.Markup string.
func newMarkup(s string) Value {
	v := NewString(s)
	v.markup = true
	return v
}

// escapeHTML escapes s as markupsafe.escape does.
func escapeHTML(s string) string {
	return htmlEscaper.Replace(s)
}

var htmlEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;")

// markupString is the text a string contributes to a Markup concatenation: escaped
// unless it is Markup already.
func markupString(v Value) string {
	if v.markup {
		return v.AsString()
	}
	return escapeHTML(v.AsString())
}

// ZeroDivisionError is the error Python raises for a division or modulo by zero.
type ZeroDivisionError struct{}

func (*ZeroDivisionError) Error() string { return "ZeroDivisionError: division by zero" }

// checkOrder returns the error Python raises for the comparison op (<, >, <=, >=)
// of a and b, or nil: only numbers, strings, lists and tuples are ordered, each
// against its own kind.
func checkOrder(op string, a, b Value) error {
	if a.IsUndefined() {
		return undefinedError(a)
	}
	if b.IsUndefined() {
		return undefinedError(b)
	}
	num := func(v Value) bool { return v.IsNumber() || v.IsBool() }
	switch {
	case num(a) && num(b), a.IsString() && b.IsString():
		return nil
	case a.IsList() && b.IsList() && !a.AsList().generator && !b.AsList().generator && a.AsList().tuple == b.AsList().tuple:
		return nil
	}
	return &TypeError{Msg: fmt.Sprintf("'%s' not supported between instances of '%s' and '%s'", op, pyTypeName(a), pyTypeName(b))}
}

// filterFormat is jinja2's format filter: value % args, or % kwargs by name.
func filterFormat(args []Value, kwargs map[string]Value) (Value, error) {
	if len(args) == 0 {
		return NewString(""), nil
	}
	if len(kwargs) > 0 && len(args) > 1 {
		return Undefined(), &TypeError{Msg: "can't handle positional and keyword arguments at the same time"}
	}
	if len(kwargs) > 0 {
		return Undefined(), &TypeError{Msg: "format with keyword arguments is not supported"}
	}
	tuple := NewList(slices.Clone(args[1:]))
	tuple.AsList().tuple = true
	return percentFormat(printValue(args[0]), tuple)
}

// percentFormat is Python's format % right for a string format: right is a tuple of
// arguments or a single one. Too few or too many arguments fail as in Python.
func percentFormat(format string, right Value) (Value, error) {
	var values []Value
	if right.IsList() && right.AsList().tuple {
		values = right.AsList().Items
	} else {
		values = []Value{right}
	}
	var out strings.Builder
	var args []any
	arg := 0
	next := func() (Value, error) {
		if arg >= len(values) {
			return Value{}, &TypeError{Msg: "not enough arguments for format string"}
		}
		arg++
		return values[arg-1], nil
	}
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			out.WriteByte(format[i])
			continue
		}
		if i+1 < len(format) && format[i+1] == '(' {
			// Mapping keys are not supported: format as the engine did.
			return NewString(fmt.Sprintf(format, formatArg(right))), nil
		}
		start := i
		i++
		if i < len(format) && format[i] == '%' {
			out.WriteString("%%")
			continue
		}
		for i < len(format) && strings.ContainsRune("#0- +0123456789.*hlL", rune(format[i])) {
			if format[i] == '*' {
				v, err := next()
				if err != nil {
					return Undefined(), err
				}
				args = append(args, int(toInt64(v)))
			}
			i++
		}
		if i >= len(format) {
			return Undefined(), &ValueError{Msg: "incomplete format"}
		}
		spec, verb := strings.Map(func(r rune) rune {
			if r == 'h' || r == 'l' || r == 'L' {
				return -1
			}
			return r
		}, format[start:i]), format[i]
		v, err := next()
		if err != nil {
			return Undefined(), err
		}
		switch verb {
		case 'r', 'a':
			verb = 's'
			args = append(args, v.String())
		case 'd', 'i', 'u':
			verb = 'd'
			a := formatArg(v)
			if f, ok := a.(float64); ok {
				a = int64(f)
			}
			args = append(args, a)
		default:
			args = append(args, formatArg(v))
		}
		out.WriteString(spec)
		out.WriteByte(verb)
	}
	if arg < len(values) && !right.IsDict() {
		return Undefined(), &TypeError{Msg: "not all arguments converted during string formatting"}
	}
	return NewString(fmt.Sprintf(out.String(), args...)), nil
}

// ValueError is the error Python raises for a malformed format string.
type ValueError struct{ Msg string }

func (e *ValueError) Error() string { return "ValueError: " + e.Msg }

// Immutable returns a copy of t that renders as jinja2's ImmutableSandboxedEnvironment
// (which transformers' apply_chat_template uses): reading a method that modifies a
// list or dict (append, update, ...) fails with a SecurityError.
func (t *Template) Immutable() *Template {
	c := *t
	c.immutable = true
	return &c
}

// SecurityError is the error jinja2's sandbox raises for an unsafe attribute.
type SecurityError struct{ Msg string }

func (e *SecurityError) Error() string { return "SecurityError: " + e.Msg }

// mutators are the methods jinja2's ImmutableSandboxedEnvironment refuses.
var mutators = map[Kind]map[string]bool{
	KindList: {"append": true, "clear": true, "extend": true, "insert": true, "pop": true, "remove": true, "reverse": true, "sort": true},
	KindDict: {"clear": true, "pop": true, "popitem": true, "setdefault": true, "update": true},
}

func (e *evaluator) checkMutation(obj Value, method string) error {
	if !e.immutable || !mutators[obj.kind][method] {
		return nil
	}
	return &SecurityError{Msg: fmt.Sprintf("access to attribute '%s' of '%s' object is unsafe.", method, pyTypeName(obj))}
}

// moreStringMethods are Python str methods the engine lacked, by name.
var moreStringMethods = map[string]func(s string, args []Value) (Value, error){
	"join": func(s string, args []Value) (Value, error) {
		if len(args) != 1 {
			return Undefined(), &TypeError{Msg: "str.join() takes exactly one argument"}
		}
		var parts []string
		for _, v := range iterableItems(args[0]) {
			if !v.IsString() {
				return Undefined(), &TypeError{Msg: fmt.Sprintf("sequence item: expected str instance, %s found", pyTypeName(v))}
			}
			parts = append(parts, v.AsString())
		}
		return NewString(strings.Join(parts, s)), nil
	},
	"splitlines": func(s string, args []Value) (Value, error) {
		keep := len(args) > 0 && args[0].IsTruthy()
		var lines []Value
		for s != "" {
			i := strings.IndexFunc(s, isLineBreak)
			if i < 0 {
				lines = append(lines, NewString(s))
				break
			}
			_, n := utf8.DecodeRuneInString(s[i:])
			if s[i] == '\r' && strings.HasPrefix(s[i+1:], "\n") {
				n = 2
			}
			end := i
			if keep {
				end = i + n
			}
			lines = append(lines, NewString(s[:end]))
			s = s[i+n:]
		}
		return NewList(lines), nil
	},
	"rfind": func(s string, args []Value) (Value, error) {
		if len(args) < 1 || !args[0].IsString() {
			return Undefined(), &TypeError{Msg: "rfind() takes a str argument"}
		}
		i := strings.LastIndex(s, args[0].AsString())
		if i < 0 {
			return NewInt(-1), nil
		}
		return NewInt(int64(utf8.RuneCountInString(s[:i]))), nil
	},
	"index": func(s string, args []Value) (Value, error) {
		if len(args) < 1 || !args[0].IsString() {
			return Undefined(), &TypeError{Msg: "index() takes a str argument"}
		}
		i := strings.Index(s, args[0].AsString())
		if i < 0 {
			return Undefined(), &ValueError{Msg: "substring not found"}
		}
		return NewInt(int64(utf8.RuneCountInString(s[:i]))), nil
	},
	"isdigit":   runeTest(unicode.IsDigit),
	"isnumeric": runeTest(unicode.IsNumber),
	"isalpha":   runeTest(unicode.IsLetter),
	"isalnum":   runeTest(func(r rune) bool { return unicode.IsLetter(r) || unicode.IsNumber(r) }),
	"isspace":   runeTest(pythonWhitespace),
	"isupper": func(s string, _ []Value) (Value, error) {
		return NewBool(strings.ToLower(s) != s && strings.ToUpper(s) == s), nil
	},
	"islower": func(s string, _ []Value) (Value, error) {
		return NewBool(strings.ToUpper(s) != s && strings.ToLower(s) == s), nil
	},
	"removeprefix": func(s string, args []Value) (Value, error) {
		if len(args) != 1 || !args[0].IsString() {
			return Undefined(), &TypeError{Msg: "removeprefix() takes a str argument"}
		}
		return NewString(strings.TrimPrefix(s, args[0].AsString())), nil
	},
	"removesuffix": func(s string, args []Value) (Value, error) {
		if len(args) != 1 || !args[0].IsString() {
			return Undefined(), &TypeError{Msg: "removesuffix() takes a str argument"}
		}
		return NewString(strings.TrimSuffix(s, args[0].AsString())), nil
	},
	"partition":  partition(strings.Cut),
	"rpartition": partition(lastCut),
	"center":     pad(func(left, right int) (int, int) { return left, right }),
	"ljust":      pad(func(left, right int) (int, int) { return 0, left + right }),
	"rjust":      pad(func(left, right int) (int, int) { return left + right, 0 }),
}

// isLineBreak reports whether r ends a line for str.splitlines.
func isLineBreak(r rune) bool {
	return strings.ContainsRune("\n\r\v\f\x1c\x1d\x1e\u0085\u2028\u2029", r)
}

// runeTest is an str.isX method: true when s is not empty and every rune passes.
func runeTest(f func(rune) bool) func(string, []Value) (Value, error) {
	return func(s string, _ []Value) (Value, error) {
		return NewBool(s != "" && strings.IndexFunc(s, func(r rune) bool { return !f(r) }) < 0), nil
	}
}

func lastCut(s, sep string) (string, string, bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return "", s, false
	}
	return s[:i], s[i+len(sep):], true
}

// partition is str.partition or str.rpartition, by the cut it uses.
func partition(cut func(s, sep string) (string, string, bool)) func(string, []Value) (Value, error) {
	return func(s string, args []Value) (Value, error) {
		if len(args) != 1 || !args[0].IsString() || args[0].AsString() == "" {
			return Undefined(), &ValueError{Msg: "partition() takes a non-empty str separator"}
		}
		sep := args[0].AsString()
		before, after, ok := cut(s, sep)
		if !ok {
			sep = ""
		}
		t := NewList([]Value{NewString(before), NewString(sep), NewString(after)})
		t.AsList().tuple = true
		return t, nil
	}
}

// pad is str.center, ljust or rjust: split says how the padding (left, right as
// center splits it) is placed.
func pad(split func(left, right int) (int, int)) func(string, []Value) (Value, error) {
	return func(s string, args []Value) (Value, error) {
		if len(args) < 1 || !args[0].IsInt() {
			return Undefined(), &TypeError{Msg: "width must be an int"}
		}
		fill := " "
		if len(args) > 1 {
			if !args[1].IsString() || utf8.RuneCountInString(args[1].AsString()) != 1 {
				return Undefined(), &TypeError{Msg: "the fill character must be exactly one character long"}
			}
			fill = args[1].AsString()
		}
		n := int(args[0].AsInt()) - utf8.RuneCountInString(s)
		if n <= 0 {
			return NewString(s), nil
		}
		// CPython's center puts the odd space on the left when the width is odd.
		left := n/2 + (n & int(args[0].AsInt()) & 1)
		l, r := split(left, n-left)
		return NewString(strings.Repeat(fill, l) + s + strings.Repeat(fill, r)), nil
	}
}

// unpackPair unpacks v into two values as Python's a, b = v does.
func unpackPair(v Value) ([2]Value, error) {
	var items []Value
	switch {
	case v.IsList() && !v.AsList().generator:
		items = v.AsList().Items
	case v.IsString(), v.IsDict():
		items = iterableItems(v)
	default:
		return [2]Value{}, &TypeError{Msg: fmt.Sprintf("cannot unpack non-iterable %s object", pyTypeName(v))}
	}
	switch {
	case len(items) > 2:
		return [2]Value{}, &ValueError{Msg: "too many values to unpack (expected 2)"}
	case len(items) < 2:
		return [2]Value{}, &ValueError{Msg: fmt.Sprintf("not enough values to unpack (expected 2, got %d)", len(items))}
	}
	return [2]Value{items[0], items[1]}, nil
}

// filterGroupby is jinja2's groupby(attribute, default=None, case_sensitive=False):
// the items sorted by the attribute and grouped into (grouper, list) tuples.
func filterGroupby(args []Value, kwargs map[string]Value) (Value, error) {
	if len(args) < 2 && kwargs["attribute"].IsUndefined() {
		return Undefined(), &TypeError{Msg: "groupby() missing required argument: 'attribute'"}
	}
	value := args[0]
	if !value.IsUndefined() && !value.IsList() && !value.IsDict() && !value.IsString() {
		return Undefined(), &TypeError{Msg: fmt.Sprintf("'%s' object is not iterable", pyTypeName(value))}
	}
	attribute := printValue(builtinArgument(args, kwargs, 1, "attribute", None()))
	def := builtinArgument(args, kwargs, 2, "default", Undefined())
	caseSensitive := builtinArgument(args, kwargs, 3, "case_sensitive", NewBool(false)).IsTruthy()
	items := iterableItems(value)
	keys := make([]Value, len(items))
	sortKeys := make([]Value, len(items))
	for i, item := range items {
		keys[i] = builtinAttribute(item, attribute, def)
		if keys[i].IsUndefined() {
			return Undefined(), undefinedError(undefinedWith("'%s' has no attribute '%s'", pyObjectName(item), attribute))
		}
		sortKeys[i] = keys[i]
		if !caseSensitive && keys[i].IsString() {
			sortKeys[i] = NewString(strings.ToLower(keys[i].AsString()))
		}
	}
	order := make([]int, len(items))
	for i := range order {
		order[i] = i
	}
	var err error
	slices.SortStableFunc(order, func(a, b int) int {
		if e := checkOrder("<", sortKeys[a], sortKeys[b]); e != nil {
			err = e
			return 0
		}
		c, _ := compareValues(sortKeys[a], sortKeys[b])
		return c
	})
	if err != nil {
		return Undefined(), err
	}
	var groups []Value
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && sortKeys[order[end]].Equals(sortKeys[order[start]]) {
			end++
		}
		grouper := sortKeys[order[start]]
		if !caseSensitive {
			grouper = keys[order[start]]
		}
		members := make([]Value, 0, end-start)
		for _, i := range order[start:end] {
			members = append(members, items[i])
		}
		g := NewList([]Value{grouper, NewList(members)})
		g.AsList().tuple = true
		g.AsList().group = true
		groups = append(groups, g)
		start = end
	}
	return NewList(groups), nil
}

// filterCenter is jinja2's center(width=80).
func filterCenter(args []Value, kwargs map[string]Value) (Value, error) {
	if len(args) == 0 {
		return NewString(""), nil
	}
	width := builtinArgument(args, kwargs, 1, "width", NewInt(80))
	return moreStringMethods["center"](printValue(args[0]), []Value{width})
}

// filterTruncate is jinja2's truncate(length=255, killwords=False, end="...",
// leeway=5).
func filterTruncate(args []Value, kwargs map[string]Value) (Value, error) {
	if len(args) == 0 {
		return NewString(""), nil
	}
	s := []rune(printValue(args[0]))
	length := int(toInt64(builtinArgument(args, kwargs, 1, "length", NewInt(255))))
	killwords := builtinArgument(args, kwargs, 2, "killwords", NewBool(false)).IsTruthy()
	end := []rune(printValue(builtinArgument(args, kwargs, 3, "end", NewString("..."))))
	leeway := builtinArgument(args, kwargs, 4, "leeway", None())
	lw := 5
	if !leeway.IsNone() {
		lw = int(toInt64(leeway))
	}
	if length < len(end) || lw < 0 {
		return Undefined(), fmt.Errorf("truncate: expected length >= len(end) and leeway >= 0")
	}
	if len(s) <= length+lw {
		return NewString(string(s)), nil
	}
	cut := string(s[:length-len(end)])
	if !killwords {
		if i := strings.LastIndex(cut, " "); i >= 0 {
			cut = cut[:i]
		}
	}
	return NewString(cut + string(end)), nil
}
