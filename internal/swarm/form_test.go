package swarm_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/swarmtest"
)

// fakeLab is a lab of fake engines (one httptest Engine API per node) and
// the inventory's members for them.
type fakeLab struct {
	w       *swarmtest.World
	engines map[string]*swarmtest.Engine
	roles   map[string]string
	labels  map[string]map[string]string
	order   []string
	// connect, when set for a node, runs before its Connect answers (a
	// node that is slow to come up, or never does).
	connect map[string]func(ctx context.Context) error
	// noRecord: members carry no recorded node ID and no probe, so every
	// node is connected to (a run without a state file).
	noRecord bool
	recorded map[string]string // node IDs recorded other than the engine's own
	connects atomic.Int64      // Connect calls
}

// newFakeLab makes managers mgr-1..mgr-M and workers wrk-1..wrk-W; every
// worker has the label tier=compute.
func newFakeLab(t *testing.T, managers, workers int) *fakeLab {
	t.Helper()
	l := &fakeLab{w: swarmtest.New(), engines: map[string]*swarmtest.Engine{}, roles: map[string]string{},
		labels: map[string]map[string]string{}, connect: map[string]func(context.Context) error{}}
	t.Cleanup(l.w.Close)
	for i := 1; i <= managers; i++ {
		l.add(fmt.Sprintf("mgr-%d", i), swarm.Manager, nil)
	}
	for i := 1; i <= workers; i++ {
		l.add(fmt.Sprintf("wrk-%d", i), swarm.Worker, map[string]string{"tier": "compute"})
	}
	return l
}

func (l *fakeLab) add(name, role string, labels map[string]string) {
	addr := fmt.Sprintf("192.0.2.%d", len(l.order)+10)
	if len(l.order) >= 240 { // past TEST-NET-1: the benchmarking range
		addr = fmt.Sprintf("198.18.%d.%d", len(l.order)/250, len(l.order)%250+1)
	}
	l.engines[name] = l.w.Add(name, addr)
	l.roles[name], l.labels[name] = role, labels
	l.order = append(l.order, name)
}

// members are fresh members for every node, as `provision swarm` makes
// them on each run.
func (l *fakeLab) members() []*swarm.Member {
	var out []*swarm.Member
	for _, name := range l.order {
		e := l.engines[name]
		wait := l.connect[name]
		reach := func(ctx context.Context) error {
			if wait != nil {
				return wait(ctx)
			}
			return nil
		}
		m := &swarm.Member{Name: name, Addr: e.Addr, Role: l.roles[name], Labels: maps.Clone(l.labels[name]),
			Connect: func(ctx context.Context) (swarm.Endpoint, error) {
				l.connects.Add(1)
				if err := reach(ctx); err != nil {
					return swarm.Endpoint{}, err
				}
				return swarm.Endpoint{Dial: e.Dial, Where: "unix:///var/run/docker.sock over ssh provision@" + e.Addr + ":22"}, nil
			}}
		if !l.noRecord { // as the stage: the node ID the state recorded, and a probe
			m.NodeID = e.NodeID()
			if id, ok := l.recorded[name]; ok {
				m.NodeID = id
			}
			m.Probe = func(ctx context.Context) error {
				if err := reach(ctx); err != nil {
					return err
				}
				return e.Probe(ctx)
			}
		}
		out = append(out, m)
	}
	return out
}

type formRun struct {
	res      *swarm.Result
	err      error
	counter  *swarm.Counter
	progress []string
}

