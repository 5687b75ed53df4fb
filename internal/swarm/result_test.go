package swarm

import (
	"errors"
	"strings"
	"testing"
)

func TestSummary(t *testing.T) {
	many := []string{"a", "b", "c", "d", "e", "f", "g"}
	tests := []struct {
		name string
		r    Result
		err  error
		want string
	}{
		{"nothing to do", Result{Nodes: 3, Reached: 3}, nil, "the swarm already matches the inventory: nothing changed"},
		{"a rack added: its nodes named", Result{Nodes: 5, Reached: 5, Joined: []string{"pi-r5-01", "pi-r5-02"}, Updated: []string{"pi-r5-01", "pi-r5-02"}}, nil,
			"all 5 nodes reached; joined 2 (pi-r5-01, pi-r5-02), updated 2 (pi-r5-01, pi-r5-02), removed 0 stale"},
		{"many: only counted", Result{Nodes: 9, Reached: 9, Initialized: true, Leader: "mgr-1", Joined: many}, nil,
			"all 9 nodes reached; initialised the swarm on mgr-1, joined 7, updated 0, removed 0 stale"},
		{"a failure is never nothing changed", Result{Nodes: 3, Reached: 2, Failed: []NodeError{{Node: "vm-2", Err: errors.New("connection\n lost")}}}, errors.New("join vm-2"),
			"2 of 3 nodes reached, 1 failed; joined 0, updated 0, removed 0 stale\n  vm-2: connection lost"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := strings.Join(tt.r.Summary(tt.err), "\n"); got != tt.want {
				t.Errorf("Summary:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}
