package pvesim

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

func newChecked(t testing.TB) *Sim {
	t.Helper()
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestParamChecker runs odd inputs through the checker for the qemu
// create method and compares with PVE::JSONSchema's messages.
func TestParamChecker(t *testing.T) {
	t.Parallel()
	s := newChecked(t)
	schema := s.qemuConfigSchema()
	tests := []struct {
		name string
		in   map[string]string
		want map[string]string
	}{
		{"ok", map[string]string{"node": "pve1", "vmid": "100", "cores": "2", "scsi0": "local-lvm:8,iothread=1", "net0": "virtio,bridge=vmbr0"}, nil},
		{"missing vmid", map[string]string{"node": "pve1"}, map[string]string{"vmid": "property is missing and it is not optional"}},
		{"integer with spaces", map[string]string{"node": "pve1", "vmid": "100", "cores": " 2"}, map[string]string{"cores": "type check ('integer') failed - got ' 2'"}},
		{"integer as float", map[string]string{"node": "pve1", "vmid": "100", "cores": "2.0"}, map[string]string{"cores": "type check ('integer') failed - got '2.0'"}},
		{"cores minimum", map[string]string{"node": "pve1", "vmid": "100", "cores": "0"}, map[string]string{"cores": "value must have a minimum value of 1"}},
		{"boolean true is not PVE's", map[string]string{"node": "pve1", "vmid": "100", "template": "true"}, map[string]string{"template": "type check ('boolean') failed - got 'true'"}},
		{"number", map[string]string{"node": "pve1", "vmid": "100", "cpulimit": "1e"}, map[string]string{"cpulimit": "type check ('number') failed - got '1e'"}},
		{"number ok", map[string]string{"node": "pve1", "vmid": "100", "cpulimit": ".5"}, nil},
		{"enum", map[string]string{"node": "pve1", "vmid": "100", "ostype": "linux"}, map[string]string{"ostype": "value 'linux' does not have a value in the enumeration 'other, wxp, w2k, w2k3, w2k8, wvista, win7, win8, win10, win11, l24, l26, solaris'"}},
		{"pattern", map[string]string{"node": "pve1", "vmid": "100", "serial0": "tcp"}, map[string]string{"serial0": "value does not match the regex pattern"}},
		{"index too high", map[string]string{"node": "pve1", "vmid": "100", "scsi31": "local-lvm:1"}, map[string]string{"scsi31": "property is not defined in schema and the schema does not allow additional properties"}},
		{"index with zero", map[string]string{"node": "pve1", "vmid": "100", "net00": "virtio"}, map[string]string{"net00": "property is not defined in schema and the schema does not allow additional properties"}},
		{"literal [n]", map[string]string{"node": "pve1", "vmid": "100", "scsi[n]": "x"}, map[string]string{"scsi[n]": "property is not defined in schema and the schema does not allow additional properties"}},
		{"drive key unknown", map[string]string{"node": "pve1", "vmid": "100", "scsi0": "local-lvm:8,speed=9"}, map[string]string{"scsi0": "invalid format - invalid key in comma-separated list property: speed\n"}},
		{"drive size", map[string]string{"node": "pve1", "vmid": "100", "scsi0": "local-lvm:8,size=8X"}, map[string]string{"scsi0": "invalid format - format error\nscsi0.size: invalid format - value does not look like a valid disk size: 8X\n\n"}},
		{"drive bool", map[string]string{"node": "pve1", "vmid": "100", "scsi0": "local-lvm:8,iothread=maybe"}, map[string]string{"scsi0": "invalid format - format error\nscsi0.iothread: type check ('boolean') failed - got 'maybe'\n"}},
		{"drive bool words", map[string]string{"node": "pve1", "vmid": "100", "scsi0": "local-lvm:8,iothread=on"}, nil},
		{"two default keys", map[string]string{"node": "pve1", "vmid": "100", "net0": "virtio,e1000"}, map[string]string{"net0": "invalid format - duplicate key in comma-separated list property: model\n"}},
		{"mac", map[string]string{"node": "pve1", "vmid": "100", "net0": "virtio=01:00:00:00:00:00"}, map[string]string{"net0": "invalid format - format error\nnet0.macaddr: invalid format - value does not look like a valid unicast MAC address\n\n"}},
		{"ipconfig", map[string]string{"node": "pve1", "vmid": "100", "ipconfig0": "ip=10.0.0.1"}, map[string]string{"ipconfig0": "invalid format - format error\nipconfig0.ip: invalid format - value does not look like a valid ipv4 network configuration\n\n"}},
		{"ipconfig ok", map[string]string{"node": "pve1", "vmid": "100", "ipconfig0": "ip=10.0.0.5/24,gw=10.0.0.1"}, nil},
		{"boot order", map[string]string{"node": "pve1", "vmid": "100", "boot": "order=scsi0;net0"}, nil},
		{"boot order bad", map[string]string{"node": "pve1", "vmid": "100", "boot": "order=floppy"}, map[string]string{"boot": "invalid format - format error\nboot.order: invalid format - invalid boot device 'floppy'\n\n"}},
		{"tags", map[string]string{"node": "pve1", "vmid": "100", "tags": "swarm;manager"}, nil},
		{"tags bad", map[string]string{"node": "pve1", "vmid": "100", "tags": "a b;-x"}, map[string]string{"tags": "invalid format - invalid characters in tag\n"}},
		{"name dns", map[string]string{"node": "pve1", "vmid": "100", "name": "mgr_1"}, map[string]string{"name": "invalid format - value does not look like a valid DNS name\n"}},
		{"max length", map[string]string{"node": "pve1", "vmid": "100", "description": strings.Repeat("x", 8193)}, map[string]string{"description": "value may only be 8192 characters long"}},
		{"vmid format", map[string]string{"node": "pve1", "vmid": "0100"}, map[string]string{"vmid": "invalid format - value does not look like a valid VM ID\n"}},
		{"vmid max", map[string]string{"node": "pve1", "vmid": "+100"}, map[string]string{"vmid": "invalid format - value does not look like a valid VM ID\n"}},
		{"empty value is undef", map[string]string{"node": "pve1", "vmid": ""}, map[string]string{"vmid": "property is missing and it is not optional"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ps := params{}
			for k, v := range tc.in {
				if v == "" {
					ps[k] = nil
				} else {
					ps[k] = &value{s: v}
				}
			}
			got := s.chk.check(schema, ps)
			if len(got) != len(tc.want) {
				t.Fatalf("errors %q, want %q", got, tc.want)
			}
			for k, v := range tc.want {
				if got[k] != v {
					t.Errorf("errors[%s] = %q, want %q", k, got[k], v)
				}
			}
		})
	}
}

func TestDecodeURLEncoded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want map[string]*value
	}{
		{"a=1&b=2;c=x+y", map[string]*value{"a": {s: "1"}, "b": {s: "2"}, "c": {s: "x y"}}},
		{"a=&b", map[string]*value{"a": nil, "b": nil}},
		{"net0=virtio=BC:24:11:00:00:01,bridge=vmbr0", map[string]*value{"net0": {s: "virtio"}}}, // PVE keeps two fields
		{"k=%41%zz%4", map[string]*value{"k": {s: "A%zz%4"}}},
		{"k=1&k=2&k=3", map[string]*value{"k": {list: []string{"1", "2", "3"}}}},
		{"&&=v", map[string]*value{"": {s: "v"}}},
	}
	for _, tc := range tests {
		ps := params{}
		decodeURLEncoded(ps, tc.in)
		if len(ps) != len(tc.want) {
			t.Errorf("%q: %v, want %v", tc.in, ps, tc.want)
			continue
		}
		for k, w := range tc.want {
			g, ok := ps[k]
			if !ok || (g == nil) != (w == nil) || g != nil && (g.s != w.s || strings.Join(g.list, ",") != strings.Join(w.list, ",")) {
				t.Errorf("%q: %s = %+v, want %+v", tc.in, k, g, w)
			}
		}
	}
}