func (l *fakeLab) form(t *testing.T, opts swarm.Options) formRun {
	t.Helper()
	ms := l.members()
	defer func() {
		for _, m := range ms {
			m.Close()
		}
	}()
	l.connects.Store(0)
	r := formRun{counter: &swarm.Counter{}}
	var mu sync.Mutex
	opts.Counter = r.counter
	opts.PollInterval = time.Millisecond
	opts.JoinTimeout, opts.ReadyTimeout = 5*time.Second, 5*time.Second
	opts.DefaultAddrPool, opts.SubnetSize = []string{"10.128.0.0/12"}, 20
	if opts.Progress == nil {
		opts.Progress = func(format string, args ...any) {
			mu.Lock()
			defer mu.Unlock()
			r.progress = append(r.progress, fmt.Sprintf(format, args...))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r.res, r.err = swarm.Form(ctx, ms, opts)
	return r
}

// nodes are the swarm's node objects by hostname, as mgr-1 sees them.
func (l *fakeLab) nodes(t *testing.T) map[string]dswarm.Node {
	t.Helper()
	out := map[string]dswarm.Node{}
	for _, n := range l.w.Nodes("mgr-1") {
		if _, dup := out[n.Description.Hostname]; dup {
			t.Errorf("two node entries for %s", n.Description.Hostname)
		}
		out[n.Description.Hostname] = n
	}
	return out
}

// checkFormed asserts every node is a Ready member with its role and labels.
func (l *fakeLab) checkFormed(t *testing.T) {
	t.Helper()
	nodes := l.nodes(t)
	for _, name := range l.order {
		n, ok := nodes[name]
		if !ok {
			t.Errorf("%s is not in the swarm", name)
			continue
		}
		if n.Status.State != dswarm.NodeStateReady || string(n.Spec.Role) != l.roles[name] {
			t.Errorf("%s is %s %s, want ready %s", name, n.Status.State, n.Spec.Role, l.roles[name])
		}
		for k, v := range l.labels[name] {
			if n.Spec.Labels[k] != v {
				t.Errorf("%s label %s=%q, want %q", name, k, n.Spec.Labels[k], v)
			}
		}
	}
	if len(nodes) != len(l.order) {
		t.Errorf("swarm has %d nodes, want %d", len(nodes), len(l.order))
	}
}

// TestFormAgainstFakeEngines runs Form against an httptest fake of the
// Engine API per node: the calls it makes, counted by the fake and by the
// client, and the swarm it leaves.
func TestFormAgainstFakeEngines(t *testing.T) {
	tests := []struct {
		name string
		// before prepares the lab: a formed swarm, hand-made changes.
		before func(t *testing.T, l *fakeLab)
		opts   swarm.Options
		// calls are the mutating calls the run must make, exactly.
		calls   map[string]int
		wantErr []string // substrings of the error; none: no error
		check   func(t *testing.T, l *fakeLab, r formRun)
	}{
		{
			name:  "fresh init",
			calls: map[string]int{"POST /swarm/init": 1, "POST /swarm/join": 6, "POST /nodes/{id}/update": 4},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if !r.res.Initialized || r.res.Leader != "mgr-1" || len(r.res.Joined) != 6 {
					t.Errorf("result %+v, want init on mgr-1 and 6 joined", r.res)
				}
			},
		},
		{
			name:   "re-run changes nothing",
			before: formed,
			calls:  map[string]int{},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if got := r.res.Summary(r.err); len(got) != 1 || !strings.Contains(got[0], "nothing changed") {
					t.Errorf("summary %q, want nothing changed", got)
				}
			},
		},
		{
			name:   "re-run checks the workers without a login",
			before: formed,
			calls:  map[string]int{},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if n := l.connects.Load(); n != 3 {
					t.Errorf("%d nodes connected to, want the 3 managers only", n)
				}
				want := []string{"the swarm already matches the inventory: nothing changed (4 workers checked without a login: Ready in the managers' node list as recorded, engine answering its probe)"}
				if got := r.res.Summary(r.err); !slices.Equal(got, want) {
					t.Errorf("summary %q, want %q", got, want)
				}
			},
		},
		{
			name: "without a recorded node ID every node is connected to",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.noRecord = true
			},
			calls: map[string]int{},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if n := l.connects.Load(); n != 7 || len(r.res.Vouched) != 0 {
					t.Errorf("%d nodes connected to, %v vouched for; want all 7 connected to", n, r.res.Vouched)
				}
			},
		},
		{
			name: "a worker re-created since the last run is connected to",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.recorded = map[string]string{"wrk-1": "an-old-node-id"}
			},
			calls: map[string]int{},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if n := l.connects.Load(); n != 4 || slices.Contains(r.res.Vouched, "wrk-1") {
					t.Errorf("%d nodes connected to, %v vouched for; want wrk-1 connected to", n, r.res.Vouched)
				}
			},
		},
		{
			name: "nodes added",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.add("wrk-5", swarm.Worker, map[string]string{"tier": "compute"})
				l.add("wrk-6", swarm.Worker, map[string]string{"tier": "compute"})
			},
			calls: map[string]int{"POST /swarm/join": 2, "POST /nodes/{id}/update": 2},
		},
		{
			name:    "node in another swarm is left alone",
			before:  inOtherSwarm,
			calls:   map[string]int{"POST /swarm/init": 1, "POST /swarm/join": 5, "POST /nodes/{id}/update": 3},
			wantErr: []string{"join wrk-2: it is active in another swarm", "--force"},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if !slices.Equal(r.res.LeftAlone, []string{"wrk-2"}) {
					t.Errorf("left alone %v, want [wrk-2]", r.res.LeftAlone)
				}
				if len(l.w.CallsOn("wrk-2")) != 0 {
					t.Errorf("wrk-2 got calls %v", l.w.CallsOn("wrk-2"))
				}
			},
		},
		{
			name:   "node in another swarm with --force",
			before: inOtherSwarm,
			opts:   swarm.Options{Force: true},
			calls:  map[string]int{"POST /swarm/init": 1, "POST /swarm/leave": 1, "POST /swarm/join": 6, "POST /nodes/{id}/update": 4},
		},
		{
			name: "stale Down entries removed, the manager demoted first",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.w.Recreate("mgr-3")
				l.w.Recreate("wrk-1")
			},
			// Two joins; mgr-3's stale entry demoted (1 update), both
			// removed; wrk-1's labels set again (1 update).
			calls: map[string]int{"POST /swarm/join": 2, "POST /nodes/{id}/update": 2, "DELETE /nodes/{id}": 2},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if len(r.res.Removed) != 2 {
					t.Errorf("removed %v, want the two stale entries", r.res.Removed)
				}
			},
		},
		{
			name: "labels merged, hand-set labels kept",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.w.SetLabels("wrk-3", map[string]string{"gpu": "a100"})
			},
			calls: map[string]int{"POST /nodes/{id}/update": 1},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if got := l.nodes(t)["wrk-3"].Spec.Labels; got["gpu"] != "a100" || got["tier"] != "compute" {
					t.Errorf("wrk-3 labels %v, want gpu=a100 kept and tier=compute", got)
				}
			},
		},
		{
			name: "promote to manager; a demotion is left to the admin",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.roles["wrk-4"] = swarm.Manager  // the inventory now says manager
				l.add("wrk-5", swarm.Worker, nil) // made a manager by hand, a worker in the inventory
				l.w.Join("wrk-5", "mgr-1", "manager")
			},
			calls:   map[string]int{"POST /nodes/{id}/update": 1},
			wantErr: []string{"update wrk-5: it is a manager but the inventory says worker; demote it by hand"},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				if n := l.nodes(t)["wrk-4"]; n.Spec.Role != dswarm.NodeRoleManager || n.ManagerStatus == nil {
					t.Errorf("wrk-4 is %s, want promoted", n.Spec.Role)
				}
				if n := l.nodes(t)["wrk-5"]; n.Spec.Role != dswarm.NodeRoleManager {
					t.Errorf("wrk-5 was demoted by provision")
				}
			},
		},
		{
			name: "a failing join names the node",
			before: func(t *testing.T, l *fakeLab) {
				l.engines["wrk-3"].FailJoin("rpc error: code = Unavailable desc = manager unreachable")
			},
			calls:   map[string]int{"POST /swarm/init": 1, "POST /swarm/join": 6, "POST /nodes/{id}/update": 3},
			wantErr: []string{"join wrk-3: ", "manager unreachable"},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				sum := strings.Join(r.res.Summary(r.err), "\n")
				if !strings.Contains(sum, "wrk-3: join: ") || strings.Contains(sum, "nothing changed") {
					t.Errorf("summary does not name wrk-3 and its cause:\n%s", sum)
				}
				if _, ok := l.nodes(t)["wrk-3"]; ok {
					t.Errorf("wrk-3 is in the swarm")
				}
			},
		},
		{
			name: "an engine that cannot be reached names the node and its socket",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				l.engines["wrk-2"].Stop()
			},
			calls:   map[string]int{},
			wantErr: []string{"reach wrk-2: docker ping: engine on wrk-2 (unix:///var/run/docker.sock over ssh provision@192.0.2.14:22): is dockerd running? dial unix /var/run/docker.sock on wrk-2: connect: connection refused"},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				// The managers still list wrk-2 Ready (as swarmkit does for
				// some seconds): its probe is what stops it being vouched for.
				if n := l.nodes(t)["wrk-2"]; n.Status.State != dswarm.NodeStateReady || slices.Contains(r.res.Vouched, "wrk-2") {
					t.Errorf("wrk-2 is %s, vouched for: %v; want listed Ready and not vouched for", n.Status.State, r.res.Vouched)
				}
				if strings.Contains(r.err.Error(), "http://docker.sock") {
					t.Errorf("error names the client's placeholder host: %v", r.err)
				}
			},
		},
		{
			name: "unreachable nodes: never nothing changed",
			before: func(t *testing.T, l *fakeLab) {
				formed(t, l)
				refused := func(context.Context) error { return errors.New("ssh provision@192.0.2.15:22: connection refused") }
				l.connect["wrk-3"], l.connect["wrk-4"] = refused, refused
			},
			calls:   map[string]int{},
			wantErr: []string{"reach wrk-3: ssh provision@192.0.2.15:22: connection refused", "reach wrk-4: "},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				sum := r.res.Summary(r.err)
				want := []string{
					"5 of 7 nodes reached, 2 failed; joined 0, updated 0, removed 0 stale",
					"  wrk-3: reach: ssh provision@192.0.2.15:22: connection refused",
					"  wrk-4: reach: ssh provision@192.0.2.15:22: connection refused",
				}
				if !slices.Equal(sum, want) {
					t.Errorf("summary:\n%s\nwant:\n%s", strings.Join(sum, "\n"), strings.Join(want, "\n"))
				}
			},
		},
		{
			name: "no manager reachable",
			before: func(t *testing.T, l *fakeLab) {
				for _, m := range []string{"mgr-1", "mgr-2", "mgr-3"} {
					l.engines[m].Stop()
				}
			},
			calls:   map[string]int{},
			wantErr: []string{"init: no reachable manager", "reach mgr-1: docker info: engine on mgr-1"},
			check: func(t *testing.T, l *fakeLab, r formRun) {
				sum := strings.Join(r.res.Summary(r.err), "\n")
				// The workers still connecting when no swarm can be chosen
				// are not waited for.
				if !regexp.MustCompile(`^[0-4] of 7 nodes reached, [3-7] failed`).MatchString(sum) || !strings.Contains(sum, "mgr-3: reach: docker info: engine on mgr-3") || strings.Contains(sum, "nothing changed") {
					t.Errorf("summary:\n%s", sum)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newFakeLab(t, 3, 4)
			if tt.before != nil {
				tt.before(t, l)
			}
			l.w.ResetCalls()
			r := l.form(t, tt.opts)
			if len(tt.wantErr) == 0 && r.err != nil {
				t.Fatalf("Form: %v", r.err)
			}
			for _, want := range tt.wantErr {
				if r.err == nil || !strings.Contains(r.err.Error(), want) {
					t.Errorf("error %v\nlacks %q", r.err, want)
				}
			}
			if got := l.w.Calls(); !maps.Equal(got, tt.calls) {
				t.Errorf("mutating calls %v, want %v", got, tt.calls)
			}
			if got := r.counter.Calls(); !maps.Equal(got, l.w.Calls()) {
				t.Errorf("client counted %v, engines answered %v", got, l.w.Calls())
			}
			if r.err != nil && strings.Contains(r.err.Error(), "SWMTKN") {
				t.Errorf("error shows a join token: %v", r.err)
			}
			if len(tt.wantErr) == 0 {
				l.checkFormed(t)
			}
			if tt.check != nil {
				tt.check(t, l, r)
			}
		})
	}
}

