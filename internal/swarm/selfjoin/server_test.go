package selfjoin

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"

	"github.com/fhlab/provision/internal/inventory"
)

// fakeToken looks like a worker token (made fresh for each run, never a
// literal); the tests look for it everywhere it must not be.
var fakeToken = "SWMTKN-1-" + randomBase36(50) + "-" + randomBase36(25)

func randomBase36(n int) string {
	const digits = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	for i := range b {
		b[i] = digits[rand.IntN(len(digits))]
	}
	return string(b)
}

// syncBuffer is a log destination the server writes while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is the real endpoint over TLS on 127.0.0.1 with a fresh CA,
// a clock the test moves, and a grant that fails while broken is set.
type testServer struct {
	url    string
	ep     *Endpoint
	pool   *tls.Config
	logs   *syncBuffer
	now    atomic.Pointer[time.Time]
	broken atomic.Bool
}

func startServer(t *testing.T) *testServer {
	t.Helper()
	ts := &testServer{logs: &syncBuffer{}}
	start := time.Now()
	ts.now.Store(&start)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.ep = &Endpoint{Addr: netip.MustParseAddrPort(ln.Addr().String()), Dir: filepath.Join(t.TempDir(), DirName), TTL: time.Hour,
		Now: func() time.Time { return *ts.now.Load() }}
	pki, err := EnsurePKI(ts.ep.Dir, ts.ep.Addr.Addr(), ts.ep.now())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := CertPool(pki.CACert)
	if err != nil {
		t.Fatal(err)
	}
	ts.pool = &tls.Config{RootCAs: pool}
	ts.url = ts.ep.URL()
	log := slog.New(slog.NewTextHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	grant := func(context.Context) (Grant, error) {
		if ts.broken.Load() {
			return Grant{}, errors.New("no manager answers")
		}
		return Grant{WorkerToken: fakeToken, Managers: []string{"192.0.2.11:2377", "192.0.2.12:2377"}}, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, ln, pki.Server, &Handler{Store: ts.ep.Store(), Grant: grant, Log: log}, log)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return ts
}

// present posts a node's ticket from source address from (a 127.x address
// bound with the dialer's LocalAddr).
func (ts *testServer) present(t *testing.T, from, node, ticket string) (int, []byte) {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
	c := &http.Client{Transport: &http.Transport{DialContext: d.DialContext, TLSClientConfig: ts.pool.Clone(), DisableKeepAlives: true}, Timeout: 30 * time.Second}
	body, _ := json.Marshal(Request{Node: node, Ticket: ticket})
	resp, err := c.Post(ts.url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatalf("post from %s: %v", from, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (ts *testServer) issue(t *testing.T, node, addr string, ttl time.Duration) string {
	t.Helper()
	ticket, _, err := ts.ep.Store().Issue(node, netip.MustParseAddr(addr), ttl)
	if err != nil {
		t.Fatal(err)
	}
	return ticket
}

// TestEndpointRefusals: each way a ticket is refused, against the real
// HTTPS server on loopback, with distinct 127.x source addresses standing
// for the nodes. Each refusal has its status, is logged with its reason,
// and never with the ticket or the token.
func TestEndpointRefusals(t *testing.T) {
	ts := startServer(t)
	var tickets []string
	tests := []struct {
		name   string
		setup  func(t *testing.T) (from, node, ticket string)
		status int
		reason Reason
	}{
		{"unknown", func(t *testing.T) (string, string, string) {
			ts.issue(t, "pi-a", "127.0.0.2", time.Hour)
			return "127.0.0.2", "pi-a", "pjt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
		}, http.StatusUnauthorized, Unknown},
		{"not a ticket", func(t *testing.T) (string, string, string) {
			return "127.0.0.2", "pi-a", "hello"
		}, http.StatusUnauthorized, Unknown},
		{"reused", func(t *testing.T) (string, string, string) {
			tk := ts.issue(t, "pi-b", "127.0.0.3", time.Hour)
			if st, body := ts.present(t, "127.0.0.3", "pi-b", tk); st != http.StatusOK {
				t.Fatalf("first use: HTTP %d: %s", st, body)
			}
			tickets = append(tickets, tk)
			return "127.0.0.3", "pi-b", tk
		}, http.StatusConflict, Reused},
		{"expired", func(t *testing.T) (string, string, string) {
			tk := ts.issue(t, "pi-c", "127.0.0.4", time.Minute)
			later := ts.now.Load().Add(2 * time.Minute)
			ts.now.Store(&later)
			tickets = append(tickets, tk)
			return "127.0.0.4", "pi-c", tk
		}, http.StatusGone, Expired},
		{"wrong source address", func(t *testing.T) (string, string, string) {
			tk := ts.issue(t, "pi-d", "127.0.0.5", time.Hour)
			tickets = append(tickets, tk)
			return "127.0.0.6", "pi-d", tk
		}, http.StatusForbidden, WrongAddress},
		{"another node's ticket", func(t *testing.T) (string, string, string) {
			tk := ts.issue(t, "pi-e", "127.0.0.7", time.Hour)
			tickets = append(tickets, tk)
			return "127.0.0.7", "pi-f", tk
		}, http.StatusForbidden, WrongNode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			from, node, ticket := tt.setup(t)
			before := len(ts.logs.String())
			st, body := ts.present(t, from, node, ticket)
			if st != tt.status || !strings.Contains(string(body), string(tt.reason)) {
				t.Errorf("HTTP %d %q, want %d with %q", st, body, tt.status, tt.reason)
			}
			if bytes.Contains(body, []byte(fakeToken)) {
				t.Errorf("a refusal carries the token: %s", body)
			}
			logged := ts.logs.String()[before:]
			if !strings.Contains(logged, "self-join refused") || !strings.Contains(logged, string(tt.reason)) || !strings.Contains(logged, "from="+from) {
				t.Errorf("refusal not logged with reason and source:\n%s", logged)
			}
			if strings.Contains(logged, ticket) {
				t.Errorf("the log holds the ticket:\n%s", logged)
			}
		})
	}

	// A refusal for the wrong address does not use the ticket: from its
	// node's own address it still works, once.
	tk := ts.issue(t, "pi-g", "127.0.0.8", time.Hour)
	if st, _ := ts.present(t, "127.0.0.9", "pi-g", tk); st != http.StatusForbidden {
		t.Errorf("from another address: HTTP %d, want 403", st)
	}
	// While the swarm cannot give a token, the node is told to retry and
	// the ticket stays unused.
	ts.broken.Store(true)
	if st, body := ts.present(t, "127.0.0.8", "pi-g", tk); st != http.StatusServiceUnavailable {
		t.Errorf("swarm not ready: HTTP %d %s, want 503", st, body)
	}
	ts.broken.Store(false)
	st, body := ts.present(t, "127.0.0.8", "pi-g", tk)
	if st != http.StatusOK {
		t.Fatalf("valid ticket: HTTP %d %s", st, body)
	}
	var jr swarm.JoinRequest
	if err := json.Unmarshal(body, &jr); err != nil {
		t.Fatal(err)
	}
	if jr.JoinToken != fakeToken || jr.AdvertiseAddr != "127.0.0.8:2377" || jr.ListenAddr != "127.0.0.8:2377" || len(jr.RemoteAddrs) != 2 {
		t.Errorf("join request %+v", redactedJoin(jr))
	}
	if st, _ := ts.present(t, "127.0.0.8", "pi-g", tk); st != http.StatusConflict {
		t.Errorf("second use: HTTP %d, want 409", st)
	}
	tickets = append(tickets, tk)

	// Neither the token nor any ticket is in the logs or the join
	// directory; keys and the tickets file are 0600.
	secrets := append([]string{fakeToken}, tickets...)
	for _, s := range secrets {
		if strings.Contains(ts.logs.String(), s) {
			t.Errorf("the log holds a secret %.12s...", s)
		}
	}
	scanDir(t, ts.ep.Dir, secrets)
	for _, name := range []string{caKeyFile, serverKeyFile, TicketsFile} {
		if st, err := os.Stat(filepath.Join(ts.ep.Dir, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v mode %v, want 0600", name, err, st.Mode().Perm())
		}
	}
}

func redactedJoin(jr swarm.JoinRequest) swarm.JoinRequest {
	jr.JoinToken = "<redacted>"
	return jr
}

// scanDir fails when any file under dir holds one of secrets.
func scanDir(t *testing.T, dir string, secrets []string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s holds a secret %.12s...", p, s)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestTicketsAreHashed: the store keeps a ticket's hash, node, address and
// expiry; a new ticket for a node replaces its unused one.
func TestTicketsAreHashed(t *testing.T) {
	s := &Store{Dir: t.TempDir()}
	a, _, err := s.Issue("pi-a", netip.MustParseAddr("192.0.2.7"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	b, _, err := s.Issue("pi-a", netip.MustParseAddr("192.0.2.7"), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(filepath.Join(s.Dir, TicketsFile))
	if bytes.Contains(data, []byte(a)) || bytes.Contains(data, []byte(b)) {
		t.Fatalf("tickets file holds a ticket:\n%s", data)
	}
	list, err := s.Tickets()
	if err != nil || len(list) != 1 || list[0].Hash != hash(b) || list[0].Addr != "192.0.2.7" {
		t.Fatalf("tickets %+v, %v: want only the second", list, err)
	}
	if _, err := s.Redeem(a, "pi-a", netip.MustParseAddr("192.0.2.7")); !isRefusal(err, Unknown) {
		t.Errorf("superseded ticket: %v, want unknown", err)
	}
	if _, err := s.Redeem(b, "pi-a", netip.MustParseAddr("192.0.2.7")); err != nil {
		t.Errorf("current ticket: %v", err)
	}
}

func isRefusal(err error, r Reason) bool {
	var ref *Refusal
	return errors.As(err, &ref) && ref.Reason == r
}

// TestPKI: the CA is made once and kept; the server certificate names the
// endpoint's address, verifies against the CA, and is made again for a
// new address; keys are 0600.
func TestPKI(t *testing.T) {
	dir := filepath.Join(t.TempDir(), DirName)
	now := time.Now()
	a, err := EnsurePKI(dir, netip.MustParseAddr("192.0.2.5"), now)
	if err != nil {
		t.Fatal(err)
	}
	pool, _ := CertPool(a.CACert)
	leaf := a.Server.Leaf
	if leaf == nil {
		t.Fatal("no leaf")
	}
	if _, err := leaf.Verify(x509Opts(pool, "192.0.2.5")); err != nil {
		t.Errorf("server cert: %v", err)
	}
	b, err := EnsurePKI(dir, netip.MustParseAddr("192.0.2.5"), now)
	if err != nil || !bytes.Equal(a.CACert, b.CACert) || !bytes.Equal(a.Server.Certificate[0], b.Server.Certificate[0]) {
		t.Errorf("second EnsurePKI changed the CA or server certificate: %v", err)
	}
	c, err := EnsurePKI(dir, netip.MustParseAddr("192.0.2.6"), now)
	if err != nil || !bytes.Equal(a.CACert, c.CACert) {
		t.Fatalf("new address: %v (CA must stay)", err)
	}
	if _, err := c.Server.Leaf.Verify(x509Opts(pool, "192.0.2.6")); err != nil {
		t.Errorf("server cert for the new address: %v", err)
	}
	for _, f := range []string{caKeyFile, serverKeyFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, want mode 0600", f, err)
		}
	}
}

// TestSeedKeepsGoodTicket: seeding a node again keeps its ticket while it
// is unused with more than half its lifetime left; past that, or once
// used, the node gets a new one.
func TestSeedKeepsGoodTicket(t *testing.T) {
	now := time.Now()
	ep := &Endpoint{Addr: netip.MustParseAddrPort("192.0.2.5:9443"), Dir: filepath.Join(t.TempDir(), DirName), TTL: time.Hour,
		Now: func() time.Time { return now }}
	n := &inventory.Node{Name: "pi-a", IP: "192.0.2.101"}
	first, err := ep.Seed(n, "")
	if err != nil {
		t.Fatal(err)
	}
	if first.URL != "https://192.0.2.5:9443/v1/join" || !strings.Contains(first.CACert, "BEGIN CERTIFICATE") {
		t.Errorf("seed %+v", first)
	}
	same, _ := ep.Seed(n, first.Ticket)
	if same.Ticket != first.Ticket {
		t.Error("a fresh unused ticket was replaced")
	}
	now = now.Add(31 * time.Minute)
	older, _ := ep.Seed(n, first.Ticket)
	if older.Ticket == first.Ticket {
		t.Error("a ticket past half its lifetime was kept")
	}
	if _, err := ep.Store().Redeem(older.Ticket, "pi-a", netip.MustParseAddr("192.0.2.101")); err != nil {
		t.Fatal(err)
	}
	if used, _ := ep.Seed(n, older.Ticket); used.Ticket == older.Ticket {
		t.Error("a used ticket was kept")
	}
	if _, err := ep.Store().Redeem(first.Ticket, "pi-a", netip.MustParseAddr("192.0.2.101")); !isRefusal(err, Unknown) {
		t.Errorf("the replaced ticket: %v, want unknown", err)
	}
}
