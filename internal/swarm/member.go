package swarm

import (
	"context"
	"fmt"
	"net"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Roles a member can have.
const (
	Manager = "manager"
	Worker  = "worker"
)

// Member is one node that should be in the swarm.
type Member struct {
	Name   string // hostname; the swarm knows the node by it
	Addr   string // IP address to advertise and listen on
	Role   string // Manager or Worker
	Labels map[string]string
	Engine *client.Client

	// Facts, gathered before anything is changed.
	facts facts
}

// facts are what a member's engine says about itself.
type facts struct {
	err       error
	state     swarm.LocalNodeState
	nodeID    string
	clusterID string
	control   bool // a manager that can answer swarm queries
	hostname  string
}

func (m *Member) gather(ctx context.Context) {
	info, err := m.Engine.Info(ctx)
	if err != nil {
		m.facts = facts{err: fmt.Errorf("docker info: %w", err)}
		return
	}
	m.facts = facts{
		state:    info.Swarm.LocalNodeState,
		nodeID:   info.Swarm.NodeID,
		control:  info.Swarm.ControlAvailable,
		hostname: info.Name,
	}
	if info.Swarm.Cluster != nil {
		m.facts.clusterID = info.Swarm.Cluster.ID
	}
}

// inSwarm reports whether the member's engine is part of some swarm.
func (m *Member) inSwarm() bool {
	switch m.facts.state {
	case swarm.LocalNodeStateActive, swarm.LocalNodeStatePending, swarm.LocalNodeStateLocked, swarm.LocalNodeStateError:
		return true
	}
	return false
}

func (m *Member) swarmAddr() string { return net.JoinHostPort(m.Addr, "2377") }
