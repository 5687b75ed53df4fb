// Package mirror makes and serves the lab's own apt repository: exactly
// the packages the nodes need (the configured Docker package and the rest
// user-data installs, with their dependencies) for each architecture in
// the inventory, signed with a lab key, so that air-gapped hosts install
// from it.
package mirror

import (
	"bufio"
	"bytes"
	"strings"
)

// Stanza is one paragraph of a Debian control file (a package's control,
// a Packages index entry, a dpkg status entry), fields in file order.
type Stanza struct {
	keys   []string
	fields map[string]string
}

// Get returns a field's value ("" when absent).
func (s *Stanza) Get(k string) string { return s.fields[k] }

// Set sets a field, keeping the first position of an existing one.
func (s *Stanza) Set(k, v string) {
	if s.fields == nil {
		s.fields = map[string]string{}
	}
	if _, ok := s.fields[k]; !ok {
		s.keys = append(s.keys, k)
	}
	s.fields[k] = v
}

// Write appends the stanza in control-file form (no blank line).
func (s *Stanza) Write(b *bytes.Buffer) {
	for _, k := range s.keys {
		b.WriteString(k)
		b.WriteString(":")
		v := s.fields[k]
		if !strings.HasPrefix(v, "\n") {
			b.WriteString(" ")
		}
		b.WriteString(v)
		b.WriteString("\n")
	}
}

// ParseControl reads the stanzas of a control-format file. Continuation
// lines are kept as they are (with their leading space).
func ParseControl(data []byte) []*Stanza {
	var out []*Stanza
	cur := &Stanza{}
	last := ""
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.TrimSpace(line) == "":
			if len(cur.keys) > 0 {
				out = append(out, cur)
			}
			cur, last = &Stanza{}, ""
		case (line[0] == ' ' || line[0] == '\t') && last != "":
			cur.fields[last] += "\n" + line
		default:
			k, v, ok := strings.Cut(line, ":")
			if !ok {
				continue
			}
			last = k
			cur.Set(k, strings.TrimSpace(v))
		}
	}
	if len(cur.keys) > 0 {
		out = append(out, cur)
	}
	return out
}
