package swarm

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// errNoSwarm stops the nodes still connecting when no swarm can be formed.
var errNoSwarm = errors.New("not tried further: there is no swarm to join")

// phases are the points every node's pipeline waits for.
type phases struct {
	settled chan *Member // a manager was reached and its facts gathered, or it failed
	// managersIn is closed once every manager was reached or failed.
	managersIn   chan struct{}
	managersLeft atomic.Int64
	decided      chan struct{} // closed once leader, cluster, tokens and inSwarm are set
	decideErr    error         // set before decided is closed: no swarm to join
	early        map[*Member]bool
	workersGo    chan struct{} // closed once the managers reached in time have joined
	joinSlots    chan struct{} // workers joining at once
}

func (f *former) run(ctx context.Context) error {
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	p := &phases{
		settled:   make(chan *Member, len(f.members)),
		decided:   make(chan struct{}),
		early:     map[*Member]bool{}, // managers the coordinator joins, in inventory order
		workersGo: make(chan struct{}),
		joinSlots: make(chan struct{}, f.opts.Concurrency),

		managersIn: make(chan struct{}),
	}
	for _, m := range f.members {
		if m.Role == Manager {
			p.managersLeft.Add(1)
		}
	}
	if p.managersLeft.Load() == 0 {
		close(p.managersIn)
	}
	f.opts.Progress("connecting to %d nodes; each goes on as soon as it answers", len(f.members))
	var wg sync.WaitGroup
	for _, m := range f.members {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.node(ctx, m, p)
		}()
	}

	reached, allManagers, err := f.awaitDecidable(ctx, p)
	if err != nil {
		wg.Wait()
		return err
	}
	p.decideErr = f.decide(ctx, reached, allManagers)
	if p.decideErr == nil {
		for _, m := range reached {
			if m.Role == Manager && f.classify(m) == joinManager {
				p.early[m] = true
			}
		}
	}
	close(p.decided)
	if p.decideErr != nil {
		stop(errNoSwarm) // the nodes still connecting have nothing to join
		wg.Wait()
		return p.decideErr
	}
	// Managers one at a time: each must be a reachable Raft member before
	// the next one changes the quorum. Each one's node object is brought
	// to the inventory while the next joins.
	for _, m := range reached {
		if !p.early[m] || ctx.Err() != nil {
			continue
		}
		f.managerTurn.Lock()
		f.opts.Progress("joining manager %s", m.Name)
		err := f.join(ctx, m)
		f.managerTurn.Unlock()
		if err != nil {
			f.fail(m, "join", err)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			f.converge(ctx, m)
		}()
	}
	f.opts.Progress("joining workers as they answer, %d at a time; each is labelled as soon as it has joined", f.opts.Concurrency)
	close(p.workersGo)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return err
	}
	var ok []*Member
	failed := 0
	for _, m := range f.members {
		if m.usable() {
			ok = append(ok, m)
		}
		if f.failed[m] != nil {
			failed++
		}
	}
	if len(f.res.Joined)+failed > 0 {
		f.opts.Progress("%d nodes joined, %d failed", len(f.res.Joined), failed)
	}
	if err := f.reconcile(ctx, ok); err != nil {
		return err
	}
	return f.awaitIngressGone(ctx)
}

