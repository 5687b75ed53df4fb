package proxmox_test

import (
	"context"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/proxmox"
)

// testSecret is built at run time so nothing secret-shaped is committed.
func testSecret() string { return strings.Join([]string{"5f0c", "1e2d", "abcd", "0123"}, "-") }

const testTokenID = "provision@pve!preflight"

// writeStatus answers like pveproxy: the message's first line in the reason
// phrase, written on the hijacked connection (net/http cannot set a reason).
func writeStatus(t *testing.T, w http.ResponseWriter, code int, msg string, errs map[string]string) {
	t.Helper()
	body := map[string]any{"data": nil, "message": msg + "\n"}
	if errs != nil {
		body["errors"] = errs
	}
	b, _ := json.Marshal(body)
	hj, ok := w.(http.Hijacker)
	if !ok {
		t.Errorf("response writer cannot hijack")
		return
	}
	conn, rw, err := hj.Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	defer conn.Close()
	reason, _, _ := strings.Cut(msg, "\n")
	fmt.Fprintf(rw, "HTTP/1.1 %d %s\r\nContent-Type: application/json;charset=UTF-8\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", code, reason, len(b), b)
	rw.Flush()
}

func writeData(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json;charset=UTF-8")
	json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func newClient(t *testing.T, url string, mod func(*proxmox.Config)) *proxmox.Client {
	t.Helper()
	cfg := proxmox.Config{
		BaseURL:      url + "/api2/json",
		TokenID:      testTokenID,
		TokenSecret:  testSecret(),
		RetryWait:    time.Millisecond,
		PollInterval: 5 * time.Millisecond,
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := proxmox.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestNewRejectsBadConfig(t *testing.T) {
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, []byte("not a certificate\n"), 0o600)
	tests := []struct {
		name string
		cfg  proxmox.Config
		want string
	}{
		{"no api2/json", proxmox.Config{BaseURL: "https://pve1:8006/", TokenID: testTokenID, TokenSecret: "x"}, "must end in /api2/json"},
		{"not a url", proxmox.Config{BaseURL: "pve1:8006", TokenID: testTokenID, TokenSecret: "x"}, "not a URL"},
		{"plain http to a remote host", proxmox.Config{BaseURL: "http://pve1:8006/api2/json", TokenID: testTokenID, TokenSecret: "x"}, "refusing to send the API token over plain http"},
		{"no secret", proxmox.Config{BaseURL: "https://pve1:8006/api2/json", TokenID: testTokenID}, "secret are needed"},
		{"token id without !", proxmox.Config{BaseURL: "https://pve1:8006/api2/json", TokenID: "root@pam", TokenSecret: "x"}, "user@realm!tokenid"},
		{"both CA and insecure", proxmox.Config{BaseURL: "https://pve1:8006/api2/json", TokenID: testTokenID, TokenSecret: "x", CAFile: ca, Insecure: true}, "not both"},
		{"CA file without a certificate", proxmox.Config{BaseURL: "https://pve1:8006/api2/json", TokenID: testTokenID, TokenSecret: "x", CAFile: ca}, "holds no PEM certificate"},
		{"CA file missing", proxmox.Config{BaseURL: "https://pve1:8006/api2/json", TokenID: testTokenID, TokenSecret: "x", CAFile: ca + ".missing"}, "read CA file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := proxmox.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: got %v, want an error containing %q", err, tt.want)
			}
			if tt.cfg.TokenSecret != "" && strings.Contains(err.Error(), tt.cfg.TokenSecret+"\x00") {
				t.Fatalf("error holds the secret: %v", err)
			}
		})
	}
}

