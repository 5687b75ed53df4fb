// Package swarmtest is a stand-in for the Docker Engine API of many nodes,
// for tests of the swarm package that run without root or dockerd: one
// httptest server per node, answering the calls provision makes (/_ping,
// /info, /swarm, /swarm/init, /swarm/join, /swarm/leave, /nodes,
// /nodes/{id}, /nodes/{id}/update, DELETE /nodes/{id}, /networks,
// /networks/create, DELETE /networks/{id}) with the status codes, error
// messages and JSON shapes of dockerd (API 1.51, the types of
// github.com/docker/docker/api/types). The nodes share one world, so a
// join on one node is seen in the node list of the managers. Every
// mutating call is counted.
//
// It is a fake at a process boundary: the real-dockerd tests in
// internal/stages remain the check that provision works against Docker.
package swarmtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// APIVersion is the Engine API version the fake answers with.
const APIVersion = "1.51"

// World is every fake engine and the swarms they form.
type World struct {
	mu      sync.Mutex
	engines map[string]*Engine // by name
	swarms  map[string]*cluster
	calls   map[string]int // "node METHOD /path"
	now     time.Time

	latency func(node, call string) time.Duration // nil: none
	record  bool
	events  []Event
}

// Event is one call an engine answered, in the order the fake world
// changed or was read.
type Event struct {
	Node string // the engine that answered
	Call string // "METHOD /path", IDs as {id}
	// Target is the hostname of the node a /nodes/{id} call was about.
	Target string
}

func (e Event) String() string {
	if e.Target != "" {
		return e.Node + " " + e.Call + " " + e.Target
	}
	return e.Node + " " + e.Call
}

// Engine is one node's fake dockerd.
type Engine struct {
	Name string // hostname
	Addr string // IP address the node advertises

	w   *World
	srv *httptest.Server

	// Guarded by w.mu.
	nodeID   string
	swarmID  string
	state    swarm.LocalNodeState
	stopped  bool
	failJoin string
}

// cluster is one swarm: its node objects and swarm-scoped networks.
type cluster struct {
	id       string
	tokens   swarm.JoinTokens
	pool     []string
	mask     uint32
	nodes    map[string]*swarm.Node // by node ID
	networks map[string]*netw       // by network ID
	version  uint64
}

// New returns an empty world; Close it (t.Cleanup) to stop every server.
func New() *World {
	return &World{engines: map[string]*Engine{}, swarms: map[string]*cluster{}, calls: map[string]int{}, now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
}

// Add starts a fresh engine (never in a swarm) for node name at addr.
func (w *World) Add(name, addr string) *Engine {
	e := &Engine{Name: name, Addr: addr, w: w, state: swarm.LocalNodeStateInactive}
	e.srv = httptest.NewServer(http.HandlerFunc(e.serve))
	w.mu.Lock()
	w.engines[name] = e
	w.mu.Unlock()
	return e
}

// Close stops every engine's server.
func (w *World) Close() {
	w.mu.Lock()
	es := make([]*Engine, 0, len(w.engines))
	for _, e := range w.engines {
		es = append(es, e)
	}
	w.mu.Unlock()
	for _, e := range es {
		e.srv.Close()
	}
}

// Dial connects to the engine's API, as an SSH tunnel to its socket would;
// a stopped engine refuses, as a socket with no dockerd behind it does.
func (e *Engine) Dial(ctx context.Context, _, _ string) (net.Conn, error) {
	e.w.mu.Lock()
	stopped := e.stopped
	e.w.mu.Unlock()
	if stopped {
		return nil, fmt.Errorf("dial unix /var/run/docker.sock on %s: connect: connection refused", e.Name)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", e.srv.Listener.Addr().String())
}

// Probe checks that the engine is up, as a connection to a node's gossip
// port does: a stopped engine refuses it, though the managers go on listing
// its node Ready (the fake, as swarmkit for some seconds, does not notice).
func (e *Engine) Probe(ctx context.Context) error {
	conn, err := e.Dial(ctx, "tcp", "")
	if err != nil {
		return err
	}
	return conn.Close()
}

// Address is the host:port the engine's API listens on (TCP, loopback),
// for a caller in another process; Dial is the way in this one.
func (e *Engine) Address() string { return e.srv.Listener.Addr().String() }

// Stop makes the engine refuse connections (dockerd stopped); Start undoes it.
func (e *Engine) Stop()  { e.set(func() { e.stopped = true }) }
func (e *Engine) Start() { e.set(func() { e.stopped = false }) }

// FailJoin makes the engine's next joins fail with a 500 and msg ("" stops that).
func (e *Engine) FailJoin(msg string) { e.set(func() { e.failJoin = msg }) }

func (e *Engine) set(fn func()) {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	fn()
}

// NodeID is the engine's swarm node ID ("" when not in a swarm).
func (e *Engine) NodeID() string {
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	return e.nodeID
}

// Calls returns the mutating calls the engines answered, by "METHOD /path"
// (path without the API version, IDs replaced by {id}).
func (w *World) Calls() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.calls {
		_, call, _ := strings.Cut(k, " ")
		out[call] += v
	}
	return out
}

// CallsOn returns the mutating calls one engine answered.
func (w *World) CallsOn(name string) map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.calls {
		if n, call, _ := strings.Cut(k, " "); n == name {
			out[call] += v
		}
	}
	return out
}

