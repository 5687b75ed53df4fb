package selfjoin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/swarmtest"
)

// TestAwaitServesAndLabels: against Engine API fakes, Await starts the
// endpoint only because pi-b is missing, labels pi-a (already in) and
// pi-b as soon as pi-b has traded its ticket over HTTPS from its own
// address and joined with the answer; a second Await makes no mutating
// call and serves nothing; a node that never comes is named.
func TestAwaitServesAndLabels(t *testing.T) {
	w := swarmtest.New()
	t.Cleanup(w.Close)
	mgrE := w.Add("mgr-1", "127.0.0.11")
	piA := w.Add("pi-a", "127.0.0.21")
	piB := w.Add("pi-b", "127.0.0.22")
	counter := &swarm.Counter{}
	mgr := engine(t, mgrE.Dial, counter)
	if _, err := mgr.SwarmInit(context.Background(), dswarm.InitRequest{ListenAddr: "127.0.0.11:2377", AdvertiseAddr: "127.0.0.11:2377"}); err != nil {
		t.Fatal(err)
	}
	grant := EngineGrant(mgr)
	g, err := grant(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := engine(t, piA.Dial, nil).SwarmJoin(context.Background(), dswarm.JoinRequest{ListenAddr: "127.0.0.21:2377", AdvertiseAddr: "127.0.0.21:2377", RemoteAddrs: g.Managers, JoinToken: g.WorkerToken}); err != nil {
		t.Fatal(err)
	}

	port := freePort(t)
	ep := &Endpoint{Addr: netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port)), Dir: filepath.Join(t.TempDir(), DirName), TTL: time.Hour}
	seed, err := ep.Seed(&inventory.Node{Name: "pi-b", IP: "127.0.0.22"}, "")
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	served := 0
	serve := func(ctx context.Context) error {
		served++
		// pi-b boots: it presents its ticket once the endpoint answers,
		// and joins with what it gets.
		go func() {
			req := nodeExchange(t, ctx, seed.URL, seed.CACert, "127.0.0.22", Request{Node: "pi-b", Ticket: seed.Ticket})
			if req == nil {
				return
			}
			if err := engine(t, piB.Dial, nil).SwarmJoin(ctx, *req); err != nil {
				t.Errorf("pi-b join: %v", err)
			}
		}()
		return ep.Serve(ctx, grant, log)
	}
	want := []Wanted{{Name: "pi-a", Labels: map[string]string{"rack": "s1", "power": "poe"}}, {Name: "pi-b", Labels: map[string]string{"rack": "s1"}}}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := Await(ctx, mgr, want, AwaitOptions{Serve: serve, Poll: 50 * time.Millisecond, Log: log})
	if err != nil {
		t.Fatalf("await: %v\n%s", err, logs)
	}
	if served != 1 || strings.Join(res.Present, ",") != "pi-a" || strings.Join(res.Joined, ",") != "pi-b" || len(res.Updated) != 2 || res.IDs["pi-b"] != piB.NodeID() {
		t.Errorf("served %d, result %+v", served, res)
	}
	nodes, _ := mgr.NodeList(ctx, dswarm.NodeListOptions{})
	for _, n := range nodes {
		for _, wn := range want {
			if n.Description.Hostname != wn.Name {
				continue
			}
			for k, v := range wn.Labels {
				if n.Spec.Labels[k] != v {
					t.Errorf("%s: label %s=%q, want %q", wn.Name, k, n.Spec.Labels[k], v)
				}
			}
		}
	}
	if strings.Contains(logs.String(), seed.Ticket) || strings.Contains(logs.String(), g.WorkerToken) {
		t.Error("the log holds the ticket or the token")
	}
	scanDir(t, ep.Dir, []string{g.WorkerToken, seed.Ticket})

	// Again: everything is there; no call changes anything, no endpoint.
	before := counter.Mutations()
	res, err = Await(ctx, mgr, want, AwaitOptions{Serve: serve, Poll: 50 * time.Millisecond})
	if err != nil || served != 1 || len(res.Updated) != 0 || len(res.Present) != 2 || counter.Mutations() != before {
		t.Errorf("re-run: %v, served %d, %+v, %d mutating calls", err, served, res, counter.Mutations()-before)
	}

	// A node that never joins is named, with what to do.
	_, err = Await(ctx, mgr, append(want, Wanted{Name: "pi-c"}), AwaitOptions{Timeout: 200 * time.Millisecond, Poll: 50 * time.Millisecond})
	if err == nil || !strings.Contains(err.Error(), "not in the swarm and Ready: pi-c") || !strings.Contains(err.Error(), "join: push") {
		t.Errorf("missing node: %v", err)
	}
}

func engine(t *testing.T, dial swarm.DialFunc, c *swarm.Counter) *client.Client {
	t.Helper()
	e, err := swarm.NewEngine(dial, c)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// nodeExchange is a node presenting its ticket from its address, retrying
// until the endpoint answers; it returns the join request.
func nodeExchange(t *testing.T, ctx context.Context, url, caPEM, from string, req Request) *dswarm.JoinRequest {
	pool, err := CertPool([]byte(caPEM))
	if err != nil {
		t.Error(err)
		return nil
	}
	body, _ := json.Marshal(req)
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: tlsConfig(pool)}}
	for ctx.Err() == nil {
		resp, err := c.Post(url, "application/json", bytes.NewReader(body))
		if err != nil {
			time.Sleep(20 * time.Millisecond)
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("exchange: HTTP %d %s", resp.StatusCode, b)
			return nil
		}
		var jr dswarm.JoinRequest
		if err := json.Unmarshal(b, &jr); err != nil {
			t.Error(err)
			return nil
		}
		return &jr
	}
	return nil
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
