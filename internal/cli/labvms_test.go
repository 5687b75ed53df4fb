package cli

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/fhlab/provision/internal/lab"
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
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3, ingress: {enabled: false}}"
	invName := fmt.Sprintf("pv%s.yaml", strings.TrimPrefix(f.Lab.Prefix(), "pls"))
	f.Inventory(t, invName, "    - {name: mgr-%d, count: 3, role: manager, cores: 1, memory: 1024, ipStart: {{ADDR 11}}}\n"+
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
	out, errs := mustRun(t, apply...)
	for _, want := range []string{"VMs: 5 to create, 0 to update, 0 to REPLACE, 0 to DESTROY", "5 created, 0 changed, 0 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("first apply's output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"snippets: 15 written, 0 unchanged, on 3 Proxmox hosts", "5 of 5 nodes answer over SSH", "✓ verify"} {
		if !strings.Contains(errs, want) {
			t.Errorf("first apply's progress lacks %q:\n%s", want, errs)
		}
	}
	status, _ := mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(status, "5 of 5 nodes up") {
		t.Errorf("lab status after apply:\n%s", status)
	}

	// The second apply changes nothing: no changing Proxmox API call (the
	// simulator's log), no changing engine call outside verify's.
	before := mutating()
	out, errs = mustRun(t, apply...)
	if n := mutating() - before; n != 0 {
		t.Errorf("the second apply made %d changing Proxmox API calls", n)
	}
	if got := changingCalls(out); !strings.HasPrefix(got, "verify ") {
		t.Errorf("the second apply made changing engine calls outside verify: %q", got)
	}
	for _, want := range []string{"0 to create, 0 to update, 0 to REPLACE, 0 to DESTROY, 5 unchanged", "0 created, 0 changed, 0 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("second apply's output lacks %q:\n%s", want, out)
		}
	}
	for _, want := range []string{"snippets: 0 written, 15 unchanged", "the swarm already matches the inventory: nothing changed"} {
		if !strings.Contains(errs, want) {
			t.Errorf("second apply's progress lacks %q:\n%s", want, errs)
		}
	}

	// More memory for every VM: the provider would reboot all five at once.
	// The roll goes one failure domain at a time while a service published
	// on every node keeps answering.
	rollAndProbe(t, inv, apply)

	// destroy: out of the swarm, VMs and snippets gone; the VMs' stop cut
	// their nodes' power; lab down leaves nothing.
	out, errs = mustRun(t, "destroy", "-i", inv, "--state-dir", state, "--yes", "--terraform-mirror", mirror)
	for _, want := range []string{"5 to DESTROY", "0 created, 0 changed, 5 destroyed", "destroyed: 5 nodes left the swarm, 5 VMs destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("destroy's output lacks %q:\n%s\n%s", want, out, errs)
		}
	}
	if !strings.Contains(errs, "snippets: 15 removed, 0 gone already, on 3 Proxmox hosts") {
		t.Errorf("destroy did not remove the snippets:\n%s", errs)
	}
	out, _ = mustRun(t, "vms", "plan", "-i", inv, "--state-dir", state, "--terraform-mirror", mirror)
	if !strings.Contains(out, "VMs: 5 to create, 0 to update, 0 to REPLACE, 0 to DESTROY, 0 unchanged") {
		t.Errorf("vms plan after destroy: the VMs are not all gone:\n%s", out)
	}
	status, _ = mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(status, "0 of 5 nodes up") {
		t.Errorf("lab status after destroy: the destroyed VMs' nodes still run:\n%s", status)
	}
	mustRun(t, "lab", "down", "-i", inv, "--state-dir", state)
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

