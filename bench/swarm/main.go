// Command swarm benchmarks `provision swarm` on emulated labs against the
// way labs join swarms by hand and against the floor, each contender on a
// fresh lab made exactly as `provision lab up` makes it (the provision
// binary of this tree runs `lab up`, and `lab down` afterwards):
//
//   - provision: `provision swarm -i INVENTORY`, the command users run, with
//     its defaults, then once more (the re-run, which must change nothing);
//   - loop: a sequential shell loop of `ssh NODE docker swarm join ...`, as
//     the Swarm2k instructions have it;
//   - floor: the same joins straight over the nodes' local Docker sockets,
//     no SSH: init, the ingress network removed, the managers one at a
//     time, then every worker at once.
//
// Every contender removes the ingress network right after init (this
// kernel has no IPVS, so a lab here runs with swarm.ingress.enabled:
// false) and is timed from its start to every node Ready. The order of the
// contenders rotates from size to size and round to round. Needs root.
//
//	go run ./bench/swarm -sizes 30,59
//	go run ./bench/swarm -sizes 159
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	dswarm "github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/state"
)

func main() {
	sizes := flag.String("sizes", "30,59", "lab sizes in nodes, comma-separated (3 managers and 12 VM workers, the rest Pis in racks of up to 36; 159 is Swarm2k's 15 VMs and 4 racks)")
	rounds := flag.Int("rounds", 1, "rounds per size; the contenders' order rotates every round")
	only := flag.String("contenders", "provision,loop,floor", "contenders to run, comma-separated")
	settle := flag.Duration("settle", 5*time.Second, "pause after lab up before a contender starts")
	window := flag.Duration("window", 0, "also count the machine's CPU over this fixed time from each contender's start (each node's work right after its join falls partly after a fast contender's end)")
	keep := flag.Bool("keep", false, "keep the work directory (inventories, provision's output)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *sizes, *rounds, strings.Split(*only, ","), *settle, *window, *keep); err != nil {
		fmt.Fprintf(os.Stderr, "bench/swarm: %v\n", err)
		os.Exit(1)
	}
}

// result is one contender's run on one fresh lab.
type result struct {
	contender string
	nodes     int
	wall      time.Duration
	machine   float64 // CPU-seconds the whole machine was busy
	own       float64 // CPU-seconds of provision's process (provision only)
	ready     int
	rerun     time.Duration // provision only
	rerunOwn  float64
	byProcess string // who spent the machine's CPU: "dockerd 10.2 s, ..."
	windowed  string // the same over -window from the start
}

func run(ctx context.Context, sizes string, rounds int, contenders []string, settle, window time.Duration, keep bool) error {
	if err := lab.Preflight(); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "provision-bench-swarm-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("work directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	bin := filepath.Join(dir, "provision")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/provision")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build provision (run from the repository's root): %w", err)
	}
	var all []result
	for si, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 16 || n > 200 {
			return fmt.Errorf("-sizes: %q is not a size from 16 to 200 nodes", s)
		}
		b, err := newBench(dir, bin, n)
		if err != nil {
			return err
		}
		b.window = window
		fmt.Printf("%d nodes (3 managers), lab %s on %s\n", n, lab.PrefixFor(b.name), b.net)
		for r := range rounds {
			for i := range contenders {
				c := contenders[(i+si+r)%len(contenders)]
				res, err := b.one(ctx, c, settle)
				if err != nil {
					return fmt.Errorf("%d nodes, %s: %w", n, c, err)
				}
				print1(res)
				all = append(all, res)
			}
		}
	}
	table(all)
	return nil
}

func print1(r result) {
	fmt.Printf("  %-9s %7.2f s to %d Ready, machine %5.1f CPU-s", r.contender, r.wall.Seconds(), r.ready, r.machine)
	if r.contender == "provision" {
		fmt.Printf(", provision's own %.2f CPU-s; re-run %.2f s (%.2f CPU-s)", r.own, r.rerun.Seconds(), r.rerunOwn)
	}
	fmt.Println()
	fmt.Printf("            by process: %s\n", r.byProcess)
	if r.windowed != "" {
		fmt.Printf("            machine %s\n", r.windowed)
	}
}

