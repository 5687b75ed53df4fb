package cli

import (
	"context"
	"crypto/sha512"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/proxmox/pvetest"
	"github.com/fhlab/provision/internal/pvesim"
)

const pveLab = `apiVersion: provision/v1
kind: Lab
metadata: {name: clipf}
network: {cidr: 198.51.100.0/24, gateway: 198.51.100.1, dns: [198.51.100.1]}
ssh: {user: provision, privateKeyFile: id_test, createKey: true}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1}
proxmox:
  apiURL: @URL@
  caFile: @CA@
  tokenIDEnv: CLI_PF_TOKEN_ID
  tokenSecretEnv: CLI_PF_TOKEN_SECRET
  nodes: [{name: pve1}, {name: pve2}]
  template: @TEMPLATE@
  vmidStart: 4101
  vms:
    - {name: mgr-%d, count: 1, role: manager, disk: 8G, ipStart: 198.51.100.11}
    - {name: vm-%d,  count: 2, role: worker,  disk: 8G, ipStart: 198.51.100.21}
`

// pveCLI serves a seeded simulator and writes an inventory pointing at it;
// the token is in the environment variables the inventory names.
func pveCLI(t *testing.T, template string, templates bool) (*pvesim.Sim, string, string) {
	t.Helper()
	dir := t.TempDir()
	inv, err := inventory.Parse(filepath.Join(dir, "seed.yaml"), []byte(strings.NewReplacer("@URL@", "https://127.0.0.1:8006/api2/json", "@CA@", "ca.pem", "@TEMPLATE@", template).Replace(pveLab)), inventory.OSFS{})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := pvesim.New(pvesim.Options{Cluster: "cli"})
	if err != nil {
		t.Fatal(err)
	}
	secret := strings.Join([]string{"c1c1", "9f9f", "cli"}, "-")
	if err := pvetest.Cluster(sim, inv, "provision@pve!cli", secret, pvetest.Seed{Templates: templates}); err != nil {
		t.Fatal(err)
	}
	srv, err := pvetest.Serve(context.Background(), sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	path := filepath.Join(dir, "lab.yaml")
	yaml := strings.NewReplacer("@URL@", srv.URL, "@CA@", srv.CAFile, "@TEMPLATE@", template).Replace(pveLab)
	if err := os.WriteFile(path, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Setenv("CLI_PF_TOKEN_ID", "provision@pve!cli")
	t.Setenv("CLI_PF_TOKEN_SECRET", secret)
	return sim, path, secret
}

func TestPreflightCommand(t *testing.T) {
	sim, path, secret := pveCLI(t, "debian-12-cloudinit", true)

	code, out, errs := run(t, "preflight", "-i", path)
	if code != 0 {
		t.Fatalf("preflight exited %d:\n%s\n%s", code, out, errs)
	}
	for _, want := range []string{"✓ api", "✓ template pve2 template debian-12-cloudinit (VMID 9001) has the lab hardware", "preflight: 17 passed, 0 failed"} {
		if !strings.Contains(squash(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}

	code, out, _ = run(t, "preflight", "-i", path, "-o", "json")
	var doc struct {
		OK      bool `json:"ok"`
		Results []struct {
			Check string `json:"check"`
			OK    bool   `json:"ok"`
		} `json:"results"`
	}
	if err := json.Unmarshal([]byte(out), &doc); code != 0 || err != nil || !doc.OK || len(doc.Results) != 17 {
		t.Errorf("json: exit %d, %v, %+v", code, err, doc)
	}

	sim.SetNodeOnline("pve2", false)
	code, out, errs = run(t, "preflight", "-i", path)
	if code != 1 || !strings.Contains(squash(out), "✗ host pve2 offline") || !strings.Contains(out, "fix: start pve2") ||
		!strings.Contains(errs, "ERROR: preflight: 1 check failed") {
		t.Errorf("offline host: exit %d\n%s\n%s", code, out, errs)
	}
	if strings.Contains(out+errs, secret) {
		t.Errorf("output holds the token secret")
	}
}

func TestPreflightNeedsTheToken(t *testing.T) {
	_, path, _ := pveCLI(t, "debian-12-cloudinit", true)
	t.Setenv("CLI_PF_TOKEN_SECRET", "")
	code, _, errs := run(t, "preflight", "-i", path)
	if code != 2 || !strings.Contains(errs, "set $CLI_PF_TOKEN_ID (user@realm!tokenid) and $CLI_PF_TOKEN_SECRET") {
		t.Errorf("exit %d: %s", code, errs)
	}
	code, _, errs = run(t, "preflight", "-i", path, "-o", "yaml")
	if code != 2 || !strings.Contains(errs, "use table or json") {
		t.Errorf("exit %d: %s", code, errs)
	}
}

func TestTemplateCommandTwice(t *testing.T) {
	sim, path, _ := pveCLI(t, "debian-12-cloudinit", false)
	image := make([]byte, 4096)
	copy(image, "QFI\xfb\x00\x00\x00\x02")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(image) }))
	t.Cleanup(img.Close)
	sum := sha512.Sum512(image)
	args := []string{"template", "-i", path, "--vmid", "9100", "--image-url", img.URL + "/debian-12-genericcloud-amd64.qcow2", "--sha512", hex.EncodeToString(sum[:])}

	code, out, errs := run(t, append(args, "--dry-run")...)
	if code != 0 || !strings.Contains(squash(out), "pve2 download the image to local:import/debian-12-genericcloud-amd64.qcow2, create VM 9101") ||
		!strings.Contains(out, "dry run: 2 hosts would get the template") {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, errs)
	}
	for _, c := range sim.Calls() {
		if c.Method != http.MethodGet {
			t.Errorf("dry run sent %s %s", c.Method, c.Path)
		}
	}

	code, out, errs = run(t, args...)
	if code != 0 || !strings.Contains(out, "template debian-12-cloudinit made on 2 hosts") || !strings.Contains(errs, "pve1: converting VM 9100 to a template") {
		t.Fatalf("first run: exit %d\n%s\n%s", code, out, errs)
	}
	sim.ResetCalls()
	code, out, errs = run(t, args...)
	if code != 0 || !strings.Contains(squash(out), "pve1 template present (VMID 9100): nothing to do") || !strings.Contains(out, "nothing to do: every host has template debian-12-cloudinit") {
		t.Fatalf("second run: exit %d\n%s\n%s", code, out, errs)
	}
	for _, c := range sim.Calls() {
		if c.Method != http.MethodGet {
			t.Errorf("second run sent %s %s", c.Method, c.Path)
		}
	}
	// What template made passes preflight.
	if code, out, _ := run(t, "preflight", "-i", path); code != 0 {
		t.Errorf("preflight after template: exit %d\n%s", code, out)
	}
}