// formed forms the lab's swarm and forgets the calls it took.
func formed(t *testing.T, l *fakeLab) {
	t.Helper()
	if r := l.form(t, swarm.Options{}); r.err != nil {
		t.Fatalf("forming the swarm first: %v", r.err)
	}
}

// inOtherSwarm makes wrk-2 a worker of another swarm before the lab's
// swarm is formed.
func inOtherSwarm(t *testing.T, l *fakeLab) {
	l.w.Add("other-mgr", "198.51.100.1")
	l.w.Init("other-mgr")
	l.w.Join("wrk-2", "other-mgr", "worker")
}

// waitUntilJoined is a node's Connect held back until the given nodes are
// all in the swarm: it records that they joined while this node was not
// reached yet. It gives up (the node fails to connect) after a minute.
func waitUntilJoined(l *fakeLab, others ...string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		for range 60000 {
			in := map[string]bool{}
			for _, n := range l.w.Nodes("mgr-1") {
				if n.Status.State == dswarm.NodeStateReady {
					in[n.Description.Hostname] = true
				}
			}
			all := true
			for _, o := range others {
				all = all && in[o]
			}
			if all {
				return nil
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Millisecond):
			}
		}
		return fmt.Errorf("still unreachable: %v had not joined first", others)
	}
}