// Mutations is the number of mutating calls answered.
func (w *World) Mutations() int {
	n := 0
	for _, v := range w.Calls() {
		n += v
	}
	return n
}

// ResetCalls forgets the counted calls and the recorded events.
func (w *World) ResetCalls() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = map[string]int{}
	w.events = nil
}

// SetLatency makes every call wait fn(node, call) before it is answered
// (call is "METHOD /path" with IDs as {id}), outside the world's lock, as
// a daemon's work and the way to it take time. nil: no latency.
func (w *World) SetLatency(fn func(node, call string) time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.latency = fn
}

// Record makes the world keep an Event for every call answered from now on.
func (w *World) Record(on bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.record = on
}

// Events returns the calls answered while recording, in order.
func (w *World) Events() []Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]Event(nil), w.events...)
}

// Nodes returns the node objects of the swarm the named engine is in.
func (w *World) Nodes(name string) []swarm.Node {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.engines[name]
	c := w.swarms[e.swarmID]
	if c == nil {
		return nil
	}
	return c.list()
}

// Init makes the named engine a swarm's first manager, as `docker swarm
// init` would (test setup; no call is counted).
func (w *World) Init(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.engines[name]
	w.init(e, swarm.InitRequest{AdvertiseAddr: e.Addr + ":2377", Availability: swarm.NodeAvailabilityActive})
}

// Join makes the named engine join the swarm of the engine via as a
// worker or manager (test setup; no call is counted).
func (w *World) Join(name, via, role string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.swarms[w.engines[via].swarmID]
	tok := c.tokens.Worker
	if role == "manager" {
		tok = c.tokens.Manager
	}
	w.join(w.engines[name], c, tok, swarm.NodeAvailabilityActive)
}

// Recreate makes the named engine a fresh daemon (a re-created VM): it
// forgets its swarm, and the swarm's entry for it goes Down and stays.
func (w *World) Recreate(name string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.engines[name]
	if c := w.swarms[e.swarmID]; c != nil {
		n := c.nodes[e.nodeID]
		n.Status.State = swarm.NodeStateDown
		n.Status.Message = "heartbeat failure"
		if n.ManagerStatus != nil {
			n.ManagerStatus.Reachability = swarm.ReachabilityUnreachable
			n.ManagerStatus.Leader = false
		}
	}
	e.nodeID, e.swarmID, e.state = "", "", swarm.LocalNodeStateInactive
}

// SetLabels sets a node's labels by hand, as `docker node update
// --label-add` would (test setup; no call is counted).
func (w *World) SetLabels(name string, labels map[string]string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	e := w.engines[name]
	n := w.swarms[e.swarmID].nodes[e.nodeID]
	n.Spec.Labels = labels
	n.Version.Index++
}

func randomID(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// token makes a join token of Docker's shape, at run time.
func token() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	b := make([]byte, 25+50)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "SWMTKN-1-" + string(b[:50]) + "-" + string(b[50:])
}

