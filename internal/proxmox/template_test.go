package proxmox_test

import (
	"context"
	"crypto/sha512"
	"encoding/binary"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/preflight"
	"github.com/fhlab/provision/internal/proxmox"
	"github.com/fhlab/provision/internal/proxmox/pvetest"
	"github.com/fhlab/provision/internal/pvesim"
)

const templateLab = `apiVersion: provision/v1
kind: Lab
metadata: {name: tl}
network: {cidr: 198.51.100.0/24, gateway: 198.51.100.1, dns: [198.51.100.1]}
ssh: {user: provision, privateKeyFile: id_test, createKey: true}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1}
proxmox:
  apiURL: https://127.0.0.1:8006/api2/json
  nodes: [{name: pve1}, {name: pve2}, {name: pve3}]
  template: debian-12-cloudinit
  vmidStart: 4101
  vms:
    - {name: mgr-%d, count: 1, role: manager, disk: 8G, ipStart: 198.51.100.11}
    - {name: vm-%d,  count: 2, role: worker,  disk: 8G, ipStart: 198.51.100.21}
`

// qcow2Image is a small image with a valid qcow2 (v2) header of the given
// virtual size.
func qcow2Image(virtual uint64) []byte {
	h := make([]byte, 4096)
	copy(h, "QFI\xfb")
	binary.BigEndian.PutUint32(h[4:], 2)   // version
	binary.BigEndian.PutUint32(h[20:], 16) // cluster bits
	binary.BigEndian.PutUint64(h[24:], virtual)
	return h
}

type templateEnv struct {
	sim    *pvesim.Sim
	url    string
	ca     string
	inv    *inventory.Inventory
	spec   proxmox.TemplateSpec
	image  []byte
	gets   atomic.Int32 // image downloads served
	client func(t *testing.T) *proxmox.Client
}

// newTemplateEnv seeds a simulator from an inventory whose template has
// another name than the one `provision template` is asked to make, so no
// host has it yet; the image is served from loopback.
func newTemplateEnv(t *testing.T) *templateEnv {
	t.Helper()
	inv, err := inventory.Parse(filepath.Join(t.TempDir(), "lab.yaml"), []byte(templateLab), inventory.OSFS{})
	if err != nil {
		t.Fatal(err)
	}
	sim, err := pvesim.New(pvesim.Options{Cluster: "tl"})
	if err != nil {
		t.Fatal(err)
	}
	sec := strings.Join([]string{"a1b2", "c3d4", "tmpl"}, "-")
	if err := pvetest.Cluster(sim, inv, "provision@pve!tmpl", sec, pvetest.Seed{}); err != nil {
		t.Fatalf("seed: %v", err)
	}
	e := &templateEnv{sim: sim, inv: inv, image: qcow2Image(3 << 30)}
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/cloud/debian-12-genericcloud-amd64.qcow2" {
			http.NotFound(w, r)
			return
		}
		e.gets.Add(1)
		w.Write(e.image)
	}))
	t.Cleanup(img.Close)
	srv, err := pvetest.Serve(context.Background(), sim)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	e.url, e.ca = srv.URL, srv.CAFile
	sum := sha512.Sum512(e.image)
	e.spec = proxmox.TemplateSpec{
		Name: inv.Lab.Proxmox.Template, Hardware: proxmox.LabHardware(inv.Lab.Proxmox),
		Nodes: []string{"pve1", "pve2", "pve3"}, VMIDBase: 9100,
		ImageURL: img.URL + "/cloud/debian-12-genericcloud-amd64.qcow2", ImageSHA512: hex.EncodeToString(sum[:]),
		ImageStorage: "local", TaskTimeout: time.Minute, Concurrency: 4,
	}
	e.client = func(t *testing.T) *proxmox.Client {
		c, err := proxmox.New(proxmox.Config{BaseURL: e.url, TokenID: "provision@pve!tmpl", TokenSecret: sec, CAFile: e.ca, PollInterval: 10 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.Close)
		return c
	}
	return e
}

func (e *templateEnv) apply(t *testing.T, c *proxmox.Client) ([]proxmox.TemplateStep, []string, error) {
	t.Helper()
	ctx := context.Background()
	steps, err := proxmox.PlanTemplates(ctx, c, e.spec)
	if err != nil {
		t.Fatalf("plan: %v", err)
	}
	var mu sync.Mutex
	var lines []string
	err = proxmox.ApplyTemplates(ctx, c, e.spec, steps, func(node, msg string) {
		mu.Lock()
		lines = append(lines, node+": "+msg)
		mu.Unlock()
	})
	return steps, lines, err
}