// awaitDecidable waits until the swarm can be chosen for certain: every
// manager reached or failed, or more than half of the inventory's
// managers reached in one swarm (at once when there is no manager). It returns the members reached by then,
// in inventory order, and whether every manager is known.
func (f *former) awaitDecidable(ctx context.Context, p *phases) ([]*Member, bool, error) {
	managers := 0
	for _, m := range f.members {
		if m.Role == Manager {
			managers++
		}
	}
	var reached []*Member
	settledManagers := 0
	for settledManagers < managers { // only managers settle before the choice
		var m *Member
		select {
		case m = <-p.settled:
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
		if m.Role == Manager {
			settledManagers++
		}
		if m.usable() {
			reached = append(reached, m)
		}
		if settledManagers == managers || majority(reached, managers) != "" {
			break
		}
	}
	return inOrder(f.members, reached), settledManagers == managers, nil
}

// node is one member's pipeline: reach it, then, once the swarm is chosen,
// join it as its role says (managers one at a time, workers once the
// managers reached in time have joined), then at once bring its node
// object to the inventory (labels, role, availability: one versioned
// update, none when nothing differs), while the others are still joining.
func (f *former) node(ctx context.Context, m *Member, p *phases) {
	if m.Role != Manager {
		if m.NodeID != "" && m.Probe != nil {
			if f.vouch(ctx, m, p) {
				return
			}
		} else {
			f.awaitHeadStart(ctx, p)
		}
	}
	ok := f.reach(ctx, m)
	if m.Role == Manager {
		p.settled <- m
		if p.managersLeft.Add(-1) == 0 {
			close(p.managersIn)
		}
	}
	if !ok {
		return
	}
	select {
	case <-p.decided:
	case <-ctx.Done():
		return
	}
	if p.decideErr != nil || p.early[m] {
		return // early managers are joined by the coordinator, in inventory order
	}
	if !f.settle(ctx, m) {
		return
	}
	switch f.classify(m) {
	case nothing:
	case leaveAlone:
		f.mu.Lock()
		f.res.LeftAlone = append(f.res.LeftAlone, m.Name)
		f.mu.Unlock()
		f.fail(m, "join", fmt.Errorf("it is %s in another swarm (node %s); left alone: run with --force to make it leave and join this one", m.facts.state, short(m.facts.nodeID)))
		return
	case joinManager:
		f.managerTurn.Lock()
		f.opts.Progress("joining manager %s (reached late)", m.Name)
		err := f.join(ctx, m)
		f.managerTurn.Unlock()
		if err != nil {
			f.fail(m, "join", err)
			return
		}
	case joinWorker:
		select {
		case <-p.workersGo:
		case <-ctx.Done():
			return
		}
		select {
		case p.joinSlots <- struct{}{}:
		case <-ctx.Done():
			return
		}
		err := f.join(ctx, m)
		<-p.joinSlots
		if err != nil {
			f.fail(m, "join", err)
			return
		}
	}
	f.converge(ctx, m)
}

// settle completes a pinged worker's facts once the swarm is chosen: an
// active worker the swarm has as a Ready node of its name and address is
// that node; an inactive one is to join; any other gets the full facts
// from /info.
func (f *former) settle(ctx context.Context, m *Member) bool {
	if !m.facts.pinged {
		return true
	}
	if m.facts.state == swarm.LocalNodeStateInactive {
		return true
	}
	if n, ok := f.readyAs(m); ok && m.facts.state == swarm.LocalNodeStateActive && !m.facts.control {
		m.facts.nodeID, m.facts.clusterID, m.facts.hostname = n.ID, f.cluster, m.Name
		return true
	}
	m.gather(ctx)
	if m.facts.err != nil {
		f.fail(m, "reach", m.facts.err)
		f.mu.Lock()
		f.unreached++
		f.mu.Unlock()
		return false
	}
	return true
}

// vouch leaves a worker alone without connecting to it, on a re-run: once
// the swarm is chosen, when the swarm lists it Ready under the node ID the
// last run recorded, with its name and address, as a worker with every
// label the inventory gives it (so its update would change nothing), and
// its Probe answers now. Otherwise the member is reached as any other.
// Reconcile still waits for it to be Ready in the list read at the end.
func (f *former) vouch(ctx context.Context, m *Member, p *phases) bool {
	select {
	case <-p.decided:
	case <-ctx.Done():
		return false
	}
	if p.decideErr != nil {
		return false
	}
	n, ok := f.readyAs(m)
	if !ok || n.ID != m.NodeID || n.Spec.Role != swarm.NodeRoleWorker || !hasLabels(n.Spec.Labels, m.Labels) {
		return false
	}
	if err := m.Probe(ctx); err != nil {
		f.opts.Log.Debug("probe failed; connecting", "node", m.Name, "err", err)
		return false
	}
	m.facts = facts{state: swarm.LocalNodeStateActive, nodeID: n.ID, clusterID: f.cluster, hostname: m.Name, vouched: true}
	f.mu.Lock()
	f.res.Vouched = append(f.res.Vouched, m.Name)
	f.mu.Unlock()
	return true
}

// hasLabels reports whether have holds every label of want, with its value.
func hasLabels(have, want map[string]string) bool {
	for k, v := range want {
		if old, ok := have[k]; !ok || old != v {
			return false
		}
	}
	return true
}

// readyAs is the one node of the chosen swarm, when it was chosen, that is
// Ready with the member's hostname and address.
func (f *former) readyAs(m *Member) (swarm.Node, bool) {
	var found []swarm.Node
	for _, n := range f.byHost[m.Name] {
		if ready(n) && n.Status.Addr == m.Addr {
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		return swarm.Node{}, false
	}
	return found[0], true
}

// awaitHeadStart holds a worker back until every manager was reached or
// failed, or until the managers' head start has passed: the managers are
// on the critical path (no worker joins before the swarm is chosen and
// its managers have joined), and on a busy admin host or network the
// workers' SSH handshakes would slow theirs. A manager that is slow to
// answer holds the workers up by the head start at most.
func (f *former) awaitHeadStart(ctx context.Context, p *phases) {
	if f.opts.ManagerHeadStart <= 0 {
		return
	}
	t := time.NewTimer(f.opts.ManagerHeadStart)
	defer t.Stop()
	select {
	case <-p.managersIn:
	case <-t.C:
	case <-ctx.Done():
	}
}

// reach connects to a member and gathers its facts; a node that cannot be
// reached is recorded as failed.
//
// A manager's facts come from /info (its swarm's ID decides the choice); a
// worker's first from the ping, whose Swarm header says its state: /info
// costs each daemon two programs run (runc and docker-init --version),
// and a worker the swarm already has needs no more (see settle).
func (f *former) reach(ctx context.Context, m *Member) bool {
	err := m.Open(ctx, f.opts.Counter)
	if err == nil {
		if m.Role == Manager {
			m.gather(ctx)
		} else {
			m.ping(ctx)
		}
		err = m.facts.err
	} else {
		m.facts = facts{err: err}
	}
	if err == nil {
		return true
	}
	if errors.Is(context.Cause(ctx), errNoSwarm) {
		err = errNoSwarm
	}
	f.fail(m, "reach", err)
	f.mu.Lock()
	f.unreached++
	f.mu.Unlock()
	return false
}

// majority is the swarm more than half of the inventory's managers are
// active managers of, among the members reached ("" when there is none):
// no other swarm can win the vote, whatever the others say.
func majority(reached []*Member, managers int) string {
	votes := map[string]int{}
	for _, m := range reached {
		if m.Role == Manager && m.facts.state == swarm.LocalNodeStateActive && m.facts.control && m.facts.clusterID != "" {
			votes[m.facts.clusterID]++
			if 2*votes[m.facts.clusterID] > managers {
				return m.facts.clusterID
			}
		}
	}
	return ""
}

type action int

const (
	nothing action = iota // the leader, or already a member of the swarm
	leaveAlone
	joinManager
	joinWorker
)

// classify says what a reached member needs, once the swarm is chosen. It
// reads only the member's own facts and what decide set.
func (f *former) classify(m *Member) action {
	switch {
	case m == f.leader || f.isKnown(m) && m.facts.state == swarm.LocalNodeStateActive:
		return nothing
	case m.inSwarm() && !f.opts.Force:
		return leaveAlone
	case m.Role == Manager:
		return joinManager
	default:
		return joinWorker
	}
}
