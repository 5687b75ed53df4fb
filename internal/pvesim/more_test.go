package pvesim

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
)

func TestTicketLogin(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	pw := strings.Join([]string{"pass", "word"}, "-")
	s.SetPassword("tf@pve", pw)
	c.auth = ""
	if r := c.do("POST", "/access/ticket", url.Values{"username": {"tf@pve"}, "password": {"nope"}}); r.Status != "401 authentication failure" {
		t.Errorf("wrong password: %s", r.Status)
	}
	login := c.ok("POST", "/access/ticket", url.Values{"username": {"tf"}, "realm": {"pve"}, "password": {pw}}).(map[string]any)
	ticket, csrf := login["ticket"].(string), login["CSRFPreventionToken"].(string)
	if login["username"] != "tf@pve" || !strings.HasPrefix(ticket, "PVE:tf@pve:") || csrf == "" {
		t.Fatalf("login %v", login)
	}
	c.auth = "PVEAuthCookie=" + ticket
	c.ok("GET", "/version", nil)
	// Writes need the CSRF token.
	if r := c.do("POST", "/nodes/pve1/qemu", url.Values{"vmid": {"100"}}); r.Status != "401 Permission denied - invalid csrf token" {
		t.Errorf("POST without CSRF token: %s", r.Status)
	}
	c.header = http.Header{"Csrfpreventiontoken": {csrf}}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu", url.Values{"vmid": {"100"}})); ex != "OK" {
		t.Errorf("create with ticket: %s", ex)
	}
	// Some methods refuse API tokens.
	c.auth, c.header = "PVEAPIToken="+testTokenID+"="+testSecret(), nil
	if r := c.do("PUT", "/access/password", url.Values{"userid": {"tf@pve"}, "password": {"abcdefgh"}}); !strings.HasPrefix(r.Status, "403 Permission check failed (URI '/access/password' not available with API token") {
		t.Errorf("token on a ticket-only method: %s", r.Status)
	}
}

func TestSnapshotRestore(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	if err := AddTemplate(s, "pve1", 9000, "tmpl", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}, "name": {"a"}, "full": {"1"}}))
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/status/start", nil))
	c.ok("PUT", "/nodes/pve1/qemu/4101/config", url.Values{"cores": {"3"}, "delete": {"serial0"}})
	s.SetNodeOnline("pve3", false)
	data, err := MarshalSnapshot(s.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), testSecret()) {
		t.Fatal("snapshot holds the token secret")
	}
	s2 := newChecked(t)
	s2.AddUser("tf@pve", map[string][]string{"/": telmatePrivs})
	s2.AddToken(testTokenID, testSecret(), false, nil)
	snap, err := UnmarshalSnapshot(data)
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Restore(snap); err != nil {
		t.Fatal(err)
	}
	vm, ok := s2.VM(4101)
	if !ok || !vm.Running || vm.Pending["cores"] != "3" || vm.Config["scsi0"] != "local-lvm:vm-4101-disk-0,size=3G" {
		t.Errorf("restored VM %+v", vm)
	}
	if got := s2.Volumes("pve1", "local-lvm"); len(got) != 4 {
		t.Errorf("restored volumes %v", got)
	}
	c2 := serve(t, s2, false)
	if !strings.HasPrefix(c2.base, "http://127.0.0.1:") {
		t.Errorf("plain HTTP URL %s", c2.base)
	}
	pend := c2.ok("GET", "/nodes/pve1/qemu/4101/pending", nil).([]any)
	found := false
	for _, p := range pend {
		if m := p.(map[string]any); m["key"] == "serial0" && m["delete"] == 1.0 {
			found = true
		}
	}
	if !found {
		t.Errorf("pending delete of serial0 lost: %v", pend)
	}
	if r := c2.do("GET", "/nodes/pve3/status", nil); r.Status != "595 No route to host" {
		t.Errorf("offline node after restore: %s", r.Status)
	}
	if err := s2.Restore(Snapshot{VMs: []SnapshotVM{{Node: "nowhere", VMID: 100}}}); err == nil {
		t.Error("restore accepted a VM on an unknown node")
	}
}

func TestPlaceholderDownloads(t *testing.T) {
	t.Parallel()
	_, c := newTestSim(t, Options{PlaceholderDownloads: true,
		Download: func(context.Context, string) (io.ReadCloser, error) {
			t.Error("Download called for a placeholder")
			return nil, nil
		}})
	ex := c.waitTask(c.ok("POST", "/nodes/pve1/storage/local/download-url", url.Values{"content": {"import"},
		"filename": {"debian 12.qcow2"}, "url": {"https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"},
		"checksum": {"00"}, "checksum-algorithm": {"sha512"}}))
	if ex != "OK" {
		t.Fatalf("placeholder download: %s", ex)
	}
	content := c.ok("GET", "/nodes/pve1/storage/local/content", nil).([]any)
	v := content[0].(map[string]any)
	if v["volid"] != "local:import/debian_12.qcow2" || v["size"] != float64(TemplateDisk) {
		t.Errorf("placeholder volume %v", v)
	}
	// download-url needs a file storage configured for the content.
	r := c.do("POST", "/nodes/pve1/storage/local-lvm/download-url", url.Values{"content": {"iso"}, "filename": {"a.iso"}, "url": {"http://127.0.0.1:1/a.iso"}})
	if r.Status != "500 can't upload to storage type 'lvmthin', not a file based storage!" {
		t.Errorf("download to lvmthin: %s", r.Status)
	}
	r = c.do("POST", "/nodes/pve1/storage/local/download-url", url.Values{"content": {"iso"}, "filename": {"a.qcow2"}, "url": {"http://127.0.0.1:1/a.iso"}})
	if r.Status != "400 Parameter verification failed." || r.Body["errors"].(map[string]any)["filename"] != "wrong file extension" {
		t.Errorf("iso with a qcow2 name: %s %s", r.Status, r.Raw)
	}
}