// FuzzRequest sends arbitrary paths and bodies through the whole handler:
// it must never panic, and every answer is a JSON envelope or a PVE error.
func FuzzRequest(f *testing.F) {
	f.Add("GET", "/nodes/pve1/qemu/100/config", "current=1")
	f.Add("POST", "/nodes/pve1/qemu", "vmid=100&scsi0=local-lvm:0,import-from=local:import/x.qcow2&net0=virtio,,bridge=vmbr0")
	f.Add("PUT", "/nodes/pve1/qemu/100/config", "delete=scsi0,net0;ide2&boot=order=scsi0;;&tags=%00")
	f.Add("POST", "/nodes/pve1/qemu/100/clone", "newid=101&newid=102&full=yes")
	f.Add("GET", "/cluster/resources", "type=vm&type=node")
	f.Add("POST", "/nodes/pve1/storage/local/download-url", "url=http://127.0.0.1:1/x&content=import&filename=../../x.qcow2")
	s, err := New(Options{})
	if err != nil {
		f.Fatal(err)
	}
	defer s.Close()
	s.AddNode("pve1", true)
	s.AddStorage(Storage{ID: "local", Type: "dir", Content: []string{"import", "iso"}, Total: 1 << 30})
	s.AddStorage(Storage{ID: "local-lvm", Type: "lvmthin", Content: []string{"images"}, Total: 1 << 30})
	s.AddToken("root@pam!fuzz", "s", false, nil)
	h := s.Handler()
	f.Fuzz(func(t *testing.T, method, path, body string) {
		switch method {
		case "GET", "POST", "PUT", "DELETE":
		default:
			return
		}
		if !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " ?#\r\n\x00") || strings.Contains(path, "download-url") {
			return
		}
		if _, err := url.Parse("http://127.0.0.1" + path); err != nil {
			return
		}
		req := httptest.NewRequest(method, "http://127.0.0.1/api2/json"+path, strings.NewReader(body))
		if method == "GET" || method == "DELETE" {
			req = httptest.NewRequest(method, "http://127.0.0.1/api2/json"+path, nil)
			req.URL.RawQuery = body
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "PVEAPIToken=root@pam!fuzz=s")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK && rec.Code < 400 {
			t.Fatalf("%s %s %q: status %d", method, path, body, rec.Code)
		}
		if rec.Code != 595 && !strings.HasPrefix(rec.Body.String(), "{") {
			t.Fatalf("%s %s %q: body %q", method, path, body, rec.Body.String())
		}
	})
}

