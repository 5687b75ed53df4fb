package swarm

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// nodeLists shares the leader's node list among the members waiting for
// their new node at once: a member asks for a list no older than it can
// use, and gets the last one, or the one in flight, or a new one. However
// many workers have just joined, the leader answers about one list per
// poll interval instead of one per worker and poll (at Swarm2k's size,
// thousands a second). One list is fetched at a time.
type nodeLists struct {
	mu       sync.Mutex
	asked    time.Time // when the last list was asked for
	nodes    []swarm.Node
	err      error
	inFlight chan struct{} // closed when the list being fetched is in
}

// since returns a node list the leader was asked for at t or later.
func (l *nodeLists) since(ctx context.Context, t time.Time, list func(context.Context) ([]swarm.Node, error)) ([]swarm.Node, error) {
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
		l.mu.Unlock()
		nodes, err := list(ctx)
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
// later, shared with the other members asking meanwhile.
func (f *former) recentNodes(ctx context.Context, t time.Time) ([]swarm.Node, error) {
	nodes, err := f.lists.since(ctx, t, func(ctx context.Context) ([]swarm.Node, error) {
		return f.leader.Engine.NodeList(ctx, swarm.NodeListOptions{})
	})
	if err != nil {
		return nil, fmt.Errorf("list nodes on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	return nodes, nil
}
