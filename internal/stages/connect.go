package stages

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
)

// DefaultDockerSocket is where a node's Docker Engine listens unless the
// state file knows better (the emulated lab records one socket per node).
const DefaultDockerSocket = "/var/run/docker.sock"

// SSH says how stages reach nodes. One Connector is shared by the stages of
// a run, so each node gets one SSH connection.
type SSH struct {
	KeyPath      string        // private key; the inventory's ssh.privateKeyFile by default
	DockerSocket string        // default socket path on the nodes
	Timeout      time.Duration // per node, retries included
	Redactor     *remote.Redactor
}

// Connector dials nodes over SSH, checking host keys against
// <state-dir>/known_hosts (trust on first use, a changed key refused), and
// keeps the connections for the rest of the run.
type Connector struct {
	cfg    SSH
	mu     sync.Mutex
	signer ssh.Signer
	known  *remote.KnownHosts
	conns  map[string]*remote.Client
}

// NewConnector returns a Connector; nothing is dialled until Connect.
func NewConnector(cfg SSH) *Connector {
	if cfg.DockerSocket == "" {
		cfg.DockerSocket = DefaultDockerSocket
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Connector{cfg: cfg, conns: map[string]*remote.Client{}}
}

// setup loads the key (creating it when the inventory allows) and the
// known_hosts file, once.
func (c *Connector) setup(env *pipeline.Env) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.signer != nil {
		return nil
	}
	path := c.cfg.KeyPath
	if path == "" {
		path = env.Inventory.PrivateKeyPath()
	}
	var err error
	if env.Inventory.Lab.SSH.CreateKey {
		c.signer, _, err = remote.EnsureKey(path)
	} else {
		c.signer, err = remote.LoadSigner(path)
	}
	if err != nil {
		return fmt.Errorf("ssh key: %w", err)
	}
	c.known = remote.NewKnownHosts(filepath.Join(env.StateDir, "known_hosts"))
	return nil
}

// Connect returns the SSH connection to a node, dialling it on first use.
func (c *Connector) Connect(ctx context.Context, env *pipeline.Env, n *inventory.Node) (*remote.Client, error) {
	if err := c.setup(env); err != nil {
		return nil, err
	}
	c.mu.Lock()
	cl := c.conns[n.Name]
	c.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	cl, err := remote.Dial(ctx, remote.Config{
		Host: n.IP, Port: env.Inventory.Lab.SSH.Port, User: env.Inventory.Lab.SSH.User,
		Signer: c.signer, KnownHosts: c.known, Timeout: c.cfg.Timeout,
		Redactor: c.cfg.Redactor, Logger: env.Log,
	})
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.conns[n.Name]; old != nil {
		cl.Close()
		return old, nil
	}
	c.conns[n.Name] = cl
	return cl, nil
}

// DockerSocket is the socket of a node's engine: the recorded fact, or the
// default.
func (c *Connector) DockerSocket(env *pipeline.Env, name string) string {
	if f, ok := env.State.Nodes[name]; ok && f.DockerSocket != "" {
		return f.DockerSocket
	}
	return c.cfg.DockerSocket
}

// Close closes every connection.
func (c *Connector) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for name, cl := range c.conns {
		cl.Close()
		delete(c.conns, name)
	}
}
