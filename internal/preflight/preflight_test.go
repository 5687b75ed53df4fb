package preflight_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/preflight"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/proxmox/pvetest"
	"github.com/fhlab/provision/internal/pvesim"
)

const labYAML = `apiVersion: provision/v1
kind: Lab
metadata: {name: pf}
network: {cidr: 198.51.100.0/24, gateway: 198.51.100.1, dns: [198.51.100.1]}
ssh: {user: provision, privateKeyFile: id_test, createKey: true}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3}
proxmox:
  apiURL: https://127.0.0.1:8006/api2/json
  nodes: [{name: pve1}, {name: pve2}, {name: pve3}]
  template: debian-12-cloudinit
  vmidStart: 4101
  vms:
    - {name: mgr-%d, count: 3, role: manager, cores: 2, memory: 2048, disk: 8G, ipStart: 198.51.100.11}
    - {name: vm-%d,  count: 3, role: worker,  cores: 2, memory: 2048, disk: 16G, ipStart: 198.51.100.21}
`

const tokenID = "provision@pve!preflight"

// secret is built at run time so nothing secret-shaped is committed.
func secret() string { return strings.Join([]string{"7d1f", "44aa", "9c3e", "5b20"}, "-") }

func loadInventory(t *testing.T, yaml string) *inventory.Inventory {
	t.Helper()
	inv, err := inventory.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(yaml), inventory.OSFS{})
	if err != nil {
		t.Fatalf("inventory: %v", err)
	}
	return inv
}

// simLab is a simulator seeded from the inventory, served over TLS on
// loopback, and a client that trusts it through a CA file.
type simLab struct {
	sim *pvesim.Sim
	url string
	ca  string
	inv *inventory.Inventory
	c   *proxmox.Client
}

