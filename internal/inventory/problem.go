package inventory

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with an inventory: where, which field, what.
type Problem struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (p Problem) Error() string {
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	if p.Field != "" {
		fmt.Fprintf(&b, ": %s", p.Field)
	}
	fmt.Fprintf(&b, ": %s", p.Msg)
	return b.String()
}

// Problems is every problem found at once. It is an error when non-empty.
type Problems []Problem

// MaxListed is how many problems Error lists; the rest are counted.
const MaxListed = 50

func (ps Problems) Error() string {
	if len(ps) == 1 {
		return ps[0].Error()
	}
	lines := make([]string, 0, min(len(ps), MaxListed)+1)
	for _, p := range ps[:min(len(ps), MaxListed)] {
		lines = append(lines, p.Error())
	}
	if more := len(ps) - MaxListed; more > 0 {
		lines = append(lines, fmt.Sprintf("and %d more problems (fix these and run again)", more))
	}
	return fmt.Sprintf("%d problems:\n  %s", len(ps), strings.Join(lines, "\n  "))
}

// Err returns nil when there are no problems.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	ps.sort()
	return ps
}

func (ps Problems) sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		if ps[i].File != ps[j].File {
			return ps[i].File < ps[j].File
		}
		return ps[i].Line < ps[j].Line
	})
}
