package main

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// A reader for the subset of YAML the files in deploy/ are written in, for
// deploy_test.go: the module has no YAML dependency, and the test should not
// bring one in. Block mappings and block sequences (a sequence may sit at its
// key's indentation, as kubectl writes it), plain, single- and double-quoted
// scalars, comments, and "---" between documents. Plain scalars that look like
// integers, true/false or null/~ are typed. Anything else (flow collections,
// block scalars | and >, anchors, aliases, tags, tabs, duplicate keys) is an
// error naming the line, so a file that leaves the subset fails the test
// rather than being misread. Where kubectl is on PATH, the test compares this
// reader's view of the manifests with kubectl kustomize's.

type yamlLine struct {
	num    int
	indent int
	text   string
}

type yamlReader struct {
	lines []yamlLine
	pos   int
}

// parseYAML returns the documents of src: map[string]any, []any, string,
// int64, bool or nil.
func parseYAML(src string) ([]any, error) {
	var docs []any
	var cur []yamlLine
	flush := func() error {
		if len(cur) == 0 {
			return nil
		}
		r := &yamlReader{lines: cur}
		v, err := r.node(cur[0].indent)
		if err != nil {
			return err
		}
		if r.pos < len(r.lines) {
			return fmt.Errorf("line %d: unexpected indentation", r.lines[r.pos].num)
		}
		docs = append(docs, v)
		cur = nil
		return nil
	}
	for i, raw := range strings.Split(src, "\n") {
		raw = strings.TrimRight(raw, " \r")
		if raw == "---" {
			if err := flush(); err != nil {
				return nil, err
			}
			continue
		}
		text := strings.TrimLeft(raw, " ")
		if strings.HasPrefix(text, "\t") {
			return nil, fmt.Errorf("line %d: tab in indentation", i+1)
		}
		text, err := stripComment(text)
		if err != nil {
			return nil, fmt.Errorf("line %d: %v", i+1, err)
		}
		if text == "" {
			continue
		}
		cur = append(cur, yamlLine{num: i + 1, indent: len(raw) - len(strings.TrimLeft(raw, " ")), text: text})
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return docs, nil
}

// stripComment drops a # comment (at the start or after a space, outside
// quotes) and trailing spaces.
func stripComment(s string) (string, error) {
	var quote byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			} else if c == '\\' && quote == '"' {
				i++
			}
		case c == '"' || c == '\'':
			if i == 0 || s[i-1] == ' ' || s[i-1] == '-' || s[i-1] == ':' || s[i-1] == '[' {
				quote = c
			}
		case c == '#' && (i == 0 || s[i-1] == ' '):
			return strings.TrimRight(s[:i], " "), nil
		}
	}
	if quote != 0 {
		return "", fmt.Errorf("unterminated %c quote", quote)
	}
	return s, nil
}

func isSeqItem(text string) bool { return text == "-" || strings.HasPrefix(text, "- ") }

func (r *yamlReader) node(indent int) (any, error) {
	l := r.lines[r.pos]
	if l.indent != indent {
		return nil, fmt.Errorf("line %d: unexpected indentation", l.num)
	}
	if isSeqItem(l.text) {
		return r.sequence(indent)
	}
	return r.mapping(indent)
}

func (r *yamlReader) sequence(indent int) ([]any, error) {
	var seq []any
	for r.pos < len(r.lines) {
		l := r.lines[r.pos]
		if l.indent < indent || !isSeqItem(l.text) && l.indent == indent {
			break // the parent goes on (a compact sequence's mapping), or refuses the line
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.num)
		}
		if l.text == "-" {
			r.pos++
			if r.pos >= len(r.lines) || r.lines[r.pos].indent <= indent {
				seq = append(seq, nil)
				continue
			}
			v, err := r.node(r.lines[r.pos].indent)
			if err != nil {
				return nil, err
			}
			seq = append(seq, v)
			continue
		}
		rest := strings.TrimLeft(l.text[1:], " ")
		inner := indent + len(l.text) - len(rest)
		if _, _, ok, err := splitKey(rest, l.num); err != nil {
			return nil, err
		} else if ok {
			// "- key: value": a mapping whose first line is this one.
			r.lines[r.pos] = yamlLine{num: l.num, indent: inner, text: rest}
			m, err := r.mapping(inner)
			if err != nil {
				return nil, err
			}
			seq = append(seq, m)
			continue
		}
		v, err := scalar(rest, l.num)
		if err != nil {
			return nil, err
		}
		seq = append(seq, v)
		r.pos++
	}
	return seq, nil
}