// init makes e the first manager of a new swarm with an ingress network.
func (w *World) init(e *Engine, req swarm.InitRequest) {
	w.now = w.now.Add(time.Second)
	c := &cluster{
		id:       randomID(13)[:25],
		tokens:   swarm.JoinTokens{Worker: token(), Manager: token()},
		pool:     req.DefaultAddrPool,
		mask:     req.SubnetSize,
		nodes:    map[string]*swarm.Node{},
		networks: map[string]*netw{},
	}
	if len(c.pool) == 0 {
		c.pool = []string{"10.0.0.0/8"}
	}
	if c.mask == 0 {
		c.mask = 24
	}
	w.swarms[c.id] = c
	c.addNetwork(ingressNetwork(w.now))
	avail := req.Availability
	if avail == "" {
		avail = swarm.NodeAvailabilityActive
	}
	n := w.newNode(e, c, swarm.NodeRoleManager, avail)
	n.ManagerStatus.Leader = true
}

// join adds e to c with the role the token says.
func (w *World) join(e *Engine, c *cluster, tok string, avail swarm.NodeAvailability) {
	role := swarm.NodeRoleWorker
	if tok == c.tokens.Manager {
		role = swarm.NodeRoleManager
	}
	if avail == "" {
		avail = swarm.NodeAvailabilityActive
	}
	w.newNode(e, c, role, avail)
}

func (w *World) newNode(e *Engine, c *cluster, role swarm.NodeRole, avail swarm.NodeAvailability) *swarm.Node {
	w.now = w.now.Add(time.Second)
	c.version++
	n := &swarm.Node{
		ID:   randomID(13)[:25],
		Meta: swarm.Meta{Version: swarm.Version{Index: c.version}, CreatedAt: w.now, UpdatedAt: w.now},
		Spec: swarm.NodeSpec{Role: role, Availability: avail},
		Description: swarm.NodeDescription{
			Hostname: e.Name,
			Platform: swarm.Platform{Architecture: "x86_64", OS: "linux"},
			Engine:   swarm.EngineDescription{EngineVersion: "28.5.2"},
		},
		Status: swarm.NodeStatus{State: swarm.NodeStateReady, Addr: e.Addr},
	}
	if role == swarm.NodeRoleManager {
		n.ManagerStatus = &swarm.ManagerStatus{Reachability: swarm.ReachabilityReachable, Addr: e.Addr + ":2377"}
	}
	c.nodes[n.ID] = n
	e.nodeID, e.swarmID, e.state = n.ID, c.id, swarm.LocalNodeStateActive
	return n
}

func (c *cluster) list() []swarm.Node {
	out := make([]swarm.Node, 0, len(c.nodes))
	for _, n := range c.nodes {
		out = append(out, *n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// isManager reports whether e answers swarm queries (an active manager).
func (w *World) isManager(e *Engine) bool {
	c := w.swarms[e.swarmID]
	if c == nil || e.state != swarm.LocalNodeStateActive {
		return false
	}
	n := c.nodes[e.nodeID]
	return n != nil && n.Spec.Role == swarm.NodeRoleManager
}

// engineAt finds the engine advertising addr ("ip:2377").
func (w *World) engineAt(addr string) *Engine {
	host, _, _ := net.SplitHostPort(addr)
	for _, e := range w.engines {
		if e.Addr == host {
			return e
		}
	}
	return nil
}

var (
	versionPrefix = regexp.MustCompile(`^/v[0-9.]+`)
	idSegment     = regexp.MustCompile(`^/(nodes|networks)/[^/]+`)
)

// callName is "METHOD /path" with IDs as {id}.
func callName(r *http.Request, path string) string {
	p := path
	if !strings.HasSuffix(p, "/create") {
		p = idSegment.ReplaceAllString(p, "/$1/{id}")
	}
	return r.Method + " " + p
}

func (e *Engine) count(r *http.Request, call string) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return
	}
	e.w.calls[e.Name+" "+call]++
}

// note records the call as an Event, when recording; for /nodes/{id}
// calls with the node's hostname.
func (e *Engine) note(call string, seg []string) {
	if !e.w.record {
		return
	}
	ev := Event{Node: e.Name, Call: call}
	if len(seg) >= 2 && seg[0] == "nodes" {
		if c := e.w.swarms[e.swarmID]; c != nil {
			if n := c.nodes[seg[1]]; n != nil {
				ev.Target = n.Description.Hostname
			}
		}
	}
	e.w.events = append(e.w.events, ev)
}
