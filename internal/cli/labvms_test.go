package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/labtest"
)

// TestEndToEndVMsThroughSimulator runs the VM path of the lab's life on
// the emulated lab, where a Telmate provider mirror is given: pve-sim
// --lab --sftp serves the Proxmox API, and a VM's lab node exists only
// once Terraform made and started the VM. apply goes from nothing to a
// verified swarm; a second apply makes no changing call to the Proxmox
// API or the engines (counted: the simulator logs every request, apply
// counts the engine calls) outside verify's own test service; destroy
// takes the nodes out of the swarm, destroys the VMs and their snippets;
// lab down then leaves nothing.
func TestEndToEndVMsThroughSimulator(t *testing.T) {
	mirror := providerMirror(t)
	labtest.Require(t)
	requireTerraform(t)
	requireSSHD(t)
	f := labtest.New(t, t.TempDir(), &bytes.Buffer{})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	invName := fmt.Sprintf("pv%s.yaml", strings.TrimPrefix(f.Lab.Prefix(), "pls"))
	f.Inventory(t, invName, "    - {name: mgr-%d, count: 1, role: manager, cores: 1, memory: 1024, ipStart: {{ADDR 11}}}\n"+
		"    - {name: vm-%d, count: 2, cores: 1, memory: 1024, ipStart: {{ADDR 21}}}", "")
	inv := filepath.Join(f.Dir, invName)
	ports := freePorts(t, 4)
	text, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(text), "  apiURL: https://127.0.0.1:8006/api2/json\n",
		fmt.Sprintf("  apiURL: https://127.0.0.1:%d/api2/json\n  insecure: true\n", ports[0]), 1)
	edited = strings.Replace(edited, "nodes: [{name: pve1}, {name: pve2}, {name: pve3}]",
		fmt.Sprintf("nodes: [{name: pve1, address: 127.0.0.1, sshPort: %d}, {name: pve2, address: 127.0.0.1, sshPort: %d}, {name: pve3, address: 127.0.0.1, sshPort: %d}]", ports[1], ports[2], ports[3]), 1)
	if err := os.WriteFile(inv, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PM_API_TOKEN_ID", "provision@pve!terraform")
	t.Setenv("PM_API_TOKEN_SECRET", "sim-"+strings.Repeat("7", 12))
	state, simState := filepath.Join(f.Dir, "state"), filepath.Join(f.Dir, "sim-state")
	t.Cleanup(func() {
		if code, out, errs := run(t, "lab", "down", "-i", inv, "--state-dir", state); code != 0 {
			t.Errorf("lab down: exit %d\n%s\n%s", code, out, errs)
		}
	})

	// The simulator, as an admin runs it, until the test ends.
	simCtx, stopSim := context.WithCancel(context.Background())
	simDone := make(chan string, 1)
	go func() {
		var out, errb lockedBuffer
		code := Run(simCtx, []string{"pve-sim", "-i", inv, "--state-dir", simState, "--listen", fmt.Sprintf("127.0.0.1:%d", ports[0]),
			"--lab", "--sftp", "--sftp-root", sftpRoot(t), "-vv"}, Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		simDone <- fmt.Sprintf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}()
	t.Cleanup(func() {
		stopSim()
		if res := <-simDone; !strings.HasPrefix(res, "exit 0") {
			t.Errorf("pve-sim: %s", res)
		}
	})
	waitListening(t, fmt.Sprintf("127.0.0.1:%d", ports[0]), simDone)
	mutating := func() int { return simMutations(t, filepath.Join(simState, "provision.log")) }

	if left := labOf(t, inv).Leftovers(); len(left) > 0 {
		t.Fatalf("the lab exists before terraform made a VM: %v", left)
	}
	apply := []string{"apply", "-i", inv, "--state-dir", state, "--only", "validate,render,vms,discover,swarm,verify", "--yes", "--terraform-mirror", mirror}
	must := func(args ...string) (string, string) {
		t.Helper()
		code, out, errs := run(t, args...)
		if code != 0 {
			t.Fatalf("provision %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
		}
		return out, errs
	}
	out, errs := must(apply...)
	for _, want := range []string{"VMs: 3 to create, 0 to update, 0 to REPLACE, 0 to DESTROY", "3 created, 0 changed, 0 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply's output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"snippets: 9 written, 0 unchanged, on 3 Proxmox hosts", "3 of 3 nodes answer over SSH", "✓ verify"} {
		if !strings.Contains(errs, want) {
			t.Errorf("first apply's progress lacks %q:\n%s", want, errs)
		}
	}
	status, _ := must("lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(status, "3 of 3 nodes up") {
		t.Errorf("lab status after apply:\n%s", status)
	}

	// The second apply changes nothing: no changing Proxmox API call (the
	// simulator's log), no changing engine call outside verify's.
	before := mutating()
	out, errs = must(apply...)
	if n := mutating() - before; n != 0 {
		t.Errorf("the second apply made %d changing Proxmox API calls", n)
	}
	if got := changingCalls(out); !strings.HasPrefix(got, "verify ") {
		t.Errorf("the second apply made changing engine calls outside verify: %q", got)
	}
	for _, want := range []string{"0 to create, 0 to update, 0 to REPLACE, 0 to DESTROY, 3 unchanged", "0 created, 0 changed, 0 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("second apply's output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"snippets: 0 written, 9 unchanged", "the swarm already matches the inventory: nothing changed"} {
		if !strings.Contains(errs, want) {
			t.Errorf("second apply's progress lacks %q:\n%s", want, errs)
		}
	}

	// destroy: out of the swarm, VMs and snippets gone; the VMs' stop cut
	// their nodes' power; lab down leaves nothing.
	out, errs = must("destroy", "-i", inv, "--state-dir", state, "--yes", "--terraform-mirror", mirror)
	for _, want := range []string{"3 to DESTROY", "0 created, 0 changed, 3 destroyed", "destroyed: 3 nodes left the swarm, 3 VMs destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("destroy's output lacks %q:\n%s\n%s", want, out, errs)
		}
	}
	if !strings.Contains(errs, "snippets: 9 removed, 0 gone already, on 3 Proxmox hosts") {
		t.Errorf("destroy did not remove the snippets:\n%s", errs)
	}
	out, _ = must("vms", "plan", "-i", inv, "--state-dir", state, "--terraform-mirror", mirror)
	if !strings.Contains(out, "VMs: 3 to create, 0 to update, 0 to REPLACE, 0 to DESTROY, 0 unchanged") {
		t.Errorf("vms plan after destroy: the VMs are not all gone:\n%s", out)
	}
	status, _ = must("lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(status, "0 of 3 nodes up") {
		t.Errorf("lab status after destroy: the destroyed VMs' nodes still run:\n%s", status)
	}
	must("lab", "down", "-i", inv, "--state-dir", state)
	for _, left := range labOf(t, inv).Leftovers() {
		t.Errorf("left after destroy and lab down: %s", left)
	}
}

// waitListening waits until the simulator answers a TLS handshake at addr
// (its certificate is not checked: only whether it is up), or fails the
// test with what it said if it ended first.
func waitListening(t *testing.T, addr string, done chan string) {
	t.Helper()
	for range 300 {
		d := &net.Dialer{Timeout: time.Second}
		if c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
			return
		}
		select {
		case res := <-done:
			t.Fatalf("pve-sim ended: %s", res)
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatalf("nothing listens at %s after 30 s", addr)
}

// simRequest is a request the simulator logged (at debug).
var simRequest = regexp.MustCompile(`msg="pvesim: request" method=(POST|PUT|DELETE) `)

// simMutations counts the changing requests in the simulator's log.
func simMutations(t *testing.T, log string) int {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	return len(simRequest.FindAll(data, -1))
}
