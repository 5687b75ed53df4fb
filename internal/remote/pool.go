package remote

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Dest is one node to connect to, and the credentials to use.
type Dest struct {
	Name string // the node: a Pool keeps one connection per name
	Host string
	Port int // 0 means 22
	User string

	KeyPath   string // private key
	CreateKey bool   // create an ed25519 key at KeyPath when there is none
	// KnownHosts is the known_hosts file: hosts are trusted on first use
	// and a changed key is refused.
	KnownHosts string
}

// PoolConfig is what every connection of a Pool shares.
type PoolConfig struct {
	Timeout  time.Duration // per node, retries included; 0 means DefaultTimeout
	Retry    RetryPolicy
	Redactor *Redactor
	Logger   *slog.Logger
}

// Pool dials nodes over SSH on first use and keeps one connection per node
// for the rest of a run, so every step that reaches a node shares it. Keys
// and known_hosts files are loaded once per path. It is safe for
// concurrent use; a node that is slow to answer holds up no other.
type Pool struct {
	cfg   PoolConfig
	mu    sync.Mutex
	keys  map[string]*poolKey
	known map[string]*KnownHosts
	conns map[string]*Client
}

type poolKey struct {
	once   sync.Once
	signer ssh.Signer
	err    error
}

// NewPool returns a Pool; nothing is dialled until Connect.
func NewPool(cfg PoolConfig) *Pool {
	return &Pool{cfg: cfg, keys: map[string]*poolKey{}, known: map[string]*KnownHosts{}, conns: map[string]*Client{}}
}

// signer loads (or creates) the key at d.KeyPath, once per path.
func (p *Pool) signer(d Dest) (ssh.Signer, error) {
	p.mu.Lock()
	k := p.keys[d.KeyPath]
	if k == nil {
		k = &poolKey{}
		p.keys[d.KeyPath] = k
	}
	p.mu.Unlock()
	k.once.Do(func() {
		if d.CreateKey {
			k.signer, _, k.err = EnsureKey(d.KeyPath)
		} else {
			k.signer, k.err = LoadSigner(d.KeyPath)
		}
		if k.err != nil {
			k.err = fmt.Errorf("ssh key: %w", k.err)
		}
	})
	return k.signer, k.err
}

func (p *Pool) knownHosts(path string) *KnownHosts {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.known[path] == nil {
		p.known[path] = NewKnownHosts(path)
	}
	return p.known[path]
}

// Connect returns the connection to d.Name, dialling it on first use (with
// the retries of Dial, within the Pool's timeout).
func (p *Pool) Connect(ctx context.Context, d Dest) (*Client, error) {
	p.mu.Lock()
	cl := p.conns[d.Name]
	if cl != nil && !cl.Alive() {
		delete(p.conns, d.Name) // gone (keepalives, the node went away): dial again
		cl = nil
	}
	p.mu.Unlock()
	if cl != nil {
		return cl, nil
	}
	signer, err := p.signer(d)
	if err != nil {
		return nil, err
	}
	cl, err = Dial(ctx, Config{
		Host: d.Host, Port: d.Port, User: d.User,
		Signer: signer, KnownHosts: p.knownHosts(d.KnownHosts),
		Timeout: p.cfg.Timeout, Retry: p.cfg.Retry,
		Redactor: p.cfg.Redactor, Logger: p.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if old := p.conns[d.Name]; old != nil && old.Alive() {
		cl.Close()
		return old, nil
	}
	p.conns[d.Name] = cl
	return cl, nil
}

// Close closes every connection.
func (p *Pool) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, cl := range p.conns {
		cl.Close()
		delete(p.conns, name)
	}
}