func newSimLab(t *testing.T, yaml string) *simLab {
	t.Helper()
	inv := loadInventory(t, yaml)
	sim, err := pvesim.New(pvesim.Options{Cluster: "lab"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pvetest.Cluster(sim, inv, tokenID, secret(), pvetest.Seed{Templates: true}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	return serveSim(t, sim, inv)
}

// serveSim serves a seeded simulator over HTTPS on loopback and connects a
// client with the lab token.
func serveSim(t *testing.T, sim *pvesim.Sim, inv *inventory.Inventory) *simLab {
	t.Helper()
	srv, err := pvetest.Serve(context.Background(), sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	l := &simLab{sim: sim, url: srv.URL, ca: srv.CAFile, inv: inv}
	l.c = l.client(t, tokenID, secret())
	return l
}

func (l *simLab) client(t *testing.T, id, sec string) *proxmox.Client {
	t.Helper()
	c, err := proxmox.New(proxmox.Config{BaseURL: l.url, TokenID: id, TokenSecret: sec, CAFile: l.ca, RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func run(t *testing.T, c *proxmox.Client, inv *inventory.Inventory) preflight.Report {
	t.Helper()
	rep, err := preflight.Run(context.Background(), preflight.Options{Client: c, Inventory: inv, Concurrency: 8})
	if err != nil {
		t.Fatalf("preflight: %v", err)
	}
	return rep
}

// one returns the single result of check on target.
func one(t *testing.T, rep preflight.Report, check, target string) preflight.Result {
	t.Helper()
	rs := rep.Find(check, target)
	if len(rs) != 1 {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("want one %s result for %s, got %d:\n%s", check, target, len(rs), b.String())
	}
	return rs[0]
}

func wantFail(t *testing.T, r preflight.Result, msg, fix string) {
	t.Helper()
	if r.OK {
		t.Errorf("%s %s: passed (%s), want a failure", r.Check, r.Target, r.Message)
	}
	if !strings.Contains(r.Message, msg) {
		t.Errorf("%s %s: message %q, want it to contain %q", r.Check, r.Target, r.Message, msg)
	}
	if !strings.Contains(r.Fix, fix) {
		t.Errorf("%s %s: fix %q, want it to contain %q", r.Check, r.Target, r.Fix, fix)
	}
}

func TestAllPassOnTheSeededLab(t *testing.T) {
	l := newSimLab(t, labYAML)
	rep := run(t, l.c, l.inv)
	var b bytes.Buffer
	rep.WriteTable(&b)
	if rep.Failed() != 0 || rep.Warnings() != 0 {
		t.Fatalf("want every check to pass:\n%s", b.String())
	}
	// api, token, privileges, then per host: host, clock, template, snippets,
	// storage, vmids, ips.
	if want := 3 + 3*7; len(rep.Results) != want {
		t.Errorf("got %d results, want %d:\n%s", len(rep.Results), want, b.String())
	}
	for _, c := range []string{"api", "token", "privileges", "host", "clock", "template", "snippets", "storage", "vmids", "ips"} {
		if len(rep.Find(c, "")) == 0 {
			t.Errorf("no %s result", c)
		}
	}
	if !strings.Contains(b.String(), "preflight: 24 passed, 0 failed") {
		t.Errorf("summary:\n%s", b.String())
	}
	// Preflight only reads.
	if m := l.c.Calls().Mutating(); m != 0 {
		t.Errorf("%d mutating calls", m)
	}
	for _, c := range l.sim.Calls() {
		if c.Method != "GET" {
			t.Errorf("preflight sent %s %s", c.Method, c.Path)
		}
		if c.Status >= 400 {
			t.Errorf("%s %s answered %d", c.Method, c.Path, c.Status)
		}
	}
	// JSON carries the same results.
	b.Reset()
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OK      bool               `json:"ok"`
		Results []preflight.Result `json:"results"`
	}
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil || !doc.OK || len(doc.Results) != len(rep.Results) {
		t.Errorf("json: %v ok=%v %d results", err, doc.OK, len(doc.Results))
	}
}

func TestFailures(t *testing.T) {
	tests := []struct {
		name   string
		yaml   string // default labYAML
		setup  func(t *testing.T, l *simLab) *proxmox.Client
		check  string
		target string
		msg    string
		fix    string
	}{
		{
			name: "host offline", check: "host", target: "pve3", msg: "offline", fix: "start pve3",
			setup: func(t *testing.T, l *simLab) *proxmox.Client { l.sim.SetNodeOnline("pve3", false); return nil },
		},
		{
			name: "host not in the cluster", check: "host", target: "pve4", msg: "not a node of this cluster", fix: "pvecm add",
			yaml: strings.Replace(labYAML, "{name: pve3}]", "{name: pve3}, {name: pve4}]", 1),
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				// Seeded from the 3-node inventory: drop pve4 from the lab after seeding.
				return nil
			},
		},
		{
			name: "missing template", check: "template", target: "pve2", msg: "no template debian-12-cloudinit on pve2; the one on pve1 (VMID 9000) uses local storage local-lvm", fix: "provision template -i ",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				deleteTemplate(t, l, "pve2")
				return nil
			},
		},
		{
			name: "no template anywhere", check: "template", target: "pve3", msg: "no template named other-template on pve3 (proxmox.template)", fix: "provision template -i ",
			yaml:  strings.Replace(labYAML, "template: debian-12-cloudinit", "template: other-template", 1),
			setup: func(t *testing.T, l *simLab) *proxmox.Client { return nil },
		},
		{
			name: "a VM with the template's name that is no template", check: "template", target: "pve3", msg: "VM 9502 \"debian-12-cloudinit\" on pve3 is not a template", fix: "qm template 9502 (on pve3)",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				deleteTemplate(t, l, "pve3")
				addVM(t, l, pvesim.VM{Node: "pve3", VMID: 9502, Name: "debian-12-cloudinit", Config: labTemplateConfig(9502)})
				return nil
			},
		},
		{
			name: "template with an undeclared disk", check: "template", target: "pve2", msg: "undeclared disk scsi1", fix: "qm set 9500 --delete scsi1",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				deleteTemplate(t, l, "pve2")
				cfg := labTemplateConfig(9500)
				cfg["scsi1"] = "local-lvm:base-9500-disk-1,size=10G"
				addVM(t, l, pvesim.VM{Node: "pve2", VMID: 9500, Name: "debian-12-cloudinit", Template: true, Config: cfg})
				return nil
			},
		},
		{
			name: "template without cloud-init drive", check: "template", target: "pve1", msg: "ide2 holds nothing", fix: "qm set 9501 --ide2 local-lvm:cloudinit",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				deleteTemplate(t, l, "pve1")
				cfg := labTemplateConfig(9501)
				delete(cfg, "ide2")
				addVM(t, l, pvesim.VM{Node: "pve1", VMID: 9501, Name: "debian-12-cloudinit", Template: true, Config: cfg})
				return nil
			},
		},
		{
			name: "snippets content type off", check: "snippets", target: "pve1", msg: "does not allow snippets", fix: "pvesm set cfgs --content iso,vztmpl,snippets",
			yaml: strings.Replace(labYAML, "  template: debian-12-cloudinit\n", "  template: debian-12-cloudinit\n  snippetsStorage: cfgs\n  snippetsDir: /srv/cfgs/snippets\n", 1),
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				l.sim.AddStorage(pvesim.Storage{ID: "cfgs", Type: "dir", Content: []string{"iso", "vztmpl"}, Shared: true, Nodes: []string{"pve1", "pve2", "pve3"}, Total: 100 << 30, Used: 1 << 30, Path: "/srv/cfgs"})
				return nil
			},
		},
		{
			name: "a privilege missing", check: "privileges", target: "provision@pve!weak", msg: "missing on /: VM.Migrate", fix: "pveum acl modify / --tokens 'provision@pve!weak' --roles Provision",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				var privs []string
				for _, p := range preflight.RequiredPrivileges() {
					if p != "VM.Migrate" {
						privs = append(privs, p)
					}
				}
				// Privilege-separated: the intersection of the user's and the token's ACLs.
				weak := strings.Join([]string{"0e0e", "weak", "11aa"}, "-")
				l.sim.AddToken("provision@pve!weak", weak, true, map[string][]string{"/": privs})
				return l.client(t, "provision@pve!weak", weak)
			},
		},
		{
			name: "VMID taken", check: "vmids", target: "pve1", msg: "VMID 4101 (mgr-1) is taken by VM \"old-db\" on pve2", fix: "qm destroy 4101 on pve2",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				addVM(t, l, pvesim.VM{Node: "pve2", VMID: 4101, Name: "old-db", Config: map[string]string{"memory": "1024"}})
				return nil
			},
		},
		{
			name: "IP taken", check: "ips", target: "pve2", msg: "198.51.100.12 (mgr-2) is used by VM 300 \"legacy\" on pve3 (ipconfig0)", fix: "qm set 300 --delete ipconfig0 (on pve3)",
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				addVM(t, l, pvesim.VM{Node: "pve3", VMID: 300, Name: "legacy", Config: map[string]string{"ipconfig0": "ip=198.51.100.12/24,gw=198.51.100.1", "ide2": "local-lvm:cloudinit"}})
				return nil
			},
		},
		{
			name: "clock skew", check: "clock", target: "pve2", msg: "45 s ahead of this machine", fix: "timedatectl set-ntp true",
			setup: func(t *testing.T, l *simLab) *proxmox.Client { l.sim.SetClockSkew("pve2", 45*time.Second); return nil },
		},
		{
			name: "no room", check: "storage", target: "pve1", msg: "small needs 24.0 GiB for 2 new VM disks; 10.0 GiB free", fix: "free space on small",
			yaml: strings.Replace(labYAML, "  template: debian-12-cloudinit\n", "  template: debian-12-cloudinit\n  storage: small\n", 1),
			setup: func(t *testing.T, l *simLab) *proxmox.Client {
				l.sim.AddStorage(pvesim.Storage{ID: "small", Type: "lvmthin", Content: []string{"images", "rootdir"}, Nodes: []string{"pve1", "pve2", "pve3"}, Total: 20 << 30, Used: 10 << 30})
				return nil
			},
		},
		{
			name: "wrong token secret", check: "token", target: tokenID, msg: "401", fix: "$PM_API_TOKEN_ID and $PM_API_TOKEN_SECRET",
			setup: func(t *testing.T, l *simLab) *proxmox.Client { return l.client(t, tokenID, "wrong-"+secret()) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			yaml := tt.yaml
			if yaml == "" {
				yaml = labYAML
			}
			l := newSimLab(t, labYAML)
			inv := loadInventory(t, yaml)
			c := tt.setup(t, l)
			if c == nil {
				c = l.c
			}
			rep := run(t, c, inv)
			r := one(t, rep, tt.check, tt.target)
			wantFail(t, r, tt.msg, tt.fix)
			if strings.Contains(r.Message+r.Fix, secret()) {
				t.Errorf("result holds the token secret")
			}
			var b bytes.Buffer
			rep.WriteTable(&b)
			if !strings.Contains(b.String(), "✗") || !strings.Contains(b.String(), "fix: ") {
				t.Errorf("table shows no failure with a fix:\n%s", b.String())
			}
		})
	}
}

