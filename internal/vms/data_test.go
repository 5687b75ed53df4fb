package vms_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/vms"
	"github.com/fhlab/provision/templates"
	tfmodule "github.com/fhlab/provision/terraform"
)

func renderer(t *testing.T) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func load(t *testing.T, path string) *inventory.Inventory {
	t.Helper()
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func build(t *testing.T, path string) *vms.Data {
	t.Helper()
	d, err := vms.Build(load(t, path), renderer(t), vms.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestBuildLocal(t *testing.T) {
	inv := load(t, "../../inventory/local.yaml")
	d, err := vms.Build(inv, renderer(t), vms.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if len(d.VMs) != 9 || len(d.TFVars.VMs) != 9 {
		t.Fatalf("%d VMs, %d tfvars entries, want 9", len(d.VMs), len(d.TFVars.VMs))
	}
	v := d.TFVars.VMs["mgr-1"]
	if v.VMID < 9100 || v.TargetNode == "" || v.DiskSize != "8G" || v.DiskStorage != "local-lvm" || v.Bridge != "vmbr0" {
		t.Errorf("mgr-1 = %+v", v)
	}
	if v.IPConfig0 != "ip=198.51.100.11/24,gw=198.51.100.1" || v.Nameserver != "198.51.100.1" {
		t.Errorf("mgr-1 network: %q, %q", v.IPConfig0, v.Nameserver)
	}
	wantCI := "meta=local:snippets/local-mgr-1-meta.yaml,network=local:snippets/local-mgr-1-network.yaml,user=local:snippets/local-mgr-1-user.yaml"
	if v.CICustom != wantCI {
		t.Errorf("cicustom = %q, want %q", v.CICustom, wantCI)
	}
	if strings.Join(v.Tags, ";") != "local;manager;vm" {
		t.Errorf("tags = %v", v.Tags)
	}
	hw := d.TFVars.Hardware
	if hw.SCSIHW != "virtio-scsi-single" || hw.Boot != "order=scsi0" || hw.Serial0 != "socket" || hw.VGA != "serial0" || hw.Agent != 1 || hw.CloudInitStorage != "local-lvm" {
		t.Errorf("hardware = %+v", hw)
	}
	if d.TFVars.PMAPIURL != "https://127.0.0.1:8006/api2/json" || !d.TFVars.PMTLSInsecure || d.TFVars.PMParallel != vms.DefaultParallel {
		t.Errorf("provider settings = %+v", d.TFVars)
	}
	for _, vm := range d.VMs {
		if vm.Name != "mgr-1" {
			continue
		}
		var names []string
		for _, f := range vm.Snippets {
			names = append(names, f.Name)
			if len(f.Content) == 0 || f.Mode != 0o600 {
				t.Errorf("snippet %s: %d bytes, mode %v", f.Name, len(f.Content), f.Mode)
			}
		}
		if strings.Join(names, ",") != "local-mgr-1-meta.yaml,local-mgr-1-network.yaml,local-mgr-1-user.yaml" {
			t.Errorf("snippets = %v", names)
		}
		if !strings.HasPrefix(string(vm.Snippets[2].Content), "#cloud-config") {
			t.Errorf("user-data snippet does not start with #cloud-config")
		}
	}

	// The same inventory gives the same bytes; another seed, another hash.
	d2 := build(t, "../../inventory/local.yaml")
	a, _ := d.JSON()
	b, _ := d2.JSON()
	if string(a) != string(b) {
		t.Error("tfvars differ between two builds of the same inventory")
	}
	inv.Lab.Network.DNS = []string{"198.51.100.53"}
	d3, err := vms.Build(inv, renderer(t), vms.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	if d3.TFVars.VMs["mgr-1"].SnippetsSHA == v.SnippetsSHA {
		t.Error("snippets hash did not change with the rendered content")
	}
}

func TestBuildRefuses(t *testing.T) {
	cases := []struct {
		name   string
		mutate func(inv *inventory.Inventory)
		want   string
	}{
		{"two managers on one host", func(inv *inventory.Inventory) {
			first := ""
			for i := range inv.Nodes {
				if inv.Nodes[i].Role == inventory.Manager {
					if first == "" {
						first = inv.Nodes[i].Host
					} else {
						inv.Nodes[i].Host = first
						return
					}
				}
			}
		}, "managers mgr-1 and mgr-2 are both on Proxmox host pve1"},
		{"unknown host", func(inv *inventory.Inventory) { inv.Nodes[0].Host = "pve9" }, `vms: mgr-1: Proxmox host "pve9" is not in proxmox.nodes`},
		{"bad disk size", func(inv *inventory.Inventory) { inv.Nodes[0].Disk = "8GB" }, `vms: mgr-1: disk size "8GB"`},
		{"api url", func(inv *inventory.Inventory) { inv.Lab.Proxmox.APIURL = "https://pve:8006" }, "must end in /api2/json"},
		{"long cicustom", func(inv *inventory.Inventory) { inv.Lab.Proxmox.SnippetsStorage = strings.Repeat("s", 80) }, "at most 256 characters"},
		{"no proxmox", func(inv *inventory.Inventory) { inv.Lab.Proxmox = nil }, "no proxmox section"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			inv := load(t, "../../inventory/local.yaml")
			c.mutate(inv)
			_, err := vms.Build(inv, renderer(t), vms.Settings{})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Build = %v, want an error containing %q", err, c.want)
			}
		})
	}
}

func TestTags(t *testing.T) {
	cases := []struct {
		in   []string
		want string
	}{
		{[]string{"fh-lab", "manager", "vm"}, "fh-lab;manager;vm"},
		{[]string{"My Lab!", "worker", "vm", "vm"}, "my-lab-;vm;worker"},
		{[]string{"-x", ".y", ""}, "x;y"},
	}
	for _, c := range cases {
		if got := strings.Join(vms.Tags(c.in...), ";"); got != c.want {
			t.Errorf("Tags(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestMaterialise(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "terraform")
	d := build(t, "../../inventory/local.yaml")
	written, err := vms.Materialise(dir, tfmodule.FS, d)
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(written)
	want := []string{"main.tf", "outputs.tf", "provider.tf", "variables.tf", "versions.tf", vms.TFVarsFile}
	sort.Strings(want)
	if !slices.Equal(written, want) {
		t.Errorf("first write = %v, want %v", written, want)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("module dir mode %v (%v), want 0700", fi.Mode().Perm(), err)
	}
	fi, err := os.Stat(filepath.Join(dir, vms.TFVarsFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("tfvars mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if err := os.WriteFile(filepath.Join(dir, "old.tf"), []byte("# from an older provision\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	written, err = vms.Materialise(dir, tfmodule.FS, d)
	if err != nil || len(written) != 0 {
		t.Errorf("second write = %v, %v, want nothing rewritten", written, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "old.tf")); !os.IsNotExist(err) {
		t.Errorf("stale old.tf kept: %v", err)
	}
	d.TFVars.PMParallel = 2
	written, err = vms.Materialise(dir, tfmodule.FS, d)
	if err != nil || !slices.Equal(written, []string{vms.TFVarsFile}) {
		t.Errorf("after a change = %v, %v, want only the tfvars", written, err)
	}
}

// fakeHost is an Uploader at the process boundary: it records what each
// host got and how many uploads ran at once.
type fakeHosts struct {
	mu       sync.Mutex
	files    map[string]map[string][]byte // host -> name -> content
	active   int
	maxAlive int
	fail     string
}

type fakeConn struct {
	h    *fakeHosts
	host string
}

func (c fakeConn) Upload(ctx context.Context, dir string, files []remote.File, _ remote.UploadOptions) (remote.UploadResult, error) {
	h := c.h
	h.mu.Lock()
	h.active++
	h.maxAlive = max(h.maxAlive, h.active)
	h.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.active--
	if c.host == h.fail {
		return remote.UploadResult{}, errors.New("permission denied")
	}
	var res remote.UploadResult
	if h.files[c.host] == nil {
		h.files[c.host] = map[string][]byte{}
	}
	for _, f := range files {
		if dir != "/var/lib/vz/snippets" {
			return res, fmt.Errorf("dir %s", dir)
		}
		if string(h.files[c.host][f.Name]) == string(f.Content) {
			res.Unchanged = append(res.Unchanged, f.Name)
			continue
		}
		h.files[c.host][f.Name] = f.Content
		res.Written = append(res.Written, f.Name)
	}
	return res, nil
}

func (c fakeConn) Remove(_ context.Context, dir string, names []string) (remote.RemoveResult, error) {
	h := c.h
	h.mu.Lock()
	defer h.mu.Unlock()
	var res remote.RemoveResult
	if c.host == h.fail {
		return res, errors.New("permission denied")
	}
	for _, name := range names {
		if dir != "/var/lib/vz/snippets" {
			return res, fmt.Errorf("dir %s", dir)
		}
		if _, ok := h.files[c.host][name]; !ok {
			res.Absent = append(res.Absent, name)
			continue
		}
		delete(h.files[c.host], name)
		res.Removed = append(res.Removed, name)
	}
	return res, nil
}

// TestRemoveSnippets removes the named VMs' snippets from their hosts only
// (the others' stay), then every VM's; files gone already count as absent
// and a failing host is named.
func TestRemoveSnippets(t *testing.T) {
	d := build(t, "../../inventory/example.yaml")
	h := &fakeHosts{files: map[string]map[string][]byte{}}
	dial := func(_ context.Context, host inventory.ProxmoxNode) (vms.Uploader, func() error, error) {
		return fakeConn{h: h, host: host.Name}, func() error { return nil }, nil
	}
	if _, err := vms.UploadSnippets(t.Context(), d, dial, 4, nil); err != nil {
		t.Fatal(err)
	}
	victim := d.VMs[0]
	rep, err := vms.RemoveSnippets(t.Context(), d, []string{victim.Name}, dial, 4, nil)
	if err != nil || rep != (vms.RemoveReport{Hosts: 1, Removed: 3}) {
		t.Errorf("remove %s = %+v, %v; want 3 removed on 1 host", victim.Name, rep, err)
	}
	total := 0
	for host, files := range h.files {
		total += len(files)
		for _, f := range victim.Snippets {
			if _, ok := files[f.Name]; ok {
				t.Errorf("%s left on %s", f.Name, host)
			}
		}
	}
	if total != 15*3-3 {
		t.Errorf("%d snippets left, want the other VMs' %d", total, 15*3-3)
	}
	rep, err = vms.RemoveSnippets(t.Context(), d, nil, dial, 4, nil)
	if err != nil || rep != (vms.RemoveReport{Hosts: 5, Removed: 42, Absent: 3}) {
		t.Errorf("remove all = %+v, %v; want 42 removed, 3 absent, on 5 hosts", rep, err)
	}
	h.fail = "pve2"
	if _, err := vms.RemoveSnippets(t.Context(), d, nil, dial, 4, nil); err == nil || !strings.Contains(err.Error(), "remove snippets from pve2 (") {
		t.Errorf("failed host: %v", err)
	}
}

func TestUploadSnippets(t *testing.T) {
	d := build(t, "../../inventory/example.yaml")
	h := &fakeHosts{files: map[string]map[string][]byte{}}
	dial := func(_ context.Context, host inventory.ProxmoxNode) (vms.Uploader, func() error, error) {
		return fakeConn{h: h, host: host.Name}, func() error { return nil }, nil
	}
	rep, err := vms.UploadSnippets(t.Context(), d, dial, 2, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Hosts != 5 || rep.Written != 15*3 || rep.Unchanged != 0 {
		t.Errorf("first upload = %+v, want 5 hosts, 45 written", rep)
	}
	if h.maxAlive > 2 {
		t.Errorf("%d uploads at once, want at most 2", h.maxAlive)
	}
	for _, vm := range d.VMs {
		for _, f := range vm.Snippets {
			if _, ok := h.files[vm.Host.Name][f.Name]; !ok {
				t.Errorf("%s not on %s", f.Name, vm.Host.Name)
			}
		}
	}
	rep, err = vms.UploadSnippets(t.Context(), d, dial, 8, nil)
	if err != nil || rep.Written != 0 || rep.Unchanged != 45 {
		t.Errorf("second upload = %+v, %v, want 45 unchanged", rep, err)
	}
	h.fail = "pve3"
	_, err = vms.UploadSnippets(t.Context(), d, dial, 8, nil)
	if err == nil || !strings.Contains(err.Error(), "snippets to pve3 (192.168.10.4): permission denied") {
		t.Errorf("failed host: %v", err)
	}
}
