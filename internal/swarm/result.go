package swarm

import (
	"fmt"
	"strings"
)

// Result is what Form did and what the swarm looks like afterwards.
type Result struct {
	ClusterID   string
	Leader      string
	Initialized bool
	Ingress     bool // the ingress network was removed, created or replaced
	Joined      []string
	Updated     []string
	Removed     []string // stale Down entries of re-created nodes
	LeftAlone   []string // members of another swarm, without --force
	// Vouched are workers a re-run did not connect to: the swarm listed
	// them as recorded and wanted, and their probe answered.
	Vouched []string
	Rows    []Row

	Nodes   int         // members Form was given
	Reached int         // members whose engine answered
	Failed  []NodeError // members that failed, in inventory order, with the first cause
}

// Changed reports whether Form changed anything.
func (r *Result) Changed() bool {
	return r.Initialized || r.Ingress || len(r.Joined)+len(r.Updated)+len(r.Removed) > 0
}

// Summary is what a run did, in a few lines: "nothing changed" only when
// every node was reached and nothing failed (err is Form's error); else
// how many nodes were reached and failed, each failed node with its cause.
func (r *Result) Summary(err error) []string {
	if err == nil && len(r.Failed) == 0 && r.Reached == r.Nodes {
		if !r.Changed() {
			return []string{"the swarm already matches the inventory: nothing changed" + r.vouched()}
		}
		return []string{fmt.Sprintf("all %d nodes reached%s; %s", r.Nodes, r.vouched(), r.changes())}
	}
	lines := []string{fmt.Sprintf("%d of %d nodes reached, %d failed; %s", r.Reached, r.Nodes, len(r.Failed), r.changes())}
	for _, f := range r.Failed {
		lines = append(lines, fmt.Sprintf("  %s: %s", f.Node, oneLine(f.Err.Error())))
	}
	return lines
}

// vouched says how many workers were checked without a login, if any.
func (r *Result) vouched() string {
	if len(r.Vouched) == 0 {
		return ""
	}
	return fmt.Sprintf(" (%d workers checked without a login: Ready in the managers' node list as recorded, engine answering its probe)", len(r.Vouched))
}

func (r *Result) changes() string {
	var parts []string
	if r.Initialized {
		parts = append(parts, "initialised the swarm on "+r.Leader)
	}
	if r.Ingress {
		parts = append(parts, "ingress network changed")
	}
	parts = append(parts, "joined "+counted(r.Joined), "updated "+counted(r.Updated), "removed "+counted(r.Removed)+" stale")
	return strings.Join(parts, ", ")
}

// counted is how many names there are, and which when they are few: "0",
// "2 (pi-r5-01, pi-r5-02)", "40".
func counted(names []string) string {
	if len(names) == 0 || len(names) > 6 {
		return fmt.Sprint(len(names))
	}
	return fmt.Sprintf("%d (%s)", len(names), strings.Join(names, ", "))
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