func TestTemplateOnSharedStorage(t *testing.T) {
	yaml := strings.Replace(labYAML, "  template: debian-12-cloudinit\n", "  template: debian-12-cloudinit\n  storage: ceph\n", 1)
	l := newSimLab(t, labYAML)
	inv := loadInventory(t, yaml)
	l.sim.AddStorage(pvesim.Storage{ID: "ceph", Type: "rbd", Content: []string{"images", "rootdir"}, Shared: true, Total: 10 << 40, Used: 1 << 40})
	for _, n := range []string{"pve1", "pve2", "pve3"} {
		deleteTemplate(t, l, n)
	}
	hw := proxmox.LabHardware(inv.Lab.Proxmox)
	addVM(t, l, pvesim.VM{Node: "pve2", VMID: 9600, Name: "debian-12-cloudinit", Template: true, Config: pvetest.TemplateConfig(hw, 9600)})
	rep := run(t, l.c, inv)
	for _, h := range []string{"pve1", "pve3"} {
		r := one(t, rep, "template", h)
		if !r.OK || !strings.Contains(r.Message, "VMID 9600 on pve2, shared storage ceph") {
			t.Errorf("%s: %+v", h, r)
		}
	}
	// One result for the shared VM storage, not one per host.
	r := one(t, rep, "storage", "ceph (shared)")
	if !r.OK || !strings.Contains(r.Message, "for 6 new VM disks") {
		t.Errorf("storage: %+v", r)
	}
	if rs := rep.Find("storage", "pve1"); len(rs) != 0 {
		t.Errorf("per-host storage results for a shared storage: %+v", rs)
	}
}

