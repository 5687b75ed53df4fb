package pipeline

import (
	"fmt"
	"io"
	"strings"
)

// shownNodes is how many node names a plan line lists before "and N more".
const shownNodes = 6

var actionOrder = []Action{Destroy, Replace, Create, Update, Keep}

// WritePlan prints plans for a person: one block per stage, one line per
// action with the nodes it touches. With detail, every node gets a line.
func WritePlan(w io.Writer, plans []Plan, detail bool) {
	for _, p := range plans {
		fmt.Fprintf(w, "%s — %s\n", p.Stage, p.Title)
		switch {
		case p.Skipped != "":
			fmt.Fprintf(w, "    skipped: %s\n", p.Skipped)
		case len(p.Changes) == 0:
			fmt.Fprintf(w, "    nothing to do\n")
		}
		byAction := map[Action][]Change{}
		for _, c := range p.Changes {
			byAction[c.Action] = append(byAction[c.Action], c)
		}
		for _, a := range actionOrder {
			cs := byAction[a]
			if len(cs) == 0 {
				continue
			}
			loud := ""
			if a == Replace || a == Destroy {
				loud = "  <-- !!"
			}
			if detail {
				for _, c := range cs {
					fmt.Fprintf(w, "    %-9s %s%s%s\n", a, c.Node, detailSuffix(c.Detail), loud)
				}
				continue
			}
			fmt.Fprintf(w, "    %-9s %4d  %s%s\n", a, len(cs), nodeList(cs), loud)
		}
		for _, n := range p.Notes {
			fmt.Fprintf(w, "    note: %s\n", n)
		}
	}
}

func detailSuffix(d string) string {
	if d == "" {
		return ""
	}
	return ": " + d
}

func nodeList(cs []Change) string {
	names := make([]string, 0, shownNodes)
	for i, c := range cs {
		if i == shownNodes {
			return strings.Join(names, ", ") + fmt.Sprintf(" and %d more", len(cs)-shownNodes)
		}
		names = append(names, c.Node)
	}
	return strings.Join(names, ", ")
}
