package nbdroot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"sync"
	"time"
)

// Node is a netbooted Pi.
type Node struct {
	Name   string
	Serial string
}

// Config says which roots to serve and how.
type Config struct {
	// Golden is the golden image; Dir holds the overlays (state dir).
	Golden string
	Dir    string
	// Nodes are the netbooted Pis, in inventory order.
	Nodes []Node
	// Bind is the address qemu-nbd listens on (default 0.0.0.0); Host is
	// the address the Pis connect to (default Bind; required when Bind
	// is a wildcard).
	Bind, Host string
	// BasePort is the first port handed out (default 10809, NBD's own);
	// each Pi keeps the port it got first.
	BasePort int
	// Shared is how many clients an export takes at once (default 2: a Pi
	// reconnecting while its old connection times out).
	Shared int
	// Size is each new overlay's virtual size in bytes (default: the
	// golden image's); cloud-init's growpart/resize_rootfs grow the root
	// into it on first boot.
	Size int64
	// VerifyGolden checks the golden image against <Golden>.sha256 first.
	VerifyGolden bool
	// QemuNBD and QemuImg are the binaries (default from PATH).
	QemuNBD, QemuImg string
	// RestartDelay is the pause before an export that died is restarted
	// (default 2s).
	RestartDelay time.Duration
	Log          *slog.Logger
	// OnEvent, when set, is told about every change of an export's state.
	OnEvent func(Event)
}

// State is what an export is doing.
type State string

const (
	Ready      State = "ready"      // overlay made, not served
	Serving    State = "serving"    // this process's qemu-nbd serves it
	External   State = "external"   // another process serves it (a systemd unit)
	Restarting State = "restarting" // its qemu-nbd died; started again shortly
	Stopped    State = "stopped"
	Failed     State = "failed"  // its qemu-nbd could not start
	Refused    State = "refused" // not served: see Err
)

// Event is a change of one export's state.
type Event struct {
	Node  string
	State State
	PID   int
	Err   error
}

// Status is one export and what it is doing.
type Status struct {
	Export
	State State
	PID   int
	Err   error
	Since time.Time
	// Clients is how many TCP connections the export has now (a Pi with
	// its root attached has one).
	Clients int
}

type export struct {
	ex    Export
	meta  meta
	state State
	pid   int
	err   error
	since time.Time
	stop  chan struct{} // closed to stop the supervisor
	done  chan struct{} // closed when the supervisor has ended
}

// Exports are the root disks of a set of netbooted Pis.
type Exports struct {
	cfg    Config
	golden Golden
	dir    string
	log    *slog.Logger

	mu    sync.Mutex
	nodes map[string]*export
	order []string
	ctx   context.Context // Start's
	wg    sync.WaitGroup
}

// New checks the golden image and makes every Pi's overlay that does not
// exist yet (with its port). A Pi whose overlay no longer fits the golden
// image is refused (Status says why), not served; the others are.
func New(ctx context.Context, cfg Config) (*Exports, error) {
	if err := defaults(&cfg); err != nil {
		return nil, err
	}
	g, err := CheckGolden(ctx, cfg.Golden, cfg.VerifyGolden)
	if err != nil {
		return nil, err
	}
	if cfg.Size != 0 && cfg.Size < g.Size {
		return nil, fmt.Errorf("netboot roots: size %d is smaller than the golden image %s (%d bytes)", cfg.Size, g.Path, g.Size)
	}
	x := &Exports{cfg: cfg, golden: g, dir: cfg.Dir, log: cfg.Log, nodes: map[string]*export{}}
	if err := os.MkdirAll(x.dir, 0o700); err != nil {
		return nil, fmt.Errorf("netboot roots: %w", err)
	}
	metas, err := readMetas(x.dir)
	if err != nil {
		return nil, err
	}
	used := map[int]string{}
	for _, m := range metas {
		used[m.Port] = m.Node
	}
	for _, n := range cfg.Nodes {
		e := &export{state: Ready, since: time.Now()}
		e.ex = Export{Node: n.Name, Host: cfg.Host, Name: n.Name, Overlay: x.overlayPath(n.Name), Partition: g.Root.Partition}
		x.nodes[n.Name] = e
		x.order = append(x.order, n.Name)
		m, ok := metas[n.Name]
		if ok {
			e.meta, e.ex.Port = m, m.Port
			if why := goldenChanged(m, g); why != "" {
				e.refuse(fmt.Errorf("%s: %s; reset it to start from the current golden image (provision netboot reset %s)", n.Name, why, n.Name))
				continue
			}
			if _, err := os.Stat(e.ex.Overlay); err == nil {
				continue
			}
		} else {
			port := cfg.BasePort
			for used[port] != "" {
				port++
			}
			if port > 65535 {
				return nil, fmt.Errorf("netboot roots: no free port from %d for %s", cfg.BasePort, n.Name)
			}
			used[port] = n.Name
			m = meta{Node: n.Name, Serial: n.Serial, Port: port}
			e.ex.Port = port
			if _, err := os.Stat(e.ex.Overlay); err == nil {
				e.meta = m
				e.refuse(fmt.Errorf("%s: %s was not made by provision (no %s): remove it, or reset the node", n.Name, e.ex.Overlay, x.metaPath(n.Name)))
				continue
			}
		}
		if err := x.makeOverlay(ctx, e, m); err != nil {
			return nil, err
		}
	}
	return x, nil
}