func TestClockSkewWarns(t *testing.T) {
	l := newSimLab(t, labYAML)
	l.sim.SetClockSkew("pve1", -5*time.Second)
	rep := run(t, l.c, l.inv)
	r := one(t, rep, "clock", "pve1")
	if !r.OK || !r.Warning || !strings.Contains(r.Message, "behind this machine") || !strings.Contains(r.Fix, "set-ntp") {
		t.Errorf("got %+v, want a warning", r)
	}
	if rep.Failed() != 0 {
		t.Errorf("a warning fails the run: %d failed", rep.Failed())
	}
}

func TestOwnVMsAlreadyExistingIsFine(t *testing.T) {
	l := newSimLab(t, labYAML)
	for _, n := range l.inv.Nodes {
		if n.Kind != inventory.KindVM {
			continue
		}
		addVM(t, l, pvesim.VM{Node: n.Host, VMID: n.VMID, Name: n.Name, Running: true,
			Config: map[string]string{"ipconfig0": "ip=" + n.IP + "/24,gw=198.51.100.1", "scsi0": "local-lvm:vm-" + itoa(n.VMID) + "-disk-0,size=" + n.Disk}})
	}
	rep := run(t, l.c, l.inv)
	if rep.Failed() != 0 {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("re-run over existing VMs fails:\n%s", b.String())
	}
	r := one(t, rep, "vmids", "pve1")
	if !strings.Contains(r.Message, "already this inventory's VMs") {
		t.Errorf("vmids: %q", r.Message)
	}
	r = one(t, rep, "storage", "pve1")
	if !strings.Contains(r.Message, "for 0 new VM disks") {
		t.Errorf("storage: %q", r.Message)
	}
}

