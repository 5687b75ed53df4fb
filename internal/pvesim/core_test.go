package pvesim

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

func TestRejectsLikePVE(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	if err := s.AddVM(VM{Node: "pve1", VMID: 9000, Name: "tmpl", Template: true}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		method     string
		path       string
		form       url.Values
		wantStatus string
		wantErrors map[string]string
		wantMsg    string
	}{
		{
			name: "unknown path", method: "GET", path: "/nodes/pve1/foo",
			wantStatus: "501 Method 'GET /nodes/pve1/foo' not implemented",
			wantMsg:    "Method 'GET /nodes/pve1/foo' not implemented\n",
		},
		{
			name: "unknown method", method: "DELETE", path: "/version",
			wantStatus: "501 Method 'DELETE /version' not implemented",
			wantMsg:    "Method 'DELETE /version' not implemented\n",
		},
		{
			name: "unknown parameter", method: "GET", path: "/cluster/resources", form: url.Values{"kind": {"vm"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"kind": "property is not defined in schema and the schema does not allow additional properties"},
		},
		{
			name: "enum", method: "GET", path: "/cluster/resources", form: url.Values{"type": {"qemu"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"type": "value 'qemu' does not have a value in the enumeration 'vm, storage, node, sdn'"},
		},
		{
			name: "wrong type in the path", method: "GET", path: "/nodes/pve1/qemu/abc/config",
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"vmid": "type check ('integer') failed - got 'abc'"},
		},
		{
			name: "wrong type in the query", method: "GET", path: "/cluster/nextid", form: url.Values{"vmid": {"12x"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"vmid": "type check ('integer') failed - got '12x'"},
		},
		{
			// PVE checks the format (pve-vmid) before the minimum
			name: "vmid format", method: "GET", path: "/cluster/nextid", form: url.Values{"vmid": {"99"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"vmid": "invalid format - value does not look like a valid VM ID\n"},
		},
		{
			name: "minimum", method: "GET", path: "/nodes/pve1/tasks", form: url.Values{"limit": {"-1"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"limit": "value must have a minimum value of 0"},
		},
		{
			name: "missing required", method: "POST", path: "/nodes/pve1/storage/local/download-url",
			form:       url.Values{"content": {"iso"}, "filename": {"a.iso"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"url": "property is missing and it is not optional"},
		},
		{
			name: "snippets cannot be downloaded", method: "POST", path: "/nodes/pve1/storage/local/download-url",
			form:       url.Values{"content": {"snippets"}, "filename": {"u.yaml"}, "url": {"http://127.0.0.1:1/u.yaml"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"content": "value 'snippets' does not have a value in the enumeration 'iso, vztmpl, import'"},
		},
		{
			name: "node name format", method: "POST", path: "/nodes/pve1/qemu/9000/clone",
			form:       url.Values{"newid": {"4101"}, "target": {"pve_1"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"target": "invalid format - value does not look like a valid node name\n"},
		},
		{
			name: "taken vmid", method: "GET", path: "/cluster/nextid", form: url.Values{"vmid": {"9000"}},
			wantStatus: "400 Parameter verification failed.",
			wantMsg:    "Parameter verification failed.\n",
			wantErrors: map[string]string{"vmid": "VM 9000 already exists"},
		},
		{
			name: "HA resource", method: "GET", path: "/cluster/ha/resources/4101",
			wantStatus: "500 no such resource 'vm:4101'",
			wantMsg:    "no such resource 'vm:4101'\n",
		},
		{
			name: "schema path the simulator lacks", method: "GET", path: "/nodes/pve1/qemu/9000/rrddata",
			form:       url.Values{"timeframe": {"hour"}},
			wantStatus: "501 Method 'GET /nodes/pve1/qemu/9000/rrddata' not implemented by the simulator (pvesim implements a subset of the PVE API)",
			wantMsg:    "Method 'GET /nodes/pve1/qemu/9000/rrddata' not implemented by the simulator (pvesim implements a subset of the PVE API)\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.path, tc.form)
			if r.Status != tc.wantStatus {
				t.Errorf("status line %q, want %q", r.Status, tc.wantStatus)
			}
			if !r.Close {
				t.Errorf("connection kept alive after an error; PVE sends Connection: close")
			}
			if _, ok := r.Body["data"]; !ok || r.Body["data"] != nil {
				t.Errorf("body %s: want data null", r.Raw)
			}
			if r.Body["message"] != tc.wantMsg {
				t.Errorf("message %q, want %q", r.Body["message"], tc.wantMsg)
			}
			gotErrs, _ := r.Body["errors"].(map[string]any)
			if len(gotErrs) != len(tc.wantErrors) {
				t.Errorf("errors %v, want %v", gotErrs, tc.wantErrors)
			}
			for k, v := range tc.wantErrors {
				if gotErrs[k] != v {
					t.Errorf("errors[%s] = %q, want %q", k, gotErrs[k], v)
				}
			}
		})
	}
}

// TestRawStatusLine reads the bytes PVE-style errors put on the wire.
func TestRawStatusLine(t *testing.T) {
	t.Parallel()
	s, _ := newTestSim(t, Options{})
	srv, err := s.Listen(context.Background(), "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	pem, err := os.ReadFile(srv.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	d := &tls.Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"h2", "http/1.1"}}}
	conn, err := d.DialContext(context.Background(), "tcp", srv.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if p := conn.(*tls.Conn).ConnectionState().NegotiatedProtocol; p == "h2" {
		t.Fatalf("server negotiated h2; errors need HTTP/1.1")
	}
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /api2/json/cluster/resources?type=vm&foo=1 HTTP/1.1\r\nHost: x\r\nAuthorization: PVEAPIToken=%s=%s\r\n\r\n", testTokenID, testSecret())
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	if line != "HTTP/1.1 400 Parameter verification failed.\r\n" {
		t.Errorf("status line %q", line)
	}
	var body string
	for {
		l, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if l == "\r\n" {
			break
		}
	}
	rest := make([]byte, 4096)
	n, _ := br.Read(rest)
	body = string(rest[:n])
	var m map[string]any
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("body %q: %v", body, err)
	}
	want := `{"data":null,"errors":{"foo":"property is not defined in schema and the schema does not allow additional properties"},"message":"Parameter verification failed.\n"}`
	if body != want {
		t.Errorf("body\n%s\nwant\n%s", body, want)
	}
	// The connection is closed after an error, as PVE does.
	if _, err := br.ReadByte(); err == nil {
		t.Errorf("connection still open after an error")
	}
	var _ net.Conn = conn
}

func TestAuth(t *testing.T) {
	t.Parallel()
	_, c := newTestSim(t, Options{})
	tests := []struct {
		name, auth, want string
	}{
		{"no credentials", "", "401 No ticket"},
		{"wrong secret", "PVEAPIToken=" + testTokenID + "=wrong", "401 Authentication failed!"},
		{"unknown token", "PVEAPIToken=tf@pve!other=" + testSecret(), "401 Authentication failed!"},
		{"malformed", "PVEAPIToken=garbage", "401 Authentication failed!"},
		{"right", "PVEAPIToken=" + testTokenID + "=" + testSecret(), "200 OK"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cc := *c
			cc.t = t
			cc.auth = tc.auth
			r := cc.do("GET", "/version", nil)
			if r.Status != tc.want {
				t.Fatalf("status %q, want %q", r.Status, tc.want)
			}
			if strings.Contains(r.Raw, testSecret()) || strings.Contains(r.Status, testSecret()) {
				t.Fatalf("answer echoes the secret")
			}
		})
	}
}

func TestReadEndpointTypes(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	s.SetClockSkew("pve2", 90*time.Second)
	s.SetNodeOnline("pve3", false)
	if err := s.AddVM(VM{Node: "pve1", VMID: 9000, Name: "debian-12-cloudinit", Template: true,
		Config: map[string]string{"memory": "2048", "cores": "2", "scsi0": "local-lvm:base-9000-disk-0,size=3G"}}); err != nil {
		t.Fatal(err)
	}
	v := c.ok("GET", "/version", nil).(map[string]any)
	if v["version"] != "9.1.1" || v["release"] != "9.1" {
		t.Errorf("version %v", v)
	}
	next := c.ok("GET", "/cluster/nextid", nil)
	if next != "100" {
		t.Errorf("nextid %#v, want the string \"100\"", next)
	}
	res := c.ok("GET", "/cluster/resources", url.Values{"type": {"vm"}}).([]any)
	if len(res) != 1 {
		t.Fatalf("resources %v", res)
	}
	vm := res[0].(map[string]any)
	for k, want := range map[string]any{"vmid": 9000.0, "name": "debian-12-cloudinit", "node": "pve1", "type": "qemu",
		"status": "stopped", "template": 1.0, "maxmem": float64(2048 << 20), "maxcpu": 2.0, "uptime": 0.0} {
		if vm[k] != want {
			t.Errorf("resources[0].%s = %#v, want %#v", k, vm[k], want)
		}
	}
	nodes := c.ok("GET", "/nodes", nil).([]any)
	status := map[string]string{}
	for _, n := range nodes {
		m := n.(map[string]any)
		status[m["node"].(string)] = m["status"].(string)
	}
	if status["pve1"] != "online" || status["pve3"] != "offline" {
		t.Errorf("nodes %v", status)
	}
	now := time.Now().Unix()
	tm := c.ok("GET", "/nodes/pve2/time", nil).(map[string]any)
	if d := int64(tm["time"].(float64)) - now; d < 85 || d > 95 {
		t.Errorf("pve2 time is %d s off, want ~90", d)
	}
	r := c.do("GET", "/nodes/pve3/time", nil)
	if r.Status != "595 No route to host" {
		t.Errorf("offline node: %q", r.Status)
	}
	r = c.do("GET", "/nodes/pve9/time", nil)
	if !strings.HasPrefix(r.Status, "500 hostname lookup 'pve9' failed") {
		t.Errorf("unknown node: %q", r.Status)
	}
	sts := c.ok("GET", "/nodes/pve1/storage", nil).([]any)
	if len(sts) != 2 {
		t.Fatalf("storages %v", sts)
	}
	lvm := sts[1].(map[string]any)
	if lvm["storage"] != "local-lvm" || lvm["total"] != float64(400<<30) || lvm["active"] != 1.0 || lvm["shared"] != 0.0 {
		t.Errorf("local-lvm %v", lvm)
	}
	// GET /storage/{storage} needs Datastore.Allocate, which the Telmate set lacks.
	if r := c.do("GET", "/storage/local", nil); r.Status != "403 Permission check failed (/storage/local, Datastore.Allocate)" {
		t.Errorf("GET /storage/local: %s", r.Status)
	}
	cfgs := c.ok("GET", "/storage", nil).([]any)
	cfg := cfgs[0].(map[string]any)
	if cfg["content"] != "backup,import,iso,snippets,vztmpl" || cfg["path"] != "/var/lib/vz" || cfg["type"] != "dir" {
		t.Errorf("storage config %v", cfg)
	}
	users := c.ok("GET", "/access/users", url.Values{"full": {"1"}}).([]any)
	u := users[0].(map[string]any)
	if u["userid"] != "tf@pve" || len(u["tokens"].([]any)) != 1 {
		t.Errorf("users %v", users)
	}
	perms := c.ok("GET", "/access/permissions", url.Values{"userid": {"tf@pve"}, "path": {"/"}}).(map[string]any)
	root := perms["/"].(map[string]any)
	if root["VM.Allocate"] != 1.0 || root["Sys.PowerMgmt"] != nil {
		t.Errorf("permissions %v", root)
	}
}

func TestPrivsepTokenIntersection(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	s.AddToken("tf@pve!narrow", testSecret(), true, map[string][]string{
		"/":          {"VM.Audit", "Sys.Audit", "Sys.PowerMgmt"},
		"/vms/4101":  {"VM.PowerMgmt"},
		"/storage/x": {"Datastore.Audit"},
	})
	c.auth = "PVEAPIToken=tf@pve!narrow=" + testSecret()
	perms := c.ok("GET", "/access/permissions", url.Values{"path": {"/"}}).(map[string]any)
	root := perms["/"].(map[string]any)
	// tf@pve has the Telmate set; the token VM.Audit, Sys.Audit, Sys.PowerMgmt → intersection.
	if len(root) != 2 || root["VM.Audit"] != 1.0 || root["Sys.Audit"] != 1.0 {
		t.Errorf("token permissions on / = %v, want VM.Audit and Sys.Audit", root)
	}
	perms = c.ok("GET", "/access/permissions", url.Values{"path": {"/vms/4101"}}).(map[string]any)
	if p := perms["/vms/4101"].(map[string]any); len(p) != 1 || p["VM.PowerMgmt"] != 1.0 {
		t.Errorf("token permissions on /vms/4101 = %v", p)
	}
	// The token may not clone: VM.Clone is the user's, not the token's.
	r := c.do("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}})
	if r.Status != "403 Permission check failed (/vms/9000, VM.Clone)" {
		t.Errorf("clone with privsep token: %q", r.Status)
	}
}
