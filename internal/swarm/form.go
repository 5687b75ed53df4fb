package swarm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// Options shape how the swarm is formed.
type Options struct {
	// Chosen at init only; Docker cannot change them later.
	DefaultAddrPool []string
	SubnetSize      uint32

	DrainManagers bool // managers get availability drain
	Ingress       Ingress
	Force         bool // make members of another swarm leave and join this one
	Concurrency   int  // workers joining at once
	// ManagerHeadStart is how long workers wait, at most, for every
	// manager to be reached (or fail) before they connect themselves
	// (default 2 s; negative: not at all).
	ManagerHeadStart time.Duration
	Counter          *Counter // counts the mutating calls of the engines Form opens (may be nil)

	JoinTimeout  time.Duration // one node, from join to active
	ReadyTimeout time.Duration // all nodes Ready
	PollInterval time.Duration

	Progress func(format string, args ...any)
	Log      *slog.Logger
}

func (o *Options) setDefaults() {
	if o.Concurrency < 1 {
		o.Concurrency = 32
	}
	if o.JoinTimeout == 0 {
		o.JoinTimeout = 90 * time.Second
	}
	if o.ReadyTimeout == 0 {
		o.ReadyTimeout = 3 * time.Minute
	}
	if o.ManagerHeadStart == 0 {
		o.ManagerHeadStart = 2 * time.Second
	}
	if o.PollInterval == 0 {
		o.PollInterval = 200 * time.Millisecond
	}
	if o.Progress == nil {
		o.Progress = func(string, ...any) {}
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// Form makes the members one swarm. Every member moves through its own
// pipeline: connect (Member.Connect, which may retry for long), gather its
// engine's facts, then join. The managers connect first: workers start
// once every manager was reached or failed, or after ManagerHeadStart. A
// node that is slow to connect holds up no other:
//
//   - the swarm is chosen (an existing one wins) as soon as it is certain:
//     once every manager has been reached or has failed, or once more than
//     half of the inventory's managers are in one swarm; a new swarm is
//     initialised on the first manager only when every manager is known
//     not to be in one;
//   - managers join one at a time (each is a reachable Raft member before
//     the next changes the quorum), those reached by then first, in
//     inventory order, the others as they are reached;
//   - workers join as they are reached, at most Concurrency at once, once
//     the managers reached by then have joined.
//
// Right after its join (or at once, for a member already in the swarm),
// each member's labels, role and availability are applied in one
// versioned node update, none when nothing differs, while the others are
// still joining. Once every pipeline is done, stale Down entries of the
// same hostnames are removed and Form waits until every member is Ready.
// Nodes that fail are named in the error and in Result.Failed; the others
// are still formed. Join tokens never leave this package.
func Form(ctx context.Context, members []*Member, opts Options) (*Result, error) {
	opts.setDefaults()
	f := &former{opts: opts, members: members, res: &Result{Nodes: len(members)}, failed: map[*Member]error{}}
	err := f.run(ctx)
	if err != nil {
		f.errs = append(f.errs, redact(err, f.tokens))
	}
	for _, m := range members {
		if e, ok := f.failed[m]; ok {
			f.res.Failed = append(f.res.Failed, NodeError{Node: m.Name, Err: e})
		}
	}
	f.res.Reached = len(members) - f.unreached
	return f.res, errors.Join(f.errs...)
}

// former holds one run of Form.
type former struct {
	opts    Options
	members []*Member
	// removedIngress is the ingress network this run removed: the daemon
	// keeps listing it for a while (~20 s), and the run waits it out at the
	// end so that a re-run sees it gone and changes nothing.
	removedIngress string

	// Set before decided is closed, read-only afterwards (tokens: written
	// under mu).
	leader      *Member
	cluster     string
	tokens      swarm.JoinTokens
	known       map[string]swarm.Node   // the chosen swarm's node objects when it was chosen, by ID
	byHost      map[string][]swarm.Node // the same by hostname
	inSwarmMgrs []*Member               // reached managers of the chosen swarm but the leader, in inventory order

	mu        sync.Mutex // guards what follows during the concurrent work
	res       *Result
	errs      []error
	failed    map[*Member]error // each node's first failure
	unreached int
	joinedMgr []*Member // managers that joined this run, in order

	managerTurn sync.Mutex // managers join one at a time
	lists       nodeLists  // the leader's node list, shared by the members waiting for theirs
}

// NodeError is a node that failed and why.
type NodeError struct {
	Node string
	Err  error
}

func (f *former) joined(m *Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res.Joined = append(f.res.Joined, m.Name)
	if m.Role == Manager {
		f.joinedMgr = append(f.joinedMgr, m)
	}
}

// fail records a per-node failure; the run goes on for the other nodes.
func (f *former) fail(m *Member, what string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	err = redact(err, f.tokens)
	f.errs = append(f.errs, fmt.Errorf("%s %s: %w", what, m.Name, err))
	if _, ok := f.failed[m]; !ok {
		f.failed[m] = fmt.Errorf("%s: %w", what, err)
	}
}

func (f *former) addErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// decide chooses the swarm among the members reached (in inventory
// order), initialises one if there is none and every manager is known,
// makes the ingress network what the inventory says, and reports the
// members left alone.
func (f *former) decide(ctx context.Context, ok []*Member, allManagers bool) error {
	if err := f.pickSwarm(ctx, ok, allManagers); err != nil {
		return err
	}
	if err := f.ensureIngress(ctx); err != nil {
		return err
	}
	known, err := f.nodeObjects(ctx)
	if err != nil {
		return err
	}
	f.known = known
	f.byHost = map[string][]swarm.Node{}
	for _, n := range known {
		f.byHost[n.Description.Hostname] = append(f.byHost[n.Description.Hostname], n)
	}
	for _, m := range ok {
		if m != f.leader && m.Role == Manager && f.classify(m) == nothing && m.facts.clusterID == f.cluster && m.facts.control {
			f.inSwarmMgrs = append(f.inSwarmMgrs, m)
		}
	}
	return nil
}

// pickSwarm chooses the swarm: the one most reachable managers are in
// (first in inventory order on a tie), or a new one on the first manager.
func (f *former) pickSwarm(ctx context.Context, ok []*Member, allManagers bool) error {
	votes := map[string]int{}
	first := map[string]*Member{}
	for _, m := range ok {
		if m.facts.state == swarm.LocalNodeStateActive && m.facts.control && m.facts.clusterID != "" {
			votes[m.facts.clusterID]++
			if first[m.facts.clusterID] == nil || (m.Role == Manager && first[m.facts.clusterID].Role != Manager) {
				first[m.facts.clusterID] = m
			}
		}
	}
	for id, n := range votes {
		if f.cluster == "" || n > votes[f.cluster] || (n == votes[f.cluster] && index(ok, first[id]) < index(ok, first[f.cluster])) {
			f.cluster = id
		}
	}
	if f.cluster != "" {
		f.leader = first[f.cluster]
		f.opts.Log.Debug("using existing swarm", "cluster", short(f.cluster), "via", f.leader.Name)
	} else {
		for _, m := range ok {
			if m.Role == Manager && !m.inSwarm() {
				f.leader = m
				break
			}
		}
		if f.leader == nil || !allManagers {
			return errors.New("init: no reachable manager outside a swarm to initialise one on")
		}
		if err := f.init(ctx); err != nil {
			return fmt.Errorf("init %s: %w", f.leader.Name, err)
		}
	}
	s, err := f.leader.Engine.SwarmInspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect swarm on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	if f.res.Initialized { // the new swarm's ID, without another /info
		f.cluster, f.leader.facts.clusterID = s.ID, s.ID
	}
	f.res.ClusterID, f.res.Leader = f.cluster, f.leader.Name
	f.mu.Lock() // a node failing to connect meanwhile redacts with them
	f.tokens = s.JoinTokens
	f.mu.Unlock()
	return nil
}

func (f *former) init(ctx context.Context) error {
	m := f.leader
	f.opts.Progress("initialising the swarm on %s (%s), address pool %s /%d", m.Name, m.Addr, strings.Join(f.opts.DefaultAddrPool, ","), f.opts.SubnetSize)
	nodeID, err := m.Engine.SwarmInit(ctx, swarm.InitRequest{
		ListenAddr:      m.swarmAddr(),
		AdvertiseAddr:   m.swarmAddr(),
		DefaultAddrPool: f.opts.DefaultAddrPool,
		SubnetSize:      f.opts.SubnetSize,
		Availability:    f.availability(m),
	})
	if err != nil {
		return m.engineErr(err)
	}
	f.res.Initialized = true
	// The leader's facts as /info would now give them; the swarm's ID
	// comes with the join tokens (pickSwarm).
	m.facts = facts{state: swarm.LocalNodeStateActive, nodeID: nodeID, control: true, hostname: m.facts.hostname}
	return nil
}

// isKnown reports whether the chosen swarm had the member's node when it
// was chosen.
func (f *former) isKnown(m *Member) bool {
	_, ok := f.known[m.facts.nodeID]
	return ok
}

// nodeObjects lists the node objects the chosen swarm knows, by ID.
func (f *former) nodeObjects(ctx context.Context) (map[string]swarm.Node, error) {
	nodes, err := f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	known := make(map[string]swarm.Node, len(nodes))
	for _, n := range nodes {
		known[n.ID] = n
	}
	return known, nil
}

func (f *former) availability(m *Member) swarm.NodeAvailability {
	if m.Role == Manager && f.opts.DrainManagers {
		return swarm.NodeAvailabilityDrain
	}
	return swarm.NodeAvailabilityActive
}

// join joins one member and waits until its engine says it is active.
func (f *former) join(ctx context.Context, m *Member) error {
	if m.inSwarm() {
		if err := m.Engine.SwarmLeave(ctx, true); err != nil {
			return fmt.Errorf("leave the other swarm (--force): %w", m.engineErr(err))
		}
	}
	token := f.tokens.Worker
	if m.Role == Manager {
		token = f.tokens.Manager
	}
	remotes := f.remotes(m)
	start := time.Now()
	err := m.Engine.SwarmJoin(ctx, swarm.JoinRequest{
		ListenAddr:    m.swarmAddr(),
		AdvertiseAddr: m.swarmAddr(),
		RemoteAddrs:   remotes,
		JoinToken:     token,
		Availability:  f.availability(m),
	})
	f.opts.Log.Debug("join request answered", "node", m.Name, "took", time.Since(start).Round(time.Millisecond), "err", err != nil)
	// Docker gives up waiting after 20 s but goes on joining in the
	// background; then the engine's state tells.
	if err != nil && !strings.Contains(err.Error(), "Timeout was reached") {
		return m.engineErr(err)
	}
	deadline := time.Now().Add(f.opts.JoinTimeout)
	for {
		// The ping says whether it is active, and for a manager whether
		// it can answer swarm queries (/info would run two programs on the
		// node each time); the leader knows its node.
		m.ping(ctx)
		if m.facts.err == nil && m.facts.state == swarm.LocalNodeStateActive && (m.Role != Manager || m.facts.control) {
			f.joined(m)
			return nil
		}
		if time.Now().After(deadline) {
			if m.facts.err != nil {
				return fmt.Errorf("not active %s after joining: %w", f.opts.JoinTimeout, m.facts.err)
			}
			return fmt.Errorf("not active %s after joining (state %q)", f.opts.JoinTimeout, m.facts.state)
		}
		if err := sleep(ctx, f.opts.PollInterval); err != nil {
			return err
		}
	}
}

// remotes are the managers a member joins through. Docker joins through
// the first address only (the CSR, the first dispatcher session and the
// gossip state all come from it), so workers are spread over the managers
// that are in the swarm by now (those it was chosen by, and those that
// joined this run), by their place in the inventory, instead of all asking
// the leader; managers join through the leader.
func (f *former) remotes(m *Member) []string {
	managers := append([]*Member{f.leader}, f.inSwarmMgrs...)
	seen := map[*Member]bool{}
	for _, o := range managers {
		seen[o] = true
	}
	f.mu.Lock()
	for _, o := range f.joinedMgr {
		if !seen[o] {
			managers = append(managers, o)
			seen[o] = true
		}
	}
	f.mu.Unlock()
	first := 0
	if m.Role != Manager {
		first = index(f.members, m) % len(managers)
	}
	var out []string
	for i := range managers {
		out = append(out, managers[(first+i)%len(managers)].swarmAddr())
	}
	return out
}

func inOrder(all, some []*Member) []*Member {
	in := map[*Member]bool{}
	for _, m := range some {
		in[m] = true
	}
	var out []*Member
	for _, m := range all {
		if in[m] {
			out = append(out, m)
		}
	}
	return out
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func index(ms []*Member, m *Member) int {
	for i, x := range ms {
		if x == m {
			return i
		}
	}
	return len(ms)
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
