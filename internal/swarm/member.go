package swarm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

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

	// Connect opens the way to the node's engine (in practice an SSH
	// connection, retried while the node boots). Form calls it in the
	// node's own pipeline, so a node that takes long holds up no other.
	// Not needed when Engine is set.
	Connect func(ctx context.Context) (Endpoint, error)
	// Engine is the node's Docker client: set by Open, or by the caller.
	Engine *client.Client

	// NodeID is the swarm node ID a previous run recorded for the member
	// ("" when none). With Probe it lets a re-run leave a worker alone
	// without connecting to it: see Form.
	NodeID string
	// Probe, when set, checks cheaply that the node's engine is up now,
	// without Connect's way in (the stage dials the swarm's gossip port,
	// which only a running dockerd in a swarm listens on). The managers
	// go on listing a node Ready for some seconds after its engine
	// stopped; the probe is what tells.
	Probe func(ctx context.Context) error

	transport *http.Transport // below Engine, when Open made it
	where     string          // the endpoint, for messages
	lost      func() error    // the endpoint's Lost

	mu      sync.Mutex
	dialErr error // the last failed dial, the cause behind the client's "Cannot connect"

	// Facts, gathered before anything is changed.
	facts facts
}

// Endpoint is the way to one node's engine.
type Endpoint struct {
	Dial DialFunc
	// Where names the socket and the way to it for messages, e.g.
	// "unix:///var/run/docker.sock over ssh provision@192.0.2.13:22".
	Where string
	// Lost, when set, says why the way itself ended (an SSH connection
	// whose keepalives went unanswered), nil while it is up.
	Lost func() error
}

// Open connects to the member's engine through Connect and makes its
// client, counting mutating calls in c (may be nil). It does nothing when
// Engine is set already.
func (m *Member) Open(ctx context.Context, c *Counter) error {
	if m.Engine != nil {
		return nil
	}
	if m.Connect == nil {
		return errors.New("no way to connect to its engine")
	}
	ep, err := m.Connect(ctx)
	if err != nil {
		return err
	}
	m.where, m.lost = ep.Where, ep.Lost
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		conn, err := ep.Dial(ctx, network, addr)
		m.mu.Lock()
		m.dialErr = err
		m.mu.Unlock()
		return conn, err
	}
	eng, tr, err := newEngine(dial, c)
	if err != nil {
		return fmt.Errorf("docker client: %w", err)
	}
	m.Engine, m.transport = eng, tr
	return nil
}

// Close closes the member's Docker client, if any, and the connections it
// keeps open to the engine; the next Open connects again (through a new
// way to the node: the old one may have ended with the node).
func (m *Member) Close() {
	if m.Engine != nil {
		m.Engine.Close()
	}
	if m.transport != nil {
		m.transport.CloseIdleConnections()
	}
	m.Engine, m.transport = nil, nil
}

// EngineError is an engine that could not be reached: it names the node,
// the socket and the way to it, instead of the Docker client's "Cannot
// connect to the Docker daemon at http://docker.sock".
type EngineError struct {
	Node  string
	Where string
	Err   error // the dial's error when known, else the client's
	// Lost: the way to the engine went (Err says how), not the engine.
	Lost bool
}

func (e *EngineError) Error() string {
	where := ""
	if e.Where != "" {
		where = " (" + e.Where + ")"
	}
	if e.Lost {
		return fmt.Sprintf("engine on %s%s: %v", e.Node, where, e.Err)
	}
	return fmt.Sprintf("engine on %s%s: is dockerd running? %v", e.Node, where, e.Err)
}

func (e *EngineError) Unwrap() error { return e.Err }

// engineErr turns the Docker client's connection failures into an
// EngineError; other errors are returned as they are.
func (m *Member) engineErr(err error) error {
	if err == nil || !client.IsErrConnectionFailed(err) {
		return err
	}
	var already *EngineError
	if errors.As(err, &already) {
		return err
	}
	if m.lost != nil {
		if lost := m.lost(); lost != nil {
			return &EngineError{Node: m.Name, Where: m.where, Err: lost, Lost: true}
		}
	}
	m.mu.Lock()
	cause := m.dialErr
	m.mu.Unlock()
	if cause == nil {
		cause = err
	}
	return &EngineError{Node: m.Name, Where: m.where, Err: cause}
}

// facts are what a member's engine says about itself.
type facts struct {
	err       error
	state     swarm.LocalNodeState
	nodeID    string
	clusterID string
	control   bool // a manager that can answer swarm queries
	hostname  string
	pinged    bool // state and control only, from the ping's Swarm header
	// vouched: not connected to; the swarm lists it Ready as recorded, as
	// the inventory wants it, and its Probe answered (see Form).
	vouched bool
}

// usable reports whether the member's facts are known and good: it was
// reached, or vouched for.
func (m *Member) usable() bool {
	return m.facts.err == nil && (m.Engine != nil || m.facts.vouched)
}

func (m *Member) gather(ctx context.Context) {
	info, err := m.Engine.Info(ctx)
	if err != nil {
		m.facts = facts{err: fmt.Errorf("docker info: %w", m.engineErr(err))}
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

// ping asks the engine for its swarm state only, through the ping's Swarm
// header ("inactive", "active/worker", ...), which also settles the API
// version. An engine that sends no such header gets gather's facts.
func (m *Member) ping(ctx context.Context) {
	p, err := m.Engine.Ping(ctx)
	if err != nil {
		m.facts = facts{err: fmt.Errorf("docker ping: %w", m.engineErr(err))}
		return
	}
	m.Engine.NegotiateAPIVersionPing(p)
	if p.SwarmStatus == nil {
		m.gather(ctx)
		return
	}
	m.facts = facts{pinged: true, state: p.SwarmStatus.NodeState, control: p.SwarmStatus.ControlAvailable}
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
