// Command swarm2k rehearses the control plane of `provision swarm` at the
// size of Swarm2k (2,384 nodes) on one machine: every node is a fake
// Docker Engine API (internal/swarm/swarmtest, one HTTP listener per node,
// with a latency per call) in a process of its own, and provision's side
// is the library path `provision swarm` runs (swarm.Form with one member
// per inventory node, each reaching its engine through its own
// connection), minus the SSH transport: each member dials its engine's
// listener instead of a socket over SSH.
//
// For each size it forms the swarm on fresh engines, runs again (a re-run
// must make no mutating call) and grows it by -grow nodes (exactly -grow
// joins), each size in a process of its own so that its peak memory is its
// own, and prints provision's wall time, CPU-seconds, peak RSS and heap,
// goroutines and open connections, in all and per node.
//
//	go run ./bench/swarm2k                 # 500, 1000 and 2384 nodes
//	go run ./bench/swarm2k -sizes 300
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/swarm"
	"github.com/fhlab/provision/internal/swarm/swarmtest"
)

// latency is what each fake call waits before it is answered: the way to
// the node (an SSH channel on a LAN) and the daemon's own work.
type latency struct {
	RTT    time.Duration // every call
	Info   time.Duration // GET /info: the daemon gathers its facts
	Join   time.Duration // POST /swarm/join: certificate, Raft, first session
	Update time.Duration // POST /nodes/{id}/update: a Raft write
	List   time.Duration // GET /nodes, per 100 nodes listed
}

func (l latency) of(call string, nodes int) time.Duration {
	d := l.RTT
	switch call {
	case "GET /info":
		d += l.Info
	case "POST /swarm/join":
		d += l.Join
	case "POST /nodes/{id}/update":
		d += l.Update
	case "GET /nodes":
		d += time.Duration(nodes/100) * l.List
	}
	return d
}

func main() {
	sizes := flag.String("sizes", "500,1000,2384", "swarm sizes, comma-separated")
	grow := flag.Int("grow", 100, "nodes added after the re-run")
	concurrency := flag.Int("concurrency", 32, "provision's --concurrency")
	var lat latency
	flag.DurationVar(&lat.RTT, "rtt", 2*time.Millisecond, "latency of every call")
	flag.DurationVar(&lat.Info, "info", 15*time.Millisecond, "extra latency of GET /info")
	flag.DurationVar(&lat.Join, "join", 400*time.Millisecond, "extra latency of POST /swarm/join")
	flag.DurationVar(&lat.Update, "update", 15*time.Millisecond, "extra latency of a node update")
	flag.DurationVar(&lat.List, "list", time.Millisecond, "extra latency of GET /nodes per 100 nodes")
	serve := flag.Int("serve", 0, "(internal) serve this many fake engines")
	one := flag.Int("one", 0, "(internal) run one size and print its figures as JSON")
	cpuProfile := flag.String("cpuprofile", "", "with -one: write provision's CPU profile here")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case *serve > 0:
		err = serveFakes(*serve, lat)
	case *one > 0:
		if *cpuProfile != "" {
			pf, perr := os.Create(*cpuProfile)
			if perr != nil {
				err = perr
				break
			}
			pprof.StartCPUProfile(pf)
			defer pprof.StopCPUProfile()
		}
		var f figures
		if f, err = runOne(ctx, *one, *grow, *concurrency, lat); err == nil {
			err = json.NewEncoder(os.Stdout).Encode(f)
		}
	default:
		err = runAll(ctx, *sizes, *grow, *concurrency, lat)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/swarm2k: %v\n", err)
		os.Exit(1)
	}
}

// figures are one size's measurements, provision's process only.
type figures struct {
	Nodes   int
	Phases  []phase
	PeakRSS int64 // bytes, VmHWM over all phases
}

type phase struct {
	Name       string
	Nodes      int
	Wall       time.Duration
	CPU        time.Duration // user+system of provision's process
	Mutations  map[string]int
	PeakHeap   uint64 // bytes of heap objects, sampled
	Goroutines int    // peak, sampled
	Conns      int    // open sockets, peak, sampled
}