func TestSeedFromInventory(t *testing.T) {
	t.Parallel()
	inv, err := inventory.Load("../../inventory/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := newChecked(t)
	if err := SeedFromInventory(s, inv, "provision@pve!lab", testSecret()); err != nil {
		t.Fatal(err)
	}
	vms := s.VMs()
	if len(vms) != 3 {
		t.Fatalf("templates %+v", vms)
	}
	for i, vm := range vms {
		if vm.VMID != TemplateVMIDBase+i || vm.Node != inv.Lab.Proxmox.Nodes[i].Name || !vm.Template || vm.Name != "debian-12-cloudinit" {
			t.Errorf("template %d: %+v", i, vm)
		}
		want := TemplateConfig(vm.VMID, "debian-12-cloudinit", "local-lvm", "vmbr0", "")
		for k, v := range want {
			if k != "net0" && vm.Config[k] != v {
				t.Errorf("template %d: %s = %q, want %q", vm.VMID, k, vm.Config[k], v)
			}
		}
		if vols := s.Volumes(vm.Node, "local-lvm"); len(vols) != 2 {
			t.Errorf("volumes on %s: %v", vm.Node, vols)
		}
	}
	if err := Seed(newChecked(t), &inventory.Inventory{File: "x.yaml"}, SeedOptions{}); err == nil || !strings.Contains(err.Error(), "no proxmox section") {
		t.Errorf("seed without proxmox: %v", err)
	}
}
