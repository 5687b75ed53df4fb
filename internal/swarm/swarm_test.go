package swarm

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/docker/docker/api/types/swarm"
)

func TestRedact(t *testing.T) {
	worker := "SWMTKN-1-" + strings.Repeat("f4k3", 10) + "-worker" // built at run time: no token literal in the repo
	tok := swarm.JoinTokens{Worker: worker, Manager: "secret-manager-token"}
	base := errors.New("join failed with " + worker + " and secret-manager-token and SWMTKN-1-other-one")
	err := redact(base, tok)
	if strings.Contains(err.Error(), "SWMTKN") || strings.Contains(err.Error(), "secret-manager-token") {
		t.Errorf("token left in %q", err)
	}
	if !errors.Is(err, base) {
		t.Error("redacted error lost its chain")
	}
	if redact(nil, tok) != nil {
		t.Error("redact(nil) != nil")
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	WriteTable(&b, []Row{
		{Name: "mgr-1", ID: "abcdefghijklmnop", Role: "manager", State: "ready", Availability: "drain", Manager: "leader", Addr: "192.0.2.1", Labels: map[string]string{"rack": "r1", "arch": "arm64"}, Inventory: true},
		{Name: "old", ID: "x", Role: "worker", State: "down", Addr: "192.0.2.9"},
	})
	out := b.String()
	for _, want := range []string{"mgr-1", "leader", "abcdefghijkl ", "arch=arm64,rack=r1", "old (not in inventory)"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestCounterCountsOnlyMutations talks to a stand-in engine over HTTP (the
// process boundary) and checks which calls count.
func TestCounterCountsOnlyMutations(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Api-Version", "1.41")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case strings.HasSuffix(r.URL.Path, "/_ping"):
			w.Write([]byte("OK"))
		case strings.HasSuffix(r.URL.Path, "/info"):
			w.Write([]byte(`{"Name":"n1","Swarm":{"LocalNodeState":"inactive"}}`))
		case strings.HasSuffix(r.URL.Path, "/swarm/leave"):
			w.WriteHeader(http.StatusOK)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	var c Counter
	engine, err := NewEngine(func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	}, &c)
	if err != nil {
		t.Fatal(err)
	}
	defer engine.Close()
	ctx := context.Background()
	if _, err := engine.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if c.Mutations() != 0 {
		t.Errorf("GET /info counted as a mutation")
	}
	if err := engine.SwarmLeave(ctx, true); err != nil {
		t.Fatal(err)
	}
	if c.Mutations() != 1 || c.Calls()["POST /swarm/leave"] != 1 {
		t.Errorf("mutations %d, calls %v; want one POST /swarm/leave", c.Mutations(), c.Calls())
	}
}

// TestRemotes: workers are spread over the managers already in the swarm
// (Docker joins through the first address only); managers join through the
// leader; a manager not yet in the swarm is never a join target.
func TestRemotes(t *testing.T) {
	mk := func(name, role string, inSwarm bool) *Member {
		m := &Member{Name: name, Addr: "192.0.2." + name[len(name)-1:], Role: role}
		if inSwarm {
			m.facts = facts{clusterID: "c1", control: true, state: swarm.LocalNodeStateActive}
		}
		return m
	}
	m1, m2, m3 := mk("mgr-1", Manager, true), mk("mgr-2", Manager, true), mk("mgr-3", Manager, false)
	w4, w5, w6 := mk("w-4", Worker, false), mk("w-5", Worker, false), mk("w-6", Worker, false)
	f := &former{leader: m1, cluster: "c1", members: []*Member{m1, m2, m3, w4, w5, w6}, inSwarmMgrs: []*Member{m2}, res: &Result{}}
	tests := []struct {
		m    *Member
		want string
	}{
		{m3, "192.0.2.1:2377,192.0.2.2:2377"},
		{w4, "192.0.2.2:2377,192.0.2.1:2377"}, // index 3 % 2 managers
		{w5, "192.0.2.1:2377,192.0.2.2:2377"},
		{w6, "192.0.2.2:2377,192.0.2.1:2377"},
	}
	for _, tt := range tests {
		if got := strings.Join(f.remotes(tt.m), ","); got != tt.want {
			t.Errorf("remotes(%s) = %s, want %s", tt.m.Name, got, tt.want)
		}
	}
	// A manager that joined during the run is a join target from then on.
	f.joined(m3)
	if got, want := strings.Join(f.remotes(w5), ","), "192.0.2.2:2377,192.0.2.3:2377,192.0.2.1:2377"; got != want { // index 4 % 3 managers
		t.Errorf("after mgr-3 joined, remotes(w-5) = %s, want %s", got, want)
	}
}

// TestMemberReopensAfterClose: Open after Close connects again (a node
// that restarted is reached through a new way, not the dead one).
func TestMemberReopensAfterClose(t *testing.T) {
	connects := 0
	m := &Member{Name: "n1", Connect: func(context.Context) (Endpoint, error) {
		connects++
		return Endpoint{Where: "nowhere", Dial: func(context.Context, string, string) (net.Conn, error) {
			return nil, errors.New("not dialled in this test")
		}}, nil
	}}
	for range 2 {
		if err := m.Open(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if connects != 1 {
		t.Errorf("two Opens connected %d times, want 1", connects)
	}
	m.Close()
	if m.Engine != nil {
		t.Error("Close left the engine's client set")
	}
	if err := m.Open(t.Context(), nil); err != nil || connects != 2 {
		t.Errorf("Open after Close: %v, %d connects, want a second one", err, connects)
	}
	m.Close()
}