// table prints one row per size, each cell with every round's figure in
// round order ("a / b"), ratios between the runs of the same round.
func table(all []result) {
	fmt.Println()
	fmt.Println("| nodes | provision swarm | provision's own CPU | re-run | sequential ssh loop | floor (local sockets, workers at once) | provision / floor | loop / provision | machine CPU-s (provision, loop, floor) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|")
	var sizes []int
	by := map[int]map[string][]result{}
	for _, r := range all {
		if by[r.nodes] == nil {
			by[r.nodes] = map[string][]result{}
			sizes = append(sizes, r.nodes)
		}
		by[r.nodes][r.contender] = append(by[r.nodes][r.contender], r)
	}
	cells := func(rs []result, f func(r result) string) string {
		if len(rs) == 0 {
			return "–"
		}
		var out []string
		for _, r := range rs {
			out = append(out, f(r))
		}
		return strings.Join(out, " / ")
	}
	secs := func(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
	ratios := func(a, b []result) string {
		var out []string
		for i := range min(len(a), len(b)) {
			out = append(out, fmt.Sprintf("%.2fx", a[i].wall.Seconds()/b[i].wall.Seconds()))
		}
		if len(out) == 0 {
			return "–"
		}
		return strings.Join(out, " / ")
	}
	for _, n := range sizes {
		p, l, f := by[n]["provision"], by[n]["loop"], by[n]["floor"]
		fmt.Printf("| %d | %s | %s | %s | %s | %s | %s | %s | %s; %s; %s |\n", n,
			cells(p, func(r result) string { return secs(r.wall) }),
			cells(p, func(r result) string { return fmt.Sprintf("%.2f s", r.own) }),
			cells(p, func(r result) string { return secs(r.rerun) }),
			cells(l, func(r result) string { return secs(r.wall) }),
			cells(f, func(r result) string { return secs(r.wall) }),
			ratios(p, f), ratios(l, p),
			cells(p, func(r result) string { return fmt.Sprintf("%.1f", r.machine) }),
			cells(l, func(r result) string { return fmt.Sprintf("%.1f", r.machine) }),
			cells(f, func(r result) string { return fmt.Sprintf("%.1f", r.machine) }))
	}
}

// bench is one size's lab: its inventory, made up and torn down per
// contender by the provision binary.
type bench struct {
	dir, bin, inv, stateDir, name string
	net                           netip.Prefix
	nodes                         []inventory.Node
	runs                          int
	window                        time.Duration // -window
}

func newBench(base, bin string, n int) (*bench, error) {
	var rnd [3]byte
	rand.Read(rnd[:])
	b := &bench{dir: filepath.Join(base, fmt.Sprintf("n%d", n)), bin: bin, name: fmt.Sprintf("bsw%d-%s", n, hex.EncodeToString(rnd[:]))}
	b.stateDir = filepath.Join(b.dir, "state")
	if err := os.MkdirAll(b.dir, 0o755); err != nil {
		return nil, err
	}
	if _, _, err := remote.EnsureKey(filepath.Join(b.dir, "id_ed25519")); err != nil {
		return nil, fmt.Errorf("ssh key: %w", err)
	}
	var err error
	if b.net, err = freeSubnet(int(rnd[1])<<8 | int(rnd[2])); err != nil {
		return nil, err
	}
	addr := func(h int) string {
		a := b.net.Addr().As4()
		a[3] = byte(h)
		return netip.AddrFrom4(a).String()
	}
	pis := n - 15
	racks := (pis + 35) / 36
	var rackYAML []string
	next := 40
	for r := range racks {
		count := pis / racks
		if r < pis%racks {
			count++
		}
		rackYAML = append(rackYAML, fmt.Sprintf("    - {name: r%d, count: %d, ipStart: %s}", r+1, count, addr(next)))
		next += count
	}
	doc := fmt.Sprintf(`apiVersion: provision/v1
kind: Lab
metadata: {name: %s}
network: {cidr: %s, gateway: %s}
ssh: {user: provision, privateKeyFile: id_ed25519, authorizedKeyFiles: [id_ed25519.pub]}
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3, ingress: {enabled: false}}
proxmox:
  apiURL: https://127.0.0.1:8006/api2/json
  template: debian-12-cloudinit
  nodes: [{name: pve1}, {name: pve2}, {name: pve3}]
  vms:
    - {name: mgr-%%d, count: 3, role: manager, ipStart: %s}
    - {name: wrk-%%02d, count: 12, ipStart: %s}
pis:
  racks:
%s
`, b.name, b.net, addr(1), addr(11), addr(21), strings.Join(rackYAML, "\n"))
	b.inv = filepath.Join(b.dir, "lab.yaml")
	if err := os.WriteFile(b.inv, []byte(doc), 0o644); err != nil {
		return nil, err
	}
	inv, err := inventory.Load(b.inv)
	if err != nil {
		return nil, fmt.Errorf("bench inventory: %w\n%s", err, doc)
	}
	if len(inv.Nodes) != n {
		return nil, fmt.Errorf("bench inventory has %d nodes, want %d", len(inv.Nodes), n)
	}
	b.nodes = inv.Nodes
	return b, nil
}

// provision runs the provision binary on the bench's inventory.
func (b *bench) provision(ctx context.Context, args ...string) (time.Duration, float64, string, error) {
	cmd := exec.CommandContext(ctx, b.bin, append(args, "-i", b.inv, "--state-dir", b.stateDir)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	own := 0.0
	if cmd.ProcessState != nil {
		own = (cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()).Seconds()
	}
	if err != nil {
		return wall, own, out.String(), fmt.Errorf("provision %s: %w\n%s", strings.Join(args, " "), err, out.String())
	}
	return wall, own, out.String(), nil
}

// one runs a contender on a fresh lab and tears the lab down again.
func (b *bench) one(ctx context.Context, contender string, settle time.Duration) (res result, err error) {
	res = result{contender: contender, nodes: len(b.nodes)}
	upTime, _, _, err := b.provision(ctx, "lab", "up")
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel()
		if _, _, _, derr := b.provision(dctx, "lab", "down"); derr != nil {
			err = errors.Join(err, derr)
		}
		os.RemoveAll(b.stateDir)
	}()
	if err != nil {
		return res, err
	}
	st, err := state.Load(b.stateDir, b.name)
	if err != nil {
		return res, err
	}
	sockets := map[string]string{}
	for _, n := range b.nodes {
		if f := st.Nodes[n.Name]; f != nil && f.DockerSocket != "" {
			sockets[n.Name] = f.DockerSocket
		} else {
			return res, fmt.Errorf("lab up recorded no Docker socket for %s", n.Name)
		}
	}
	if err := sleep(ctx, settle); err != nil {
		return res, err
	}
	fmt.Fprintf(os.Stderr, "  (lab up for %s: %.1f s; load average before it starts: %s)\n", contender, upTime.Seconds(), loadAverage())
	cpu, procs, began := machineCPU(), processCPU(), time.Now()
	spent := func() { // the machine's CPU and by whom, since the start
		res.machine = machineCPU() - cpu
		res.byProcess = topCPU(procs, processCPU(), 6)
		if b.window > 0 && sleep(ctx, time.Until(began.Add(b.window))) == nil {
			res.windowed = fmt.Sprintf("%.1f CPU-s in the first %s: %s", machineCPU()-cpu, b.window, topCPU(procs, processCPU(), 6))
		}
	}
	switch contender {
	case "provision":
		var out string
		res.wall, res.own, out, err = b.provision(ctx, "swarm")
		spent()
		b.runs++
		os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("provision-swarm-%d.log", b.runs)), []byte(out), 0o644)
		if err == nil {
			res.rerun, res.rerunOwn, out, err = b.provision(ctx, "swarm")
			os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("provision-swarm-%d-rerun.log", b.runs)), []byte(out), 0o644)
			// Every record of both runs, with times.
			if log, rerr := os.ReadFile(filepath.Join(b.stateDir, "provision.log")); rerr == nil {
				os.WriteFile(filepath.Join(b.dir, fmt.Sprintf("provision-%d.records", b.runs)), log, 0o644)
			}
			if err == nil && !strings.Contains(out, "nothing changed") {
				err = fmt.Errorf("the re-run changed something:\n%s", out)
			}
		}
	case "loop":
		res.wall, err = b.loop(ctx)
		spent()
	case "floor":
		res.wall, err = b.floor(ctx, sockets)
		spent()
	default:
		return res, fmt.Errorf("no contender %q (provision, loop, floor)", contender)
	}
	if err != nil {
		return res, err
	}
	res.ready, err = countReady(ctx, sockets[b.nodes[0].Name])
	if err == nil && res.ready != len(b.nodes) {
		err = fmt.Errorf("%d of %d nodes Ready", res.ready, len(b.nodes))
	}
	return res, err
}