func TestAPIUnreachable(t *testing.T) {
	l := newSimLab(t, labYAML)
	srv := httptest.NewServer(nil)
	url := srv.URL
	srv.Close()
	c, err := proxmox.New(proxmox.Config{BaseURL: url + "/api2/json", TokenID: tokenID, TokenSecret: secret(), RetryWait: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, c, l.inv)
	if len(rep.Results) != 1 {
		t.Fatalf("want only the api result, got %+v", rep.Results)
	}
	wantFail(t, rep.Results[0], "the API does not answer", "check proxmox.apiURL")
}

func TestUntrustedCertificate(t *testing.T) {
	l := newSimLab(t, labYAML)
	c, err := proxmox.New(proxmox.Config{BaseURL: l.url, TokenID: tokenID, TokenSecret: secret()})
	if err != nil {
		t.Fatal(err)
	}
	rep := run(t, c, l.inv)
	wantFail(t, one(t, rep, "api", c.Host()), "not trusted", "proxmox.caFile")
}

func itoa(n int) string { return strconv.Itoa(n) }

func addVM(t *testing.T, l *simLab, vm pvesim.VM) {
	t.Helper()
	if err := l.sim.AddVM(vm); err != nil {
		t.Fatalf("add VM %d: %v", vm.VMID, err)
	}
}

// deleteTemplate removes the seeded template from node through the API.
func deleteTemplate(t *testing.T, l *simLab, node string) {
	t.Helper()
	ctx := context.Background()
	rs, err := l.c.ClusterResources(ctx, "vm")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.Node == node && r.Template != 0 && r.Name == l.inv.Lab.Proxmox.Template {
			upid, err := l.c.DeleteVM(ctx, node, int(r.VMID))
			if err := l.c.RunTask(ctx, upid, err, time.Minute); err != nil {
				t.Fatalf("delete template %d on %s: %v", r.VMID, node, err)
			}
			return
		}
	}
	t.Fatalf("no seeded template on %s", node)
}

// labTemplateConfig is the config of a template with the lab hardware.
func labTemplateConfig(vmid int) map[string]string {
	return pvetest.TemplateConfig(proxmox.LabHardware(&inventory.Proxmox{Storage: "local-lvm", Bridge: "vmbr0"}), vmid)
}

// The simulator's own seeding (what `provision pve-sim` serves) is a ready
// lab too: its template has the hardware preflight and terraform/ expect.
func TestSimulatorSeedPasses(t *testing.T) {
	inv := loadInventory(t, labYAML)
	sim, err := pvesim.New(pvesim.Options{Cluster: "seed"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pvesim.SeedFromInventory(sim, inv, tokenID, secret()); err != nil {
		t.Fatal(err)
	}
	c := serveSim(t, sim, inv).c
	rep := run(t, c, inv)
	if rep.Failed() != 0 || rep.Warnings() != 0 {
		var b bytes.Buffer
		rep.WriteTable(&b)
		t.Fatalf("preflight on pvesim.SeedFromInventory:\n%s", b.String())
	}
}

func TestPrivsepTokenWithEveryPrivilegePasses(t *testing.T) {
	l := newSimLab(t, labYAML)
	sec := strings.Join([]string{"9a9a", "sep", "0101"}, "-")
	l.sim.AddToken("provision@pve!sep", sec, true, map[string][]string{"/": preflight.RequiredPrivileges()})
	rep := run(t, l.client(t, "provision@pve!sep", sec), l.inv)
	if r := one(t, rep, "privileges", "provision@pve!sep"); !r.OK {
		t.Errorf("got %+v", r)
	}
}

func TestCancelStopsPreflight(t *testing.T) {
	l := newSimLab(t, labYAML)
	// A plain-HTTP loopback front whose /nodes never answers.
	blocked := make(chan struct{}, 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api2/json/nodes" {
			select {
			case blocked <- struct{}{}:
			default:
			}
			<-r.Context().Done()
			return
		}
		l.sim.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	c, err := proxmox.New(proxmox.Config{BaseURL: front.URL + "/api2/json", TokenID: tokenID, TokenSecret: secret()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := preflight.Run(ctx, preflight.Options{Client: c, Inventory: l.inv})
		done <- err
	}()
	<-blocked
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}

func TestOldPVEWarns(t *testing.T) {
	inv := loadInventory(t, labYAML)
	sim, err := pvesim.New(pvesim.Options{Version: "8.2.4"})
	if err != nil {
		t.Fatal(err)
	}
	if err := pvetest.Cluster(sim, inv, tokenID, secret(), pvetest.Seed{Templates: true}); err != nil {
		t.Fatal(err)
	}
	c := serveSim(t, sim, inv).c
	rep := run(t, c, inv)
	r := one(t, rep, "api", c.Host())
	if !r.OK || !r.Warning || !strings.Contains(r.Message, "Proxmox VE 8.2.4") || !strings.Contains(r.Message, "older than 8.3") || !strings.Contains(r.Fix, "upgrade") {
		t.Errorf("got %+v", r)
	}
}
