package swarm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/container"
	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/client"
	"github.com/docker/docker/pkg/stdcopy"
)

// VerifyOptions say what a healthy swarm looks like.
type VerifyOptions struct {
	Pools   []string // the swarm's default address pools
	MaskLen int      // their mask length
	Image   string   // an image with busybox sh and nc on every node
	Timeout time.Duration
}

// Check is one verification and its outcome.
type Check struct {
	Name   string
	OK     bool
	Detail string
}

// Verify checks a formed swarm through a manager: every member Ready with
// its labels; a new overlay network takes its subnet from the pool; and a
// replicated service answers across nodes over that overlay. The network
// and services it creates are named provision-verify-<random> and removed
// again, also when a check fails.
func Verify(ctx context.Context, manager *client.Client, members []*Member, opts VerifyOptions) ([]Check, error) {
	if opts.Timeout == 0 {
		opts.Timeout = 2 * time.Minute
	}
	var checks []Check
	checks = append(checks, verifyNodes(ctx, manager, members))

	suffix := make([]byte, 3)
	rand.Read(suffix)
	name := "provision-verify-" + hex.EncodeToString(suffix)
	netCheck, netID := verifyOverlay(ctx, manager, name, opts)
	checks = append(checks, netCheck)
	if missing := missingImage(ctx, members, opts.Image); len(missing) > 0 {
		checks = append(checks, Check{Name: "replicated service reachable across nodes",
			Detail: fmt.Sprintf("image %s is missing on %s: load it there (provision lab up does) or pass --image", opts.Image, strings.Join(missing, ", "))})
		netID, _ = "", manager.NetworkRemove(ctx, netID)
	}
	if netID != "" {
		// Clean up with a fresh context: ctx may be what ended.
		defer func() {
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
			defer cancel()
			for _, svc := range []string{name + "-probe", name} {
				manager.ServiceRemove(cctx, svc)
			}
			// A network is removable once the tasks on it are gone.
			for i := 0; i < 50 && manager.NetworkRemove(cctx, netID) != nil; i++ {
				time.Sleep(200 * time.Millisecond)
			}
		}()
		checks = append(checks, verifyService(ctx, manager, name, netID, members, opts))
	}
	var failed []string
	for _, c := range checks {
		if !c.OK {
			failed = append(failed, c.Name)
		}
	}
	if len(failed) > 0 {
		return checks, fmt.Errorf("failed checks: %s", strings.Join(failed, ", "))
	}
	return checks, nil
}

// missingImage lists the members (with an engine) that lack the image:
// swarm would wait on a pull that cannot succeed without a registry.
func missingImage(ctx context.Context, members []*Member, image string) []string {
	var missing []string
	for _, m := range members {
		if m.Engine == nil {
			continue
		}
		if _, err := m.Engine.ImageInspect(ctx, image); err != nil {
			missing = append(missing, m.Name)
		}
	}
	return missing
}

func verifyNodes(ctx context.Context, manager *client.Client, members []*Member) Check {
	c := Check{Name: "every node Ready with its labels"}
	nodes, err := manager.NodeList(ctx, swarm.NodeListOptions{})
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	byName := map[string][]swarm.Node{}
	for _, n := range nodes {
		byName[n.Description.Hostname] = append(byName[n.Description.Hostname], n)
	}
	var problems []string
	for _, m := range members {
		var found *swarm.Node
		for i, n := range byName[m.Name] {
			if n.Status.State == swarm.NodeStateReady {
				found = &byName[m.Name][i]
			}
		}
		if found == nil {
			problems = append(problems, m.Name+" is not a Ready node of the swarm")
			continue
		}
		if string(found.Spec.Role) != m.Role {
			problems = append(problems, fmt.Sprintf("%s is a %s, the inventory says %s", m.Name, found.Spec.Role, m.Role))
		}
		for k, v := range m.Labels {
			if found.Spec.Labels[k] != v {
				problems = append(problems, fmt.Sprintf("%s lacks label %s=%s", m.Name, k, v))
			}
		}
	}
	c.OK = len(problems) == 0
	c.Detail = fmt.Sprintf("%d nodes Ready", len(members)-len(problems))
	if !c.OK {
		sort.Strings(problems)
		c.Detail = strings.Join(problems, "; ")
	}
	return c
}

