package stages

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/remote"
)

// DefaultDockerSocket is where a node's Docker Engine listens unless the
// state file knows better (lab up records the emulated nodes' sockets) or
// the node's SSH login names one in DOCKER_HOST (see DockerSocket).
const DefaultDockerSocket = "/var/run/docker.sock"

// SSH says how stages reach nodes.
type SSH struct {
	KeyPath      string        // private key; the inventory's ssh.privateKeyFile by default
	DockerSocket string        // default socket path on the nodes
	Timeout      time.Duration // per node, retries included
	Redactor     *remote.Redactor
}

// Connector is the run's remote.Pool (one SSH connection per node, shared
// by the stages of a run) with the inventory's and the state's facts
// filled in: the user, port and key of the inventory, host keys checked
// against <state-dir>/known_hosts.
type Connector struct {
	cfg  SSH
	once sync.Once
	pool *remote.Pool

	mu      sync.Mutex
	sockets map[string]string // node -> socket its login's DOCKER_HOST names
}

// NewConnector returns a Connector; nothing is dialled until Connect.
func NewConnector(cfg SSH) *Connector {
	if cfg.DockerSocket == "" {
		cfg.DockerSocket = DefaultDockerSocket
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	return &Connector{cfg: cfg}
}

// Connect returns the SSH connection to a node, dialling it on first use.
func (c *Connector) Connect(ctx context.Context, env *pipeline.Env, n *inventory.Node) (*remote.Client, error) {
	c.once.Do(func() {
		c.pool = remote.NewPool(remote.PoolConfig{Timeout: c.cfg.Timeout, Redactor: c.cfg.Redactor, Logger: env.Log})
	})
	if c.pool == nil {
		return nil, errors.New("ssh: the connector is closed")
	}
	key := c.cfg.KeyPath
	if key == "" {
		key = env.Inventory.PrivateKeyPath()
	}
	ssh := env.Inventory.Lab.SSH
	user, port := ssh.User, ssh.Port
	if n.SSHUser != "" { // an existing host has its own login
		user, port = n.SSHUser, n.SSHPort
	}
	return c.pool.Connect(ctx, remote.Dest{
		Name: n.Name, Host: n.IP, Port: port, User: user,
		KeyPath: key, CreateKey: ssh.CreateKey,
		KnownHosts: filepath.Join(env.StateDir, "known_hosts"),
	})
}

// DockerSocket is the socket of a node's engine: the recorded fact, else
// the unix socket the DOCKER_HOST of the node's SSH login names (a rootless
// engine's, or the emulated lab's nodes' own), asked once per run over cl,
// else the default (--docker-socket).
func (c *Connector) DockerSocket(ctx context.Context, env *pipeline.Env, name string, cl *remote.Client) string {
	if f, ok := env.State.Nodes[name]; ok && f.DockerSocket != "" {
		return f.DockerSocket
	}
	c.mu.Lock()
	sock, asked := c.sockets[name]
	c.mu.Unlock()
	if !asked {
		out, _, err := cl.Run(ctx, "printenv DOCKER_HOST")
		var exit *remote.ExitError
		if err != nil && !errors.As(err, &exit) {
			return c.cfg.DockerSocket // not asked: the next use asks again
		}
		if s, ok := strings.CutPrefix(strings.TrimSpace(string(out)), "unix://"); err == nil && ok && strings.HasPrefix(s, "/") {
			sock = s
		}
		c.mu.Lock()
		if c.sockets == nil {
			c.sockets = map[string]string{}
		}
		c.sockets[name] = sock
		c.mu.Unlock()
	}
	if sock != "" {
		return sock
	}
	return c.cfg.DockerSocket
}

// Close closes every connection.
func (c *Connector) Close() {
	c.once.Do(func() {}) // waits for a pool being made; none is made after Close
	if c.pool != nil {
		c.pool.Close()
	}
}
