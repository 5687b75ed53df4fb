package swarm_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/swarmtest"
)

// firstEvent is the index of the first recorded event that matches, or -1.
func firstEvent(evs []swarmtest.Event, node, call, target string) int {
	return slices.IndexFunc(evs, func(e swarmtest.Event) bool {
		return e.Node == node && e.Call == call && e.Target == target
	})
}

// TestFormPipelinesEachNode records the order in which the fake engines
// answer, with latency injected on one node: the managers are contacted
// first; each node's labels land in
// one update right after its own join, while a slow node is still joining,
// and the slow node holds up neither the facts nor the joins nor the
// labels of the others. A re-run makes no mutating call.
func TestFormPipelinesEachNode(t *testing.T) {
	tests := []struct {
		name string
		slow string // every call of this node waits
		// slowCall, when set, is the one call of the slow node that waits.
		slowCall string
	}{
		{name: "slow join of the last worker", slow: "wrk-4", slowCall: "POST /swarm/join"},
		{name: "slow engine of a worker", slow: "wrk-2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLab(t, 3, 4)
			l.w.SetLatency(func(node, call string) time.Duration {
				if node == tt.slow && (tt.slowCall == "" || call == tt.slowCall) {
					return 300 * time.Millisecond
				}
				return time.Millisecond
			})
			l.w.Record(true)
			r := l.form(t, swarm.Options{})
			if r.err != nil {
				t.Fatalf("Form: %v", r.err)
			}
			l.checkFormed(t)
			evs := l.w.Events()
			var log strings.Builder
			for _, e := range evs {
				log.WriteString(e.String() + "\n")
			}
			slowJoin := firstEvent(evs, tt.slow, "POST /swarm/join", "")
			slowInfo := firstEvent(evs, tt.slow, "HEAD /_ping", "") // a worker's facts: its ping
			if slowJoin < 0 {
				t.Fatalf("%s never joined:\n%s", tt.slow, log.String())
			}
			for _, name := range l.order {
				if name == tt.slow || l.roles[name] != swarm.Worker {
					continue
				}
				join := firstEvent(evs, name, "POST /swarm/join", "")
				update := firstEvent(evs, "mgr-1", "POST /nodes/{id}/update", name)
				if join < 0 || update < 0 {
					t.Errorf("%s: join at %d, update at %d: want both", name, join, update)
					continue
				}
				if update < join {
					t.Errorf("%s updated (%d) before it joined (%d)", name, update, join)
				}
				if update > slowJoin {
					t.Errorf("%s's labels (event %d) landed after %s joined (event %d): labels wait for the slowest join", name, update, tt.slow, slowJoin)
				}
				if tt.slowCall == "" && join > slowInfo {
					t.Errorf("%s joined (event %d) after %s's facts came (event %d): a slow engine held it up", name, join, tt.slow, slowInfo)
				}
			}
			// The managers connect first: every manager's facts come before
			// any worker is contacted.
			lastManagerInfo := 0
			for _, m := range []string{"mgr-1", "mgr-2", "mgr-3"} {
				lastManagerInfo = max(lastManagerInfo, firstEvent(evs, m, "GET /info", ""))
			}
			for i, e := range evs {
				if l.roles[e.Node] == swarm.Worker && i < lastManagerInfo {
					t.Errorf("%s was contacted (event %d: %s) before the managers' facts were in (event %d)", e.Node, i, e, lastManagerInfo)
					break
				}
			}
			// One update per node that needs one, no more.
			for _, name := range l.order {
				n := 0
				for _, e := range evs {
					if e.Call == "POST /nodes/{id}/update" && e.Target == name {
						n++
					}
				}
				if want := min(1, len(l.labels[name])); n != want {
					t.Errorf("%s got %d node updates, want %d", name, n, want)
				}
			}
			if t.Failed() {
				t.Logf("events:\n%s", log.String())
			}

			// A re-run changes nothing and asks each worker only for its
			// ping (its state): the swarm has it Ready as the inventory says.
			l.w.ResetCalls()
			if r := l.form(t, swarm.Options{}); r.err != nil || l.w.Mutations() != 0 {
				t.Errorf("re-run: %v, mutating calls %v, want none", r.err, l.w.Calls())
			}
			for _, e := range l.w.Events() {
				if l.roles[e.Node] == swarm.Worker && e.Call != "HEAD /_ping" {
					t.Errorf("re-run: worker %s was asked %s, want only its ping", e.Node, e.Call)
				}
			}
		})
	}
}

// countingConn counts itself open until it is closed.
type countingConn struct {
	net.Conn
	open *atomic.Int64
	once sync.Once
}

func (c *countingConn) Close() error {
	c.once.Do(func() { c.open.Add(-1) })
	return c.Conn.Close()
}

// TestCloseLeavesNoConnection: once a run's members are closed, none of the
// connections they opened to the engines is left open (a long-lived
// caller, or the next run in the same process, does not pile them up).
func TestCloseLeavesNoConnection(t *testing.T) {
	l := newFakeLab(t, 3, 4)
	var open atomic.Int64
	for range 2 { // form, then a re-run
		ms := l.members()
		for _, m := range ms {
			connect := m.Connect
			m.Connect = func(ctx context.Context) (swarm.Endpoint, error) {
				ep, err := connect(ctx)
				dial := ep.Dial
				ep.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					c, err := dial(ctx, network, addr)
					if err != nil {
						return nil, err
					}
					open.Add(1)
					return &countingConn{Conn: c, open: &open}, nil
				}
				return ep, err
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		_, err := swarm.Form(ctx, ms, swarm.Options{PollInterval: time.Millisecond, DefaultAddrPool: []string{"10.128.0.0/12"}, SubnetSize: 20})
		cancel()
		if err != nil {
			t.Fatalf("Form: %v", err)
		}
		if open.Load() == 0 {
			t.Fatal("no connection counted open during the run")
		}
		for _, m := range ms {
			m.Close()
		}
		if n := open.Load(); n != 0 {
			t.Errorf("%d connections left open after Close", n)
		}
	}
}

// TestFormWithoutManagers: an inventory without a manager is refused, and
// no worker waits for one.
func TestFormWithoutManagers(t *testing.T) {
	l := newFakeLab(t, 0, 2)
	r := l.form(t, swarm.Options{})
	if r.err == nil || !strings.Contains(r.err.Error(), "no reachable manager") {
		t.Errorf("error %v, want no reachable manager", r.err)
	}
	if l.w.Mutations() != 0 {
		t.Errorf("mutating calls %v", l.w.Calls())
	}
}
