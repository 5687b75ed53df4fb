package pvesim

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	tfmodule "github.com/fhlab/provision/terraform"
)

// TestTerraformProvider runs the real Telmate provider 3.0.2-rc07 with the
// project's Terraform module against the simulator over TLS (the CA via
// SSL_CERT_FILE, no pm_tls_insecure): apply, a refresh plan, destroy.
// Opt-in: set PROVISION_TERRAFORM_MIRROR to a filesystem mirror holding
// registry.terraform.io/telmate/proxmox/3.0.2-rc07 (terraform on PATH).
// It takes about a minute.
func TestTerraformProvider(t *testing.T) {
	mirror := os.Getenv("PROVISION_TERRAFORM_MIRROR")
	if mirror == "" {
		t.Skip("PROVISION_TERRAFORM_MIRROR is not set: the end-to-end test with the Telmate provider is opt-in (see the package doc)")
	}
	tf, err := exec.LookPath("terraform")
	if err != nil {
		t.Fatalf("PROVISION_TERRAFORM_MIRROR is set but terraform is not on PATH: %v", err)
	}
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	for _, n := range []string{"pve1", "pve2"} {
		s.AddNode(n, true)
	}
	s.AddStorage(Storage{ID: "local", Type: "dir", Content: []string{"iso", "snippets", "import"}, Path: "/var/lib/vz", Total: 100 << 30})
	s.AddStorage(Storage{ID: "local-lvm", Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: 400 << 30})
	s.AddUser("tf@pve", map[string][]string{"/": LabTokenPrivileges()})
	s.AddToken(testTokenID, testSecret(), false, nil)
	for i, n := range []string{"pve1", "pve2"} {
		if err := AddTemplate(s, n, 9000+i, "debian-12-cloudinit", "local-lvm", "vmbr0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"pve1", "pve2"} {
		s.AddVolume(n, "local", "local:snippets/x-user.yaml", 512) // the VMs' cicustom, read at start
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	srv, err := s.Listen(ctx, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })

	dir := t.TempDir()
	if err := fs.WalkDir(tfmodule.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := fs.ReadFile(tfmodule.FS, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), data, 0o644)
	}); err != nil {
		t.Fatal(err)
	}
	vm := func(vmid int, node, ip string) map[string]any {
		return map[string]any{"vmid": vmid, "target_node": node, "role": "worker", "cores": 1, "memory": 1024,
			"disk_size": "8G", "disk_storage": "local-lvm", "bridge": "vmbr0",
			"ipconfig0": "ip=" + ip + "/24,gw=198.51.100.1", "nameserver": "198.51.100.1",
			"cicustom": "user=local:snippets/x-user.yaml", "snippets_sha": "0", "tags": []string{"swarm"}}
	}
	vars := map[string]any{
		"pm_api_url": srv.URL, "pm_tls_insecure": false, "pm_parallel": 2, "lab": "sim",
		"template": "debian-12-cloudinit", "clone_wait": 0, "additional_wait": 1,
		"hardware": map[string]any{"scsihw": "virtio-scsi-single", "bios": "seabios", "boot": "order=scsi0",
			"qemu_os": "l26", "agent": 1, "net_model": "virtio", "serial0": "socket", "vga": "serial0",
			"cloudinit_storage": "local-lvm"},
		"vms": map[string]any{"mgr-1": vm(4101, "pve1", "198.51.100.11"), "vm-1": vm(4102, "pve2", "198.51.100.21")},
	}
	data, _ := json.Marshal(vars)
	if err := os.WriteFile(filepath.Join(dir, "test.auto.tfvars.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cliConfig := filepath.Join(dir, "cli.tfrc")
	if err := os.WriteFile(cliConfig, []byte(`provider_installation {
  filesystem_mirror {
    path    = "`+mirror+`"
    include = ["registry.terraform.io/telmate/proxmox"]
  }
  direct { exclude = ["registry.terraform.io/telmate/proxmox"] }
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, tf, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "TF_CLI_CONFIG_FILE="+cliConfig, "TF_IN_AUTOMATION=1", "CHECKPOINT_DISABLE=1",
			"SSL_CERT_FILE="+srv.CAFile, "PM_API_TOKEN_ID="+testTokenID, "PM_API_TOKEN_SECRET="+testSecret())
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("terraform %s: %v\n%s", strings.Join(args, " "), err, out.String())
		}
		return out.String()
	}
	run("init", "-input=false", "-no-color")
	run("apply", "-auto-approve", "-input=false", "-no-color")
	for _, id := range []int{4101, 4102} {
		v, ok := s.VM(id)
		if !ok || !v.Running || v.Config["scsi0"] == "" || !strings.HasPrefix(v.Config["ipconfig0"], "ip=198.51.100.") {
			t.Errorf("VM %d after apply: %+v", id, v)
		}
	}
	var outputs map[string]struct {
		Value map[string]map[string]any `json:"value"`
	}
	if err := json.Unmarshal([]byte(run("output", "-json")), &outputs); err != nil {
		t.Fatal(err)
	}
	if ip := outputs["vms"].Value["mgr-1"]["ip"]; ip != "198.51.100.11" {
		t.Errorf("output mgr-1 ip = %v", ip)
	}

	// A refresh plan must change nothing the simulator answers. The
	// provider always reads startup_shutdown back with -1 defaults, which
	// an HCL without that block plans to remove (not PVE-related).
	run("plan", "-input=false", "-no-color", "-out=refresh.tfplan")
	var plan struct {
		ResourceChanges []struct {
			Address string `json:"address"`
			Change  struct {
				Actions []string       `json:"actions"`
				Before  map[string]any `json:"before"`
				After   map[string]any `json:"after"`
			} `json:"change"`
		} `json:"resource_changes"`
	}
	if err := json.Unmarshal([]byte(run("show", "-json", "refresh.tfplan")), &plan); err != nil {
		t.Fatal(err)
	}
	for _, rc := range plan.ResourceChanges {
		if reflect.DeepEqual(rc.Change.Actions, []string{"no-op"}) {
			continue
		}
		var diff []string
		for k := range rc.Change.Before {
			if k != "startup_shutdown" && !reflect.DeepEqual(rc.Change.Before[k], rc.Change.After[k]) {
				diff = append(diff, k)
			}
		}
		sort.Strings(diff)
		if len(diff) > 0 || !reflect.DeepEqual(rc.Change.Actions, []string{"update"}) {
			t.Errorf("refresh plan: %s %v changes %v", rc.Address, rc.Change.Actions, diff)
		} else {
			t.Logf("refresh plan: %s: only startup_shutdown differs (declare `startup_shutdown {}` in the module for an empty plan)", rc.Address)
		}
	}

	run("destroy", "-auto-approve", "-input=false", "-no-color")
	if vms := s.VMs(); len(vms) != 2 {
		t.Errorf("after destroy: %+v", vms)
	}
}
