package swarmtest

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/docker/docker/api/types/filters"
	"github.com/docker/docker/api/types/network"
	"github.com/docker/docker/api/types/swarm"
	"github.com/docker/docker/api/types/system"
)

// dockerd's messages for the swarm states (daemon/cluster/errors.go).
const (
	errNoSwarm     = "This node is not part of a swarm"
	errSwarmExists = "This node is already part of a swarm. Use \"docker swarm leave\" to leave this swarm and join another one."
	errNoManager   = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again."
)

// apiError is dockerd's error body.
type apiError struct {
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func fail(w http.ResponseWriter, code int, format string, args ...any) {
	writeJSON(w, code, apiError{Message: fmt.Sprintf(format, args...)})
}

func (e *Engine) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", APIVersion)
	w.Header().Set("Ostype", "linux")
	w.Header().Set("Server", "Docker/28.5.2 (linux)")
	path := versionPrefix.ReplaceAllString(r.URL.Path, "")
	call := callName(r, path)
	e.w.mu.Lock()
	latency := e.w.latency
	e.w.mu.Unlock()
	if latency != nil {
		if d := latency(e.Name, call); d > 0 {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
				return
			}
		}
	}
	e.w.mu.Lock()
	defer e.w.mu.Unlock()
	if e.stopped { // a connection made before the stop
		panic(http.ErrAbortHandler)
	}
	e.count(r, call)
	seg := strings.Split(strings.Trim(path, "/"), "/")
	defer e.note(call, seg)
	switch {
	case path == "/_ping":
		e.ping(w)
	case path == "/info" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, e.info())
	case path == "/swarm" && r.Method == http.MethodGet:
		e.swarmInspect(w)
	case path == "/swarm/init" && r.Method == http.MethodPost:
		e.swarmInit(w, r)
	case path == "/swarm/join" && r.Method == http.MethodPost:
		e.swarmJoin(w, r)
	case path == "/swarm/leave" && r.Method == http.MethodPost:
		e.swarmLeave(w, r)
	case path == "/nodes" && r.Method == http.MethodGet:
		e.nodeList(w, r)
	case len(seg) == 2 && seg[0] == "nodes" && r.Method == http.MethodGet:
		e.nodeInspect(w, seg[1])
	case len(seg) == 3 && seg[0] == "nodes" && seg[2] == "update" && r.Method == http.MethodPost:
		e.nodeUpdate(w, r, seg[1])
	case len(seg) == 2 && seg[0] == "nodes" && r.Method == http.MethodDelete:
		e.nodeRemove(w, r, seg[1])
	case path == "/networks" && r.Method == http.MethodGet:
		e.networkList(w, r)
	case path == "/networks/create" && r.Method == http.MethodPost:
		e.networkCreate(w, r)
	case len(seg) == 2 && seg[0] == "networks" && r.Method == http.MethodDelete:
		e.networkRemove(w, seg[1])
	default:
		fail(w, http.StatusNotFound, "page not found")
	}
}

func (e *Engine) ping(w http.ResponseWriter) {
	role := "worker"
	if e.w.isManager(e) {
		role = "manager"
	}
	sw := string(e.state)
	if e.state == swarm.LocalNodeStateActive {
		sw += "/" + role
	}
	w.Header().Set("Swarm", sw)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache, no-store, must-revalidate")
	w.WriteHeader(http.StatusOK)
	w.Write([]byte("OK"))
}

func (e *Engine) info() system.Info {
	info := system.Info{
		ID: "ENGINE:" + e.Name, Name: e.Name, ServerVersion: "28.5.2", OperatingSystem: "Debian GNU/Linux 12 (bookworm)",
		OSType: "linux", Architecture: "x86_64", NCPU: 2, Driver: "overlay2", DockerRootDir: "/var/lib/docker",
		Swarm: swarm.Info{LocalNodeState: e.state, NodeID: e.nodeID},
	}
	c := e.w.swarms[e.swarmID]
	if c == nil {
		return info
	}
	info.Swarm.NodeAddr = e.Addr
	for _, n := range c.nodes {
		if n.ManagerStatus != nil {
			info.Swarm.RemoteManagers = append(info.Swarm.RemoteManagers, swarm.Peer{NodeID: n.ID, Addr: n.ManagerStatus.Addr})
		}
	}
	if e.w.isManager(e) {
		info.Swarm.ControlAvailable = true
		ci := c.info()
		info.Swarm.Cluster = &ci
		info.Swarm.Nodes = len(c.nodes)
		info.Swarm.Managers = len(info.Swarm.RemoteManagers)
	}
	return info
}