// TestFormSlowNodesHoldUpNoOther: a node that answers late (sshd still
// down) does not hold up the others: they are initialised and joined
// before it is reached, and it joins once it answers.
func TestFormSlowNodesHoldUpNoOther(t *testing.T) {
	t.Run("late worker", func(t *testing.T) {
		l := newFakeLab(t, 3, 4)
		l.connect["wrk-2"] = waitUntilJoined(l, "mgr-1", "mgr-2", "mgr-3", "wrk-1", "wrk-3", "wrk-4")
		r := l.form(t, swarm.Options{})
		if r.err != nil {
			t.Fatalf("Form: %v", r.err)
		}
		l.checkFormed(t)
	})
	t.Run("late manager of a swarm most managers are in", func(t *testing.T) {
		l := newFakeLab(t, 3, 4)
		l.w.Init("mgr-1")
		l.w.Join("mgr-2", "mgr-1", "manager")
		l.connect["mgr-3"] = waitUntilJoined(l, "wrk-1", "wrk-2", "wrk-3", "wrk-4")
		r := l.form(t, swarm.Options{})
		if r.err != nil {
			t.Fatalf("Form: %v\n%s", r.err, strings.Join(r.progress, "\n"))
		}
		l.checkFormed(t)
		if !slices.Contains(r.progress, "joining manager mgr-3 (reached late)") {
			t.Errorf("mgr-3 was not joined late:\n%s", strings.Join(r.progress, "\n"))
		}
	})
}

// TestFormLogsOnlyAtDebug: the per-node records ("updating node", "join
// request answered") are Debug; progress is on the Progress lines, so the
// terminal at the default level shows no log record.
func TestFormLogsOnlyAtDebug(t *testing.T) {
	l := newFakeLab(t, 3, 4)
	var info, debug strings.Builder
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(lockedWriter{&mu, &info}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dlog := slog.New(slog.NewTextHandler(lockedWriter{&mu, &debug}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if r := l.form(t, swarm.Options{Log: log}); r.err != nil {
		t.Fatalf("Form: %v", r.err)
	}
	l.w.SetLabels("wrk-1", nil)
	if r := l.form(t, swarm.Options{Log: dlog}); r.err != nil {
		t.Fatalf("Form: %v", r.err)
	}
	mu.Lock()
	defer mu.Unlock()
	if info.Len() > 0 {
		t.Errorf("records at Info or above:\n%s", info.String())
	}
	if !strings.Contains(debug.String(), `msg="updating node" node=wrk-1`) {
		t.Errorf("no debug record of the update:\n%s", debug.String())
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}
