package pvesim

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// raw calls a path with its query exactly as given (the provider's SDK
// does not escape query strings).
func (c *client) raw(method, pathAndQuery string, form url.Values) resp {
	c.t.Helper()
	return c.do(method, pathAndQuery, form)
}

func wantType(t *testing.T, what string, m map[string]any, key string, kind reflect.Kind) {
	t.Helper()
	v, ok := m[key]
	if !ok {
		t.Errorf("%s: %s missing in %v", what, key, m)
		return
	}
	if got := reflect.ValueOf(v).Kind(); got != kind {
		t.Errorf("%s: %s is %v (%#v), want %v", what, key, got, v, kind)
	}
}

func findVM(list []any, vmid float64) map[string]any {
	for _, e := range list {
		if m := e.(map[string]any); m["vmid"] == vmid {
			return m
		}
	}
	return nil
}

// TestTelmateSequence replays the provider's calls (reference §4):
// configure → clone by explicit vmid → config PUT → pending → start →
// read → stop → delete, checking the JSON types the SDK needs (§5).
func TestTelmateSequence(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	if err := AddTemplate(s, "pve1", 9000, "debian-12-cloudinit", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}
	if err := AddTemplate(s, "pve2", 9001, "debian-12-cloudinit", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}

	// Configure.
	users := c.ok("GET", "/access/users?full=1", nil).([]any)
	if users[0].(map[string]any)["userid"] != "tf@pve" {
		t.Fatalf("users %v", users)
	}
	perms := c.raw("GET", "/access/permissions?userid=tf@pve&path=/", nil)
	if perms.Code != 200 {
		t.Fatalf("permissions: %s", perms.Status)
	}
	root := perms.data().(map[string]any)["/"].(map[string]any)
	for _, p := range telmatePrivs {
		if root[p] != 1.0 {
			t.Errorf("permission %s = %v", p, root[p])
		}
	}

	// Create by clone with vmid 4101 on pve2: the template on pve2 is preferred.
	res := c.ok("GET", "/cluster/resources?type=vm", nil).([]any)
	if findVM(res, 4101) != nil {
		t.Fatal("4101 exists before the clone")
	}
	tmpl := findVM(res, 9001)
	for _, k := range []string{"vmid", "maxcpu", "maxmem", "template", "uptime"} {
		wantType(t, "resources", tmpl, k, reflect.Float64)
	}
	for _, k := range []string{"node", "name", "type", "status"} {
		wantType(t, "resources", tmpl, k, reflect.String)
	}
	upid := c.ok("POST", "/nodes/pve2/qemu/9001/clone", url.Values{"newid": {"4101"}, "name": {"mgr-1"},
		"target": {"pve2"}, "full": {"1"}})
	if !strings.HasPrefix(upid.(string), "UPID:pve2:") || !strings.Contains(upid.(string), ":qmclone:9001:tf@pve!sim:") {
		t.Errorf("clone UPID %v", upid)
	}
	st := c.ok("GET", "/nodes/pve2/tasks/"+upid.(string)+"/status", nil).(map[string]any)
	if st["status"] != "stopped" || st["exitstatus"] != "OK" {
		t.Fatalf("clone task %v", st)
	}
	for _, k := range []string{"pid", "pstart", "starttime"} {
		wantType(t, "task status", st, k, reflect.Float64)
	}
	for _, k := range []string{"upid", "node", "type", "id", "user"} {
		wantType(t, "task status", st, k, reflect.String)
	}

	// Update (step 7).
	cfg := c.ok("GET", "/nodes/pve2/qemu/4101/config", nil).(map[string]any)
	if cfg["scsi0"] != "local-lvm:vm-4101-disk-0,size=3G" || cfg["ide2"] != "local-lvm:vm-4101-cloudinit,media=cdrom" {
		t.Errorf("cloned disks: scsi0=%v ide2=%v", cfg["scsi0"], cfg["ide2"])
	}
	net0, _ := cfg["net0"].(string)
	if !strings.HasPrefix(net0, "virtio=BC:24:11:") || !strings.HasSuffix(net0, ",bridge=vmbr0") {
		t.Errorf("net0 %q", net0)
	}
	tmplCfg := c.ok("GET", "/nodes/pve2/qemu/9001/config", nil).(map[string]any)
	if tmplCfg["net0"] == net0 {
		t.Errorf("clone kept the template's MAC")
	}
	wantType(t, "config", cfg, "cores", reflect.Float64)
	wantType(t, "config", cfg, "memory", reflect.String)
	if _, ok := cfg["template"]; ok {
		t.Errorf("clone is a template: %v", cfg)
	}
	if vm := findVM(c.ok("GET", "/cluster/resources?type=vm", nil).([]any), 4101); vm == nil || vm["lock"] != nil {
		t.Fatalf("clone in resources: %v", vm)
	}
	if r := c.do("GET", "/cluster/ha/resources/4101", nil); r.Status != "500 no such resource 'vm:4101'" {
		t.Errorf("ha: %s", r.Status)
	}
	c.ok("GET", "/version", nil)
	up := c.ok("PUT", "/nodes/pve2/qemu/4101/resize", url.Values{"disk": {"scsi0"}, "size": {"33554432K"}})
	if ex := c.waitTask(up); ex != "OK" {
		t.Fatalf("resize: %s", ex)
	}
	put := url.Values{
		"agent": {"1"}, "bios": {"seabios"}, "boot": {"order=scsi0"}, "cores": {"2"}, "sockets": {"1"},
		"cpu": {"x86-64-v2-AES"}, "numa": {"0"}, "memory": {"4096"}, "balloon": {"0"},
		"description": {"Managed by Terraform."}, "hotplug": {"network,disk,usb"}, "kvm": {"1"},
		"ostype": {"l26"}, "scsihw": {"virtio-scsi-single"}, "onboot": {"0"}, "tablet": {"1"},
		"protection": {"0"}, "tags": {""}, "ciuser": {""}, "cicustom": {"user=local:snippets/mgr-1-user.yaml"},
		"ipconfig0": {"ip=10.10.0.11/24,gw=10.10.0.1"}, "nameserver": {"10.10.0.1"}, "searchdomain": {""},
		"ciupgrade": {"0"}, "net0": {net0 + ",firewall=0"}, "serial0": {"socket"},
		"scsi0": {"local-lvm:vm-4101-disk-0,iothread=1,size=32G"},
	}
	if r := c.do("PUT", "/nodes/pve2/qemu/4101/config", put); r.Code != 200 || r.Raw != `{"data":null}` {
		t.Fatalf("config PUT: %s %s", r.Status, r.Raw)
	}
	pending := c.ok("GET", "/nodes/pve2/qemu/4101/pending", nil).([]any)
	got := map[string]map[string]any{}
	for _, p := range pending {
		m := p.(map[string]any)
		got[m["key"].(string)] = m
		if m["pending"] != nil || m["delete"] != nil {
			t.Errorf("stopped VM has pending change %v", m)
		}
	}
	if got["scsi0"]["value"] != "local-lvm:vm-4101-disk-0,iothread=1,size=32G" {
		t.Errorf("scsi0 %v", got["scsi0"]["value"])
	}
	if got["net0"]["value"] != net0+",firewall=0" {
		t.Errorf("net0 %v", got["net0"]["value"])
	}
	wantType(t, "pending cores", got["cores"], "value", reflect.Float64)
	wantType(t, "pending onboot", got["onboot"], "value", reflect.Float64)
	wantType(t, "pending ciupgrade", got["ciupgrade"], "value", reflect.Float64)
	wantType(t, "pending memory", got["memory"], "value", reflect.String)
	if _, ok := got["tags"]; ok {
		t.Errorf("empty tags= set a value: %v", got["tags"])
	}

	// Start: refused like PVE while the cicustom snippet is missing.
	if ex := c.waitTask(c.ok("POST", "/nodes/pve2/qemu/4101/status/start", url.Values{})); ex != "can't find file 'local:snippets/mgr-1-user.yaml'" {
		t.Fatalf("start without the snippet: %s", ex)
	}
	s.AddVolume("pve2", "local", "local:snippets/mgr-1-user.yaml", 512)
	// Start, then a change to a running VM is pending.
	if ex := c.waitTask(c.ok("POST", "/nodes/pve2/qemu/4101/status/start", url.Values{})); ex != "OK" {
		t.Fatalf("start: %s", ex)
	}
	c.ok("PUT", "/nodes/pve2/qemu/4101/config", url.Values{"memory": {"8192"}, "name": {"mgr-1b"}})
	for _, p := range c.ok("GET", "/nodes/pve2/qemu/4101/pending", nil).([]any) {
		m := p.(map[string]any)
		switch m["key"] {
		case "memory":
			if m["value"] != "4096" || m["pending"] != "8192" {
				t.Errorf("memory pending %v", m)
			}
		case "name":
			if m["value"] != "mgr-1b" || m["pending"] != nil {
				t.Errorf("name is hot-pluggable: %v", m)
			}
		}
	}

	// Read.
	cur := c.ok("GET", "/nodes/pve2/qemu/4101/status/current", nil).(map[string]any)
	if cur["status"] != "running" || cur["qmpstatus"] != "running" || cur["vmid"] != 4101.0 || cur["name"] != "mgr-1b" {
		t.Errorf("status/current %v", cur)
	}
	wantType(t, "status", cur, "uptime", reflect.Float64)
	// PVE 9 wants VM.GuestAgent.Audit, which the provider's minimum set lacks.
	if r := c.do("GET", "/nodes/pve2/qemu/4101/agent/network-get-interfaces", nil); r.Status != "403 Permission check failed (/vms/4101, VM.GuestAgent.Audit|VM.GuestAgent.Unrestricted)" {
		t.Errorf("agent: %s", r.Status)
	}
	s.AddUser("tf@pve", map[string][]string{"/": append(telmatePrivs, "VM.GuestAgent.Audit")})
	if r := c.do("GET", "/nodes/pve2/qemu/4101/agent/network-get-interfaces", nil); r.Status != "500 QEMU guest agent is not running" {
		t.Errorf("agent: %s", r.Status)
	}

	// Destroy: running → refused like PVE, then stop and delete.
	if r := c.do("DELETE", "/nodes/pve2/qemu/4101", nil); r.Status != "500 VM 4101 is running - destroy failed" {
		t.Errorf("delete running VM: %s", r.Status)
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve2/qemu/4101/status/stop", url.Values{"overrule-shutdown": {"1"}})); ex != "OK" {
		t.Fatalf("stop: %s", ex)
	}
	if ex := c.waitTask(c.ok("DELETE", "/nodes/pve2/qemu/4101", nil)); ex != "OK" {
		t.Fatalf("delete: %s", ex)
	}
	if findVM(c.ok("GET", "/cluster/resources?type=vm", nil).([]any), 4101) != nil {
		t.Error("4101 still listed after delete")
	}
	if vols := s.Volumes("pve2", "local-lvm"); len(vols) != 2 {
		t.Errorf("volumes left on pve2: %v (want the template's two)", vols)
	}
	if r := c.do("GET", "/nodes/pve2/qemu/4101/config", nil); r.Status != "500 Configuration file 'nodes/pve2/qemu-server/4101.conf' does not exist" {
		t.Errorf("config of deleted VM: %s", r.Status)
	}
}