// squash collapses runs of blanks, so table columns do not matter.
func squash(s string) string { return strings.Join(strings.Fields(s), " ") }

// TestPreflightAPIFaults: the simulator answers like a loaded or
// unreachable PVE. Two 503s are ridden out (a GET is tried three times);
// three 502s in a row, and three requests that outlast --api-timeout, fail
// the run with a clear error naming the check, the status or the timeout
// and the attempts; with the fault gone, a re-run passes.
func TestPreflightAPIFaults(t *testing.T) {
	sim, path, _ := pveCLI(t, "debian-12-cloudinit", true)
	version := func(method, p string) bool { return method == "GET" && p == "/version" }
	tests := []struct {
		name  string
		fault pvesim.Fault
		code  int
		want  string
	}{
		{"two 503s are ridden out", pvesim.Fault{Match: version, Code: 503, Msg: "Service Unavailable", Times: 2}, 0, "preflight: 17 passed, 0 failed"},
		{"three 502s fail it", pvesim.Fault{Match: version, Code: 502, Msg: "proxy error", Times: 3}, 1, "the API answers with an error: GET /version: 502 proxy error (tried 3 times)"},
		{"three timeouts fail it", pvesim.Fault{Match: version, Code: 500, Msg: "late", Hold: 3 * time.Second, Times: 3}, 1, "(tried 3 times)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sim.AddFault(tt.fault)
			before := len(sim.Calls())
			code, out, errs := run(t, "preflight", "-i", path, "--api-timeout", "1s")
			if code != tt.code || !strings.Contains(squash(out+errs), tt.want) {
				t.Fatalf("preflight: exit %d, want %d with %q:\n%s\n%s", code, tt.code, tt.want, out, errs)
			}
			// A request the client gave up on is logged once its hold ends.
			faulted := 0
			for range 50 {
				faulted = 0
				for _, c := range sim.Calls()[before:] {
					if c.Path == "/version" && c.Status != 200 {
						faulted++
					}
				}
				if faulted >= tt.fault.Times {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
			if faulted != tt.fault.Times {
				t.Errorf("%d requests met the fault, want %d", faulted, tt.fault.Times)
			}
			if code != 0 {
				if !strings.Contains(squash(out), "✗ api") || strings.Contains(out, "✗ token") || !strings.Contains(out, "pveproxy") {
					t.Errorf("the failure does not name the api check and its fix (and only it):\n%s", out)
				}
				t.Logf("%s", out)
				// The fault is spent: a re-run converges.
				if code, out, errs := run(t, "preflight", "-i", path, "--api-timeout", "1s"); code != 0 {
					t.Errorf("re-run after the fault: exit %d\n%s\n%s", code, out, errs)
				}
			}
		})
	}
}
