package lab

import (
	"bytes"
	"context"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// TestIntegrationUpDown brings up four nodes of inventory/local.yaml and
// checks each the way the swarm stage will use it, then that a second Up
// changes nothing and that Down leaves nothing.
func TestIntegrationUpDown(t *testing.T) {
	tl := newTestLab(t, 4)
	ctx := context.Background()
	start := time.Now()
	nodes, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("up %d nodes in %s", len(nodes), time.Since(start).Round(time.Millisecond))
	// What Down must remove, Leftovers sees while the lab runs.
	seen := strings.Join(tl.Leftovers(), "\n")
	for _, want := range []string{"network namespace " + tl.Prefix() + "-", "link " + tl.Prefix() + "-", "dockerd", "sshd", "directory " + tl.StateDir(), "group " + tl.Prefix()} {
		if !strings.Contains(seen, want) {
			t.Errorf("Leftovers of a running lab lacks %q:\n%s", want, seen)
		}
	}

	for _, n := range nodes {
		c, err := NewEngine(n.DockerSocket)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Ping(ctx); err != nil {
			t.Errorf("%s: ping: %v", n.Name, err)
		}
		info, err := c.Info(ctx)
		c.Close()
		if err != nil {
			t.Fatalf("%s: info: %v", n.Name, err)
		}
		if info.Name != n.Name {
			t.Errorf("%s: dockerd reports hostname %q", n.Name, info.Name)
		}
		if route := sh(t, "ip", "-n", n.Netns, "route", "show", "default"); strings.TrimSpace(route) != "" {
			t.Errorf("%s has a default route: %s", n.Name, route)
		}
		// A manager's daemons run at a higher priority, the others' not.
		pid, _ := pidFromFile(filepath.Join(n.Dir, "dockerd.pid"), n.Dir+"/")
		prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, pid)
		want := 0
		if n.Manager {
			want = managerNice
		}
		if nice := 20 - prio; err != nil || nice != want {
			t.Errorf("%s (manager %v): dockerd's nice is %d (%v), want %d", n.Name, n.Manager, nice, err, want)
		}
	}
	if !nodes[0].Manager {
		t.Errorf("%s, the first node of local.yaml, is not marked a manager", nodes[0].Name)
	}

	// A key login as the inventory's user, host key checked; inside the
	// session the docker CLI talks to that node's daemon.
	_, cliErr := exec.LookPath("docker")
	for _, n := range nodes {
		out := sshRun(t, tl, n, "hostname; echo DOCKER_HOST=$DOCKER_HOST")
		if !strings.Contains(out, n.Name+"\n") || !strings.Contains(out, "DOCKER_HOST="+n.DockerHost()) {
			t.Errorf("%s: session says %q", n.Name, out)
		}
		if cliErr != nil {
			continue
		}
		out = sshRun(t, tl, n, "docker info --format '{{.Name}} {{.Swarm.LocalNodeState}}'")
		if strings.TrimSpace(out) != n.Name+" inactive" {
			t.Errorf("%s: docker info in a session says %q", n.Name, out)
		}
	}
	if cliErr != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("docker CLI missing (install docker.io): %v", cliErr)
		}
		t.Logf("docker CLI missing, session check skipped: %v", cliErr)
	}

	st, err := tl.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if !s.Up() || s.Swarm != "inactive" || s.Hostname != s.Name {
			t.Errorf("status %+v", s)
		}
	}

	// Up again: same processes, same manifest.
	before, _ := os.ReadFile(tl.ManifestPath())
	pids := daemonPids(t, nodes)
	start = time.Now()
	again, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("second up in %s", time.Since(start).Round(time.Millisecond))
	after, _ := os.ReadFile(tl.ManifestPath())
	if !bytes.Equal(before, after) || len(again) != len(nodes) {
		t.Errorf("second Up changed the manifest")
	}
	if got := daemonPids(t, nodes); strings.Join(got, ",") != strings.Join(pids, ",") {
		t.Errorf("second Up restarted daemons: %v -> %v", pids, got)
	}

	// A power cut of one node ends its daemons only; the next Up is its
	// power-on: the same namespace and address, new daemons.
	off := nodes[1]
	if err := tl.PowerOff(ctx, off.Name); err != nil {
		t.Fatal(err)
	}
	for i, pid := range pids {
		p, _ := strconv.Atoi(pid)
		if alive := syscall.Kill(p, 0) == nil; alive != (i/2 != 1) {
			t.Errorf("after PowerOff %s: daemon %d (of node %s) alive %v", off.Name, p, nodes[i/2].Name, alive)
		}
	}
	if st, err := tl.Status(ctx); err != nil || st[1].Up() || !st[1].Netns || !st[0].Up() {
		t.Errorf("status after PowerOff %s: %+v, %v", off.Name, st, err)
	}
	if _, err := tl.Up(ctx, tl.specs); err != nil {
		t.Fatal(err)
	}
	c, err := NewEngine(off.DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(ctx); err != nil {
		t.Errorf("%s after power-on: %v", off.Name, err)
	}
	c.Close()

	start = time.Now()
	if err := tl.Down(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("down in %s", time.Since(start).Round(time.Millisecond))
	assertNothingLeft(t, tl.Lab, tl.user, true)
	if err := tl.Down(ctx); err != nil {
		t.Errorf("second Down: %v", err)
	}
}

// daemonPids reads every node's dockerd and sshd pid files.
func daemonPids(t *testing.T, nodes []Node) []string {
	t.Helper()
	var pids []string
	for _, n := range nodes {
		for _, f := range []string{"dockerd.pid", "sshd.pid"} {
			b, err := os.ReadFile(filepath.Join(n.Dir, f))
			if err != nil {
				t.Fatalf("%s: %v", n.Name, err)
			}
			pids = append(pids, strings.TrimSpace(string(b)))
		}
	}
	return pids
}

// TestIntegrationSwarmAcrossNamespaces forms a two-node swarm by hand
// through the Engine API, the way the swarm stage will: init on A with
// its address and the inventory's pool, join B, create an overlay, and
// check that the subnet comes from the pool and that a task on B reaches a
// task on A over it (VXLAN between namespaces).
func TestIntegrationSwarmAcrossNamespaces(t *testing.T) {
	tl := newTestLab(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nodes, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	a, b := engine(t, nodes[0]), engine(t, nodes[1])
	pool := netip.MustParsePrefix("10.128.0.0/12")

	_, err = a.SwarmInit(ctx, swarm.InitRequest{
		ListenAddr:      nodes[0].IP.String() + ":2377",
		AdvertiseAddr:   nodes[0].IP.String(),
		DefaultAddrPool: []string{pool.String()},
		SubnetSize:      20,
	})
	if err != nil {
		t.Fatalf("swarm init on %s: %v", nodes[0].Name, err)
	}
	sw, err := a.SwarmInspect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = b.SwarmJoin(ctx, swarm.JoinRequest{
		ListenAddr:    nodes[1].IP.String() + ":2377",
		AdvertiseAddr: nodes[1].IP.String(),
		RemoteAddrs:   []string{nodes[0].IP.String() + ":2377"},
		JoinToken:     sw.JoinTokens.Worker,
	})
	if err != nil {
		t.Fatalf("swarm join %s: %v", nodes[1].Name, err)
	}
	list, err := a.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil || len(list) != 2 {
		t.Fatalf("node list: %v %v", list, err)
	}
	names := map[string]bool{}
	for _, n := range list {
		names[n.Description.Hostname] = true
	}
	if !names[nodes[0].Name] || !names[nodes[1].Name] {
		t.Errorf("swarm nodes %v", names)
	}

	created, err := a.NetworkCreate(ctx, "smoke", network.CreateOptions{Driver: "overlay", Attachable: true})
	if err != nil {
		t.Fatal(err)
	}
	// The manager allocates the subnet just after answering the create.
	var nw network.Inspect
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		nw, err = a.NetworkInspect(ctx, created.ID, network.InspectOptions{})
		if err == nil && len(nw.IPAM.Config) > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("inspect overlay: %v %+v", err, nw.IPAM)
		}
	}
	subnet := netip.MustParsePrefix(nw.IPAM.Config[0].Subnet)
	if !pool.Contains(subnet.Addr()) || subnet.Bits() != 20 {
		t.Errorf("overlay subnet %s is not a /20 from %s", subnet, pool)
	}

	if st, _ := tl.Status(ctx); len(st) != 2 || st[0].Swarm != "active" || st[1].Swarm != "active" {
		t.Errorf("status after join: %+v", st)
	}

	// A task on B reaches a task on A by its overlay address.
	img := busyboxImage(t)
	for _, n := range nodes {
		if err := LoadImage(ctx, n.DockerSocket, bytes.NewReader(img)); err != nil {
			t.Fatalf("%s: %v", n.Name, err)
		}
	}
	srv := startContainer(t, a, "srv", "smoke", "while true; do echo hello-over-vxlan | nc -l -p 7000; done")
	inspect, err := a.ContainerInspect(ctx, srv)
	if err != nil {
		t.Fatal(err)
	}
	ip := inspect.NetworkSettings.Networks["smoke"].IPAddress
	if !subnet.Contains(netip.MustParseAddr(ip)) {
		t.Errorf("task address %s outside %s", ip, subnet)
	}
	out := runContainer(t, b, "cli", "smoke", "nc -w 5 "+ip+" 7000 </dev/null")
	if !strings.Contains(out, "hello-over-vxlan") {
		t.Errorf("task on %s could not reach %s on %s: %q", nodes[1].Name, ip, nodes[0].Name, out)
	}

	// The overlay's load balancer keeps files in the default data root,
	// outside the lab: Down removes them too.
	lb := filepath.Join("/var/lib/docker/network/files", "lb_"+created.ID)
	if _, err := os.Stat(lb); err != nil {
		t.Logf("no load-balancer files at %s (%v)", lb, err)
	}
	if err := tl.Down(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(lb); err == nil {
		t.Errorf("%s left after Down", lb)
	}
}

// TestIntegrationBusyboxImage loads the generated image into a node and
// runs a container on it: hostname and nc must work.
func TestIntegrationBusyboxImage(t *testing.T) {
	tl := newTestLab(t, 1)
	ctx := context.Background()
	nodes, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.LoadImage(ctx, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	if err := LoadImage(ctx, nodes[0].DockerSocket, strings.NewReader("not an image")); err == nil {
		t.Error("loading garbage succeeded")
	} else {
		t.Logf("loading garbage: %v", err)
	}
	c := engine(t, nodes[0])
	out := runContainer(t, c, "smoke", "", "hostname; (echo hello-nc | nc -l -p 7000 &); sleep 1; nc -w 2 127.0.0.1 7000 </dev/null")
	if !strings.Contains(out, "smoke\n") || !strings.Contains(out, "hello-nc") {
		t.Errorf("container said %q", out)
	}
	// A running container is stopped and cleaned up by Down (the cleanup
	// checks it).
	startContainer(t, c, "sleeper", "", "sleep 1000")
}

// TestIntegrationDownAfterCrash kills a lab's daemons and loses its
// manifest, as a crash and an rm would; Down must still find and remove
// everything by the prefix.
func TestIntegrationDownAfterCrash(t *testing.T) {
	tl := newTestLab(t, 2)
	ctx := context.Background()
	nodes, err := tl.Up(ctx, tl.specs)
	if err != nil {
		t.Fatal(err)
	}
	if err := tl.LoadImage(ctx, busyboxImage(t)); err != nil {
		t.Fatal(err)
	}
	startContainer(t, engine(t, nodes[0]), "orphan", "", "sleep 1000")
	for _, n := range nodes {
		pid, ok := pidFromFile(filepath.Join(n.Dir, "dockerd.pid"), n.Dir+"/")
		if !ok {
			t.Fatalf("%s: no dockerd", n.Name)
		}
		if err := signal(pid, 9); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(tl.ManifestPath()); err != nil {
		t.Fatal(err)
	}
	if err := tl.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, tl.Lab, tl.user, true)
}

// TestIntegrationUpCancelled cancels an Up midway: it must return promptly
// with the context's error, and Down must remove the partial lab.
func TestIntegrationUpCancelled(t *testing.T) {
	tl := newTestLab(t, 6)
	tl.cfg.Concurrency = 2
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := tl.Up(ctx, tl.specs)
	if err == nil {
		t.Skip("Up finished before the deadline: nothing to cancel")
	}
	if !strings.Contains(err.Error(), "context deadline exceeded") {
		t.Errorf("cancelled Up: %v", err)
	}
	if d := time.Since(start); d > 15*time.Second {
		t.Errorf("cancelled Up took %s", d)
	}
}

func engine(t *testing.T, n Node) *client.Client {
	t.Helper()
	c, err := NewEngine(n.DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func busyboxImage(t *testing.T) []byte {
	t.Helper()
	var buf bytes.Buffer
	if _, err := WriteBusyboxImage(&buf, ImageOptions{}); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	return buf.Bytes()
}

func containerConfig(name, script string) (*container.Config, *container.HostConfig, *network.NetworkingConfig) {
	return &container.Config{Image: BusyboxImageTag, Hostname: name, Cmd: []string{"sh", "-c", script}},
		&container.HostConfig{}, &network.NetworkingConfig{}
}

// startContainer creates and starts a container (attached to net if not
// empty) and returns its ID.
func startContainer(t *testing.T, c *client.Client, name, net, script string) string {
	t.Helper()
	ctx := context.Background()
	cfg, host, nc := containerConfig(name, script)
	if net != "" {
		host.NetworkMode = container.NetworkMode(net)
	}
	created, err := c.ContainerCreate(ctx, cfg, host, nc, nil, name)
	if err != nil {
		t.Fatalf("create container %s: %v", name, err)
	}
	if err := c.ContainerStart(ctx, created.ID, container.StartOptions{}); err != nil {
		t.Fatalf("start container %s: %v", name, err)
	}
	return created.ID
}

// runContainer runs a container to its end (create, start, wait, logs,
// remove) and returns what it printed.
func runContainer(t *testing.T, c *client.Client, name, net, script string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := startContainer(t, c, name, net, script)
	defer c.ContainerRemove(context.Background(), id, container.RemoveOptions{Force: true})
	waitC, errC := c.ContainerWait(ctx, id, container.WaitConditionNotRunning)
	select {
	case w := <-waitC:
		if w.StatusCode != 0 {
			t.Errorf("container %s exited %d", name, w.StatusCode)
		}
	case err := <-errC:
		t.Fatalf("wait for container %s: %v", name, err)
	}
	logs, err := c.ContainerLogs(ctx, id, container.LogsOptions{ShowStdout: true, ShowStderr: true})
	if err != nil {
		t.Fatal(err)
	}
	defer logs.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, logs); err != nil && err != io.EOF {
		t.Fatal(err)
	}
	return out.String()
}

// TestIntegrationForwardRule checks the rule that lets the bridge forward
// on a host whose FORWARD policy drops (any host running Docker itself).
// It works on a scratch namespace's firewall, never the host's.
func TestIntegrationForwardRule(t *testing.T) {
	requireLab(t)
	l, err := New(testConfig())
	if err != nil {
		t.Fatal(err)
	}
	ns := "pltfw" + strings.ReplaceAll(time.Now().Format("150405.000"), ".", "")
	hadNetnsDir := exists(netnsDir)
	t.Cleanup(func() {
		exec.Command("ip", "netns", "delete", ns).Run()
		if !hadNetnsDir {
			removeHostPath(netnsDir) // `ip netns add` made it (a mount)
		}
	})
	sh(t, "ip", "netns", "add", ns)
	wrapper := filepath.Join(t.TempDir(), "iptables")
	script := "#!/bin/sh\nexec nsenter --net=/run/netns/" + ns + " " + l.tools.iptables + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	l.tools.iptables = wrapper
	ctx := context.Background()
	rules := func() string { return sh(t, wrapper, "-w", "-S", "FORWARD") }

	if added, err := l.ensureForward(ctx); err != nil || added {
		t.Fatalf("policy ACCEPT: added=%v err=%v\n%s", added, err, rules())
	}
	sh(t, wrapper, "-w", "-P", "FORWARD", "DROP")
	for i := 0; i < 2; i++ {
		if added, err := l.ensureForward(ctx); err != nil || !added {
			t.Fatalf("policy DROP, round %d: added=%v err=%v", i, added, err)
		}
	}
	if got := strings.Count(rules(), "provision-lab "+l.Prefix()); got != 1 {
		t.Errorf("want the rule once, got %d:\n%s", got, rules())
	}
	if err := l.removeForward(ctx); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(rules(), "provision-lab") {
		t.Errorf("rule left:\n%s", rules())
	}
}