func runAll(ctx context.Context, sizes string, grow, concurrency int, lat latency) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	fmt.Printf("bench/swarm2k: fake engines in their own process, one listener per node; latency: %s per call, info +%s, join +%s, update +%s, node list +%s per 100 nodes; concurrency %d\n",
		lat.RTT, lat.Info, lat.Join, lat.Update, lat.List, concurrency)
	var all []figures
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 4 {
			return fmt.Errorf("-sizes: %q is not a node count of at least 4", s)
		}
		cmd := exec.CommandContext(ctx, self, "-one", strconv.Itoa(n), "-grow", strconv.Itoa(grow), "-concurrency", strconv.Itoa(concurrency),
			"-rtt", lat.RTT.String(), "-info", lat.Info.String(), "-join", lat.Join.String(), "-update", lat.Update.String(), "-list", lat.List.String())
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("%d nodes: %w", n, err)
		}
		var f figures
		if err := json.Unmarshal(out, &f); err != nil {
			return fmt.Errorf("%d nodes: %w", n, err)
		}
		all = append(all, f)
		printFigures(f)
	}
	fmt.Println()
	fmt.Println("| nodes | run | wall | per node | CPU-s | CPU per node | peak heap | peak RSS (process) | RSS per node | goroutines (peak) | per node | open connections (peak) | per node | mutating calls |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
	for _, f := range all {
		for _, p := range f.Phases {
			fmt.Printf("| %d | %s | %.2f s | %.2f ms | %.2f | %.2f ms | %.0f MB | %.0f MB | %.1f kB | %d | %.2f | %d | %.2f | %s |\n",
				p.Nodes, p.Name, p.Wall.Seconds(), ms(p.Wall)/float64(p.Nodes), p.CPU.Seconds(), ms(p.CPU)/float64(p.Nodes),
				mb(p.PeakHeap), mb(uint64(f.PeakRSS)), float64(f.PeakRSS)/1024/float64(p.Nodes),
				p.Goroutines, float64(p.Goroutines)/float64(p.Nodes), p.Conns, float64(p.Conns)/float64(p.Nodes), calls(p.Mutations))
		}
	}
	return nil
}

func printFigures(f figures) {
	fmt.Printf("%d nodes (peak RSS %.0f MB):\n", f.Nodes, mb(uint64(f.PeakRSS)))
	for _, p := range f.Phases {
		fmt.Printf("  %-14s %5d nodes  %6.2f s  %6.2f CPU-s  heap %4.0f MB  %5d goroutines  %5d connections  mutating: %s\n",
			p.Name, p.Nodes, p.Wall.Seconds(), p.CPU.Seconds(), mb(p.PeakHeap), p.Goroutines, p.Conns, calls(p.Mutations))
	}
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func mb(b uint64) float64        { return float64(b) / (1 << 20) }

func calls(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range []string{"POST /swarm/init", "POST /swarm/join", "POST /nodes/{id}/update", "DELETE /networks/{id}"} {
		if m[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", m[k], k))
		}
	}
	other := 0
	for k, v := range m {
		switch k {
		case "POST /swarm/init", "POST /swarm/join", "POST /nodes/{id}/update", "DELETE /networks/{id}":
		default:
			other += v
		}
	}
	if other > 0 {
		parts = append(parts, fmt.Sprintf("%d other", other))
	}
	return strings.Join(parts, ", ")
}

// fakes is the fake engines' process, as provision's side sees it.
type fakes struct {
	cmd   *exec.Cmd
	stdin io.Closer
	ctl   string // the control listener: GET /calls, POST /reset
	nodes []fakeNode
}

type fakeNode struct{ Name, Addr, Listen string }

// startFakes starts the fake engines' process with n engines: mgr-1..3,
// then workers.
func startFakes(ctx context.Context, n int, lat latency) (*fakes, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, self, "-serve", strconv.Itoa(n),
		"-rtt", lat.RTT.String(), "-info", lat.Info.String(), "-join", lat.Join.String(), "-update", lat.Update.String(), "-list", lat.List.String())
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	f := &fakes{cmd: cmd, stdin: stdin}
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 2 && fs[0] == "ready":
			f.ctl = fs[1]
			return f, nil
		case len(fs) == 3:
			f.nodes = append(f.nodes, fakeNode{fs[0], fs[1], fs[2]})
		}
	}
	f.close()
	return nil, fmt.Errorf("the fake engines' process ended before it was ready: %v", sc.Err())
}

