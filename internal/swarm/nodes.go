package swarm

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/swarm"
)

// nodeLists shares the leader's node list among the members waiting for
// their new node at once: a member asks for a list no older than it can
// use, and gets the last one, or the one in flight, or a new one. However
// many workers have just joined, the leader answers about one list per
// poll interval instead of one per worker and poll (at Swarm2k's size,
// thousands a second). One list is fetched at a time, filtered to the
// names of the members waiting when it is asked for (a swarm of thousands
// is not listed whole ten times a second).
type nodeLists struct {
	mu       sync.Mutex
	waiting  map[string]int // names of the members waiting, and how many of each
	asked    time.Time      // when the last list was asked for
	nodes    []swarm.Node
	err      error
	inFlight chan struct{} // closed when the list being fetched is in
}

// wait registers a member's name until the returned func is called: the
// lists asked for meanwhile hold its nodes.
func (l *nodeLists) wait(name string) (done func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.waiting == nil {
		l.waiting = map[string]int{}
	}
	l.waiting[name]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.waiting[name]--; l.waiting[name] == 0 {
			delete(l.waiting, name)
		}
	}
}

// since returns a node list the leader was asked for at t or later, with
// the nodes of every name registered (wait) by then.
func (l *nodeLists) since(ctx context.Context, t time.Time, list func(ctx context.Context, names []string) ([]swarm.Node, error)) ([]swarm.Node, error) {
	for {
		l.mu.Lock()
		if !l.asked.IsZero() && !l.asked.Before(t) {
			nodes, err := l.nodes, l.err
			l.mu.Unlock()
			return nodes, err
		}
		if ch := l.inFlight; ch != nil { // fresh enough or not, one list at a time
			l.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		ch, at := make(chan struct{}), time.Now()
		l.inFlight = ch
		names := slices.Sorted(maps.Keys(l.waiting))
		l.mu.Unlock()
		nodes, err := list(ctx, names)
		l.mu.Lock()
		l.asked, l.nodes, l.err, l.inFlight = at, nodes, err, nil
		l.mu.Unlock()
		close(ch)
		if err != nil {
			return nil, err
		}
		return nodes, nil
	}
}

// recentNodes is the chosen swarm's node list as the leader had it at t or
// later, shared with the other members asking meanwhile: the nodes named
// as the members registered with f.lists.wait (and any whose names they
// begin).
func (f *former) recentNodes(ctx context.Context, t time.Time) ([]swarm.Node, error) {
	nodes, err := f.lists.since(ctx, t, func(ctx context.Context, names []string) ([]swarm.Node, error) {
		args := filters.NewArgs()
		for _, n := range names {
			args.Add("name", n) // any of them (a prefix match, as the CLI's)
		}
		return f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{Filters: args})
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	return nodes, nil
}
