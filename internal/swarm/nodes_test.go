package swarm

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/docker/docker/api/types/swarm"
)

// TestNodeListsShared: members asking at once share one list; a list asked
// for before a member's time is not given to it; each list asks for the
// names of the members waiting.
func TestNodeListsShared(t *testing.T) {
	var l nodeLists
	var calls atomic.Int64
	var mu sync.Mutex
	var asked [][]string
	list := func(ctx context.Context, names []string) ([]swarm.Node, error) {
		calls.Add(1)
		mu.Lock()
		asked = append(asked, names)
		mu.Unlock()
		time.Sleep(20 * time.Millisecond)
		return []swarm.Node{{ID: "n1"}}, nil
	}
	ctx := context.Background()
	doneA, doneB := l.wait("wrk-a"), l.wait("wrk-b")
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
	doneA()
	if _, err := l.since(ctx, time.Now(), list); err != nil || calls.Load() != 2 {
		t.Errorf("a member that needs a newer list got the old one (%d lists, %v)", calls.Load(), err)
	}
	doneB()
	if want := [][]string{{"wrk-a", "wrk-b"}, {"wrk-b"}}; !slices.EqualFunc(asked, want, slices.Equal) {
		t.Errorf("lists asked for %v, want %v", asked, want)
	}
}