func verifyOverlay(ctx context.Context, manager *client.Client, name string, opts VerifyOptions) (Check, string) {
	c := Check{Name: "overlay network subnet inside the address pool"}
	resp, err := manager.NetworkCreate(ctx, name, network.CreateOptions{Driver: "overlay", Attachable: true, Labels: map[string]string{"provision.verify": "true"}})
	if err != nil {
		c.Detail = "create overlay network: " + err.Error()
		return c, ""
	}
	// The swarm's allocator gives the network its subnet shortly after
	// creation.
	var n network.Inspect
	for i := 0; i < 50; i++ {
		if n, err = manager.NetworkInspect(ctx, resp.ID, network.InspectOptions{}); err != nil || len(n.IPAM.Config) > 0 {
			break
		}
		if err = sleep(ctx, 200*time.Millisecond); err != nil {
			break
		}
	}
	if err != nil || len(n.IPAM.Config) == 0 {
		c.Detail = fmt.Sprintf("inspect overlay network: %v (%d subnets)", err, len(n.IPAM.Config))
		return c, resp.ID
	}
	subnet, err := netip.ParsePrefix(n.IPAM.Config[0].Subnet)
	if err != nil {
		c.Detail = "overlay subnet: " + err.Error()
		return c, resp.ID
	}
	for _, p := range opts.Pools {
		pool, err := netip.ParsePrefix(p)
		if err == nil && pool.Contains(subnet.Addr()) && subnet.Bits() == opts.MaskLen {
			c.OK = true
			c.Detail = fmt.Sprintf("%s got %s, inside %s as a /%d", name, subnet, pool, opts.MaskLen)
			return c, resp.ID
		}
	}
	c.Detail = fmt.Sprintf("%s got %s, which is not a /%d of %s", name, subnet, opts.MaskLen, strings.Join(opts.Pools, ", "))
	return c, resp.ID
}

// verifyService runs a replicated echo service (one replica per node, so
// replicas land on different nodes) and a probe on another node that
// connects to every replica's overlay address. Service VIPs need IPVS,
// which not every kernel has, so the service uses DNS round robin and the
// probe dials task addresses: that proves the overlay itself.
func verifyService(ctx context.Context, manager *client.Client, name, netID string, members []*Member, opts VerifyOptions) Check {
	c := Check{Name: "replicated service reachable across nodes"}
	ctx, cancel := context.WithTimeout(ctx, opts.Timeout)
	defer cancel()
	replicas := uint64(min(3, len(members)))
	one := uint64(1)
	_, err := manager.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name, Labels: map[string]string{"provision.verify": "true"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{
				Image:    opts.Image,
				Hostname: "{{.Node.Hostname}}",
				Command:  []string{"nc", "-ll", "-p", "8080", "-e", "hostname"},
			},
			Placement: &swarm.Placement{MaxReplicas: 1},
			Networks:  []swarm.NetworkAttachmentConfig{{Target: netID}},
		},
		Mode:         swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &replicas}},
		EndpointSpec: &swarm.EndpointSpec{Mode: swarm.ResolutionModeDNSRR},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		c.Detail = "create service: " + err.Error()
		return c
	}
	tasks, err := runningTasks(ctx, manager, name, int(replicas))
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	var addrs, serverNodes []string
	for _, t := range tasks {
		serverNodes = append(serverNodes, t.NodeID)
		for _, na := range t.NetworksAttachments {
			if na.Network.ID == netID && len(na.Addresses) > 0 {
				addrs = append(addrs, strings.Split(na.Addresses[0], "/")[0])
			}
		}
	}
	// Overlay peers learn about new tasks by gossip, so a first connection
	// may fail for a moment: each address gets ten tries, a second apart.
	script := "for ip in " + strings.Join(addrs, " ") + `; do n=0; until out=$(nc -w 3 $ip 8080 </dev/null) && [ -n "$out" ]; do n=$((n+1)); [ $n -ge 10 ] && { echo "no answer from $ip"; exit 1; }; sleep 1; done; echo "$ip answered: $out"; done`
	constraints := make([]string, 0, len(serverNodes))
	for _, id := range serverNodes {
		constraints = append(constraints, "node.id!="+id)
	}
	if len(members) <= len(serverNodes) {
		constraints = []string{"node.id!=" + serverNodes[0]}
	}
	_, err = manager.ServiceCreate(ctx, swarm.ServiceSpec{
		Annotations: swarm.Annotations{Name: name + "-probe", Labels: map[string]string{"provision.verify": "true"}},
		TaskTemplate: swarm.TaskSpec{
			ContainerSpec: &swarm.ContainerSpec{Image: opts.Image, Command: []string{"sh", "-c", script}},
			RestartPolicy: &swarm.RestartPolicy{Condition: swarm.RestartPolicyConditionNone},
			Placement:     &swarm.Placement{Constraints: constraints},
			Networks:      []swarm.NetworkAttachmentConfig{{Target: netID}},
		},
		Mode: swarm.ServiceMode{Replicated: &swarm.ReplicatedService{Replicas: &one}},
	}, swarm.ServiceCreateOptions{})
	if err != nil {
		c.Detail = "create probe: " + err.Error()
		return c
	}
	state, msg, err := probeResult(ctx, manager, name+"-probe")
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK = state == swarm.TaskStateComplete
	c.Detail = fmt.Sprintf("%d replicas on different nodes; a probe on another node reached %d of them over the overlay", len(tasks), len(addrs))
	if !c.OK {
		c.Detail = fmt.Sprintf("probe task %s: %s; it said: %s", state, msg, serviceLogs(ctx, manager, name+"-probe"))
	}
	return c
}