func (c *cluster) info() swarm.ClusterInfo {
	return swarm.ClusterInfo{
		ID:              c.id,
		Meta:            swarm.Meta{Version: swarm.Version{Index: c.version}},
		Spec:            swarm.Spec{Annotations: swarm.Annotations{Name: "default"}},
		DefaultAddrPool: c.pool, SubnetSize: c.mask,
	}
}

func (e *Engine) swarmInspect(w http.ResponseWriter) {
	if !e.w.isManager(e) {
		fail(w, http.StatusServiceUnavailable, errNoManager)
		return
	}
	c := e.w.swarms[e.swarmID]
	writeJSON(w, http.StatusOK, swarm.Swarm{ClusterInfo: c.info(), JoinTokens: c.tokens})
}

func (e *Engine) swarmInit(w http.ResponseWriter, r *http.Request) {
	var req swarm.InitRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: %v", err)
		return
	}
	if e.state != swarm.LocalNodeStateInactive {
		fail(w, http.StatusServiceUnavailable, errSwarmExists)
		return
	}
	if req.ListenAddr == "" {
		fail(w, http.StatusBadRequest, "invalid ListenAddr %q: invalid empty address", req.ListenAddr)
		return
	}
	e.w.init(e, req)
	writeJSON(w, http.StatusOK, e.nodeID)
}

func (e *Engine) swarmJoin(w http.ResponseWriter, r *http.Request) {
	var req swarm.JoinRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: %v", err)
		return
	}
	if e.state != swarm.LocalNodeStateInactive {
		fail(w, http.StatusServiceUnavailable, errSwarmExists)
		return
	}
	if e.failJoin != "" {
		fail(w, http.StatusInternalServerError, "%s", e.failJoin)
		return
	}
	if len(req.RemoteAddrs) == 0 {
		fail(w, http.StatusBadRequest, "at least 1 RemoteAddr is required to join")
		return
	}
	via := e.w.engineAt(req.RemoteAddrs[0])
	if via == nil || via.stopped || !e.w.isManager(via) {
		fail(w, http.StatusServiceUnavailable, "rpc error: code = Unavailable desc = connection error: desc = \"transport: Error while dialing: dial tcp %s: connect: connection refused\"", req.RemoteAddrs[0])
		return
	}
	c := e.w.swarms[via.swarmID]
	if req.JoinToken != c.tokens.Worker && req.JoinToken != c.tokens.Manager {
		fail(w, http.StatusBadRequest, "rpc error: code = InvalidArgument desc = A valid join token is necessary to join this cluster")
		return
	}
	e.w.join(e, c, req.JoinToken, req.Availability)
	w.WriteHeader(http.StatusOK)
}

func (e *Engine) swarmLeave(w http.ResponseWriter, r *http.Request) {
	if e.state == swarm.LocalNodeStateInactive {
		fail(w, http.StatusServiceUnavailable, errNoSwarm)
		return
	}
	if e.w.isManager(e) && r.URL.Query().Get("force") != "1" && r.URL.Query().Get("force") != "true" {
		fail(w, http.StatusServiceUnavailable, "You are attempting to leave the swarm on a node that is participating as a manager. Removing the last manager erases all current state of the swarm. Use `--force` to ignore this message.")
		return
	}
	if c := e.w.swarms[e.swarmID]; c != nil {
		if n := c.nodes[e.nodeID]; n != nil {
			n.Status.State = swarm.NodeStateDown
			if n.ManagerStatus != nil {
				n.ManagerStatus.Reachability = swarm.ReachabilityUnreachable
				n.ManagerStatus.Leader = false
			}
		}
	}
	e.nodeID, e.swarmID, e.state = "", "", swarm.LocalNodeStateInactive
	w.WriteHeader(http.StatusOK)
}