func TestVMOperations(t *testing.T) {
	t.Parallel()
	s, c := newTestSim(t, Options{})
	if err := AddTemplate(s, "pve1", 9000, "tmpl", "local-lvm", "vmbr0"); err != nil {
		t.Fatal(err)
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/status/start", nil)); ex != "you can't start a vm if it's a template" {
		t.Errorf("start template: %s", ex)
	}
	// A template's clone is linked unless full=1, as in PVE.
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4101"}, "name": {"a"}}))
	// POST config is a task.
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/config", url.Values{"scsi1": {"local-lvm:2"}, "protection": {"1"}})); ex != "OK" {
		t.Fatalf("POST config: %s", ex)
	}
	vm, _ := s.VM(4101)
	if vm.Config["scsi1"] != "local-lvm:vm-4101-disk-1,size=2G" {
		t.Errorf("new disk %q", vm.Config["scsi1"])
	}
	if r := c.do("DELETE", "/nodes/pve1/qemu/4101", nil); r.Status != "500 can't remove VM 4101 - protection mode enabled" {
		t.Errorf("delete protected: %s", r.Status)
	}
	c.ok("PUT", "/nodes/pve1/qemu/4101/config", url.Values{"delete": {"protection,scsi1"}})
	vm, _ = s.VM(4101)
	if vm.Config["scsi0"] != "local-lvm:base-9000-disk-0/vm-4101-disk-0,size=3G" || vm.Config["unused0"] != "local-lvm:vm-4101-disk-1" || vm.Config["protection"] != "" {
		t.Errorf("after delete=scsi1: %v", vm.Config)
	}
	if ex := c.waitTask(c.ok("PUT", "/nodes/pve1/qemu/4101/resize", url.Values{"disk": {"scsi0"}, "size": {"2G"}})); ex != "shrinking disks is not supported" {
		t.Errorf("shrink: %s", ex)
	}
	if ex := c.waitTask(c.ok("PUT", "/nodes/pve1/qemu/4101/resize", url.Values{"disk": {"scsi0"}, "size": {"+1G"}})); ex != "OK" {
		t.Errorf("grow: %s", ex)
	}
	s.AddStorage(Storage{ID: "nfs", Type: "nfs", Content: []string{"images"}, Shared: true, Total: 1 << 40, Path: "/mnt/pve/nfs"})
	if r := c.do("POST", "/nodes/pve1/qemu/4101/move_disk", url.Values{"disk": {"scsi0"}, "storage": {"local-lvm"}}); r.Status != "500 you can't move to the same storage with same format" {
		t.Errorf("move to same storage: %s", r.Status)
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/move_disk", url.Values{"disk": {"scsi0"}, "storage": {"nfs"}, "delete": {"1"}})); ex != "OK" {
		t.Fatalf("move_disk: %s", ex)
	}
	vm, _ = s.VM(4101)
	if vm.Config["scsi0"] != "nfs:4101/vm-4101-disk-0.qcow2,format=qcow2,size=4G" {
		t.Errorf("moved disk %q", vm.Config["scsi0"])
	}
	if ex := c.waitTask(c.ok("POST", "/nodes/pve1/qemu/4101/status/shutdown", nil)); ex != "VM 4101 not running" {
		t.Errorf("shutdown stopped VM: %s", ex)
	}
	// Deleting the template while a linked clone uses its base volume fails.
	c.waitTask(c.ok("POST", "/nodes/pve1/qemu/9000/clone", url.Values{"newid": {"4102"}, "full": {"0"}}))
	if ex := c.waitTask(c.ok("DELETE", "/nodes/pve1/qemu/9000", nil)); !strings.HasPrefix(ex, "base volume 'local-lvm:base-9000-disk-0/vm-4102-disk-0' is still in use by linked clone 4102") {
		t.Errorf("delete template with a linked clone: %s", ex)
	}
	calls := s.Calls()
	if len(calls) == 0 || calls[len(calls)-1].Method != "GET" || !strings.HasSuffix(calls[len(calls)-1].Path, "/status") {
		t.Errorf("calls %v", calls[len(calls)-1])
	}
	s.ResetCalls()
	if len(s.Calls()) != 0 {
		t.Error("ResetCalls kept calls")
	}
}

// TestLabTokenPrivilegesFresh: every call returns its own slice, so a
// caller changing one cannot change what Seed grants.
func TestLabTokenPrivilegesFresh(t *testing.T) {
	t.Parallel()
	a := LabTokenPrivileges()
	a[0] = "Sys.PowerMgmt"
	if b := LabTokenPrivileges(); b[0] != "Datastore.AllocateSpace" || !slices.Contains(b, "VM.GuestAgent.Audit") {
		t.Errorf("LabTokenPrivileges() = %v after a caller changed its copy", b)
	}
}

// TestHookErrorsWrapped: an OnStart/OnStop error keeps its chain.
func TestHookErrorsWrapped(t *testing.T) {
	t.Parallel()
	boom := errors.New("lab node down")
	hook := func(context.Context, VMEvent) error { return boom }
	s, err := New(Options{OnStart: hook, OnStop: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	v := &simVM{vmid: 100, conf: map[string]string{}}
	if err := s.startVM(t.Context(), v, VMEvent{VMID: 100}); !errors.Is(err, boom) || err.Error() != "start failed: lab node down" {
		t.Errorf("startVM: %v", err)
	}
	if err := s.stopVM(t.Context(), v); !errors.Is(err, boom) || err.Error() != "stop failed: lab node down" {
		t.Errorf("stopVM: %v", err)
	}
}