// loop forms the swarm the way labs do by hand: init on the first manager,
// the ingress network removed, the tokens read, then one `ssh node docker
// swarm join` after the other, then `docker node ls` until all are Ready.
func (b *bench) loop(ctx context.Context) (time.Duration, error) {
	known := filepath.Join(b.dir, "loop_known_hosts")
	os.Remove(known)
	key := filepath.Join(b.dir, "id_ed25519")
	// A join that outlasts Docker's 20 s wait goes on in the background;
	// an admin's loop moves on to the next node, and so does this one.
	// ssh is retried when it cannot connect (exit 255), as an admin's loop
	// would on a busy machine.
	ssh := func(ip string, args ...string) (string, error) {
		for attempt := 1; ; attempt++ {
			cmd := exec.CommandContext(ctx, "ssh", append([]string{
				"-i", key, "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=accept-new",
				"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "provision@" + ip,
			}, args...)...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if err == nil || strings.Contains(errb.String(), "Timeout was reached before node joined") {
				return strings.TrimSpace(out.String()), nil
			}
			if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 255 && attempt < 5 {
				time.Sleep(time.Second)
				continue
			}
			return "", fmt.Errorf("ssh %s %s: %v: %s", ip, strings.Join(args[:min(3, len(args))], " "), err, errb.String())
		}
	}
	first := b.nodes[0]
	start := time.Now()
	if _, err := ssh(first.IP, "docker", "swarm", "init", "--advertise-addr", first.IP, "--listen-addr", first.IP+":2377",
		"--default-addr-pool", "10.128.0.0/12", "--default-addr-pool-mask-length", "20"); err != nil {
		return 0, err
	}
	// `docker network rm ingress` asks for confirmation.
	if _, err := ssh(first.IP, "sh", "-c", "'echo y | docker network rm ingress'"); err != nil {
		return 0, err
	}
	workerToken, err := ssh(first.IP, "docker", "swarm", "join-token", "-q", "worker")
	if err != nil {
		return 0, err
	}
	managerToken, err := ssh(first.IP, "docker", "swarm", "join-token", "-q", "manager")
	if err != nil {
		return 0, err
	}
	for _, n := range b.nodes[1:] {
		token := workerToken
		if n.Role == inventory.Manager {
			token = managerToken
		}
		if _, err := ssh(n.IP, "docker", "swarm", "join", "--token", token, "--advertise-addr", n.IP, "--listen-addr", n.IP+":2377", first.IP+":2377"); err != nil {
			return 0, err
		}
	}
	for {
		out, err := ssh(first.IP, "docker", "node", "ls", "--format", "{{.Status}}")
		if err != nil {
			return 0, err
		}
		if strings.Count(out, "Ready") == len(b.nodes) {
			return time.Since(start), nil
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

// floor makes the same joins straight over the nodes' local Docker
// sockets: init, the ingress network removed, the managers one at a time,
// then every worker at once, each through a manager as provision spreads
// them; then it polls the node list until every node is Ready.
func (b *bench) floor(ctx context.Context, sockets map[string]string) (time.Duration, error) {
	engines := make([]*client.Client, len(b.nodes))
	for i, n := range b.nodes {
		c, err := lab.NewEngine(sockets[n.Name])
		if err != nil {
			return 0, err
		}
		defer c.Close()
		engines[i] = c
	}
	first := b.nodes[0]
	swarmAddr := func(n inventory.Node) string { return net.JoinHostPort(n.IP, "2377") }
	start := time.Now()
	if _, err := engines[0].SwarmInit(ctx, dswarm.InitRequest{ListenAddr: swarmAddr(first), AdvertiseAddr: swarmAddr(first),
		DefaultAddrPool: []string{"10.128.0.0/12"}, SubnetSize: 20}); err != nil {
		return 0, fmt.Errorf("init: %w", err)
	}
	nets, err := engines[0].NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("name", "ingress"))})
	if err != nil {
		return 0, err
	}
	for _, nw := range nets {
		if nw.Ingress {
			if err := engines[0].NetworkRemove(ctx, nw.ID); err != nil {
				return 0, fmt.Errorf("remove ingress: %w", err)
			}
		}
	}
	sw, err := engines[0].SwarmInspect(ctx)
	if err != nil {
		return 0, err
	}
	managers := []inventory.Node{first}
	join := func(i int, token string, remotes []string) error {
		n := b.nodes[i]
		err := engines[i].SwarmJoin(ctx, dswarm.JoinRequest{ListenAddr: swarmAddr(n), AdvertiseAddr: swarmAddr(n), RemoteAddrs: remotes, JoinToken: token})
		if err != nil && !strings.Contains(err.Error(), "Timeout was reached") {
			return fmt.Errorf("join %s: %w", n.Name, err)
		}
		return nil
	}
	for i, n := range b.nodes {
		if i > 0 && n.Role == inventory.Manager {
			if err := join(i, sw.JoinTokens.Manager, []string{swarmAddr(first)}); err != nil {
				return 0, err
			}
			managers = append(managers, n)
		}
	}
	var wg sync.WaitGroup
	errs := make([]error, len(b.nodes))
	for i, n := range b.nodes {
		if n.Role == inventory.Manager {
			continue
		}
		var remotes []string
		for j := range managers {
			remotes = append(remotes, swarmAddr(managers[(i+j)%len(managers)]))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = join(i, sw.JoinTokens.Worker, remotes)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	for {
		nodes, err := engines[0].NodeList(ctx, dswarm.NodeListOptions{})
		if err != nil {
			return 0, err
		}
		ready := 0
		for _, n := range nodes {
			if n.Status.State == dswarm.NodeStateReady && (n.ManagerStatus == nil || n.ManagerStatus.Reachability == dswarm.ReachabilityReachable) {
				ready++
			}
		}
		if ready == len(b.nodes) {
			return time.Since(start), nil
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return 0, err
		}
	}
}

func countReady(ctx context.Context, socket string) (int, error) {
	c, err := lab.NewEngine(socket)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	nodes, err := c.NodeList(ctx, dswarm.NodeListOptions{})
	if err != nil {
		return 0, fmt.Errorf("node list: %w", err)
	}
	ready := 0
	for _, n := range nodes {
		if n.Status.State == dswarm.NodeStateReady {
			ready++
		}
	}
	return ready, nil
}

// freeSubnet picks a /24 of the benchmarking range 198.18.0.0/15 that no
// interface uses.
func freeSubnet(seed int) (netip.Prefix, error) {
	inUse := map[[2]byte]bool{}
	ifs, _ := net.Interfaces()
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				inUse[[2]byte{ipn.IP.To4()[1], ipn.IP.To4()[2]}] = true
			}
		}
	}
	for i := range 512 {
		v := (seed + i) % 512
		b1, b2 := byte(18+v/256), byte(v%256)
		if !inUse[[2]byte{b1, b2}] {
			return netip.PrefixFrom(netip.AddrFrom4([4]byte{198, b1, b2, 0}), 24), nil
		}
	}
	return netip.Prefix{}, errors.New("no free /24 in 198.18.0.0/15")
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// processCPU is the CPU time each kind of process has spent so far, in
// seconds, by command name (user and system time with its reaped
// children's, so runc and iptables count under the daemon that ran them;
// kernel threads under "kernel"). Processes that exited unreaped by a
// process alive at both ends are not counted.
func processCPU() map[string]float64 {
	out := map[string]float64{}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return out
	}
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		open, end := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
		if open < 0 || end < open || end+2 > len(b) {
			continue
		}
		comm := string(b[open+1 : end])
		f := strings.Fields(string(b[end+2:]))
		if len(f) < 15 {
			continue
		}
		if ppid := f[1]; ppid == "2" || e.Name() == "2" { // children of kthreadd
			comm = "kernel"
		}
		if comm == "dockerd" || comm == "sshd" { // the managers' apart from the workers'
			if cmd, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(cmd, []byte("/nodes/mgr-")) {
				comm += " (managers)"
			}
		}
		for _, i := range []int{11, 12, 13, 14} { // utime stime cutime cstime
			v, _ := strconv.ParseFloat(f[i], 64)
			out[comm] += v / 100 // USER_HZ
		}
	}
	return out
}

// topCPU names the n kinds of process that spent the most CPU between two
// processCPU readings: "dockerd 10.2 s, sshd 3.1 s, ...".
func topCPU(before, after map[string]float64, n int) string {
	type spent struct {
		comm string
		secs float64
	}
	var all []spent
	for comm, v := range after {
		if d := v - before[comm]; d >= 0.05 {
			all = append(all, spent{comm, d})
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].secs > all[j].secs })
	var parts []string
	for _, s := range all[:min(n, len(all))] {
		parts = append(parts, fmt.Sprintf("%s %.1f s", s.comm, s.secs))
	}
	return strings.Join(parts, ", ")
}

// loadAverage is the machine's 1-minute load average.
func loadAverage() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// machineCPU is the CPU time the whole machine has spent busy so far, in
// seconds (user, nice, system, irq, softirq from /proc/stat).
func machineCPU() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var busy float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(f) {
			v, _ := strconv.ParseFloat(f[i], 64)
			busy += v
		}
	}
	return busy / 100 // USER_HZ
}
