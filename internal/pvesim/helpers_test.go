package pvesim

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// tokenID and secret are built at run time so nothing secret-shaped is
// committed.
var testTokenID = "tf@pve!" + "sim"

func testSecret() string { return strings.Join([]string{"0b5e", "2c1d", "test"}, "-") }

// telmatePrivs are the Telmate provider's minimum privileges.
var telmatePrivs = []string{"Datastore.AllocateSpace", "Datastore.Audit", "Pool.Allocate", "Pool.Audit", "Sys.Audit",
	"Sys.Console", "Sys.Modify", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CDROM", "VM.Config.Cloudinit",
	"VM.Config.CPU", "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
	"VM.Config.Options", "VM.Migrate", "VM.PowerMgmt", "Datastore.AllocateTemplate"}

// client talks to a Sim over real HTTP(S), like the provider's SDK.
type client struct {
	t      testing.TB
	base   string
	http   *http.Client
	auth   string
	header http.Header
}

// newTestSim makes a Sim with three nodes, local + local-lvm storages and
// a token with the Telmate privileges, served over TLS on loopback.
func newTestSim(t testing.TB, opts Options) (*Sim, *client) {
	t.Helper()
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, n := range []string{"pve1", "pve2", "pve3"} {
		s.AddNode(n, true)
	}
	s.AddStorage(Storage{ID: "local", Type: "dir", Content: []string{"iso", "vztmpl", "backup", "import", "snippets"},
		Path: "/var/lib/vz", Total: 100 << 30, Used: 10 << 30})
	s.AddStorage(Storage{ID: "local-lvm", Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: 400 << 30})
	s.AddUser("tf@pve", map[string][]string{"/": telmatePrivs})
	s.AddToken(testTokenID, testSecret(), false, nil)
	return s, serve(t, s, true)
}

func serve(t testing.TB, s *Sim, useTLS bool) *client {
	t.Helper()
	srv, err := s.Listen(context.Background(), "127.0.0.1:0", useTLS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	tr := &http.Transport{Proxy: nil}
	if useTLS {
		pem, err := os.ReadFile(srv.CAFile)
		if err != nil {
			t.Fatal(err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			t.Fatal("CA file holds no certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		tr.ForceAttemptHTTP2 = true // as the SDK's custom transport would; the server must still speak HTTP/1.1
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &client{t: t, base: srv.URL, http: &http.Client{Transport: tr, Timeout: 30 * time.Second},
		auth: "PVEAPIToken=" + testTokenID + "=" + testSecret()}
}

// resp is an answer: the status line as sent, the decoded body.
type resp struct {
	Status string // e.g. "501 Method 'GET /x' not implemented"
	Code   int
	Header http.Header
	Close  bool // the server closes the connection
	Raw    string
	Body   map[string]any
}

func (r resp) data() any { return r.Body["data"] }

func (c *client) do(method, path string, form url.Values) resp {
	c.t.Helper()
	var body io.Reader
	if form != nil && (method == http.MethodPost || method == http.MethodPut) {
		body = strings.NewReader(form.Encode())
	} else if form != nil {
		path += "?" + form.Encode()
	}
	req, err := http.NewRequestWithContext(context.Background(), method, c.base+path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	if c.auth != "" {
		req.Header.Set("Authorization", c.auth)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	out := resp{Status: res.Status, Code: res.StatusCode, Header: res.Header, Close: res.Close, Raw: string(raw)}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &out.Body); err != nil {
			c.t.Fatalf("%s %s: body is not JSON: %v: %q", method, path, err, raw)
		}
	}
	return out
}

// ok calls and fails the test unless the answer is 200.
func (c *client) ok(method, path string, form url.Values) any {
	c.t.Helper()
	r := c.do(method, path, form)
	if r.Code != http.StatusOK {
		c.t.Fatalf("%s %s: %s %s", method, path, r.Status, r.Raw)
	}
	return r.data()
}

// waitTask polls a task until it stopped and returns its exitstatus.
func (c *client) waitTask(upid any) string {
	c.t.Helper()
	u, ok := upid.(string)
	if !ok || !strings.HasPrefix(u, "UPID:") {
		c.t.Fatalf("not a UPID: %#v", upid)
	}
	node := strings.Split(u, ":")[1]
	for range 500 {
		st := c.ok("GET", "/nodes/"+node+"/tasks/"+url.PathEscape(u)+"/status", nil).(map[string]any)
		if st["status"] == "stopped" {
			return st["exitstatus"].(string)
		}
		time.Sleep(10 * time.Millisecond)
	}
	c.t.Fatalf("task %s did not stop", u)
	return ""
}
