// Command swarm benchmarks `provision swarm` on an emulated lab of 159
// nodes (15 VMs: 3 managers and 12 workers; 4 racks of 36 Pis), one dockerd
// and sshd per network namespace, against the anchor labs use today: a
// sequential shell loop of `ssh NODE docker swarm join ...`.
//
// Both are timed from "every node reachable" (the lab is up, every sshd
// answers) to "every node Ready" on the same nodes in the same run; between
// the two every node leaves the swarm. Needs root (make bench).
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	dswarm "github.com/docker/docker/api/types/swarm"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/stages"
)

func main() {
	racks := flag.Int("racks", 4, "racks of 36 Pis (4 gives 159 nodes with the 15 VMs)")
	perRack := flag.Int("per-rack", 36, "Pis per rack")
	verbose := flag.Bool("v", false, "print provision's progress lines with times")
	concurrency := flag.Int("concurrency", 32, "provision's --concurrency")
	anchor := flag.Bool("anchor", true, "also run the anchor loop (without it no ratio is printed)")
	ingress := flag.Bool("ingress", false, "keep Docker's ingress network (no routing mesh works here: the kernel has no IPVS)")
	flag.Parse()
	tb := &benchTB{}
	code := 0
	func() {
		defer func() {
			if r := recover(); r != nil && r != errFatal {
				panic(r)
			} else if r != nil {
				code = 1
			}
		}()
		run(tb, *racks, *perRack, *verbose, *concurrency, *anchor, *ingress)
	}()
	tb.cleanup()
	os.Exit(code)
}

func run(tb *benchTB, racks, perRack int, verbose bool, concurrency int, withAnchor, withIngress bool) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dir, err := os.MkdirTemp("", "provision-bench-swarm-")
	if err != nil {
		tb.Fatalf("%v", err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })

	f := labtest.New(tb, dir, os.Stderr)
	// This kernel has no IPVS, so the routing mesh cannot work in the
	// emulated lab; the inventory turns the ingress network off (as a lab
	// that publishes ports in host mode would) and the anchor removes it
	// too, right after init, so both form the same swarm. -ingress keeps it.
	if !withIngress {
		f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3, ingress: {enabled: false}}"
	}
	var rackYAML []string
	for r := 0; r < racks; r++ {
		rackYAML = append(rackYAML, fmt.Sprintf("    - {name: r%d, count: %d, ipStart: {{ADDR %d}}}", r+1, perRack, 40+r*perRack))
	}
	inv := f.Inventory(tb, "bench.yaml",
		"    - {name: mgr-%d, count: 3, role: manager, ipStart: {{ADDR 11}}}\n    - {name: wrk-%02d, count: 12, ipStart: {{ADDR 21}}}",
		strings.Join(rackYAML, "\n"))
	fmt.Printf("bench/swarm: %d nodes (%d managers), lab %s on %s\n", len(inv.Nodes), 3, f.Lab.Prefix(), f.Net)

	start := time.Now()
	f.Up(tb, ctx, inv.Nodes)
	fmt.Printf("  lab up: %.1f s\n", time.Since(start).Seconds())

	// Anchor first: a sequential ssh loop, as in the Swarm2k instructions.
	var anchor time.Duration
	if withAnchor {
		cpu := machineCPU()
		anchor = anchorLoop(tb, ctx, f, inv, withIngress)
		fmt.Printf("  anchor used %.1f CPU-seconds\n", machineCPU()-cpu)
		leaveAll(tb, ctx, f, inv)
	}

	// provision swarm: the same stage `provision swarm` runs.
	var status io.Writer = io.Discard
	if verbose {
		status = timestamped{os.Stderr, time.Now()}
	}
	env := f.Env(tb, inv, io.Discard, status)
	env.Concurrency = concurrency
	conn := stages.NewConnector(stages.SSH{KeyPath: f.KeyPath})
	defer conn.Close()
	cpu := machineCPU()
	start = time.Now()
	if err := (pipeline.Pipeline{Stages: []pipeline.Stage{stages.Swarm{SSH: conn}}}).Run(ctx, env); err != nil {
		tb.Fatalf("provision swarm: %v", err)
	}
	ours := time.Since(start)
	fmt.Printf("  provision used %.1f CPU-seconds\n", machineCPU()-cpu)
	ready := countReady(tb, ctx, f, "mgr-1")

	fmt.Printf("  provision swarm (connect, gather, init, join, label, wait Ready): %7.2f s  (%d Ready)\n", ours.Seconds(), ready)
	if !withAnchor {
		return
	}
	fmt.Printf("  anchor: sequential `ssh NODE docker swarm join` loop + wait:   %7.2f s\n", anchor.Seconds())
	fmt.Printf("  ratio (anchor / provision): %.1fx faster\n", anchor.Seconds()/ours.Seconds())
	verdict := "met"
	if ours > 20*time.Second || anchor < 10*ours || ready != len(inv.Nodes) {
		verdict = "NOT met"
	}
	fmt.Printf("  goal all %d Ready in under 20 s and at least 10x the loop: %s\n", len(inv.Nodes), verdict)
}

