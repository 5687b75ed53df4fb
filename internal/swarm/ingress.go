package swarm

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
)

// Ingress is what the swarm's routing-mesh network should be.
type Ingress struct {
	Disabled bool   // remove it: no routing mesh, ports are published in host mode
	Subnet   string // recreate it with this subnet ("": keep Docker's choice)
}

// ingressName is Docker's name for the network `swarm init` creates.
const ingressName = "ingress"

// ensureIngress makes the swarm's ingress network what the inventory says,
// before workers join: a node that joins a swarm with an ingress network
// builds an ingress sandbox at once (a network namespace, a VXLAN device,
// the load balancer, and the embedded DNS's rules), so removing or
// replacing it later costs every node that work twice. It changes nothing
// when the network already matches. Docker refuses to remove an ingress
// network that services publish ports on; that error is returned with
// what to do about it.
func (f *former) ensureIngress(ctx context.Context) error {
	want := f.opts.Ingress
	eng := f.leader.Engine
	list, err := eng.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("scope", "swarm"))})
	if err != nil {
		return fmt.Errorf("list networks on %s: %w", f.leader.Name, f.leader.engineErr(err))
	}
	var cur *network.Summary
	for i := range list {
		if list[i].Ingress {
			cur = &list[i]
			break
		}
	}
	switch {
	case want.Disabled && cur == nil:
		return nil
	case want.Disabled:
		f.opts.Progress("removing the ingress network %s (swarm.ingress.enabled: false)", cur.Name)
		return f.removeIngress(ctx, cur)
	case cur != nil && (want.Subnet == "" || subnetOf(cur) == want.Subnet):
		return nil
	case cur != nil:
		f.opts.Progress("replacing the ingress network %s (%s) with one on %s", cur.Name, subnetOf(cur), want.Subnet)
		if err := f.removeIngress(ctx, cur); err != nil {
			return err
		}
	default:
		f.opts.Progress("creating the ingress network")
	}
	req := network.CreateOptions{Driver: "overlay", Ingress: true, Scope: "swarm"}
	if want.Subnet != "" {
		req.IPAM = &network.IPAM{Config: []network.IPAMConfig{{Subnet: want.Subnet}}}
	}
	// A removed network keeps its name until the manager's allocator has
	// released it, a moment after the remove call returns.
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := eng.NetworkCreate(ctx, ingressName, req)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "already exists") || time.Now().After(deadline) {
			return fmt.Errorf("create the ingress network on %s: %w", f.leader.Name, f.leader.engineErr(err))
		}
		if err := sleep(ctx, 250*time.Millisecond); err != nil {
			return err
		}
	}
	f.res.Ingress = true
	return nil
}

func (f *former) removeIngress(ctx context.Context, cur *network.Summary) error {
	f.removedIngress = cur.ID
	if err := f.leader.Engine.NetworkRemove(ctx, cur.ID); err != nil {
		if strings.Contains(err.Error(), "network "+cur.ID+" not found") {
			// A network removed a moment ago (by an earlier run) is still
			// listed until the manager's allocator has released it; the
			// daemon answers 500 with this message. It is gone.
			return nil
		}
		if strings.Contains(err.Error(), "depends on it") || strings.Contains(err.Error(), "in use") {
			return fmt.Errorf("remove the ingress network %s: %w (services publish ports through it: publish them in host mode or keep swarm.ingress)", cur.Name, err)
		}
		return fmt.Errorf("remove the ingress network %s on %s: %w", cur.Name, f.leader.Name, f.leader.engineErr(err))
	}
	f.res.Ingress = true
	return nil
}

// awaitIngressGone waits, at the end of a run that removed the ingress
// network, until the leader no longer lists it (the manager's allocator
// releases it a while after the remove call returned), so that a re-run
// right after finds nothing to remove. It gives up after a minute: the
// swarm is formed either way.
func (f *former) awaitIngressGone(ctx context.Context) error {
	if f.removedIngress == "" || f.leader == nil {
		return nil
	}
	deadline := time.Now().Add(time.Minute)
	said := false
	for {
		list, err := f.leader.Engine.NetworkList(ctx, network.ListOptions{Filters: filters.NewArgs(filters.Arg("id", f.removedIngress))})
		if err != nil {
			return fmt.Errorf("list networks on %s: %w", f.leader.Name, f.leader.engineErr(err))
		}
		if !slices.ContainsFunc(list, func(n network.Summary) bool { return n.ID == f.removedIngress }) {
			return nil
		}
		if time.Now().After(deadline) {
			f.opts.Progress("the removed ingress network is still listed on %s after a minute; the swarm is formed", f.leader.Name)
			return nil
		}
		if !said {
			f.opts.Progress("waiting until %s no longer lists the removed ingress network", f.leader.Name)
			said = true
		}
		if err := sleep(ctx, 500*time.Millisecond); err != nil {
			return err
		}
	}
}

func subnetOf(n *network.Summary) string {
	if len(n.IPAM.Config) == 0 {
		return ""
	}
	return n.IPAM.Config[0].Subnet
}