func TestCloneRules(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	if err := AddTemplate(s, "pve1", 9000, "tmpl", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}
	if r := c.do("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}, "target": {"pve2"}}); r.Status != "500 can't clone VM to node 'pve2' (VM uses local storage)" {
		t.Errorf("cross-node local clone: %s", r.Status)
	}
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}}))
	if r := c.do("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}}); r.Status != "500 unable to create VM 4101: config file already exists" {
		t.Errorf("second clone: %s", r.Status)
	}
	// A linked clone (full=0) of a template shares its base volume.
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4102"}, "full": {"0"}}))
	cfg := c.ok("GET", "/nodes/pve1/qemu/4102/config", nil).(map[string]any)
	if cfg["scsi0"] != "local-lvm:base-9000-disk-0/vm-4102-disk-0,size=3G" || cfg["name"] != "Copy-of-VM-tmpl" {
		t.Errorf("linked clone: %v %v", cfg["scsi0"], cfg["name"])
	}
	// Shared storage clones across nodes.
	s.AddStorage(Storage{ID: "nfs", Type: "nfs", Content: []string{"images"}, Shared: true, Total: 1 << 40})
	if err := s.AddVM(VM{Node: "pve1", VMID: 9500, Name: "shared", Template: true,
		Config: map[string]string{"scsi0": "nfs:9500/base-9500-disk-0.qcow2,size=3G"}}); err != nil {
		t.Fatal(err)
	}
	s.AddVolume("pve1", "nfs", "nfs:9500/base-9500-disk-0.qcow2", 3<<30)
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9500/clone", url.Values{"newid": {"4200"}, "target": {"pve3"}, "full": {"1"}}))
	vm, ok := s.VM(4200)
	if !ok || vm.Node != "pve3" || vm.Config["scsi0"] != "nfs:4200/vm-4200-disk-0.qcow2,format=qcow2,size=3G" {
		t.Errorf("cross-node shared clone: %+v", vm)
	}
	// nextid: a string, and a taken id is a parameter error.
	if got := c.ok("GET", "/cluster/nextid", nil); got != "100" {
		t.Errorf("nextid %#v", got)
	}
	r := c.do("GET", "/cluster/nextid", url.Values{"vmid": {"4101"}})
	if r.Status != "400 Parameter verification failed." || r.Body["errors"].(map[string]any)["vmid"] != "VM 4101 already exists" {
		t.Errorf("nextid taken: %s %s", r.Status, r.Raw)
	}
}