func defaults(cfg *Config) error {
	if cfg.Dir == "" {
		return errors.New("netboot roots: no directory for the overlays")
	}
	if cfg.Bind == "" {
		cfg.Bind = "0.0.0.0"
	}
	bind, err := netip.ParseAddr(cfg.Bind)
	if err != nil {
		return fmt.Errorf("netboot roots: bind address %q is not an IP address", cfg.Bind)
	}
	if cfg.Host == "" {
		if bind.IsUnspecified() {
			return fmt.Errorf("netboot roots: listening on %s, the Pis need the server's own address: set the address they reach it at", cfg.Bind)
		}
		cfg.Host = cfg.Bind
	}
	if cfg.BasePort == 0 {
		cfg.BasePort = 10809
	}
	if cfg.BasePort < 1 || cfg.BasePort > 65535 {
		return fmt.Errorf("netboot roots: base port %d is not a TCP port", cfg.BasePort)
	}
	if cfg.Shared == 0 {
		cfg.Shared = 2
	}
	if cfg.QemuNBD == "" {
		cfg.QemuNBD = "qemu-nbd"
	}
	if cfg.QemuImg == "" {
		cfg.QemuImg = "qemu-img"
	}
	for _, t := range []string{cfg.QemuNBD, cfg.QemuImg} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("netboot roots: %s is not installed (Debian package qemu-utils)", t)
		}
	}
	if cfg.RestartDelay == 0 {
		cfg.RestartDelay = 2 * time.Second
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	seen := map[string]bool{}
	for _, n := range cfg.Nodes {
		if err := checkName(n.Name); err != nil {
			return fmt.Errorf("netboot roots: %w", err)
		}
		if seen[n.Name] {
			return fmt.Errorf("netboot roots: node %s is listed twice", n.Name)
		}
		seen[n.Name] = true
	}
	return nil
}

// makeOverlay makes e's overlay afresh from the golden image and records
// it.
func (x *Exports) makeOverlay(ctx context.Context, e *export, m meta) error {
	size := x.cfg.Size
	if size == 0 {
		size = x.golden.Size
	}
	if err := createOverlay(ctx, x.cfg.QemuImg, e.ex.Overlay, x.golden, x.cfg.Size); err != nil {
		return fmt.Errorf("%s: %w", e.ex.Node, err)
	}
	if err := os.Chmod(e.ex.Overlay, 0o600); err != nil {
		return fmt.Errorf("%s: %w", e.ex.Node, err)
	}
	m.Size, m.Created = size, time.Now().UTC()
	m.Golden, m.GoldenSize, m.GoldenModTime = x.golden.Path, x.golden.Size, x.golden.ModTime.UnixNano()
	if err := writeMeta(x.metaPath(e.ex.Node), m); err != nil {
		return fmt.Errorf("%s: %w", e.ex.Node, err)
	}
	e.meta = m
	x.log.Info("overlay made", "node", e.ex.Node, "overlay", e.ex.Overlay, "golden", x.golden.Path, "port", m.Port)
	return nil
}

func (e *export) refuse(err error) {
	e.state, e.err, e.since = Refused, err, time.Now()
}

// Golden is the golden image the exports are backed by.
func (x *Exports) Golden() Golden { return x.golden }

// Export is where node finds its root.
func (x *Exports) Export(node string) (Export, error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	e, ok := x.nodes[node]
	if !ok {
		return Export{}, fmt.Errorf("%s is not a netbooted Pi here", node)
	}
	return e.ex, nil
}

// Status is every export's state, in inventory order.
func (x *Exports) Status() []Status {
	x.mu.Lock()
	defer x.mu.Unlock()
	var out []Status
	for _, name := range x.order {
		e := x.nodes[name]
		s := Status{Export: e.ex, State: e.state, PID: e.pid, Err: e.err, Since: e.since}
		if e.state == Serving || e.state == External {
			s.Clients = connections(e.ex.Port)
		}
		out = append(out, s)
	}
	return out
}

func (x *Exports) set(e *export, st State, pid int, err error) {
	x.mu.Lock()
	e.state, e.pid, e.err, e.since = st, pid, err, time.Now()
	x.mu.Unlock()
	lvl := slog.LevelInfo
	if err != nil {
		lvl = slog.LevelWarn
	}
	x.log.Log(context.Background(), lvl, "root export "+string(st), "node", e.ex.Node, "port", e.ex.Port, "pid", pid, "err", err)
	if x.cfg.OnEvent != nil {
		x.cfg.OnEvent(Event{Node: e.ex.Node, State: st, PID: pid, Err: err})
	}
}