func TestTemplateTwiceCreatesOnce(t *testing.T) {
	e := newTemplateEnv(t)

	c := e.client(t)
	steps, lines, err := e.apply(t, c)
	if err != nil {
		t.Fatalf("first run: %v\n%s", err, strings.Join(lines, "\n"))
	}
	for i, st := range steps {
		if st.Exists || !st.Download || st.Problem != nil || st.VMID != 9100+i {
			t.Errorf("first plan for %s: %+v", st.Node, st)
		}
	}
	if got := e.gets.Load(); got != 3 {
		t.Errorf("image fetched %d times, want once per host (local storage)", got)
	}
	// POSTs: download-url, create, template per host.
	if got := c.Calls().Post; got != 9 {
		t.Errorf("first run: %d POSTs, want 9", got)
	}
	made := 0
	for _, vm := range e.sim.VMs() {
		if vm.Name != "debian-12-cloudinit" {
			continue
		}
		made++
		if !vm.Template {
			t.Errorf("VM %d on %s is not a template", vm.VMID, vm.Node)
		}
	}
	if made != 3 {
		t.Fatalf("%d templates made, want 3", made)
	}

	// What it made passes preflight's template check.
	rep, err := preflight.Run(context.Background(), preflight.Options{Client: c, Inventory: e.inv})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rep.Find(preflight.CheckTemplate, "") {
		if !r.OK || r.Warning {
			t.Errorf("preflight on the made template: %+v", r)
		}
	}

	// Second run: nothing to do, no mutating call.
	c2 := e.client(t)
	e.sim.ResetCalls()
	steps, lines, err = e.apply(t, c2)
	if err != nil {
		t.Fatalf("second run: %v", err)
	}
	for i, st := range steps {
		if !st.Exists || st.VMID != 9100+i || !strings.Contains(st.String(), "nothing to do") {
			t.Errorf("second plan for %s: %+v", st.Node, st)
		}
	}
	if m := c2.Calls().Mutating(); m != 0 {
		t.Errorf("second run: %d mutating calls, want 0", m)
	}
	for _, call := range e.sim.Calls() {
		if call.Method != http.MethodGet {
			t.Errorf("second run sent %s %s", call.Method, call.Path)
		}
	}
	if len(lines) != 0 || e.gets.Load() != 3 {
		t.Errorf("second run: progress %q, %d image fetches", lines, e.gets.Load())
	}
}

func TestTemplateImageAlreadyThere(t *testing.T) {
	e := newTemplateEnv(t)
	e.sim.AddVolume("pve2", "local", "local:import/debian-12-genericcloud-amd64.qcow2", int64(len(e.image)))
	c := e.client(t)
	steps, _, err := e.apply(t, c)
	if err != nil {
		t.Fatal(err)
	}
	if steps[1].Download || !steps[0].Download {
		t.Errorf("plan: %+v", steps)
	}
	if got := e.gets.Load(); got != 2 {
		t.Errorf("image fetched %d times, want 2 (pve2 has it)", got)
	}
}

func TestTemplateChecksumMismatchFails(t *testing.T) {
	e := newTemplateEnv(t)
	e.spec.ImageSHA512 = strings.Repeat("0", 128)
	e.spec.Nodes = []string{"pve1"}
	c := e.client(t)
	_, _, err := e.apply(t, c)
	if err == nil || !strings.Contains(err.Error(), "template on pve1: download image: task download") {
		t.Fatalf("got %v, want the download task's failure named", err)
	}
	for _, vm := range e.sim.VMs() {
		if vm.Name == "debian-12-cloudinit" {
			t.Errorf("a VM was made after a failed download: %+v", vm)
		}
	}
}

func TestTemplatePlanProblemsChangeNothing(t *testing.T) {
	tests := []struct {
		name  string
		setup func(e *templateEnv)
		node  int
		want  string
	}{
		{"VMID taken", func(e *templateEnv) {
			e.sim.AddVM(pvesim.VM{Node: "pve3", VMID: 9101, Name: "someone-else", Config: map[string]string{"memory": "512"}})
		}, 1, "VMID 9101 is taken by \"someone-else\" on pve3"},
		{"not a template", func(e *templateEnv) {
			e.sim.AddVM(pvesim.VM{Node: "pve3", VMID: 777, Name: "debian-12-cloudinit", Config: map[string]string{"memory": "512"}})
		}, 2, "VM 777 on pve3 is named debian-12-cloudinit but is not a template"},
		{"image storage without import", func(e *templateEnv) { e.spec.ImageStorage = "local-lvm" }, 0, "does not allow import content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTemplateEnv(t)
			tt.setup(e)
			c := e.client(t)
			steps, err := proxmox.PlanTemplates(context.Background(), c, e.spec)
			if err != nil {
				t.Fatal(err)
			}
			if p := steps[tt.node].Problem; p == nil || !strings.Contains(p.Error(), tt.want) {
				t.Fatalf("problem for %s: got %v, want %q", steps[tt.node].Node, p, tt.want)
			}
			if m := c.Calls().Mutating(); m != 0 {
				t.Errorf("plan made %d mutating calls", m)
			}
		})
	}
}