// qcow2 returns a minimal qcow2 header announcing a virtual size.
func qcow2(virtual uint64) []byte {
	b := make([]byte, 512)
	copy(b, "QFI\xfb")
	binary.BigEndian.PutUint32(b[4:], 3)
	binary.BigEndian.PutUint64(b[24:], virtual)
	return b
}

func TestTemplateFlow(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	image := qcow2(3 << 30)
	sum := sha256.Sum256(image)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debian-12-genericcloud-amd64.qcow2" {
			http.NotFound(w, r)
			return
		}
		_, _ = w.Write(image)
	}))
	t.Cleanup(srv.Close)

	download := func(u, checksum string) string {
		return c.waitTask(c.ok("POST", "/nodes/pve1/storage/local/download-url", url.Values{
			"content": {"import"}, "filename": {"debian-12-genericcloud-amd64.qcow2"}, "url": {u},
			"checksum": {checksum}, "checksum-algorithm": {"sha256"}}))
	}
	if ex := download(srv.URL+"/debian-12-genericcloud-amd64.qcow2", strings.Repeat("0", 64)); !strings.HasPrefix(ex, "checksum mismatch: got '"+hex.EncodeToString(sum[:])) {
		t.Errorf("bad checksum: %s", ex)
	}
	if ex := download("http://192.0.2.1/debian-12-genericcloud-amd64.qcow2", hex.EncodeToString(sum[:])); !strings.Contains(ex, "only loopback hosts") {
		t.Errorf("non-loopback download: %s", ex)
	}
	if ex := download(srv.URL+"/debian-12-genericcloud-amd64.qcow2", hex.EncodeToString(sum[:])); ex != "OK" {
		t.Fatalf("download: %s", ex)
	}
	content := c.ok("GET", "/nodes/pve1/storage/local/content", url.Values{"content": {"import"}}).([]any)
	if len(content) != 1 {
		t.Fatalf("content %v", content)
	}
	vol := content[0].(map[string]any)
	if vol["volid"] != "local:import/debian-12-genericcloud-amd64.qcow2" || vol["size"] != float64(3<<30) || vol["format"] != "qcow2" {
		t.Errorf("import volume %v", vol)
	}
	if got := s.Volumes("pve2", "local"); len(got) != 0 {
		t.Errorf("local storage of pve2 got %v", got)
	}

	create := url.Values{"vmid": {"9000"}, "name": {"debian-12-cloudinit"}, "memory": {"2048"}, "cores": {"2"},
		"scsihw": {"virtio-scsi-single"}, "bios": {"seabios"}, "boot": {"order=scsi0"}, "agent": {"1"},
		"ostype": {"l26"}, "serial0": {"socket"}, "vga": {"serial0"}, "net0": {"virtio,bridge=vmbr0"},
		"scsi0": {"local-lvm:0,import-from=local:import/debian-12-genericcloud-amd64.qcow2"},
		"ide2":  {"local-lvm:cloudinit"}}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu", create)); ex != "OK" {
		t.Fatalf("create: %s", ex)
	}
	if r := c.do("POST", "/nodes/pve1/qemu", create); r.Status != "500 unable to create VM 9000 - VM 9000 already exists on node 'pve1'" {
		t.Errorf("second create: %s", r.Status)
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/template", nil)); ex != "OK" {
		t.Fatalf("template: %s", ex)
	}
	r := c.do("POST", "/nodes/pve1/qemu/9000/template", nil)
	if r.Status != "500 you can't convert a template to a template" {
		t.Errorf("second template: %s", r.Status)
	}
	cfg := c.ok("GET", "/nodes/pve1/qemu/9000/config", nil).(map[string]any)
	want := TemplateConfig(9000, "debian-12-cloudinit", "local-lvm", "vmbr0", "")
	for k, v := range want {
		if k == "net0" {
			if n, _ := cfg[k].(string); !strings.HasPrefix(n, "virtio=BC:24:11:") || !strings.HasSuffix(n, ",bridge=vmbr0") {
				t.Errorf("net0 %v", cfg[k])
			}
			continue
		}
		if got := fmt.Sprint(cfg[k]); got != v {
			t.Errorf("template %s = %#v, want %q", k, cfg[k], v)
		}
	}
	// Bad drive syntax is refused as PVE refuses it.
	bad := url.Values{"vmid": {"9001"}, "scsi0": {"local-lvm:8,import-from=local:import/debian-12-genericcloud-amd64.qcow2"}}
	r = c.do("POST", "/nodes/pve1/qemu", bad)
	if r.Status != "400 Parameter verification failed." ||
		r.Body["errors"].(map[string]any)["scsi0"] != "'import-from' requires special syntax - use <storage ID>:0,import-from=<source>" {
		t.Errorf("import-from with a size: %s %s", r.Status, r.Raw)
	}
	missing := url.Values{"vmid": {"9001"}, "scsi0": {"local-lvm:0,import-from=local:import/nope.qcow2"}}
	if r := c.do("POST", "/nodes/pve1/qemu", missing); r.Status != "500 volume local:import/nope.qcow2 does not exist" {
		t.Errorf("missing import volume: %s", r.Status)
	}
}