func (f *fakes) close() {
	f.stdin.Close()
	f.cmd.Wait()
}

// calls returns the mutating calls the fake engines answered since the
// last reset, and resets the count.
func (f *fakes) calls(ctx context.Context) (map[string]int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+f.ctl+"/calls", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("the fakes' count: %w", err)
	}
	defer resp.Body.Close()
	var m map[string]int
	return m, json.NewDecoder(resp.Body).Decode(&m)
}

// serveFakes is the fake engines' process: n engines, one listener each,
// until stdin closes.
func serveFakes(n int, lat latency) error {
	raiseFileLimit()
	w := swarmtest.New()
	defer w.Close()
	var members atomic.Int64
	w.SetLatency(func(_, call string) time.Duration { return lat.of(call, int(members.Load())) })
	out := bufio.NewWriter(os.Stdout)
	for i := range n {
		name := fmt.Sprintf("mgr-%d", i+1)
		if i >= 3 {
			name = fmt.Sprintf("node-%04d", i-2)
		}
		// Addresses of the benchmarking range; nothing is sent to them:
		// the fake resolves a join's manager address among its engines.
		addr := fmt.Sprintf("198.18.%d.%d", 1+i/250, 1+i%250)
		e := w.Add(name, addr)
		fmt.Fprintf(out, "%s %s %s\n", name, addr, e.Address())
	}
	ctl := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		calls := w.Calls()
		w.ResetCalls()
		if nodes := w.Nodes("mgr-1"); nodes != nil {
			members.Store(int64(len(nodes)))
		}
		json.NewEncoder(rw).Encode(calls)
	}))
	defer ctl.Close()
	fmt.Fprintf(out, "ready %s\n", ctl.Listener.Addr())
	if err := out.Flush(); err != nil {
		return err
	}
	// Keep the node count for the node list's latency current.
	done := make(chan struct{})
	go func() {
		io.Copy(io.Discard, os.Stdin)
		close(done)
	}()
	for {
		select {
		case <-done:
			return nil
		case <-time.After(500 * time.Millisecond):
			members.Store(int64(len(w.Nodes("mgr-1"))))
		}
	}
}

// runOne is provision's side for one size: form on fresh engines, re-run,
// grow.
func runOne(ctx context.Context, n, grow, concurrency int, lat latency) (figures, error) {
	raiseFileLimit()
	fk, err := startFakes(ctx, n+grow, lat)
	if err != nil {
		return figures{}, err
	}
	defer fk.close()
	f := figures{Nodes: n}
	check := func(p phase, want map[string]int) error {
		if !maps.Equal(p.Mutations, want) {
			return fmt.Errorf("%d nodes, %s: mutating calls %v, want %v", p.Nodes, p.Name, p.Mutations, want)
		}
		return nil
	}
	workers := func(n int) int { return n - 3 }
	runs := []struct {
		name  string
		nodes int
		want  map[string]int
	}{
		// Init on mgr-1, the ingress network removed, every other node
		// joined, every worker labelled.
		{"form", n, map[string]int{"POST /swarm/init": 1, "DELETE /networks/{id}": 1, "POST /swarm/join": n - 1, "POST /nodes/{id}/update": workers(n)}},
		{"re-run", n, map[string]int{}},
		{fmt.Sprintf("grow +%d", grow), n + grow, map[string]int{"POST /swarm/join": grow, "POST /nodes/{id}/update": grow}},
		{"re-run", n + grow, map[string]int{}},
	}
	for _, r := range runs {
		p, err := measure(ctx, r.name, fk, fk.nodes[:r.nodes], concurrency)
		if err != nil {
			return f, err
		}
		if err := check(p, r.want); err != nil {
			return f, err
		}
		f.Phases = append(f.Phases, p)
	}
	f.PeakRSS = vmHWM()
	return f, nil
}

