package swarm

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// TestNodeListsShared: members asking at once share one list; a list asked
// for before a member's time is not given to it.
func TestNodeListsShared(t *testing.T) {
	var l nodeLists
	var calls atomic.Int64
	list := func(ctx context.Context) ([]swarm.Node, error) {
		calls.Add(1)
		time.Sleep(20 * time.Millisecond)
		return []swarm.Node{{ID: "n1"}}, nil
	}
	ctx := context.Background()
	start := time.Now()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if nodes, err := l.since(ctx, start, list); err != nil || len(nodes) != 1 {
				t.Errorf("since: %v, %v", nodes, err)
			}
		}()
	}
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("50 members asking at once made %d lists, want 1", n)
	}
	if _, err := l.since(ctx, start, list); err != nil || calls.Load() != 1 {
		t.Errorf("a list fresh enough was fetched again (%d lists, %v)", calls.Load(), err)
	}
	if _, err := l.since(ctx, time.Now(), list); err != nil || calls.Load() != 2 {
		t.Errorf("a member that needs a newer list got the old one (%d lists, %v)", calls.Load(), err)
	}
}