func TestTemplateTaskFailureNamesNodeAndExitStatus(t *testing.T) {
	e := newTemplateEnv(t)
	e.spec.Nodes = []string{"pve1", "pve2"}
	e.sim.FailNextTask(func(typ, id string) bool { return typ == "qmcreate" && id == "9101" }, "storage 'local-lvm' is full")
	c := e.client(t)
	_, lines, err := e.apply(t, c)
	if err == nil || !strings.Contains(err.Error(), "template on pve2: create VM 9101: task qmcreate 9101 on pve2 failed: storage 'local-lvm' is full") {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(strings.Join(lines, "\n"), "pve2: failed: ") || !strings.Contains(strings.Join(lines, "\n"), "pve1: template debian-12-cloudinit ready (VMID 9100)") {
		t.Errorf("progress:\n%s", strings.Join(lines, "\n"))
	}
}

func TestWaitTaskTimeoutOnTheSimulator(t *testing.T) {
	e := newTemplateEnv(t)
	slow, err := pvesim.New(pvesim.Options{Cluster: "slow", TaskDuration: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	sec := strings.Join([]string{"5151", "slow"}, "-")
	if err := pvetest.Cluster(slow, e.inv, "provision@pve!slow", sec, pvetest.Seed{}); err != nil {
		t.Fatal(err)
	}
	srv, err := pvetest.Serve(context.Background(), slow)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	c, err := proxmox.New(proxmox.Config{BaseURL: srv.URL, TokenID: "provision@pve!slow", TokenSecret: sec, CAFile: srv.CAFile, PollInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	upid, err := c.DownloadURL(context.Background(), "pve1", "local", proxmox.Download{
		Content: "import", Filename: "debian-12-genericcloud-amd64.qcow2", URL: e.spec.ImageURL,
		Checksum: e.spec.ImageSHA512, ChecksumAlgorithm: "sha512",
	})
	if err != nil {
		t.Fatal(err)
	}
	err = c.WaitTask(context.Background(), upid, 150*time.Millisecond)
	if !proxmox.IsTaskTimeout(err) || !strings.Contains(err.Error(), "task download") || !strings.Contains(err.Error(), "still running after 150ms") {
		t.Fatalf("got %v, want a task timeout", err)
	}
	if c.Calls().Get < 2 {
		t.Errorf("polled %d times", c.Calls().Get)
	}
}

func TestTemplateSharedImageStorageDownloadsOnce(t *testing.T) {
	e := newTemplateEnv(t)
	e.sim.AddStorage(pvesim.Storage{ID: "images-nfs", Type: "nfs", Content: []string{"import", "iso"}, Shared: true, Total: 1 << 40, Path: "/mnt/pve/images-nfs"})
	e.spec.ImageStorage = "images-nfs"
	c := e.client(t)
	steps, lines, err := e.apply(t, c)
	if err != nil {
		t.Fatalf("%v\n%s", err, strings.Join(lines, "\n"))
	}
	if !strings.Contains(steps[2].String(), "(shared: once for all hosts)") {
		t.Errorf("plan: %s", steps[2])
	}
	if got := e.gets.Load(); got != 1 {
		t.Errorf("image fetched %d times, want once for a shared storage", got)
	}
	if got := c.Calls().Post; got != 7 {
		t.Errorf("%d POSTs, want 7 (one download, three creates, three conversions)", got)
	}
}

// Planning needs no checksum; applying a plan that downloads refuses to
// start without one, before any change.
func TestTemplateChecksumOnlyForADownload(t *testing.T) {
	e := newTemplateEnv(t)
	e.spec.ImageSHA512 = ""
	c := e.client(t)
	steps, err := proxmox.PlanTemplates(context.Background(), c, e.spec)
	if err != nil {
		t.Fatalf("plan without a checksum: %v", err)
	}
	if !proxmox.NeedsDownload(steps) {
		t.Fatalf("plan %+v: no download, want one per host", steps)
	}
	err = proxmox.ApplyTemplates(context.Background(), c, e.spec, steps, func(string, string) {})
	if err == nil || !strings.Contains(err.Error(), "a download needs the image's checksum") {
		t.Fatalf("apply without a checksum = %v", err)
	}
	if m := c.Calls().Mutating(); m != 0 || e.gets.Load() != 0 {
		t.Errorf("%d mutating calls, %d image fetches, want none", m, e.gets.Load())
	}

	e.sim.AddVolume("pve1", "local", "local:import/debian-12-genericcloud-amd64.qcow2", int64(len(e.image)))
	e.spec.Nodes = []string{"pve1"}
	steps, err = proxmox.PlanTemplates(context.Background(), c, e.spec)
	if err != nil {
		t.Fatal(err)
	}
	if proxmox.NeedsDownload(steps) {
		t.Errorf("the image is on pve1, yet the plan downloads it: %+v", steps)
	}
	if err := proxmox.ApplyTemplates(context.Background(), c, e.spec, steps, func(string, string) {}); err != nil {
		t.Errorf("apply from an image already there, without a checksum: %v", err)
	}
}