func TestLocksAndTaskHooks(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{TaskDuration: 400 * time.Millisecond, LockTimeout: 50 * time.Millisecond})
	if err := AddTemplate(s, "pve1", 9000, "tmpl", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}
	upid := c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}, "name": {"a"}})
	// During the copy the new VM is listed with lock clone, and its config lock is taken.
	vm := findVM(c.ok("GET", "/cluster/resources?type=vm", nil).([]any), 4101)
	if vm == nil || vm["lock"] != "clone" {
		t.Errorf("VM during clone: %v", vm)
	}
	if r := c.do("PUT", "/nodes/pve1/qemu/4101/config", url.Values{"cores": {"4"}}); r.Status != "500 can't lock file '/var/lock/qemu-server/lock-4101.conf' - got timeout" {
		t.Errorf("config during clone: %s", r.Status)
	}
	if ex := c.waitTask(upid); ex != "OK" {
		t.Fatalf("clone: %s", ex)
	}
	c.ok("PUT", "/nodes/pve1/qemu/4101/config", url.Values{"cores": {"4"}})

	// A config lock left in the config refuses changes like PVE's check_lock.
	if err := s.AddVM(VM{Node: "pve1", VMID: 4102, Name: "b", Lock: "backup"}); err != nil {
		t.Fatal(err)
	}
	if r := c.do("PUT", "/nodes/pve1/qemu/4102/config", url.Values{"cores": {"4"}}); r.Status != "500 VM is locked (backup)" {
		t.Errorf("locked VM: %s", r.Status)
	}

	// The failure hook fails the next matching task with its message.
	s.FailNextTask(func(typ, id string) bool { return typ == "qmstart" && id == "4101" }, "start failed: QEMU exited with code 1")
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/status/start", nil)); ex != "start failed: QEMU exited with code 1" {
		t.Errorf("failed start: %q", ex)
	}
	if vm, _ := s.VM(4101); vm.Running {
		t.Error("VM runs after a failed start")
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/status/start", nil)); ex != "OK" {
		t.Errorf("second start: %q", ex)
	}
	log := c.ok("GET", "/nodes/pve1/tasks/"+upid.(string)+"/log", nil).([]any)
	if last := log[len(log)-1].(map[string]any); last["t"] != "TASK OK" || last["n"] != float64(len(log)) {
		t.Errorf("task log %v", log)
	}
}

