package swarm_test

import (
	"fmt"
	"maps"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/swarm"
)

// TestFormAtScale forms a 300-node swarm of fake engines (one Engine API
// listener per node, a latency on every call), runs again, and grows it by
// 100 nodes: it asserts the calls each run makes, not how long it took
// (bench/swarm2k measures that, up to 2,384 nodes).
func TestFormAtScale(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: 400 fake engines")
	}
	const nodes, grow = 300, 100
	l := newFakeLab(t, 3, nodes-3)
	l.w.SetLatency(func(_, call string) time.Duration {
		if call == "POST /swarm/join" {
			return 20 * time.Millisecond
		}
		return time.Millisecond
	})
	run := func(what string, want map[string]int) {
		t.Helper()
		l.w.ResetCalls()
		r := l.form(t, swarm.Options{Concurrency: 32})
		if r.err != nil {
			t.Fatalf("%s: %v", what, r.err)
		}
		if got := l.w.Calls(); !maps.Equal(got, want) {
			t.Errorf("%s: mutating calls %v, want %v", what, got, want)
		}
		if got := r.counter.Calls(); !maps.Equal(got, l.w.Calls()) {
			t.Errorf("%s: client counted %v, engines answered %v", what, got, l.w.Calls())
		}
		if len(r.res.Rows) != len(l.order) {
			t.Errorf("%s: %d rows, want %d", what, len(r.res.Rows), len(l.order))
		}
		l.checkFormed(t)
	}
	run("form", map[string]int{"POST /swarm/init": 1, "POST /swarm/join": nodes - 1, "POST /nodes/{id}/update": nodes - 3})
	run("re-run", map[string]int{})
	for i := range grow {
		l.add(fmt.Sprintf("new-%d", i+1), swarm.Worker, map[string]string{"tier": "compute"})
	}
	run("grow", map[string]int{"POST /swarm/join": grow, "POST /nodes/{id}/update": grow})
	run("re-run after growing", map[string]int{})
}