// nodeList answers GET /nodes; the name filter matches hostname prefixes,
// as swarmkit's does.
func (e *Engine) nodeList(w http.ResponseWriter, r *http.Request) {
	if !e.w.isManager(e) {
		fail(w, http.StatusServiceUnavailable, errNoManager)
		return
	}
	args, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid filter: %v", err)
		return
	}
	c := e.w.swarms[e.swarmID]
	if !args.Contains("name") {
		writeJSON(w, http.StatusOK, c.list())
		return
	}
	out := []swarm.Node{}
	for _, n := range c.nodes {
		for _, prefix := range args.Get("name") {
			if strings.HasPrefix(n.Description.Hostname, prefix) {
				out = append(out, *n)
				break
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	writeJSON(w, http.StatusOK, out)
}

func (e *Engine) node(w http.ResponseWriter, id string) *swarm.Node {
	if !e.w.isManager(e) {
		fail(w, http.StatusServiceUnavailable, errNoManager)
		return nil
	}
	n := e.w.swarms[e.swarmID].nodes[id]
	if n == nil {
		fail(w, http.StatusNotFound, "node %s not found", id)
	}
	return n
}

func (e *Engine) nodeInspect(w http.ResponseWriter, id string) {
	if n := e.node(w, id); n != nil {
		writeJSON(w, http.StatusOK, n)
	}
}

func (e *Engine) nodeUpdate(w http.ResponseWriter, r *http.Request, id string) {
	n := e.node(w, id)
	if n == nil {
		return
	}
	var version uint64
	if _, err := fmt.Sscan(r.URL.Query().Get("version"), &version); err != nil {
		fail(w, http.StatusBadRequest, "invalid node version: %v", err)
		return
	}
	var spec swarm.NodeSpec
	if err := json.NewDecoder(r.Body).Decode(&spec); err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: %v", err)
		return
	}
	if version != n.Version.Index {
		fail(w, http.StatusInternalServerError, "rpc error: code = Unknown desc = update out of sequence")
		return
	}
	c := e.w.swarms[e.swarmID]
	switch {
	case spec.Role == swarm.NodeRoleManager && n.Spec.Role != swarm.NodeRoleManager:
		n.ManagerStatus = &swarm.ManagerStatus{Reachability: swarm.ReachabilityReachable, Addr: n.Status.Addr + ":2377"}
		if n.Status.State == swarm.NodeStateDown {
			n.ManagerStatus.Reachability = swarm.ReachabilityUnreachable
		}
	case spec.Role == swarm.NodeRoleWorker && n.Spec.Role == swarm.NodeRoleManager:
		if n.ManagerStatus != nil && n.ManagerStatus.Leader {
			fail(w, http.StatusBadRequest, "rpc error: code = FailedPrecondition desc = attempting to demote the leader of the swarm (node %s); demote it from another manager", id)
			return
		}
		n.ManagerStatus = nil
	}
	c.version++
	e.w.now = e.w.now.Add(time.Second)
	n.Spec, n.Version.Index, n.UpdatedAt = spec, c.version, e.w.now
	w.WriteHeader(http.StatusOK)
}

func (e *Engine) nodeRemove(w http.ResponseWriter, r *http.Request, id string) {
	n := e.node(w, id)
	if n == nil {
		return
	}
	if n.Spec.Role == swarm.NodeRoleManager || n.ManagerStatus != nil {
		fail(w, http.StatusBadRequest, "rpc error: code = FailedPrecondition desc = node %s is a cluster manager and is a member of the raft cluster. It must be demoted to worker before removal", id)
		return
	}
	force := r.URL.Query().Get("force") == "1" || r.URL.Query().Get("force") == "true"
	if n.Status.State != swarm.NodeStateDown && !force {
		fail(w, http.StatusBadRequest, "rpc error: code = FailedPrecondition desc = node %s is not down and can't be removed", id)
		return
	}
	delete(e.w.swarms[e.swarmID].nodes, id)
	w.WriteHeader(http.StatusOK)
}

// netw is one network, as GET /networks shows it.
type netw struct{ network.Summary }

func ingressNetwork(now time.Time) *netw {
	return &netw{network.Summary{
		Name: "ingress", ID: randomID(13)[:25], Created: now, Scope: "swarm", Driver: "overlay", Ingress: true,
		IPAM:    network.IPAM{Driver: "default", Config: []network.IPAMConfig{{Subnet: "10.0.0.0/24", Gateway: "10.0.0.1"}}},
		Options: map[string]string{"com.docker.network.driver.overlay.vxlanid_list": "4096"},
	}}
}

func (c *cluster) addNetwork(n *netw) { c.networks[n.ID] = n }

// localNetworks are the networks every engine has.
func localNetworks() []network.Summary {
	var out []network.Summary
	for _, name := range []string{"bridge", "host", "none"} {
		out = append(out, network.Summary{Name: name, ID: name + strings.Repeat("0", 64-len(name)), Scope: "local", Driver: map[string]string{"bridge": "bridge", "host": "host", "none": "null"}[name]})
	}
	return out
}

func (e *Engine) networkList(w http.ResponseWriter, r *http.Request) {
	args, err := filters.FromJSON(r.URL.Query().Get("filters"))
	if err != nil {
		fail(w, http.StatusBadRequest, "invalid filter: %v", err)
		return
	}
	all := localNetworks()
	if c := e.w.swarms[e.swarmID]; c != nil {
		for _, n := range c.networks {
			if e.w.isManager(e) || n.Ingress {
				all = append(all, n.Summary)
			}
		}
	}
	out := []network.Summary{}
	for _, n := range all {
		if args.Contains("scope") && !args.ExactMatch("scope", n.Scope) {
			continue
		}
		if args.Contains("name") && !args.Match("name", n.Name) {
			continue
		}
		out = append(out, n)
	}
	writeJSON(w, http.StatusOK, out)
}

func (e *Engine) networkCreate(w http.ResponseWriter, r *http.Request) {
	var req network.CreateRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fail(w, http.StatusBadRequest, "invalid JSON: %v", err)
		return
	}
	c := e.w.swarms[e.swarmID]
	if req.Scope == "swarm" || req.Driver == "overlay" {
		if !e.w.isManager(e) {
			fail(w, http.StatusServiceUnavailable, errNoManager)
			return
		}
	}
	for _, n := range c.networks {
		if n.Name == req.Name {
			fail(w, http.StatusConflict, "network with name %s already exists", req.Name)
			return
		}
		if req.Ingress && n.Ingress {
			fail(w, http.StatusForbidden, "rpc error: code = AlreadyExists desc = ingress network (%s) is already present", n.ID)
			return
		}
	}
	ipam := network.IPAM{Driver: "default"}
	if req.IPAM != nil && len(req.IPAM.Config) > 0 {
		ipam.Config = req.IPAM.Config
	} else {
		ipam.Config = []network.IPAMConfig{{Subnet: c.nextSubnet()}}
	}
	e.w.now = e.w.now.Add(time.Second)
	n := &netw{network.Summary{Name: req.Name, ID: randomID(13)[:25], Created: e.w.now, Scope: "swarm", Driver: req.Driver, Ingress: req.Ingress, Attachable: req.Attachable, IPAM: ipam, Labels: req.Labels}}
	c.addNetwork(n)
	writeJSON(w, http.StatusCreated, network.CreateResponse{ID: n.ID})
}

