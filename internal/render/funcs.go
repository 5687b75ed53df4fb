package render

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"text/template"
)

// funcs are the helpers templates may call, besides text/template's own
// (and, or, not, eq, ne, len, index, print, printf...). include is added by
// New because it needs the parsed templates.
var funcs = template.FuncMap{
	"indent": indent,
	"quote":  quote,
	"toJSON": toJSON,
	"join":   join,
}

// indent prefixes every non-empty line of s with n spaces and drops one
// final newline, so that `{{ include "f" . | indent 6 }}` on a line of its
// own fills a YAML block scalar without leaving a blank line behind.
func indent(n int, s string) string {
	s = strings.TrimSuffix(s, "\n")
	if s == "" {
		return ""
	}
	pad := strings.Repeat(" ", n)
	var b strings.Builder
	b.Grow(len(s) + n*(strings.Count(s, "\n")+1))
	for line := range strings.Lines(s) {
		if strings.TrimSpace(line) != "" {
			b.WriteString(pad)
		} else {
			// Keep the line break, drop trailing blanks.
			line = strings.TrimLeft(line, " \t")
		}
		b.WriteString(line)
	}
	return b.String()
}

// quote makes s a YAML double-quoted scalar, so a value from the inventory is
// always a string: never a number, boolean, null, or YAML syntax. Go's quoting
// only uses escapes that YAML's double-quoted style also defines (\" \\ \n
// \t \xXX \uXXXX \UXXXXXXXX ...), so the result is valid YAML.
func quote(s string) string { return strconv.Quote(s) }

// toJSON prints v as indented JSON with encoding/json (keys of maps sorted,
// struct fields in order), without a final newline.
func toJSON(v any) (string, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}

// join is strings.Join with the separator first: {{ join " " .List }}.
func join(sep string, elems []string) string { return strings.Join(elems, sep) }