func TestAuthHeaderAndEnvelope(t *testing.T) {
	var gotAuth, gotAccept string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotAuth, gotAccept = r.Header.Get("Authorization"), r.Header.Get("Accept")
		if r.URL.Path != "/api2/json/version" {
			writeStatus(t, w, 501, "Method 'GET "+r.URL.Path+"' not implemented", nil)
			return
		}
		writeData(w, map[string]string{"version": "9.1.1", "release": "9.1", "repoid": "abc"})
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	v, err := c.Version(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if v.Version != "9.1.1" || v.Major() != 9 || v.Minor() != 1 {
		t.Errorf("version: got %+v", v)
	}
	if want := "PVEAPIToken=" + testTokenID + "=" + testSecret(); gotAuth != want {
		t.Errorf("Authorization: got %q, want %q", gotAuth, want)
	}
	if gotAccept != "application/json" {
		t.Errorf("Accept: got %q", gotAccept)
	}
}

func TestTLSWithCAFile(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeData(w, map[string]string{"version": "9.1.1"})
	}))
	t.Cleanup(srv.Close)
	ca := filepath.Join(t.TempDir(), "pve-root-ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	t.Run("trusted by the CA file", func(t *testing.T) {
		c := newClient(t, srv.URL, func(c *proxmox.Config) { c.CAFile = ca })
		if _, err := c.Version(ctx); err != nil {
			t.Fatalf("with the CA file: %v", err)
		}
	})
	t.Run("unknown CA refused and not retried", func(t *testing.T) {
		c := newClient(t, srv.URL, nil)
		_, err := c.Version(ctx)
		if err == nil || !proxmox.IsTLS(err) {
			t.Fatalf("without the CA: got %v, want a certificate error", err)
		}
		if strings.Contains(err.Error(), testSecret()) {
			t.Fatalf("error holds the secret: %v", err)
		}
		if n := c.Calls().Get; n != 1 {
			t.Errorf("a certificate error was tried %d times, want once", n)
		}
	})
	t.Run("insecure is explicit", func(t *testing.T) {
		c := newClient(t, srv.URL, func(c *proxmox.Config) { c.Insecure = true })
		if _, err := c.Version(ctx); err != nil {
			t.Fatalf("insecure: %v", err)
		}
	})
}

func TestRetriesOnGetOnly(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		code     int
		msg      string
		failures int32 // answers with the error before succeeding
		wantErr  string
		wantHits int32
	}{
		{"GET retried after a 503", "GET", 503, "service unavailable", 2, "", 3},
		{"GET gives up after the retries", "GET", 502, "proxy error", 10, "502 proxy error (tried 3 times)", 3},
		{"GET not retried on 4xx", "GET", 403, "Permission check failed (/, Sys.Audit)", 10, "403 Permission check failed (/, Sys.Audit)", 1},
		{"GET not retried on no such resource", "GET", 500, "no such resource 'vm:101'", 10, "500 no such resource 'vm:101'", 1},
		{"GET not retried on 501", "GET", 501, "Method 'GET /foo' not implemented", 10, "501 Method 'GET /foo' not implemented", 1},
		{"POST never retried", "POST", 503, "service unavailable", 1, "503 service unavailable", 1},
		{"PUT never retried", "PUT", 500, "got timeout", 1, "500 got timeout", 1},
		{"DELETE never retried", "DELETE", 500, "got timeout", 1, "500 got timeout", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.Method != tt.method {
					t.Errorf("method %s, want %s", r.Method, tt.method)
				}
				if n := hits.Add(1); n <= tt.failures {
					writeStatus(t, w, tt.code, tt.msg, nil)
					return
				}
				writeData(w, "ok")
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, nil)
			var out string
			var err error
			ctx := context.Background()
			switch tt.method {
			case "GET":
				err = c.Get(ctx, "/x", nil, &out)
			case "POST":
				err = c.Post(ctx, "/x", nil, &out)
			case "PUT":
				err = c.Put(ctx, "/x", nil, &out)
			case "DELETE":
				err = c.Delete(ctx, "/x", nil, &out)
			}
			if tt.wantErr == "" && err != nil {
				t.Fatalf("got %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if got := hits.Load(); got != tt.wantHits {
				t.Errorf("requests: got %d, want %d", got, tt.wantHits)
			}
			if got := c.Calls().Total; got != int64(tt.wantHits) {
				t.Errorf("Calls().Total: got %d, want %d", got, tt.wantHits)
			}
		})
	}
}

func TestRetryOnConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	c := newClient(t, url, nil)
	err := c.Get(context.Background(), "/version", nil, nil)
	var te *proxmox.TransportError
	if !errors.As(err, &te) || !strings.Contains(err.Error(), "tried 3 times") {
		t.Fatalf("got %v, want a transport error after 3 tries", err)
	}
	if c.Calls().Get != 3 {
		t.Errorf("GETs: got %d, want 3", c.Calls().Get)
	}
}

func TestErrorsKeepPVEStatusLine(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/api2/json/cluster/nextid":
			writeStatus(t, w, 400, "Parameter verification failed.", map[string]string{"vmid": "VM 4101 already exists"})
		case "/api2/json/nodes/pve1/qemu/101/config":
			writeStatus(t, w, 500, "no such resource 'vm:101'", nil)
		case "/api2/json/nodes/pve1/qemu":
			writeStatus(t, w, 500, "unable to create VM 9000: config file already exists\nmore detail", nil)
		case "/api2/json/echo":
			// A server that echoes what it got must not leak the secret.
			writeStatus(t, w, 401, "authentication failure: "+r.Header.Get("Authorization"), nil)
		default:
			writeStatus(t, w, 501, "Method '"+r.Method+" "+r.URL.Path+"' not implemented", nil)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()

	_, err := c.VMConfig(ctx, "pve1", 101)
	if err == nil || err.Error() != "GET /nodes/pve1/qemu/101/config: 500 no such resource 'vm:101'" {
		t.Errorf("config: got %v", err)
	}
	if !proxmox.IsNotFound(err) {
		t.Errorf("IsNotFound(%v) = false", err)
	}
	var apiErr *proxmox.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || apiErr.Message != "no such resource 'vm:101'" {
		t.Errorf("APIError: got %#v", apiErr)
	}

	err = c.Get(ctx, "/cluster/nextid", nil, nil)
	if want := "GET /cluster/nextid: 400 Parameter verification failed. (vmid: VM 4101 already exists)"; err == nil || err.Error() != want {
		t.Errorf("nextid: got %v, want %s", err, want)
	}
	free, err := c.NextIDFree(ctx, 4101)
	if err != nil || free {
		t.Errorf("NextIDFree(4101) = %v, %v; want false, nil", free, err)
	}

	_, err = c.CreateVM(ctx, "pve1", map[string][]string{"vmid": {"9000"}})
	if want := "POST /nodes/pve1/qemu: 500 unable to create VM 9000: config file already exists: unable to create VM 9000: config file already exists; more detail"; err == nil || err.Error() != want {
		t.Errorf("create: got %v\nwant %s", err, want)
	}

	err = c.Get(ctx, "/echo", nil, nil)
	if err == nil || strings.Contains(err.Error(), testSecret()) || !strings.Contains(err.Error(), "[redacted]") {
		t.Errorf("echo: got %v, want the secret redacted", err)
	}
}

// taskServer serves task status and log for UPIDs whose status a test sets.
type taskServer struct {
	mu     sync.Mutex
	status map[string]map[string]any
	polls  map[string]int
	log    []string
}

func (ts *taskServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	rest := strings.TrimPrefix(r.URL.Path, "/api2/json/nodes/")
	node, rest, _ := strings.Cut(rest, "/tasks/")
	upid, what, _ := strings.Cut(rest, "/")
	if !strings.HasPrefix(upid, "UPID:"+node+":") {
		http.Error(w, "wrong node for "+upid, 400)
		return
	}
	switch what {
	case "status":
		ts.polls[upid]++
		writeData(w, ts.status[upid])
	case "log":
		var lines []map[string]any
		for i, l := range ts.log {
			lines = append(lines, map[string]any{"n": i + 1, "t": l})
		}
		writeData(w, lines)
	default:
		http.NotFound(w, r)
	}
}