func TestHooksAndAgent(t *testing.T) {
	t.Parallel()
	var started []VMEvent
	opts := Options{
		OnStart: func(_ context.Context, vm VMEvent) error { started = append(started, vm); return nil },
		Agent: func(_ context.Context, vm VMEvent) ([]AgentInterface, error) {
			return []AgentInterface{{Name: "eth0", HardwareAddress: "BC:24:11:00:00:01", Addresses: []netip.Prefix{vm.IP}}}, nil
		},
	}
	s, c := newTestSim(t, opts)
	s.AddUser("tf@pve", map[string][]string{"/": append(telmatePrivs, "VM.GuestAgent.Audit")})
	if err := s.AddVM(VM{Node: "pve1", VMID: 4101, Name: "mgr-1", Config: map[string]string{
		"agent": "1", "ipconfig0": "ip=10.10.0.11/24,gw=10.10.0.1"}}); err != nil {
		t.Fatal(err)
	}
	if r := c.do("GET", "/nodes/pve1/qemu/4101/agent/network-get-interfaces", nil); r.Status != "500 VM 4101 is not running" {
		t.Errorf("agent of stopped VM: %s", r.Status)
	}
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/status/start", nil))
	if len(started) != 1 || started[0].IP.String() != "10.10.0.11/24" || started[0].Gateway != "10.10.0.1" || started[0].Name != "mgr-1" {
		t.Errorf("OnStart events %+v", started)
	}
	res := c.ok("GET", "/nodes/pve1/qemu/4101/agent/network-get-interfaces", nil).(map[string]any)
	ifs := res["result"].([]any)
	eth0 := ifs[0].(map[string]any)
	addr := eth0["ip-addresses"].([]any)[0].(map[string]any)
	if eth0["hardware-address"] != "bc:24:11:00:00:01" || addr["ip-address"] != "10.10.0.11" || addr["prefix"] != 24.0 || addr["ip-address-type"] != "ipv4" {
		t.Errorf("agent answer %v", res)
	}
	if err := s.AddVM(VM{Node: "pve1", VMID: 4102, Name: "b", Running: true}); err != nil {
		t.Fatal(err)
	}
	if r := c.do("GET", "/nodes/pve1/qemu/4102/agent/network-get-interfaces", nil); r.Status != "500 No QEMU guest agent configured" {
		t.Errorf("agent off: %s", r.Status)
	}
}

