package swarm

import (
	"strings"
	"testing"
)

func TestPlanRemoval(t *testing.T) {
	mgr := func(name, reach string) Row {
		return Row{Name: name, ID: "id-" + name, Role: Manager, State: "ready", Manager: reach}
	}
	wrk := func(name string) Row { return Row{Name: name, ID: "id-" + name, Role: Worker, State: "ready"} }
	three := []Row{mgr("m1", "leader"), mgr("m2", "reachable"), mgr("m3", "reachable"), wrk("w1"), wrk("w2")}
	five := []Row{mgr("m1", "reachable"), mgr("m2", "leader"), mgr("m3", "reachable"), mgr("m4", "reachable"), mgr("m5", "unreachable"), wrk("w1")}
	tests := []struct {
		name      string
		rows      []Row
		targets   []string
		order     string // names of Leave, in order
		absent    string
		remaining int
		dissolve  bool
		quorumErr string // "" when quorum is kept
	}{
		{name: "one worker", rows: three, targets: []string{"w2"}, order: "w2", remaining: 3},
		{name: "nothing left to do", rows: three, targets: []string{"gone"}, absent: "gone", remaining: 3},
		{name: "one manager of three", rows: three, targets: []string{"m2"}, order: "m2", remaining: 2},
		{name: "two managers of three", rows: three, targets: []string{"m3", "m2"}, order: "m2,m3", remaining: 1,
			quorumErr: "destroying manager m2, m3 leaves 1 of 3 managers (reachable: m1): quorum lost, the swarm needs 2 reachable managers"},
		{name: "leader last, workers first", rows: three, targets: []string{"m1", "w1", "m2"}, order: "w1,m2,m1", remaining: 1,
			quorumErr: "leaves 1 of 3 managers (reachable: m3)"},
		{name: "two of five, one unreachable stays", rows: five, targets: []string{"m1", "m3"}, order: "m1,m3", remaining: 3,
			quorumErr: "leaves 3 of 5 managers (reachable: m2, m4): quorum lost, the swarm needs 3"},
		{name: "the unreachable one of five", rows: five, targets: []string{"m5"}, order: "m5", remaining: 4},
		{name: "two reachable of five", rows: five, targets: []string{"m5", "m4"}, order: "m4,m5", remaining: 3},
		{name: "the whole swarm", rows: three, targets: []string{"m1", "m2", "m3", "w1", "w2"}, order: "w1,w2,m2,m3,m1", dissolve: true},
		{name: "every manager, workers stay", rows: three, targets: []string{"m1", "m2", "m3"}, order: "m2,m3,m1",
			quorumErr: "leaves 0 of 3 managers (none reachable)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanRemoval(tt.rows, tt.targets)
			var order []string
			for _, r := range p.Leave {
				order = append(order, r.Name)
			}
			if got := strings.Join(order, ","); got != tt.order {
				t.Errorf("order %q, want %q", got, tt.order)
			}
			if got := strings.Join(p.Absent, ","); got != tt.absent {
				t.Errorf("absent %q, want %q", got, tt.absent)
			}
			if len(p.Remaining) != tt.remaining {
				t.Errorf("%d managers remain, want %d", len(p.Remaining), tt.remaining)
			}
			if p.Dissolve != tt.dissolve {
				t.Errorf("dissolve %v, want %v", p.Dissolve, tt.dissolve)
			}
			err := p.QuorumError()
			switch {
			case tt.quorumErr == "" && err != nil:
				t.Errorf("quorum error %v, want none", err)
			case tt.quorumErr != "" && (err == nil || !strings.Contains(err.Error(), tt.quorumErr)):
				t.Errorf("quorum error %v, want one with %q", err, tt.quorumErr)
			case err != nil && !strings.Contains(err.Error(), "--force"):
				t.Errorf("quorum error does not name --force: %v", err)
			}
		})
	}
}

func TestQuorum(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 2, 3: 2, 4: 3, 5: 3, 7: 4} {
		if got := Quorum(n); got != want {
			t.Errorf("Quorum(%d) = %d, want %d", n, got, want)
		}
	}
}
