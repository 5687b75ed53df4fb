package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/pvesim"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/vms"
	"github.com/fhlab/provision/templates"
)

// providerMirror returns a provider mirror holding telmate/proxmox
// 3.0.2-rc07 (PROVISION_TERRAFORM_MIRROR, else testdata/terraform-mirror),
// or skips the test saying so: the provider cannot be downloaded here.
func providerMirror(t *testing.T) string {
	t.Helper()
	mirror := os.Getenv("PROVISION_TERRAFORM_MIRROR")
	if mirror == "" {
		mirror = filepath.Join("testdata", "terraform-mirror")
	}
	abs, err := filepath.Abs(mirror)
	if err != nil {
		t.Fatal(err)
	}
	// Unpacked (…/3.0.2-rc07/linux_amd64/) or packed (…_linux_amd64.zip)
	// layout, as `terraform providers mirror` writes them.
	base := filepath.Join(abs, "registry.terraform.io", "telmate", "proxmox")
	unpacked, _ := filepath.Glob(filepath.Join(base, "3.0.2-rc07", "linux_amd64", "terraform-provider-proxmox*"))
	packed, _ := filepath.Glob(filepath.Join(base, "terraform-provider-proxmox_3.0.2-rc07_linux_amd64.zip"))
	if len(unpacked)+len(packed) == 0 {
		t.Skipf("SKIPPED: no telmate/proxmox 3.0.2-rc07 provider in the mirror %s; set PROVISION_TERRAFORM_MIRROR to a directory made by `terraform providers mirror` to run this test", abs)
	}
	return abs
}