// rollAndProbe gives every VM of inv more memory and applies it, while a
// global service with a port published on each node (host mode: no
// routing mesh here) is probed on every node's address, five times a
// second. The apply must go one failure domain at a time (each drained,
// changed, Ready, active, in that order; workers' hosts first, then the
// managers one by one), and some node must answer at every probe.
func rollAndProbe(t *testing.T, inv string, apply []string) {
	t.Helper()
	ctx := t.Context()
	nodes, err := labOf(t, inv).Nodes()
	if err != nil || len(nodes) != 5 {
		t.Fatalf("lab nodes: %v, %v", nodes, err)
	}
	var mgr *client.Client
	for _, n := range nodes {
		if n.Name == "mgr-1" {
			if mgr, err = lab.NewEngine(n.DockerSocket); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer mgr.Close()
	_, err = mgr.ServiceCreate(ctx, dswarm.ServiceSpec{
		Annotations: dswarm.Annotations{Name: "roll-probe"},
		TaskTemplate: dswarm.TaskSpec{ContainerSpec: &dswarm.ContainerSpec{
			Image: lab.BusyboxImageTag, Hostname: "{{.Node.Hostname}}", Command: []string{"nc", "-ll", "-p", "8080", "-e", "hostname"}}},
		Mode: dswarm.ServiceMode{Global: &dswarm.GlobalService{}},
		EndpointSpec: &dswarm.EndpointSpec{Ports: []dswarm.PortConfig{{Protocol: dswarm.PortConfigProtocolTCP, TargetPort: 8080, PublishedPort: 8080,
			PublishMode: dswarm.PortConfigPublishModeHost}}},
	}, dswarm.ServiceCreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	answer := func(ip string) string {
		c, err := net.DialTimeout("tcp", net.JoinHostPort(ip, "8080"), time.Second)
		if err != nil {
			return ""
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Second))
		b, _ := io.ReadAll(c)
		return strings.TrimSpace(string(b))
	}
	for _, n := range nodes {
		for i := 0; answer(n.IP.String()) != n.Name; i++ {
			if i == 120 {
				t.Fatalf("the probe service does not answer on %s (%s) after a minute", n.Name, n.IP)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	text, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	bigger := strings.ReplaceAll(string(text), "memory: 1024", "memory: 2048")
	if err := os.WriteFile(inv, []byte(bigger), 0o600); err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	probed := make(chan []string, 1)
	go func() {
		var silent []string
		rounds := 0
		for {
			select {
			case <-stop:
				probed <- append(silent, fmt.Sprintf("%d rounds", rounds))
				return
			case <-time.After(200 * time.Millisecond):
			}
			rounds++
			ok := false
			for _, n := range nodes {
				if answer(n.IP.String()) != "" {
					ok = true
					break
				}
			}
			if !ok {
				silent = append(silent, time.Now().Format("15:04:05.000"))
			}
		}
	}()
	code, out, errs := run(t, apply...)
	close(stop)
	res := <-probed
	if code != 0 {
		t.Fatalf("apply of more memory: exit %d\n%s\n%s", code, out, errs)
	}
	if len(res) > 1 {
		t.Errorf("no node answered the probe at %v (of %s)", res[:len(res)-1], res[len(res)-1])
	}
	t.Logf("probe during the roll: %s, every one answered", res[len(res)-1])
	for _, want := range []string{"VMs: 0 to create, 5 to update", "rolling: the swarm nodes the provider restarts or replaces go one failure domain at a time", "0 created, 5 changed, 0 destroyed"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply of more memory: output lacks %q:\n%s", want, out)
		}
	}
	// The order: per step drain, change, Ready, active; workers' hosts
	// first, then each manager alone.
	var steps []string
	var lines []string
	for _, line := range strings.Split(errs, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "roll ") {
			continue
		}
		lines = append(lines, line)
		name, _, _ := strings.Cut(strings.TrimPrefix(line, "roll "), ": ")
		if len(steps) == 0 || steps[len(steps)-1] != name {
			steps = append(steps, name)
		}
	}
	want := []string{"draining ", "changing ", "waiting until ", "Ready; availability back to active"}
	if len(lines) != 4*len(steps) {
		t.Fatalf("roll lines: %d for %d steps, want 4 each:\n%s", len(lines), len(steps), strings.Join(lines, "\n"))
	}
	for i, line := range lines {
		if !strings.Contains(line, want[i%4]) {
			t.Errorf("roll line %d %q, want %q at this point:\n%s", i, line, want[i%4], strings.Join(lines, "\n"))
		}
	}
	if n := len(steps); n < 4 || steps[n-3] != "mgr-1" || steps[n-2] != "mgr-2" || steps[n-1] != "mgr-3" || !strings.HasPrefix(steps[0], "pve") {
		t.Errorf("roll steps %v: want the workers' hosts, then mgr-1, mgr-2, mgr-3", steps)
	}
	t.Logf("roll:\n%s", strings.Join(lines, "\n"))
	if err := mgr.ServiceRemove(ctx, "roll-probe"); err != nil {
		t.Error(err)
	}
}