// TestCICustomAtStart: a VM with its cloud-init drive starts only when
// every cicustom volume can be read, as PVE's vm_start regenerates the
// cloud-init ISO from them; the task fails with pve-storage's message.
func TestCICustomAtStart(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	root := t.TempDir()
	s.SetNodeDir("pve1", root)
	if got, want := s.SnippetsDir("pve1", "local"), filepath.Join(root, "var/lib/vz/snippets"); got != want {
		t.Fatalf("SnippetsDir = %q, want %q", got, want)
	}
	if err := os.MkdirAll(s.SnippetsDir("pve1", "local"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(s.SnippetsDir("pve1", "local"), "a-user.yaml"), []byte("#cloud-config\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(s.SnippetsDir("pve1", "local"), "dir.yaml"), 0o755); err != nil {
		t.Fatal(err)
	}
	s.AddVolume("pve2", "local", "local:snippets/known.yaml", 100)
	ci := func(vmid int) string { return fmt.Sprintf("local-lvm:vm-%d-cloudinit,media=cdrom", vmid) }
	for i, tc := range []struct {
		node     string
		cicustom string
		noCIDisk bool
		want     string
	}{
		{"pve1", "user=local:snippets/a-user.yaml", false, "OK"}, // uploaded into the node's directory
		{"pve1", "user=local:snippets/a-user.yaml,network=local:snippets/a-net.yaml", false, "can't find file 'local:snippets/a-net.yaml'"},
		{"pve1", "user=local:snippets/b-user.yaml", false, "can't find file 'local:snippets/b-user.yaml'"},      // missing
		{"pve1", "user=local:snippets/dir.yaml", false, "can't find file 'local:snippets/dir.yaml'"},            // not a regular file
		{"pve2", "user=local:snippets/a-user.yaml", false, "can't find file 'local:snippets/a-user.yaml'"},      // another node's file
		{"pve2", "user=local:snippets/known.yaml", false, "OK"},                                                 // AddVolume
		{"pve1", "user=local:iso/a-user.yaml", false, "local:iso/a-user.yaml is not in the snippets directory"}, // wrong directory
		{"pve1", "user=nfs1:snippets/a-user.yaml", false, "storage 'nfs1' does not exist"},
		{"pve1", "user=local:snippets/b-user.yaml", true, "OK"}, // no cloud-init drive: nothing is generated
	} {
		vmid := 4200 + i
		conf := map[string]string{"cicustom": tc.cicustom}
		if !tc.noCIDisk {
			conf["ide2"] = ci(vmid)
		}
		if err := s.AddVM(VM{Node: tc.node, VMID: vmid, Name: fmt.Sprintf("v%d", i), Config: conf}); err != nil {
			t.Fatal(err)
		}
		ex := c.waitTask(c.ok("POST", fmt.Sprintf("/nodes/%s/qemu/%d/status/start", tc.node, vmid), nil))
		if ex != tc.want {
			t.Errorf("%s %q: start = %q, want %q", tc.node, tc.cicustom, ex, tc.want)
		}
		if vm, _ := s.VM(vmid); vm.Running != (tc.want == "OK") {
			t.Errorf("%s %q: running %v after %q", tc.node, tc.cicustom, vm.Running, ex)
		}
	}

	// A pending cicustom of a running VM is what the next start reads
	// (vm_start applies pending changes first): a reboot fails on it.
	if err := s.AddVM(VM{Node: "pve1", VMID: 4300, Name: "p", Running: true, Config: map[string]string{
		"cicustom": "user=local:snippets/a-user.yaml", "ide2": ci(4300)}}); err != nil {
		t.Fatal(err)
	}
	c.ok("PUT", "/nodes/pve1/qemu/4300/config", url.Values{"cicustom": {"user=local:snippets/gone.yaml"}})
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4300/status/reboot", nil)); ex != "can't find file 'local:snippets/gone.yaml'" {
		t.Errorf("reboot with a missing pending snippet: %q", ex)
	}
}