func TestWaitTask(t *testing.T) {
	const (
		ok      = "UPID:pve2:0000A1B2:0001C3D4:6650A1B2:qmcreate:9001:provision@pve!preflight:"
		failed  = "UPID:pve2:0000A1B3:0001C3D4:6650A1B3:download:local:provision@pve!preflight:"
		running = "UPID:pve3:0000A1B4:0001C3D4:6650A1B4:qmtemplate:9002:provision@pve!preflight:"
	)
	ts := &taskServer{
		status: map[string]map[string]any{
			ok:      {"status": "stopped", "exitstatus": "OK", "upid": ok, "node": "pve2"},
			failed:  {"status": "stopped", "exitstatus": "checksum mismatch: got 0d1e, expected ab12", "upid": failed, "node": "pve2"},
			running: {"status": "running", "upid": running, "node": "pve3"},
		},
		polls: map[string]int{},
	}
	for i := 1; i <= 30; i++ {
		ts.log = append(ts.log, fmt.Sprintf("line %d", i))
	}
	srv := httptest.NewServer(ts)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	ctx := context.Background()

	if err := c.WaitTask(ctx, ok, time.Minute); err != nil {
		t.Errorf("ok task: %v", err)
	}

	err := c.WaitTask(ctx, failed, time.Minute)
	var te *proxmox.TaskError
	if !errors.As(err, &te) || te.ExitStatus != "checksum mismatch: got 0d1e, expected ab12" {
		t.Fatalf("failed task: got %v", err)
	}
	if !strings.Contains(err.Error(), "task download local on pve2 failed: checksum mismatch") || !strings.Contains(err.Error(), "line 30") || strings.Contains(err.Error(), "line 20\n") {
		t.Errorf("failed task message: %v", err)
	}
	if len(te.Log) != 10 || te.Log[9] != "line 30" {
		t.Errorf("log tail: got %q", te.Log)
	}

	err = c.WaitTask(ctx, running, 60*time.Millisecond)
	if !proxmox.IsTaskTimeout(err) || !strings.Contains(err.Error(), "still running after 60ms") {
		t.Fatalf("timeout: got %v", err)
	}
	ts.mu.Lock()
	polls := ts.polls[running]
	ts.mu.Unlock()
	if polls < 2 {
		t.Errorf("running task polled %d times, want several", polls)
	}

	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.WaitTask(cctx, running, time.Minute); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: got %v", err)
	}

	if err := c.WaitTask(ctx, "not-a-upid", time.Minute); err == nil || !strings.Contains(err.Error(), "not a Proxmox task id") {
		t.Errorf("bad upid: got %v", err)
	}
}

func TestParseUPID(t *testing.T) {
	u, err := proxmox.ParseUPID("UPID:pve1:00001234:0000ABCD:6650A1B2:qmclone:9000:tf@pve!swarm:")
	if err != nil {
		t.Fatal(err)
	}
	if u.Node != "pve1" || u.PID != 0x1234 || u.Type != "qmclone" || u.ID != "9000" || u.User != "tf@pve!swarm" || u.StartTime.Unix() != 0x6650A1B2 {
		t.Errorf("got %+v", u)
	}
	for _, bad := range []string{"", "UPID:", "UPID::1:2:3:x:y:z:", "UPID:pve1:zz:0:0:t:i:u:", "TASK:pve1:1:2:3:t:i:u:"} {
		if _, err := proxmox.ParseUPID(bad); err == nil {
			t.Errorf("ParseUPID(%q): no error", bad)
		}
	}
}

func TestContextCancelStopsRetries(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		writeStatus(t, w, 503, "busy", nil)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, func(c *proxmox.Config) { c.RetryWait = time.Hour })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- c.Get(ctx, "/version", nil, nil) }()
	for hits.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestBodyNotEnvelope(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "<html>login</html>")
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, nil)
	err := c.Get(context.Background(), "/version", nil, &proxmox.Version{})
	if err == nil || !strings.Contains(err.Error(), "not PVE's JSON envelope") || c.Calls().Get != 1 {
		t.Fatalf("got %v after %d calls, want one envelope error", err, c.Calls().Get)
	}
}
