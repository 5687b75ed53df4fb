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

	"github.com/fhlab/provision/internal/par"
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

// Result is what Form did and what the swarm looks like afterwards.
type Result struct {
	ClusterID   string
	Leader      string
	Initialized bool
	Ingress     bool // the ingress network was removed, created or replaced
	Joined      []string
	Updated     []string
	Removed     []string // stale Down entries of re-created nodes
	LeftAlone   []string // members of another swarm, without --force
	Rows        []Row
}

// Changed reports whether Form changed anything.
func (r *Result) Changed() bool {
	return r.Initialized || r.Ingress || len(r.Joined)+len(r.Updated)+len(r.Removed) > 0
}

// former holds one run of Form.
type former struct {
	mu      sync.Mutex // guards res and errs during concurrent work
	opts    Options
	members []*Member
	leader  *Member
	cluster string
	tokens  swarm.JoinTokens
	res     *Result
	errs    []error
}

func (f *former) joined(name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.res.Joined = append(f.res.Joined, name)
}

// fail records a per-node failure; the run goes on for the other nodes.
func (f *former) fail(m *Member, what string, err error) {
	f.addErr(fmt.Errorf("%s %s: %w", what, m.Name, redact(err, f.tokens)))
}

func (f *former) addErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs = append(f.errs, err)
}

// Form makes the members one swarm: it gathers every engine's facts, picks
// the swarm (an existing one wins), initialises one if there is none, joins
// managers one at a time and workers in bounded waves, applies labels,
// roles and availability, removes stale Down entries of the same hostname,
// and waits until every member is Ready. Nodes that fail are named in the
// error; the others are still formed. Join tokens never leave this package.
func Form(ctx context.Context, members []*Member, opts Options) (*Result, error) {
	opts.setDefaults()
	f := &former{opts: opts, members: members, res: &Result{}}
	err := f.run(ctx)
	if err != nil {
		f.errs = append(f.errs, redact(err, f.tokens))
	}
	return f.res, errors.Join(f.errs...)
}

func (f *former) run(ctx context.Context) error {
	f.opts.Progress("gathering facts from %d nodes", len(f.members))
	par.Each(ctx, f.opts.Concurrency, len(f.members), func(ctx context.Context, i int) error {
		f.members[i].gather(ctx)
		return nil
	})
	var ok []*Member
	for _, m := range f.members {
		if m.facts.err != nil {
			f.fail(m, "reach", m.facts.err)
			continue
		}
		ok = append(ok, m)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := f.pickSwarm(ctx, ok); err != nil {
		return err
	}
	if err := f.ensureIngress(ctx); err != nil {
		return err
	}
	inSwarm, err := f.nodeIDs(ctx)
	if err != nil {
		return err
	}
	var managers, workers []*Member
	for _, m := range ok {
		switch {
		case m == f.leader || inSwarm[m.facts.nodeID] && m.facts.state == swarm.LocalNodeStateActive:
			continue // already a member of this swarm
		case m.inSwarm() && !f.opts.Force:
			f.res.LeftAlone = append(f.res.LeftAlone, m.Name)
			f.addErr(fmt.Errorf("join %s: it is %s in another swarm (node %s); left alone: run with --force to make it leave and join this one", m.Name, m.facts.state, short(m.facts.nodeID)))
			continue
		case m.Role == Manager:
			managers = append(managers, m)
		default:
			workers = append(workers, m)
		}
	}
	// Managers one at a time: each must be a reachable Raft member before
	// the next one changes the quorum.
	for _, m := range managers {
		if err := ctx.Err(); err != nil {
			return err
		}
		f.opts.Progress("joining manager %s", m.Name)
		if err := f.join(ctx, m); err != nil {
			f.fail(m, "join", err)
		}
	}
	if len(workers) > 0 {
		f.opts.Progress("joining %d workers, %d at a time", len(workers), f.opts.Concurrency)
		errs := make([]error, len(workers))
		par.Each(ctx, f.opts.Concurrency, len(workers), func(ctx context.Context, i int) error {
			errs[i] = f.join(ctx, workers[i])
			return nil
		})
		failed := 0
		for i, err := range errs {
			if err != nil {
				failed++
				f.fail(workers[i], "join", err)
			}
		}
		f.opts.Progress("%d workers joined, %d failed", len(workers)-failed, failed)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return f.reconcile(ctx)
}

// pickSwarm chooses the swarm: the one most reachable managers are in
// (first in inventory order on a tie), or a new one on the first manager.
func (f *former) pickSwarm(ctx context.Context, ok []*Member) error {
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
		f.opts.Progress("using the existing swarm %s (via %s)", short(f.cluster), f.leader.Name)
	} else {
		for _, m := range ok {
			if m.Role == Manager && !m.inSwarm() {
				f.leader = m
				break
			}
		}
		if f.leader == nil {
			return errors.New("init: no reachable manager outside a swarm to initialise one on")
		}
		if err := f.init(ctx); err != nil {
			return fmt.Errorf("init %s: %w", f.leader.Name, err)
		}
	}
	f.res.ClusterID, f.res.Leader = f.cluster, f.leader.Name
	s, err := f.leader.Engine.SwarmInspect(ctx)
	if err != nil {
		return fmt.Errorf("inspect swarm on %s: %w", f.leader.Name, err)
	}
	f.tokens = s.JoinTokens
	return nil
}

func (f *former) init(ctx context.Context) error {
	m := f.leader
	f.opts.Progress("initialising the swarm on %s (%s), address pool %s /%d", m.Name, m.Addr, strings.Join(f.opts.DefaultAddrPool, ","), f.opts.SubnetSize)
	_, err := m.Engine.SwarmInit(ctx, swarm.InitRequest{
		ListenAddr:      m.swarmAddr(),
		AdvertiseAddr:   m.swarmAddr(),
		DefaultAddrPool: f.opts.DefaultAddrPool,
		SubnetSize:      f.opts.SubnetSize,
		Availability:    f.availability(m),
	})
	if err != nil {
		return err
	}
	f.res.Initialized = true
	m.gather(ctx)
	if m.facts.err != nil {
		return m.facts.err
	}
	f.cluster = m.facts.clusterID
	return nil
}

// nodeIDs lists the node IDs the chosen swarm knows.
func (f *former) nodeIDs(ctx context.Context) (map[string]bool, error) {
	nodes, err := f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", f.leader.Name, err)
	}
	ids := map[string]bool{}
	for _, n := range nodes {
		ids[n.ID] = true
	}
	return ids, nil
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
			return fmt.Errorf("leave the other swarm (--force): %w", err)
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
		return err
	}
	deadline := time.Now().Add(f.opts.JoinTimeout)
	for {
		m.gather(ctx)
		if m.facts.err == nil && m.facts.state == swarm.LocalNodeStateActive && (m.Role != Manager || m.facts.control) {
			f.joined(m.Name)
			return nil
		}
		if time.Now().After(deadline) {
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
// that are already in the swarm, by their place in the inventory, instead
// of all asking the leader; managers join through the leader.
func (f *former) remotes(m *Member) []string {
	managers := []*Member{f.leader}
	for _, o := range f.members {
		if o != f.leader && o.Role == Manager && o.facts.clusterID == f.cluster && o.facts.control {
			managers = append(managers, o)
		}
	}
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