// measure runs provision's library path once, as `provision swarm` runs
// it, on these nodes, and samples its process meanwhile.
func measure(ctx context.Context, name string, fk *fakes, nodes []fakeNode, concurrency int) (phase, error) {
	if _, err := fk.calls(ctx); err != nil { // reset
		return phase{}, err
	}
	members := make([]*swarm.Member, len(nodes))
	for i, nd := range nodes {
		role, labels := swarm.Worker, map[string]string{"rack": fmt.Sprintf("r%d", i/48+1)}
		if i < 3 {
			role, labels = swarm.Manager, nil
		}
		listen := nd.Listen
		members[i] = &swarm.Member{Name: nd.Name, Addr: nd.Addr, Role: role, Labels: labels,
			Connect: func(ctx context.Context) (swarm.Endpoint, error) {
				// Where SSH would open a channel to the node's socket.
				dial := func(ctx context.Context, _, _ string) (net.Conn, error) {
					return (&net.Dialer{}).DialContext(ctx, "tcp", listen)
				}
				return swarm.Endpoint{Dial: dial, Where: "fake engine at " + listen}, nil
			}}
	}
	runtime.GC()
	s := startSampler()
	cpu0, start := cpuTime(), time.Now()
	res, err := swarm.Form(ctx, members, swarm.Options{
		DefaultAddrPool: []string{"10.128.0.0/12"}, SubnetSize: 20,
		Ingress:     swarm.Ingress{Disabled: true},
		Concurrency: concurrency,
	})
	p := phase{Name: name, Nodes: len(nodes), Wall: time.Since(start), CPU: cpuTime() - cpu0}
	var own time.Duration
	p.PeakHeap, p.Goroutines, p.Conns, own = s.stop()
	p.CPU -= own // the sampler's reading of /proc is the bench's, not provision's
	for _, m := range members {
		m.Close()
	}
	if err != nil {
		return p, fmt.Errorf("%d nodes, %s: %w", len(nodes), name, err)
	}
	if len(res.Rows) != len(nodes) {
		return p, fmt.Errorf("%d nodes, %s: the swarm has %d nodes", len(nodes), name, len(res.Rows))
	}
	p.Mutations, err = fk.calls(ctx)
	return p, err
}

// sampler records the process's peak heap, goroutines and open sockets,
// on a thread of its own whose CPU time it reports, so that it can be
// taken off provision's.
type sampler struct {
	stopc      chan struct{}
	wg         sync.WaitGroup
	heap       uint64
	goroutines int
	conns      int
	cpu        time.Duration
}

func startSampler() *sampler {
	s := &sampler{stopc: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		t0 := threadCPU()
		defer func() { s.cpu = threadCPU() - t0 }()
		for {
			s.sample()
			select {
			case <-s.stopc:
				s.sample()
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return s
}

func (s *sampler) sample() {
	m := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(m)
	s.heap = max(s.heap, m[0].Value.Uint64())
	s.goroutines = max(s.goroutines, runtime.NumGoroutine())
	s.conns = max(s.conns, openSockets())
}

func (s *sampler) stop() (heap uint64, goroutines, conns int, cpu time.Duration) {
	close(s.stopc)
	s.wg.Wait()
	return s.heap, s.goroutines, s.conns, s.cpu
}

// threadCPU is the calling thread's user and system time.
func threadCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// openSockets counts the process's open sockets.
func openSockets() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range ents {
		if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && strings.HasPrefix(l, "socket:") {
			n++
		}
	}
	return n
}

// cpuTime is the user and system time of this process so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// vmHWM is the process's peak resident set size.
func vmHWM() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// raiseFileLimit lifts the soft limit on open files to the hard one: every
// node is a listener on the fakes' side and a connection or two on
// provision's. (Go does this at start-up too; this makes it explicit and
// says when the hard limit is low.)
func raiseFileLimit() {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return
	}
	l.Cur = l.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		fmt.Fprintf(os.Stderr, "bench/swarm2k: raise the open-file limit: %v\n", err)
	}
	if l.Max < 16384 {
		fmt.Fprintf(os.Stderr, "bench/swarm2k: the open-file limit is %d; 2,384 nodes need about 10,000 (ulimit -n)\n", l.Max)
	}
}