// anchorLoop forms the swarm the way labs do by hand: init on the first
// manager, read the tokens, then one `ssh node docker swarm join` after the
// other, then poll `docker node ls` until every node is Ready.
func anchorLoop(tb *benchTB, ctx context.Context, f *labtest.Fixture, inv *inventory.Inventory, withIngress bool) time.Duration {
	known := filepath.Join(f.Dir, "anchor_known_hosts")
	// A join that outlasts Docker's 20 s wait goes on in the background;
	// an admin's loop moves on to the next node, and so does this one.
	// ssh itself is retried when it cannot connect (exit 255), as an
	// admin's loop would on a busy machine.
	ssh := func(ip string, args ...string) string {
		for attempt := 1; ; attempt++ {
			cmd := exec.CommandContext(ctx, "ssh", append([]string{
				"-i", f.KeyPath, "-o", "UserKnownHostsFile=" + known, "-o", "StrictHostKeyChecking=accept-new",
				"-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "-o", "ConnectTimeout=10", "provision@" + ip,
			}, args...)...)
			var out, errb bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &errb
			err := cmd.Run()
			if err == nil || strings.Contains(errb.String(), "Timeout was reached before node joined") {
				return strings.TrimSpace(out.String())
			}
			if cmd.ProcessState != nil && cmd.ProcessState.ExitCode() == 255 && attempt < 5 {
				time.Sleep(time.Second)
				continue
			}
			tb.Fatalf("anchor: ssh %s %s: %v: %s", ip, strings.Join(args[:3], " "), err, errb.String())
		}
	}
	first := inv.Nodes[0]
	start := time.Now()
	ssh(first.IP, "docker", "swarm", "init", "--advertise-addr", first.IP, "--listen-addr", first.IP+":2377",
		"--default-addr-pool", "10.128.0.0/12", "--default-addr-pool-mask-length", "20")
	if !withIngress {
		// `docker network rm ingress` asks for confirmation.
		ssh(first.IP, "sh", "-c", "'echo y | docker network rm ingress'")
	}
	workerToken := ssh(first.IP, "docker", "swarm", "join-token", "-q", "worker")
	managerToken := ssh(first.IP, "docker", "swarm", "join-token", "-q", "manager")
	for _, n := range inv.Nodes[1:] {
		token := workerToken
		if n.Role == inventory.Manager {
			token = managerToken
		}
		ssh(n.IP, "docker", "swarm", "join", "--token", token, "--advertise-addr", n.IP, "--listen-addr", n.IP+":2377", first.IP+":2377")
	}
	for {
		out := ssh(first.IP, "docker", "node", "ls", "--format", "{{.Status}}")
		if strings.Count(out, "Ready") == len(inv.Nodes) {
			return time.Since(start)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// leaveAll makes every node leave the swarm, workers first.
func leaveAll(tb *benchTB, ctx context.Context, f *labtest.Fixture, inv *inventory.Inventory) {
	nodes := inv.Nodes
	err := par.Each(ctx, 32, len(nodes), func(ctx context.Context, i int) error {
		if nodes[i].Role == inventory.Manager {
			return nil
		}
		return leave(ctx, f, nodes[i].Name)
	})
	for _, n := range nodes {
		if n.Role == inventory.Manager {
			if lerr := leave(ctx, f, n.Name); lerr != nil {
				err = lerr
			}
		}
	}
	if err != nil {
		tb.Fatalf("reset between runs: %v", err)
	}
}

func leave(ctx context.Context, f *labtest.Fixture, name string) error {
	n, _ := f.Node(name)
	c, err := lab.NewEngine(n.DockerSocket)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SwarmLeave(ctx, true); err != nil {
		return fmt.Errorf("%s leave: %w", name, err)
	}
	return nil
}

func countReady(tb *benchTB, ctx context.Context, f *labtest.Fixture, manager string) int {
	n, _ := f.Node(manager)
	c, err := lab.NewEngine(n.DockerSocket)
	if err != nil {
		tb.Fatalf("%v", err)
	}
	defer c.Close()
	nodes, err := c.NodeList(ctx, dswarm.NodeListOptions{})
	if err != nil {
		tb.Fatalf("node list: %v", err)
	}
	ready := 0
	for _, n := range nodes {
		if n.Status.State == dswarm.NodeStateReady {
			ready++
		}
	}
	return ready
}

// benchTB is what labtest needs from a test, for a program: cleanups run
// in reverse order when the benchmark ends, also when it fails.
type benchTB struct {
	mu       sync.Mutex
	cleanups []func()
}

var errFatal = fmt.Errorf("fatal")

func (b *benchTB) Helper() {}
func (b *benchTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/swarm: "+format+"\n", args...)
	panic(errFatal)
}
func (b *benchTB) Skipf(format string, args ...any) { b.Fatalf(format, args...) }
func (b *benchTB) Logf(format string, args ...any)  { fmt.Fprintf(os.Stderr, format+"\n", args...) }
func (b *benchTB) Cleanup(fn func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.cleanups = append(b.cleanups, fn)
}
func (b *benchTB) cleanup() {
	for i := len(b.cleanups) - 1; i >= 0; i-- {
		b.cleanups[i]()
	}
}

// timestamped prefixes each write with the seconds since start.
type timestamped struct {
	w     io.Writer
	start time.Time
}

func (t timestamped) Write(p []byte) (int, error) {
	fmt.Fprintf(t.w, "%7.2fs %s", time.Since(t.start).Seconds(), p)
	return len(p), nil
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