func (r *yamlReader) mapping(indent int) (map[string]any, error) {
	m := map[string]any{}
	for r.pos < len(r.lines) {
		l := r.lines[r.pos]
		if l.indent < indent || (l.indent == indent && isSeqItem(l.text)) {
			break
		}
		if l.indent > indent {
			return nil, fmt.Errorf("line %d: unexpected indentation", l.num)
		}
		key, val, ok, err := splitKey(l.text, l.num)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("line %d: want key: value, have %q", l.num, l.text)
		}
		if _, dup := m[key]; dup {
			return nil, fmt.Errorf("line %d: key %q repeated", l.num, key)
		}
		r.pos++
		if val != "" {
			if m[key], err = scalar(val, l.num); err != nil {
				return nil, err
			}
			continue
		}
		switch {
		case r.pos < len(r.lines) && r.lines[r.pos].indent > indent:
			m[key], err = r.node(r.lines[r.pos].indent)
		case r.pos < len(r.lines) && r.lines[r.pos].indent == indent && isSeqItem(r.lines[r.pos].text):
			m[key], err = r.sequence(indent)
		default:
			m[key] = nil
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

// splitKey splits "key: value" (or "key:") at the first ": " outside quotes.
func splitKey(s string, num int) (key, val string, ok bool, err error) {
	if strings.HasPrefix(s, `"`) || strings.HasPrefix(s, "'") {
		end := strings.IndexByte(s[1:], s[0])
		if end < 0 {
			return "", "", false, fmt.Errorf("line %d: unterminated quote", num)
		}
		rest := s[end+2:]
		if rest != ":" && !strings.HasPrefix(rest, ": ") {
			return "", "", false, nil
		}
		k, err := scalar(s[:end+2], num)
		if err != nil {
			return "", "", false, err
		}
		return fmt.Sprint(k), strings.TrimSpace(rest[1:]), true, nil
	}
	i := strings.Index(s, ": ")
	if strings.HasSuffix(s, ":") && (i < 0 || i > len(s)-1) {
		i = len(s) - 1
	}
	if i < 0 {
		return "", "", false, nil
	}
	key = s[:i]
	if strings.ContainsAny(key[:1], "{[&*!|>%@`") {
		return "", "", false, fmt.Errorf("line %d: %q is outside the YAML subset deploy_test.go reads", num, s)
	}
	return key, strings.TrimSpace(s[i+1:]), true, nil
}

func scalar(s string, num int) (any, error) {
	switch {
	case strings.HasPrefix(s, `"`):
		v, err := strconv.Unquote(s)
		if err != nil {
			return nil, fmt.Errorf("line %d: %s: %v", num, s, err)
		}
		return v, nil
	case strings.HasPrefix(s, "'"):
		if len(s) < 2 || !strings.HasSuffix(s, "'") {
			return nil, fmt.Errorf("line %d: unterminated quote", num)
		}
		return strings.ReplaceAll(s[1:len(s)-1], "''", "'"), nil
	case strings.ContainsAny(s[:1], "{[&*!|>%@`"):
		return nil, fmt.Errorf("line %d: %q is outside the YAML subset deploy_test.go reads", num, s)
	}
	switch s {
	case "true":
		return true, nil
	case "false":
		return false, nil
	case "null", "~":
		return nil, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, nil
	}
	return s, nil
}

func TestParseYAMLSubset(t *testing.T) {
	docs, err := parseYAML(`# a comment
a: 1
b: "x # not a comment"   # a comment
c:
  - p
  - q: 'it''s'
    r: true
d:
- e: ~
  f:
    g: http://h:1
h: 2
---
- x
`)
	if err != nil {
		t.Fatal(err)
	}
	want := `[map[a:1 b:x # not a comment c:[p map[q:it's r:true]] d:[map[e:<nil> f:map[g:http://h:1]]] h:2] [x]]`
	if got := fmt.Sprint(docs); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	for _, bad := range []string{"a: [1, 2]", "a: |\n  x", "a: &x 1", "a: 1\na: 2", "a:\n  b: 1\n c: 2", "a: 'x", "\ta: 1"} {
		if _, err := parseYAML(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