// serviceLogs returns the last lines a service printed, for error messages.
func serviceLogs(ctx context.Context, manager *client.Client, service string) string {
	rc, err := manager.ServiceLogs(ctx, service, container.LogsOptions{ShowStdout: true, ShowStderr: true, Tail: "5"})
	if err != nil {
		return "(no logs: " + err.Error() + ")"
	}
	defer rc.Close()
	var out bytes.Buffer
	if _, err := stdcopy.StdCopy(&out, &out, io.LimitReader(rc, 64<<10)); err != nil && out.Len() == 0 {
		return "(no logs: " + err.Error() + ")"
	}
	return strings.Join(strings.Fields(strings.ReplaceAll(out.String(), "\n", " | ")), " ")
}

func runningTasks(ctx context.Context, manager *client.Client, service string, want int) ([]swarm.Task, error) {
	for {
		tasks, err := manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service), filters.Arg("desired-state", "running"))})
		if err != nil {
			return nil, fmt.Errorf("list tasks of %s: %w", service, err)
		}
		var running []swarm.Task
		var states []string
		for _, t := range tasks {
			states = append(states, fmt.Sprintf("%s %s", t.Status.State, t.Status.Err))
			if t.Status.State == swarm.TaskStateRunning {
				running = append(running, t)
			}
		}
		if len(running) >= want {
			return running, nil
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			return nil, fmt.Errorf("%s: %d of %d tasks running (%s): %w", service, len(running), want, strings.Join(states, "; "), err)
		}
	}
}

// probeResult waits for the probe's task to end and returns its state.
func probeResult(ctx context.Context, manager *client.Client, service string) (swarm.TaskState, string, error) {
	for {
		tasks, err := manager.TaskList(ctx, swarm.TaskListOptions{Filters: filters.NewArgs(filters.Arg("service", service))})
		if err != nil {
			return "", "", fmt.Errorf("list tasks of %s: %w", service, err)
		}
		for _, t := range tasks {
			switch t.Status.State {
			case swarm.TaskStateComplete, swarm.TaskStateFailed, swarm.TaskStateRejected:
				return t.Status.State, t.Status.Err, nil
			}
		}
		if err := sleep(ctx, 300*time.Millisecond); err != nil {
			if errors.Is(err, context.DeadlineExceeded) {
				return "", "", fmt.Errorf("probe %s did not finish in time", service)
			}
			return "", "", err
		}
	}
}
