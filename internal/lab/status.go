package lab

import (
	"context"
	"time"

	"github.com/fhlab/provision/internal/par"
)

// statusTimeout bounds each of a node's checks in Status.
const statusTimeout = 10 * time.Second

// NodeStatus is what Status found about one node.
type NodeStatus struct {
	Name string
	IP   string
	// Netns: the network namespace exists.
	Netns bool
	// Docker: dockerd answers GET /_ping on its socket.
	Docker bool
	// SSH: sshd greets on <ip>:22.
	SSH bool
	// Swarm is the node's Swarm.LocalNodeState from GET /info
	// (inactive, pending, active, error, locked), "" when unknown.
	Swarm string
	// Hostname is the name the node's dockerd reports (its UTS hostname).
	Hostname string
	// Netboot: a netboot node; Booted: Boot has started its system.
	Netboot, Booted bool
}

// Up reports whether the node's namespace, dockerd and sshd all work.
func (s NodeStatus) Up() bool { return s.Netns && s.Docker && s.SSH }

// Status checks every node in the manifest: namespace present, dockerd
// answering, sshd listening, and the swarm state dockerd reports. It
// needs no root beyond reading the manifest and sockets. A lab that is not
// up has no nodes.
func (l *Lab) Status(ctx context.Context) ([]NodeStatus, error) {
	nodes, err := l.Nodes()
	if err != nil {
		return nil, err
	}
	out := make([]NodeStatus, len(nodes))
	_ = par.Each(ctx, 16, len(nodes), func(ctx context.Context, i int) error {
		out[i] = nodeStatus(ctx, nodes[i])
		return nil
	})
	return out, ctx.Err()
}

func nodeStatus(ctx context.Context, n Node) NodeStatus {
	s := NodeStatus{Name: n.Name, IP: n.IP.String(), Netns: isNsfs(n.NetnsPath()), Netboot: n.Netboot, Booted: !n.WaitingForBoot()}
	if !s.Netns || n.WaitingForBoot() {
		return s
	}
	// Generous: a busy machine with many nodes answers slowly.
	cctx, cancel := context.WithTimeout(ctx, statusTimeout)
	defer cancel()
	if c, err := NewEngine(n.DockerSocket); err == nil {
		if info, err := c.Info(cctx); err == nil {
			s.Docker = true
			s.Swarm = string(info.Swarm.LocalNodeState)
			s.Hostname = info.Name
		}
		c.Close()
	}
	sctx, scancel := context.WithTimeout(ctx, statusTimeout)
	defer scancel()
	s.SSH = sshBanner(sctx, n.SSHAddr) == nil
	return s
}
