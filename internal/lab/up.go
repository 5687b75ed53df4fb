package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fhlab/provision/internal/par"
)

// Up brings the nodes up and returns their facts. It is idempotent: parts
// that exist are checked and kept, missing ones are made, so a second Up
// changes nothing and an Up after a partial one completes it. Nodes start
// Concurrency at a time; each must answer on its docker socket (GET
// /_ping) and on <ip>:22 within ReadyTimeout. Nodes already up but not in
// nodes are left alone (Down removes them).
//
// Cancelling ctx stops Up between steps; whatever was made is in the
// manifest for Down.
func (l *Lab) Up(ctx context.Context, specs []NodeSpec) ([]Node, error) {
	if l.toolErr != nil {
		return nil, l.toolErr
	}
	if err := l.checkSpecs(specs); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	start := time.Now()
	if err := os.MkdirAll(l.cfg.StateDir, 0o755); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	unlock, err := l.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()

	m, err := loadManifest(l.manifestPath())
	if err != nil {
		return nil, fmt.Errorf("lab up: %w (run `provision lab down` to start over)", err)
	}
	if m == nil {
		m = &Manifest{Version: manifestVersion, Prefix: l.cfg.Prefix, StateDir: l.cfg.StateDir, DataDir: l.cfg.DataDir, Bridge: l.bridge,
			Network: l.cfg.Network.String(), Gateway: l.cfg.Gateway.String(), SSHUser: l.cfg.SSHUser, SSHGroup: l.group}
	} else if err := l.sameLab(m); err != nil {
		return nil, err
	}
	if err := recordHostPaths(filepath.Dir(l.cfg.StateDir)); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	nodes, err := l.plan(m, specs)
	if err != nil {
		return nil, err
	}
	// Everything Up makes is named in the manifest before it is made.
	if err := m.save(l.manifestPath()); err != nil {
		return nil, err
	}
	if err := l.upHost(ctx, m); err != nil {
		return nil, fmt.Errorf("lab up: %w", err)
	}
	err = par.Each(ctx, l.cfg.Concurrency, len(nodes), func(ctx context.Context, i int) error {
		if err := l.upNode(ctx, nodes[i]); err != nil {
			return fmt.Errorf("lab up %s: %w", nodes[i].Name, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.log.Debug("lab up", "nodes", len(nodes), "took", time.Since(start).Round(time.Millisecond))
	return nodes, nil
}

// sameLab refuses an Up whose settings differ from the lab already up.
func (l *Lab) sameLab(m *Manifest) error {
	if m.DataDir != l.cfg.DataDir {
		return fmt.Errorf("lab %s is up with its data in %s, not %s: run `provision lab down` first", l.cfg.Prefix, m.DataDir, l.cfg.DataDir)
	}
	if m.Network != l.cfg.Network.String() || m.Gateway != l.cfg.Gateway.String() || m.SSHUser != l.cfg.SSHUser {
		return fmt.Errorf("lab %s is up with network %s, gateway %s, user %s; this Up asks for %s, %s, %s: run `provision lab down` first",
			l.cfg.Prefix, m.Network, m.Gateway, m.SSHUser, l.cfg.Network, l.cfg.Gateway, l.cfg.SSHUser)
	}
	return nil
}

// plan adds the new nodes to m (names, paths, host keys) and returns the
// requested nodes with their facts.
func (l *Lab) plan(m *Manifest, specs []NodeSpec) ([]Node, error) {
	taken := map[string]bool{}
	byIP := map[string]string{}
	for _, n := range m.Nodes {
		taken[n.Veth] = true
		byIP[n.IP.String()] = n.Name
	}
	nodes := make([]Node, 0, len(specs))
	for _, s := range specs {
		n, ok := m.node(s.Name)
		switch {
		case ok && n.IP != s.IP:
			return nil, fmt.Errorf("lab up %s: the node is up with address %s, not %s: run `provision lab down` first", s.Name, n.IP, s.IP)
		case !ok && byIP[s.IP.String()] != "":
			return nil, fmt.Errorf("lab up %s: address %s belongs to node %s in this lab", s.Name, s.IP, byIP[s.IP.String()])
		case !ok:
			n = l.newNode(s, taken)
			taken[n.Veth] = true
		}
		if err := os.MkdirAll(n.Dir, 0o755); err != nil {
			return nil, fmt.Errorf("lab up %s: %w", n.Name, err)
		}
		if err := os.MkdirAll(n.DataRoot, 0o710); err != nil {
			return nil, fmt.Errorf("lab up %s: %w", n.Name, err)
		}
		var err error
		if n.HostKey, n.HostKeyFingerprint, err = ensureHostKey(n.Dir); err != nil {
			return nil, fmt.Errorf("lab up %s: %w", n.Name, err)
		}
		n.Netboot, n.Manager = s.Netboot, s.Manager
		if !ok {
			m.Nodes = append(m.Nodes, n)
		} else {
			m.setNode(n)
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// upHost prepares what all nodes share: the group owning the sockets, the
// SSH user, the authorized keys, sshd's privilege-separation directory and
// the bridge.
func (l *Lab) upHost(ctx context.Context, m *Manifest) error {
	if err := l.ensureGroup(ctx); err != nil {
		return err
	}
	if err := l.ensureUser(ctx, m); err != nil {
		return err
	}
	if err := l.writeAuthorizedKeys(); err != nil {
		return err
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		return fmt.Errorf("create sshd privilege separation dir: %w", err)
	}
	if err := l.ensureBridge(ctx); err != nil {
		return err
	}
	if err := l.raiseNeighbourLimits(); err != nil {
		return err
	}
	added, err := l.ensureForward(ctx)
	if err != nil {
		return err
	}
	if added && !m.ForwardRule {
		m.ForwardRule = true
		return m.save(l.manifestPath())
	}
	return nil
}

// upNode brings one node up: namespaces, then dockerd and sshd. A netboot
// node gets only its network namespace: Boot starts the rest.
func (l *Lab) upNode(ctx context.Context, n Node) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := l.ensureNetns(ctx, n); err != nil {
		return err
	}
	if n.WaitingForBoot() {
		return nil
	}
	return l.startSystem(ctx, n, n.Name, nil)
}

// startSystem starts a node's system in its network namespace: its
// hostname (UTS namespace), dockerd, image loaded into it when there is one
// (as if it were on the node's disk), then sshd: a node that answers over
// SSH is ready to be used.
func (l *Lab) startSystem(ctx context.Context, n Node, hostname string, image []byte) error {
	start := time.Now()
	if err := ensureUTS(n, hostname); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n.Dir, "daemon.json"), []byte("{}\n"), 0o644); err != nil {
		return fmt.Errorf("write daemon.json: %w", err)
	}
	if err := l.ensureDockerd(ctx, n); err != nil {
		return err
	}
	if image != nil {
		if err := LoadImage(ctx, n.DockerSocket, bytes.NewReader(image)); err != nil {
			return err
		}
	}
	if err := l.ensureSSHD(ctx, n); err != nil {
		return err
	}
	l.log.Debug("node up", "node", n.Name, "ip", n.IP, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
