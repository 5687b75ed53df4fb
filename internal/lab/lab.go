// Package lab emulates a lab on one machine: every node is a network
// namespace on a Linux bridge with its own hostname (UTS namespace), its own
// dockerd and its own sshd, so the swarm stage can form a real multi-node
// Docker Swarm without any hardware (`provision lab up|down|status`).
//
// Everything the lab makes carries its prefix (namespaces, bridge, veths,
// cgroups, directories, the group) and is recorded in a manifest in the
// state directory (/run/provision-lab/<prefix>; docker data roots are in
// /var/lib/provision-lab/<prefix>) before it is made, so Down removes it
// all, also after a crash. The lab sends no traffic anywhere but to its own namespaces: they
// have no default route and the bridge is not NATed.
package lab

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultBaseDir holds the state directories of all labs (runtime files:
// sockets, pid files, keys, logs, the manifest).
const DefaultBaseDir = "/run/provision-lab"

// DefaultDataBaseDir holds the docker data roots of all labs' nodes:
// images and containers belong on disk, and /run is often a small tmpfs.
const DefaultDataBaseDir = "/var/lib/provision-lab"

// Defaults for Config's zero values.
const (
	DefaultConcurrency  = 8
	DefaultReadyTimeout = 2 * time.Minute
	DefaultStopTimeout  = 5 * time.Second
)

// Config configures a Lab.
type Config struct {
	// Prefix names everything the lab makes; see PrefixFor.
	Prefix string
	// StateDir holds the manifest, the nodes' files and the SSH user's
	// home. Default: DefaultBaseDir/<Prefix>.
	StateDir string
	// DataDir holds every node's docker data root (images, containers,
	// swarm state). Default: DefaultDataBaseDir/<Prefix>.
	DataDir string
	// Network is the nodes' subnet; Gateway (inside it) is the host's
	// address on the lab bridge.
	Network netip.Prefix
	Gateway netip.Addr
	// SSHUser may log in to every node with one of AuthorizedKeys. The
	// user is created on this machine when missing.
	SSHUser        string
	AuthorizedKeys []string
	// Logger receives progress; nil discards it.
	Logger *slog.Logger
	// Concurrency bounds how many nodes start or stop at once.
	Concurrency int
	// ReadyTimeout bounds the wait for one node's dockerd and sshd.
	ReadyTimeout time.Duration
	// StopTimeout bounds the graceful stop of one node's dockerd in Down
	// before everything left is killed (a swarm manager takes seconds to
	// stop; Down deletes all its state anyway, so a kill loses nothing).
	StopTimeout time.Duration
}

// NodeSpec is a node to bring up: its hostname and address. A Netboot
// node is a Raspberry Pi that boots from the network: Up powers it on (its
// namespace) but its system (hostname, dockerd, sshd) starts only when Boot
// has fetched its boot files the way its bootloader would.
type NodeSpec struct {
	Name    string
	IP      netip.Addr
	Netboot bool
	// Manager: a swarm manager, whose daemons get a higher CPU priority.
	Manager bool
}

// Lab is one emulated lab. Its methods may be called from several
// goroutines; Up and Down of one lab serialise on a lock file.
type Lab struct {
	cfg     Config
	log     *slog.Logger
	bridge  string
	group   string
	tools   tools
	toolErr error
}

// New checks cfg and fills its defaults. It does not touch the machine;
// Up and Down report a missing root or program (see Preflight).
func New(cfg Config) (*Lab, error) {
	if err := checkPrefix(cfg.Prefix); err != nil {
		return nil, err
	}
	if !cfg.Network.IsValid() || !cfg.Network.Addr().Is4() {
		return nil, fmt.Errorf("lab network %q: want an IPv4 CIDR", cfg.Network)
	}
	cfg.Network = cfg.Network.Masked()
	if !cfg.Network.Contains(cfg.Gateway) || cfg.Gateway == cfg.Network.Addr() {
		return nil, fmt.Errorf("lab gateway %s is not a host address in %s", cfg.Gateway, cfg.Network)
	}
	if cfg.SSHUser == "" || cfg.SSHUser == "root" {
		return nil, fmt.Errorf("lab SSH user %q: want a named, non-root user", cfg.SSHUser)
	}
	if len(cfg.AuthorizedKeys) == 0 {
		return nil, errors.New("lab: no authorized SSH keys: nobody could log in to the nodes")
	}
	if cfg.StateDir == "" {
		cfg.StateDir = filepath.Join(DefaultBaseDir, cfg.Prefix)
	}
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(DefaultDataBaseDir, cfg.Prefix)
	}
	for _, d := range []*string{&cfg.StateDir, &cfg.DataDir} {
		if !filepath.IsAbs(*d) {
			return nil, fmt.Errorf("lab directory %q: want an absolute path", *d)
		}
		*d = filepath.Clean(*d)
	}
	if cfg.StateDir == cfg.DataDir {
		return nil, fmt.Errorf("lab state and data directories are both %s: give them their own", cfg.StateDir)
	}
	if cfg.Concurrency < 1 {
		cfg.Concurrency = DefaultConcurrency
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	if cfg.StopTimeout <= 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	l := &Lab{cfg: cfg, log: log.With("lab", cfg.Prefix), bridge: bridgeName(cfg.Prefix), group: cfg.Prefix}
	l.tools, l.toolErr = findTools()
	return l, nil
}

// Prefix is the lab's name prefix.
func (l *Lab) Prefix() string { return l.cfg.Prefix }

// StateDir is the lab's state directory.
func (l *Lab) StateDir() string { return l.cfg.StateDir }

// DataDir is where the nodes' docker data roots are.
func (l *Lab) DataDir() string { return l.cfg.DataDir }

// ManifestPath is the lab's manifest (JSON, mode 0600).
func (l *Lab) ManifestPath() string { return l.manifestPath() }

// Bridge is the name of the lab's bridge on the host.
func (l *Lab) Bridge() string { return l.bridge }

func (l *Lab) manifestPath() string       { return filepath.Join(l.cfg.StateDir, ManifestFile) }
func (l *Lab) authorizedKeysPath() string { return filepath.Join(l.cfg.StateDir, "authorized_keys") }
func (l *Lab) nodeDir(name string) string { return filepath.Join(l.cfg.StateDir, "nodes", name) }

// Nodes returns the nodes in the manifest: the facts later stages need.
// A lab that is not up has none.
func (l *Lab) Nodes() ([]Node, error) {
	m, err := loadManifest(l.manifestPath())
	if err != nil || m == nil {
		return nil, err
	}
	return m.Nodes, nil
}

// newNode derives every name and path of a node.
func (l *Lab) newNode(spec NodeSpec, taken map[string]bool) Node {
	dir := l.nodeDir(spec.Name)
	return Node{
		Name:         spec.Name,
		IP:           spec.IP,
		Netns:        netnsName(l.cfg.Prefix, spec.Name),
		Veth:         vethName(l.cfg.Prefix, spec.Name, taken),
		Dir:          dir,
		DataRoot:     filepath.Join(l.cfg.DataDir, spec.Name),
		UTS:          filepath.Join(dir, "uts"),
		DockerSocket: filepath.Join(dir, "docker.sock"),
		SSHAddr:      netip.AddrPortFrom(spec.IP, 22).String(),
	}
}

// checkSpecs refuses nodes the lab cannot make: bad or duplicate names,
// addresses outside the network or taken by the gateway, and state paths
// too long for a unix socket.
func (l *Lab) checkSpecs(specs []NodeSpec) error {
	var errs []error
	names, ips := map[string]bool{}, map[netip.Addr]string{}
	for _, s := range specs {
		if err := checkNodeName(s.Name); err != nil {
			errs = append(errs, err)
		}
		if names[s.Name] {
			errs = append(errs, fmt.Errorf("node %s is listed twice", s.Name))
		}
		names[s.Name] = true
		switch {
		case !l.cfg.Network.Contains(s.IP):
			errs = append(errs, fmt.Errorf("node %s: address %s is outside the lab network %s", s.Name, s.IP, l.cfg.Network))
		case s.IP == l.cfg.Gateway || s.IP == l.cfg.Network.Addr():
			errs = append(errs, fmt.Errorf("node %s: address %s is the network's or the host's", s.Name, s.IP))
		case ips[s.IP] != "":
			errs = append(errs, fmt.Errorf("nodes %s and %s share address %s", ips[s.IP], s.Name, s.IP))
		}
		ips[s.IP] = s.Name
		// containerd's socket is the longest path dockerd makes.
		if p := filepath.Join(l.nodeDir(s.Name), "exec", "containerd", "containerd-debug.sock"); len(p) > maxSocketPath {
			errs = append(errs, fmt.Errorf("node %s: socket path %s is longer than %d bytes: use a shorter state dir or node name", s.Name, p, maxSocketPath))
		}
	}
	return errors.Join(errs...)
}

// lock takes the lab's lock file (in the state dir), waiting for another
// Up or Down of the same lab to finish.
func (l *Lab) lock(ctx context.Context) (unlock func(), err error) {
	path := filepath.Join(l.cfg.StateDir, "lock")
	for {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock lab: %w", err)
		}
		for {
			err = unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			if err == nil || !errors.Is(err, unix.EWOULDBLOCK) {
				break
			}
			select {
			case <-ctx.Done():
				f.Close()
				return nil, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock lab: %w", err)
		}
		var st unix.Stat_t
		if unix.Fstat(int(f.Fd()), &st) == nil && st.Nlink > 0 {
			return func() { f.Close() }, nil
		}
		f.Close() // a Down removed the file while we waited: lock anew
		if err := os.MkdirAll(l.cfg.StateDir, 0o755); err != nil {
			return nil, fmt.Errorf("lock lab: %w", err)
		}
	}
}

// otherManifests reads the manifests of the other labs under the same
// base directory: host resources shared by labs go with the last one.
// lockedManifest takes the lab's lock and reads its manifest (nil when
// the lab is not up); the caller runs unlock. Errors start with what.
func (l *Lab) lockedManifest(ctx context.Context, what string) (m *Manifest, unlock func(), err error) {
	if unlock, err = l.lock(ctx); err != nil {
		return nil, nil, err
	}
	if m, err = loadManifest(l.manifestPath()); err != nil {
		unlock()
		return nil, nil, fmt.Errorf("%s: %w", what, err)
	}
	return m, unlock, nil
}

func (l *Lab) otherManifests() []*Manifest {
	base := filepath.Dir(l.cfg.StateDir)
	ents, _ := os.ReadDir(base)
	var ms []*Manifest
	for _, e := range ents {
		if !e.IsDir() || filepath.Join(base, e.Name()) == l.cfg.StateDir {
			continue
		}
		if m, err := loadManifest(filepath.Join(base, e.Name(), ManifestFile)); err == nil && m != nil {
			ms = append(ms, m)
		}
	}
	return ms
}

// exists reports whether path exists.
func exists(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}