// nextSubnet is the first subnet of the address pool that no network uses.
func (c *cluster) nextSubnet() string {
	used := map[string]bool{}
	for _, n := range c.networks {
		for _, cfg := range n.IPAM.Config {
			used[cfg.Subnet] = true
		}
	}
	for _, pool := range c.pool {
		p, err := netip.ParsePrefix(pool)
		if err != nil || !p.Addr().Is4() || int(c.mask) < p.Bits() {
			continue
		}
		base := p.Masked().Addr().As4()
		start := binary.BigEndian.Uint32(base[:])
		for i := uint32(0); i < 1<<(int(c.mask)-p.Bits()); i++ {
			var b [4]byte
			binary.BigEndian.PutUint32(b[:], start+i<<(32-c.mask))
			s := netip.PrefixFrom(netip.AddrFrom4(b), int(c.mask)).String()
			if !used[s] {
				return s
			}
		}
	}
	return ""
}

func (e *Engine) networkRemove(w http.ResponseWriter, id string) {
	c := e.w.swarms[e.swarmID]
	if c == nil || c.networks[id] == nil {
		if c != nil {
			for nid, n := range c.networks {
				if n.Name == id {
					id = nid
				}
			}
		}
		if c == nil || c.networks[id] == nil {
			fail(w, http.StatusNotFound, "network %s not found", id)
			return
		}
	}
	if !e.w.isManager(e) {
		fail(w, http.StatusServiceUnavailable, errNoManager)
		return
	}
	delete(c.networks, id)
	w.WriteHeader(http.StatusNoContent)
}