// TestVMsApplyAgainstSimulator runs `provision vms apply|plan|destroy` for
// inventory/local.yaml with the real terraform and Telmate provider against
// the Proxmox API simulator on loopback. The snippets go over SFTP to a
// real sshd per simulated host, into the directory the simulator reads at
// every VM start: a VM whose snippets are missing does not start.
func TestVMsApplyAgainstSimulator(t *testing.T) {
	mirror := providerMirror(t)
	requireTerraform(t)
	requireSSHD(t)
	ctx := t.Context()
	// The guest agent answers with the VM's static address, as a booted
	// clone with qemu-guest-agent would.
	agent := func(_ context.Context, vm pvesim.VMEvent) ([]pvesim.AgentInterface, error) {
		model, _, _ := strings.Cut(vm.Config["net0"], ",")
		_, mac, _ := strings.Cut(model, "=")
		return []pvesim.AgentInterface{{Name: "eth0", HardwareAddress: strings.ToLower(mac), Addresses: []netip.Prefix{vm.IP}}}, nil
	}
	sim, err := pvesim.New(pvesim.Options{Agent: agent})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sim.Close)
	srv, err := sim.Listen(ctx, "127.0.0.1:0", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	// local.yaml with the simulator's URL, its CA trusted (not insecure),
	// and an SSH port per simulated host.
	dir := t.TempDir()
	ports := freePorts(t, 3)
	invPath := copyLocal(t, dir, func(text string) string {
		text = strings.Replace(text, "apiURL: https://127.0.0.1:8006/api2/json", "apiURL: "+srv.URL+"\n  caFile: "+srv.CAFile, 1)
		text = strings.Replace(text, "insecure: true", "insecure: false", 1)
		return withSSHPorts(t, text, ports)
	})
	inv, err := inventory.Load(invPath)
	if err != nil {
		t.Fatal(err)
	}
	if inv.Lab.Proxmox.APIURL != srv.URL || inv.Lab.Proxmox.Insecure {
		t.Fatal("could not point local.yaml at the simulator")
	}
	tokenID, secret := "provision@pve!terraform", "sim-"+strings.Repeat("5", 12)
	seedSim(t, sim, inv, tokenID, secret)
	t.Setenv("PM_API_TOKEN_ID", tokenID)
	t.Setenv("PM_API_TOKEN_SECRET", secret)

	// The simulated hosts' SFTP: the inventory's key (createKey) logs in.
	signer, _, err := remote.EnsureKey(inv.PrivateKeyPath())
	if err != nil {
		t.Fatal(err)
	}
	pub := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	root := sftpRoot(t)
	for i, n := range inv.Lab.Proxmox.Nodes {
		nodeRoot := filepath.Join(root, n.Name)
		if err := os.Mkdir(nodeRoot, 0o755); err != nil {
			t.Fatal(err)
		}
		sim.SetNodeDir(n.Name, nodeRoot)
		if err := os.MkdirAll(sim.SnippetsDir(n.Name, inv.Lab.Proxmox.SnippetsStorage), 0o755); err != nil {
			t.Fatal(err)
		}
		d, err := pvesim.StartSSHD(ctx, pvesim.SSHDConfig{Node: n.Name, Root: nodeRoot, Dir: filepath.Join(dir, "sshd", n.Name),
			Addr: fmt.Sprintf("127.0.0.1:%d", ports[i]), User: inv.Lab.Proxmox.SSHUser, AuthorizedKeys: []string{pub}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
	}

	// Relative paths, as an admin types them: terraform runs inside the
	// state dir, so everything it is handed must still be found.
	t.Chdir(dir)
	state := "state"
	vmsRun := func(args ...string) (string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		all := append([]string{"vms"}, args...)
		all = append(all, "-i", "local.yaml", "--state-dir", state, "--terraform-mirror", mirror)
		code := Run(ctx, all, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		if strings.Contains(out.String()+errb.String(), secret) {
			t.Errorf("the token secret was printed")
		}
		if code != 0 {
			t.Fatalf("provision %s exited %d\nstdout:\n%s\nstderr:\n%s", strings.Join(all, " "), code, out.String(), errb.String())
		}
		return out.String(), errb.String()
	}

	out, errs := vmsRun("apply", "--yes")
	if !strings.Contains(out, "VMs: 9 to create, 0 to update, 0 to REPLACE, 0 to DESTROY") {
		t.Errorf("apply's plan:\n%s", out)
	}
	if !strings.HasSuffix(out, "\n9 created, 0 changed, 0 destroyed\n") {
		t.Errorf("apply's stdout does not end with what was applied:\n%s", out)
	}
	if strings.Contains(out+errs, `msg="terraform: `) || strings.Contains(out+errs, "Apply complete!") {
		t.Errorf("terraform's own output reached the terminal:\nstdout:\n%s\nstderr:\n%s", out, errs)
	}
	if !strings.Contains(out+errs, "snippets: 27 written, 0 unchanged, on 3 Proxmox hosts") {
		t.Errorf("apply did not upload the 27 snippets:\n%s\n%s", out, errs)
	}
	d, err := vms.Build(inv, mustRenderer(t), vms.Settings{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, vm := range sim.VMs() {
		if vm.Template {
			continue
		}
		want, ok := d.TFVars.VMs[vm.Name]
		if !ok {
			t.Errorf("unexpected VM %s (%d) on %s", vm.Name, vm.VMID, vm.Node)
			continue
		}
		if vm.VMID != want.VMID || vm.Node != want.TargetNode || !vm.Running {
			t.Errorf("VM %s: vmid %d on %s running %v, want %d on %s running", vm.Name, vm.VMID, vm.Node, vm.Running, want.VMID, want.TargetNode)
		}
		if vm.Config["cicustom"] != want.CICustom || vm.Config["scsihw"] != "virtio-scsi-single" || !strings.HasPrefix(vm.Config["ide2"], "local-lvm:vm-") {
			t.Errorf("VM %s config: %v", vm.Name, vm.Config)
		}
		// Its snippets are files in its host's snippets storage: the start read them.
		for _, f := range strings.Split(vm.Config["cicustom"], ",") {
			_, volid, _ := strings.Cut(f, "=")
			name := strings.TrimPrefix(volid, inv.Lab.Proxmox.SnippetsStorage+":snippets/")
			if _, err := os.Stat(filepath.Join(sim.SnippetsDir(vm.Node, inv.Lab.Proxmox.SnippetsStorage), name)); err != nil {
				t.Errorf("VM %s: snippet %s: %v", vm.Name, volid, err)
			}
		}
		got = append(got, vm.Name)
	}
	sort.Strings(got)
	if len(got) != 9 {
		t.Fatalf("VMs after apply: %v, want the 9 of local.yaml", got)
	}

	out, errs = vmsRun("plan")
	if !strings.Contains(out, "VMs: 0 to create, 0 to update, 0 to REPLACE, 0 to DESTROY, 9 unchanged.") {
		t.Errorf("second plan is not empty:\n%s", out)
	}

	// More memory for every worker: an in-place change the provider
	// applies by rebooting them, and the plan says so.
	src, err := os.ReadFile(invPath)
	if err != nil {
		t.Fatal(err)
	}
	text := string(src)
	bigger := strings.Replace(text, "{name: vm-%d,  count: 6, role: worker,  cores: 1, memory: 1024,", "{name: vm-%d,  count: 6, role: worker,  cores: 1, memory: 2048,", 1)
	if bigger == text {
		t.Fatal("could not change the workers' memory in local.yaml")
	}
	if err := os.WriteFile(invPath, []byte(bigger), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _ = vmsRun("plan")
	for _, s := range []string{
		"VMs: 0 to create, 6 to update, 0 to REPLACE, 0 to DESTROY, 3 unchanged.",
		"vm-1 on pve1: in place: memory — REBOOTS (automatic_reboot)",
		"WARNING: 6 VMs will be rebooted by the provider while the apply runs (automatic_reboot): vm-1, vm-2, vm-3, vm-4, vm-5, vm-6",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("plan of a memory change lacks %q:\n%s", s, out)
		}
	}

	// The check is live: without its user-data on its host, vm-1 does not
	// start again, with PVE's message.
	vm1 := d.TFVars.VMs["vm-1"]
	api := simAPI{t: t, url: srv.URL, caFile: srv.CAFile, auth: "PVEAPIToken=" + tokenID + "=" + secret}
	if ex := api.task("POST", fmt.Sprintf("/nodes/%s/qemu/%d/status/stop", vm1.TargetNode, vm1.VMID)); ex != "OK" {
		t.Fatalf("stop vm-1: %s", ex)
	}
	var userVolid string
	for _, f := range strings.Split(vm1.CICustom, ",") {
		if v, ok := strings.CutPrefix(f, "user="); ok {
			userVolid = v
		}
	}
	userFile := filepath.Join(sim.SnippetsDir(vm1.TargetNode, inv.Lab.Proxmox.SnippetsStorage), strings.TrimPrefix(userVolid, "local:snippets/"))
	if err := os.Remove(userFile); err != nil {
		t.Fatal(err)
	}
	if ex := api.task("POST", fmt.Sprintf("/nodes/%s/qemu/%d/status/start", vm1.TargetNode, vm1.VMID)); ex != "can't find file '"+userVolid+"'" {
		t.Errorf("start of vm-1 without %s: %q", userVolid, ex)
	}

	// One VM destroyed (-target): only it, and only its snippets.
	snippets := func() map[string]bool {
		out := map[string]bool{}
		for _, n := range inv.Lab.Proxmox.Nodes {
			ents, _ := os.ReadDir(sim.SnippetsDir(n.Name, inv.Lab.Proxmox.SnippetsStorage))
			for _, e := range ents {
				out[e.Name()] = true
			}
		}
		return out
	}
	out, errs = vmsRun("destroy", "--yes", "--node", "vm-6")
	if !strings.Contains(out, "VMs: 0 to create, 0 to update, 0 to REPLACE, 1 to DESTROY") || !strings.HasSuffix(out, "\n0 created, 0 changed, 1 destroyed\n") {
		t.Errorf("destroy --node vm-6:\n%s", out)
	}
	if !strings.Contains(errs, "snippets: 3 removed, 0 gone already, on 1 Proxmox hosts") {
		t.Errorf("destroy --node vm-6 did not remove its 3 snippets:\n%s", errs)
	}
	left := snippets()
	for _, vm := range sim.VMs() {
		if vm.Name == "vm-6" {
			t.Errorf("vm-6 (%d) still exists after destroy --node vm-6", vm.VMID)
		}
	}
	for name, v := range d.TFVars.VMs {
		for _, f := range strings.Split(v.CICustom, ",") {
			_, volid, _ := strings.Cut(f, "=")
			file := strings.TrimPrefix(volid, inv.Lab.Proxmox.SnippetsStorage+":snippets/")
			if gone := !left[file]; gone != (name == "vm-6" || volid == userVolid) {
				t.Errorf("after destroy --node vm-6, snippet %s of %s: gone %v", file, name, gone)
			}
		}
	}
	if got := len(sim.VMs()); got != 8+3 {
		t.Errorf("%d VMs and templates after destroy --node vm-6, want 8 VMs and 3 templates", got)
	}

	out, errs = vmsRun("destroy", "--yes")
	if !strings.Contains(out, "8 to DESTROY") {
		t.Errorf("destroy plan:\n%s", out)
	}
	if !strings.HasSuffix(out, "\n0 created, 0 changed, 8 destroyed\n") {
		t.Errorf("destroy's stdout does not end with what was applied:\n%s", out)
	}
	if !strings.Contains(errs, "snippets: 23 removed, 4 gone already, on 3 Proxmox hosts") {
		t.Errorf("destroy did not remove the other 23 snippets:\n%s", errs)
	}
	if left := snippets(); len(left) > 0 {
		t.Errorf("snippets left on the hosts after destroy: %v", left)
	}
	for _, vm := range sim.VMs() {
		if !vm.Template {
			t.Errorf("VM %s (%d) still exists after destroy", vm.Name, vm.VMID)
		}
	}
}

// simAPI calls the simulator like any PVE client.
type simAPI struct {
	t                 *testing.T
	url, caFile, auth string
}

// task runs a call that starts a task and returns the task's exit status.
func (a simAPI) task(method, path string) string {
	a.t.Helper()
	pem, err := os.ReadFile(a.caFile)
	if err != nil {
		a.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: time.Minute}
	defer hc.CloseIdleConnections()
	call := func(method, path string) any {
		req, err := http.NewRequestWithContext(a.t.Context(), method, a.url+path, nil)
		if err != nil {
			a.t.Fatal(err)
		}
		req.Header.Set("Authorization", a.auth)
		res, err := hc.Do(req)
		if err != nil {
			a.t.Fatal(err)
		}
		defer res.Body.Close()
		var body struct{ Data any }
		if err := json.NewDecoder(res.Body).Decode(&body); err != nil || res.StatusCode != http.StatusOK {
			a.t.Fatalf("%s %s: %s (%v)", method, path, res.Status, err)
		}
		return body.Data
	}
	upid, _ := call(method, path).(string)
	node := strings.Split(upid, ":")[1]
	for range 600 {
		st, _ := call("GET", "/nodes/"+node+"/tasks/"+url.PathEscape(upid)+"/status").(map[string]any)
		if st["status"] == "stopped" {
			ex, _ := st["exitstatus"].(string)
			return ex
		}
		time.Sleep(100 * time.Millisecond)
	}
	a.t.Fatalf("task %s did not end", upid)
	return ""
}

func mustRenderer(t *testing.T) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// seedSim gives the simulator the inventory's hosts, storages, one
// template per host with the lab template's hardware (proxmox.LabHardware)
// and a token with the provider's privileges on /.
func seedSim(t *testing.T, sim *pvesim.Sim, inv *inventory.Inventory, tokenID, secret string) {
	t.Helper()
	p := inv.Lab.Proxmox
	hw := proxmox.LabHardware(p)
	const gib = int64(1) << 30
	var nodes []string
	for _, n := range p.Nodes {
		sim.AddNode(n.Name, true)
		nodes = append(nodes, n.Name)
	}
	sim.AddStorage(pvesim.Storage{ID: p.SnippetsStorage, Type: "dir", Content: []string{"iso", "vztmpl", "backup", "import", "snippets"}, Total: 100 * gib, Path: "/var/lib/vz"})
	sim.AddStorage(pvesim.Storage{ID: p.Storage, Type: "lvmthin", Content: []string{"images", "rootdir"}, Total: 1000 * gib})
	for i, node := range nodes {
		id := 9000 + i
		disk := fmt.Sprintf("%s:base-%d-disk-0", hw.DiskStorage, id)
		ci := fmt.Sprintf("%s:vm-%d-cloudinit", hw.CloudInitStorage, id)
		sim.AddVolume(node, hw.DiskStorage, disk, 3*gib)
		sim.AddVolume(node, hw.CloudInitStorage, ci, 4<<20)
		err := sim.AddVM(pvesim.VM{Node: node, VMID: id, Name: p.Template, Template: true, Config: map[string]string{
			"scsihw": hw.SCSIHW, "bios": hw.BIOS, "boot": hw.Boot, "ostype": hw.OSType, "agent": "1",
			hw.DiskSlot: disk + ",size=3G", hw.CloudInitSlot: ci + ",media=cdrom",
			"serial0": hw.Serial0, "vga": hw.VGA, "net0": fmt.Sprintf("%s=BC:24:11:00:00:%02X,bridge=%s", hw.NetModel, i+1, hw.Bridge),
			"memory": strconv.Itoa(hw.Memory), "cores": strconv.Itoa(hw.Cores),
		}})
		if err != nil {
			t.Fatal(err)
		}
	}
	privs := []string{"Datastore.AllocateSpace", "Datastore.Audit", "Pool.Allocate", "Pool.Audit", "Sys.Audit", "Sys.Console",
		"Sys.Modify", "VM.Allocate", "VM.Audit", "VM.Clone", "VM.Config.CDROM", "VM.Config.Cloudinit", "VM.Config.CPU",
		"VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network", "VM.Config.Options", "VM.Migrate",
		"VM.PowerMgmt", "VM.Monitor", "VM.GuestAgent.Audit"}
	user, _, _ := strings.Cut(tokenID, "!")
	sim.AddUser(user, map[string][]string{"/": privs})
	sim.AddToken(tokenID, secret, false, nil)
}