// startConcurrency bounds the exports started at once (a rack of 36 or
// all 144 Pis at the server's start).
const startConcurrency = 16

// Start serves every Pi's root that is not refused and not already served
// by another process (a systemd unit: left alone, shown as External). It
// returns once each export listens; those that could not start are in the
// error, the rest keep serving. An export whose qemu-nbd dies is started
// again. When ctx ends every export is stopped; Wait waits for that.
func (x *Exports) Start(ctx context.Context) error {
	x.mu.Lock()
	if x.ctx != nil {
		x.mu.Unlock()
		return errors.New("netboot roots: already started")
	}
	x.ctx = ctx
	names := slices.Clone(x.order)
	x.mu.Unlock()
	type result struct {
		node string
		err  error
	}
	results := make(chan result, len(names))
	sem := make(chan struct{}, startConcurrency)
	n := 0
	for _, name := range names {
		e := x.nodes[name]
		x.mu.Lock()
		refused := e.state == Refused
		x.mu.Unlock()
		if refused {
			continue
		}
		n++
		go func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results <- result{name, x.startOne(ctx, e)}
		}()
	}
	var errs []error
	for range n {
		if r := <-results; r.err != nil {
			errs = append(errs, r.err)
		}
	}
	return errors.Join(errs...)
}

// StartNode serves node's root again after Stop (and Reset).
func (x *Exports) StartNode(node string) error {
	x.mu.Lock()
	ctx := x.ctx
	e, ok := x.nodes[node]
	var st State
	var err error
	if ok {
		st, err = e.state, e.err
	}
	x.mu.Unlock()
	switch {
	case !ok:
		return fmt.Errorf("%s is not a netbooted Pi here", node)
	case ctx == nil:
		return errors.New("netboot roots: not started")
	case st == Refused:
		return err
	case st == Serving || st == Restarting:
		return nil
	}
	return x.startOne(ctx, e)
}

func (x *Exports) startOne(ctx context.Context, e *export) error {
	busy, err := inUse(ctx, x.cfg.QemuImg, e.ex.Overlay)
	if ctx.Err() != nil {
		x.set(e, Stopped, 0, nil)
		return nil
	}
	if err != nil {
		x.set(e, Failed, 0, err)
		return fmt.Errorf("%s: %w", e.ex.Node, err)
	}
	if busy {
		x.set(e, External, readPID(x.pidPath(e.ex.Node)), nil)
		return nil
	}
	ready := make(chan error, 1)
	x.mu.Lock()
	e.stop, e.done = make(chan struct{}), make(chan struct{})
	x.mu.Unlock()
	x.wg.Add(1)
	go x.supervise(ctx, e, e.stop, e.done, ready)
	return <-ready
}

// Wait returns when every export this process started has stopped.
func (x *Exports) Wait() { x.wg.Wait() }

// Stop stops serving node's root (a Pi using it loses its disk).
func (x *Exports) Stop(node string) error {
	x.mu.Lock()
	e, ok := x.nodes[node]
	var stop, done chan struct{}
	var st State
	var pid int
	if ok {
		stop, done = e.stop, e.done
		st, pid = e.state, e.pid
		e.stop = nil
	}
	x.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s is not a netbooted Pi here", node)
	}
	if stop == nil {
		if st == External {
			return fmt.Errorf("%s: its root is served by another process (pid %d; a systemd unit?): stop that", node, pid)
		}
		return nil
	}
	close(stop)
	<-done
	return nil
}

// Reset throws node's overlay away: the Pi starts from the golden image
// again at its next boot. It refuses while the root is served, by this
// process or another (qemu's lock on the overlay): Stop it first.
func (x *Exports) Reset(ctx context.Context, node string) error {
	x.mu.Lock()
	e, ok := x.nodes[node]
	running := ok && e.stop != nil
	var pid int
	if ok {
		pid = e.pid
	}
	x.mu.Unlock()
	if !ok {
		return fmt.Errorf("reset %s: not a netbooted Pi here", node)
	}
	if running {
		return fmt.Errorf("reset %s: %w (qemu-nbd pid %d, here): stop it first", node, ErrInUse, pid)
	}
	busy, err := inUse(ctx, x.cfg.QemuImg, e.ex.Overlay)
	if err != nil {
		return fmt.Errorf("reset %s: %w", node, err)
	}
	if busy {
		holder := "another process"
		if pid := readPID(x.pidPath(node)); pid > 0 {
			holder = fmt.Sprintf("qemu-nbd pid %d", pid)
		}
		return fmt.Errorf("reset %s: %w: %s holds %s; stop it first (systemctl stop %s, or stop the provision netboot roots or serve that runs it)",
			node, ErrInUse, holder, e.ex.Overlay, UnitName(node))
	}
	if err := x.makeOverlay(ctx, e, e.meta); err != nil {
		return fmt.Errorf("reset %w", err)
	}
	x.set(e, Ready, 0, nil)
	return nil
}
