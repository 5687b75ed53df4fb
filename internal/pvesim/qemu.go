package pvesim

// VMs: lookup, the config lock, list, status and guest agent views.

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// loadVMLocked finds a VM on a node like PVE's load_config.
func (s *Sim) loadVMLocked(node string, vmid int) (*simVM, error) {
	v := s.vms[vmid]
	if v == nil || v.node != node {
		return nil, errf(http.StatusInternalServerError, "Configuration file 'nodes/%s/qemu-server/%d.conf' does not exist", node, vmid)
	}
	return v, nil
}

func checkConfLock(v *simVM) error {
	if l := v.conf["lock"]; l != "" {
		return errf(http.StatusInternalServerError, "VM is locked (%s)", l)
	}
	return nil
}

func (s *Sim) vmEvent(v *simVM) VMEvent {
	ev := VMEvent{Node: v.node, VMID: v.vmid, Name: v.conf["name"], Config: maps.Clone(v.conf)}
	ipc := v.conf["ipconfig0"]
	if ip := propValue(ipc, "ip"); ip != "" {
		if p, err := netip.ParsePrefix(ip); err == nil {
			ev.IP = p
		}
	}
	ev.Gateway = propValue(ipc, "gw")
	return ev
}

func (s *Sim) getQemuList(r *request) (any, error) {
	node := r.str("node")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.vms)) {
		v := s.vms[id]
		if v.node != node {
			continue
		}
		if !s.privsLocked(r.authID, fmt.Sprintf("/vms/%d", id))["VM.Audit"] && r.authID != "" {
			continue
		}
		e := s.vmResourceLocked(v)
		delete(e, "id")
		delete(e, "node")
		delete(e, "type")
		out = append(out, e)
	}
	return out, nil
}

func (s *Sim) getQemuStatus(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	if err != nil {
		return nil, err
	}
	res := s.vmResourceLocked(v)
	cores, _ := res["maxcpu"].(int)
	out := map[string]any{"vmid": v.vmid, "name": v.conf["name"], "status": res["status"], "qmpstatus": res["status"],
		"uptime": res["uptime"], "cpus": cores, "maxmem": res["maxmem"], "mem": res["mem"], "maxdisk": res["maxdisk"],
		"disk": 0, "cpu": 0, "netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0, "ha": map[string]any{"managed": 0}}
	if propValue(","+v.conf["agent"], "enabled") == "1" || strings.HasPrefix(v.conf["agent"], "1") {
		out["agent"] = 1
	}
	if v.running {
		out["pid"] = 100000 + v.vmid
		out["running-machine"] = "pc-i440fx-10.1+pve0"
		out["running-qemu"] = "10.1.2"
	}
	if l := v.conf["lock"]; l != "" {
		out["lock"] = l
	}
	if tags := v.conf["tags"]; tags != "" {
		out["tags"] = tags
	}
	if v.conf["template"] == "1" {
		out["template"] = 1
	}
	return out, nil
}

func (s *Sim) getAgentInterfaces(r *request) (any, error) {
	s.mu.Lock()
	v, err := s.loadVMLocked(r.str("node"), r.int("vmid"))
	var ev VMEvent
	var running, agent bool
	if err == nil {
		agentOpt := v.conf["agent"]
		agent = agentOpt == "1" || strings.HasPrefix(agentOpt, "1,") || propValue(agentOpt, "enabled") == "1"
		running = v.running
		ev = s.vmEvent(v)
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		return nil, err
	case !agent:
		return nil, errf(http.StatusInternalServerError, "No QEMU guest agent configured")
	case !running:
		return nil, errf(http.StatusInternalServerError, "VM %d is not running", r.int("vmid"))
	case s.opts.Agent == nil:
		return nil, errf(http.StatusInternalServerError, "QEMU guest agent is not running")
	}
	ifaces, err := s.opts.Agent(r.ctx, ev)
	if err != nil {
		return nil, errf(http.StatusInternalServerError, "%s", err.Error())
	}
	result := []map[string]any{}
	for _, i := range ifaces {
		addrs := []map[string]any{}
		for _, a := range i.Addresses {
			typ := "ipv4"
			if a.Addr().Is6() {
				typ = "ipv6"
			}
			addrs = append(addrs, map[string]any{"ip-address": a.Addr().String(), "ip-address-type": typ, "prefix": a.Bits()})
		}
		result = append(result, map[string]any{"name": i.Name, "hardware-address": strings.ToLower(i.HardwareAddress),
			"ip-addresses": addrs})
	}
	return map[string]any{"result": result}, nil
}

// vmTask takes the VM's lock (waiting as PVE does, then failing with its
// "can't lock file" message) and starts a task of typ on node that holds the
// lock until run returns.
func (s *Sim) vmTask(r *request, node string, vmid int, typ string, run func(ctx context.Context, t *task) error) (any, error) {
	release, err := s.acquireLock(r.ctx, vmid)
	if err != nil {
		return nil, err
	}
	return s.startTask(taskSpec{node: node, typ: typ, id: strconv.Itoa(vmid), user: r.authID, release: release, run: run}), nil
}
