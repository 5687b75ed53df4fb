package selfjoin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
)

// Wanted is a node that joins by itself, and the labels it must carry.
type Wanted struct {
	Name   string
	Labels map[string]string
}

// AwaitOptions shape Await.
type AwaitOptions struct {
	// Timeout bounds the wait for nodes that are not in the swarm yet
	// (default 10 minutes); 0 with NoWait set: do not wait at all.
	Timeout time.Duration
	NoWait  bool
	Poll    time.Duration // default 1 s
	// Serve, when set, runs while some node is still missing (the join
	// endpoint); Await cancels its context when done. An error it returns
	// before that ends the wait.
	Serve    func(ctx context.Context) error
	Progress func(format string, args ...any)
	Log      *slog.Logger
}

// AwaitResult is what Await saw and did.
type AwaitResult struct {
	Present []string          // in the swarm and Ready before Await waited
	Joined  []string          // appeared while Await waited
	Updated []string          // labels applied
	Missing []string          // not Ready in the swarm when Await gave up
	IDs     map[string]string // node name → swarm node ID
}

// Await waits until every wanted node is in the swarm and Ready (serving
// the join endpoint meanwhile, when some are missing), and applies each
// one's labels as soon as it is Ready, in one versioned update that
// merges them into the node's labels (labels set by hand stay). A node
// whose labels match already gets no call: a re-run changes nothing.
func Await(ctx context.Context, manager *client.Client, want []Wanted, opts AwaitOptions) (*AwaitResult, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 10 * time.Minute
	}
	if opts.Poll == 0 {
		opts.Poll = time.Second
	}
	if opts.Progress == nil {
		opts.Progress = func(string, ...any) {}
	}
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	res := &AwaitResult{IDs: map[string]string{}}
	left := map[string]Wanted{}
	for _, w := range want {
		left[w.Name] = w
	}
	sctx, serveCancel := context.WithCancel(ctx)
	var serveDone chan error // set while Serve runs
	defer func() {
		serveCancel()
		if serveDone != nil {
			<-serveDone
		}
	}()
	deadline := time.Now().Add(opts.Timeout)
	for first := true; ; first = false {
		nodes, err := manager.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return res, fmt.Errorf("list the swarm's nodes: %w", err)
		}
		byName := newest(nodes)
		for _, name := range sortedKeys(left) {
			n, ok := byName[name]
			if !ok || n.Status.State != swarm.NodeStateReady {
				continue
			}
			updated, err := label(ctx, manager, n, left[name].Labels, opts.Log)
			if err != nil {
				return res, fmt.Errorf("label %s: %w", name, err)
			}
			if updated {
				res.Updated = append(res.Updated, name)
			}
			res.IDs[name] = n.ID
			if first {
				res.Present = append(res.Present, name)
			} else {
				res.Joined = append(res.Joined, name)
				opts.Progress("%s joined by itself and is labelled", name)
			}
			delete(left, name)
		}
		if len(left) == 0 {
			return res, nil
		}
		if opts.NoWait || time.Now().After(deadline) {
			res.Missing = sortedKeys(left)
			return res, fmt.Errorf("not in the swarm and Ready: %s (they join by themselves at first boot: boot them with their seed, or set join: push to join them over SSH)", strings.Join(res.Missing, ", "))
		}
		if first {
			opts.Progress("waiting up to %s for %d self-joining nodes: %s", opts.Timeout, len(left), strings.Join(sortedKeys(left), ", "))
			if opts.Serve != nil {
				serveDone = make(chan error, 1)
				go func() { serveDone <- opts.Serve(sctx) }()
			}
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case err := <-serveDone:
			serveDone = nil
			if err == nil {
				err = errors.New("stopped")
			}
			return res, fmt.Errorf("join endpoint: %w", err)
		case <-time.After(opts.Poll):
		}
	}
}

// newest picks, for each hostname, its Ready entry, else the most
// recently created (a re-seeded node leaves a Down entry behind).
func newest(nodes []swarm.Node) map[string]swarm.Node {
	out := map[string]swarm.Node{}
	for _, n := range nodes {
		name := n.Description.Hostname
		old, ok := out[name]
		switch {
		case !ok:
			out[name] = n
		case old.Status.State == swarm.NodeStateReady:
		case n.Status.State == swarm.NodeStateReady || n.CreatedAt.After(old.CreatedAt):
			out[name] = n
		}
	}
	return out
}

// label merges labels into the node's, in one versioned update, only when
// one differs; a version that moved under it (the node reporting its
// status) is read again.
func label(ctx context.Context, manager *client.Client, n swarm.Node, labels map[string]string, log *slog.Logger) (bool, error) {
	for attempt := 1; ; attempt++ {
		spec := n.Spec
		merged := maps.Clone(spec.Labels)
		if merged == nil {
			merged = map[string]string{}
		}
		var why []string
		for k, v := range labels {
			if old, ok := merged[k]; !ok || old != v {
				merged[k] = v
				why = append(why, k)
			}
		}
		if len(why) == 0 {
			return false, nil
		}
		sort.Strings(why)
		spec.Labels = merged
		log.Debug("labelling self-joined node", "node", n.Description.Hostname, "labels", strings.Join(why, ","))
		err := manager.NodeUpdate(ctx, n.ID, n.Version, spec)
		if err == nil {
			return true, nil
		}
		if !strings.Contains(err.Error(), "update out of sequence") || attempt == 10 {
			return false, err
		}
		if n, _, err = manager.NodeInspectWithRaw(ctx, n.ID); err != nil {
			return false, err
		}
	}
}

func sortedKeys(m map[string]Wanted) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// EngineGrant reads the worker join token and the reachable managers'
// addresses from a manager's engine, on each call (a rotated token is
// picked up). The token stays in memory.
func EngineGrant(manager *client.Client) GrantFunc {
	var mu sync.Mutex
	return func(ctx context.Context) (Grant, error) {
		mu.Lock()
		defer mu.Unlock()
		sw, err := manager.SwarmInspect(ctx)
		if err != nil {
			return Grant{}, fmt.Errorf("swarm inspect: %w", err)
		}
		nodes, err := manager.NodeList(ctx, swarm.NodeListOptions{})
		if err != nil {
			return Grant{}, fmt.Errorf("list nodes: %w", err)
		}
		g := Grant{WorkerToken: sw.JoinTokens.Worker}
		for _, n := range nodes {
			if n.ManagerStatus != nil && n.ManagerStatus.Reachability == swarm.ReachabilityReachable {
				if n.ManagerStatus.Leader {
					g.Managers = append([]string{n.ManagerStatus.Addr}, g.Managers...)
				} else {
					g.Managers = append(g.Managers, n.ManagerStatus.Addr)
				}
			}
		}
		if g.WorkerToken == "" || len(g.Managers) == 0 {
			return Grant{}, errors.New("the swarm has no worker token or no reachable manager")
		}
		return g, nil
	}
}
