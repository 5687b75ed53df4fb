package pvesim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// routes maps "METHOD /schema/path" to the simulator's implementation.
// Schema paths without an entry answer 501 "not implemented by the
// simulator", so nothing silently succeeds.
func (s *Sim) routes() map[string]handlerFunc {
	return map[string]handlerFunc{
		"GET /version":                                               s.getVersion,
		"GET /nodes":                                                 s.getNodes,
		"GET /nodes/{node}/status":                                   s.getNodeStatus,
		"GET /nodes/{node}/time":                                     s.getNodeTime,
		"GET /nodes/{node}/tasks":                                    s.taskList,
		"GET /nodes/{node}/tasks/{upid}/status":                      s.taskStatus,
		"GET /nodes/{node}/tasks/{upid}/log":                         s.taskLog,
		"GET /cluster/resources":                                     s.getClusterResources,
		"GET /cluster/nextid":                                        s.getNextID,
		"GET /cluster/status":                                        s.getClusterStatus,
		"GET /cluster/ha/resources/{sid}":                            s.getHAResource,
		"GET /cluster/ha/resources":                                  s.getHAResources,
		"GET /storage":                                               s.getStorages,
		"GET /storage/{storage}":                                     s.getStorage,
		"GET /nodes/{node}/storage":                                  s.getNodeStorages,
		"GET /nodes/{node}/storage/{storage}/status":                 s.getNodeStorageStatus,
		"GET /nodes/{node}/storage/{storage}/content":                s.getStorageContent,
		"POST /nodes/{node}/storage/{storage}/download-url":          s.postDownloadURL,
		"GET /nodes/{node}/qemu":                                     s.getQemuList,
		"POST /nodes/{node}/qemu":                                    s.postQemuCreate,
		"GET /nodes/{node}/qemu/{vmid}/config":                       s.getQemuConfig,
		"PUT /nodes/{node}/qemu/{vmid}/config":                       s.putQemuConfig,
		"POST /nodes/{node}/qemu/{vmid}/config":                      s.postQemuConfig,
		"GET /nodes/{node}/qemu/{vmid}/pending":                      s.getQemuPending,
		"PUT /nodes/{node}/qemu/{vmid}/resize":                       s.putQemuResize,
		"POST /nodes/{node}/qemu/{vmid}/move_disk":                   s.postQemuMoveDisk,
		"POST /nodes/{node}/qemu/{vmid}/template":                    s.postQemuTemplate,
		"POST /nodes/{node}/qemu/{vmid}/clone":                       s.postQemuClone,
		"GET /nodes/{node}/qemu/{vmid}/status/current":               s.getQemuStatus,
		"POST /nodes/{node}/qemu/{vmid}/status/start":                s.postQemuStart,
		"POST /nodes/{node}/qemu/{vmid}/status/stop":                 s.postQemuStop,
		"POST /nodes/{node}/qemu/{vmid}/status/shutdown":             s.postQemuShutdown,
		"POST /nodes/{node}/qemu/{vmid}/status/reboot":               s.postQemuReboot,
		"GET /nodes/{node}/qemu/{vmid}/agent/network-get-interfaces": s.getAgentInterfaces,
		"DELETE /nodes/{node}/qemu/{vmid}":                           s.deleteQemu,
		"GET /access/users":                                          s.getUsers,
		"GET /access/permissions":                                    s.getPermissions,
		"POST /access/ticket":                                        s.postTicket,
	}
}

func (s *Sim) getVersion(*request) (any, error) {
	release, _, _ := strings.Cut(s.opts.Version, ".")
	if i := strings.Index(s.opts.Version, "."); i >= 0 {
		if j := strings.Index(s.opts.Version[i+1:], "."); j >= 0 {
			release = s.opts.Version[:i+1+j]
		} else {
			release = s.opts.Version
		}
	}
	return map[string]any{"version": s.opts.Version, "release": release, "repoid": "d0ec33c6e7b35cda"}, nil
}

const (
	nodeMaxMem  = int64(64) << 30
	nodeMaxDisk = int64(100) << 30
	nodeCPUs    = 16
)

func (s *Sim) getNodes(*request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, name := range s.nodeOrder {
		out = append(out, s.nodeEntryLocked(s.nodes[name], false))
	}
	return out, nil
}

func (s *Sim) nodeEntryLocked(n *simNode, resource bool) map[string]any {
	e := map[string]any{"node": n.name, "type": "node", "id": "node/" + n.name}
	if !n.online {
		e["status"] = "offline"
		return e
	}
	e["status"] = "online"
	e["cpu"] = 0.02
	e["maxcpu"] = nodeCPUs
	e["mem"] = s.nodeMemUsedLocked(n.name)
	e["maxmem"] = nodeMaxMem
	e["disk"] = int64(12) << 30
	e["maxdisk"] = nodeMaxDisk
	e["uptime"] = int64(s.now().Sub(n.boot).Seconds())
	e["level"] = ""
	if resource {
		e["cgroup-mode"] = 2
	} else {
		e["ssl_fingerprint"] = "5A:1B:" + strings.Repeat("00:", 29) + "FF"
	}
	return e
}

func (s *Sim) nodeMemUsedLocked(node string) int64 {
	used := int64(2) << 30
	for _, v := range s.vms {
		if v.node == node && v.running {
			used += memBytes(v.conf["memory"])
		}
	}
	return used
}

// memBytes parses the memory option ("2048" or "current=2048") in MiB.
func memBytes(m string) int64 {
	m = strings.TrimPrefix(m, "current=")
	m, _, _ = strings.Cut(m, ",")
	n, err := strconv.ParseInt(m, 10, 64)
	if err != nil || n <= 0 {
		n = 512
	}
	return n << 20
}

func (s *Sim) getNodeStatus(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.nodes[r.str("node")]
	used := s.nodeMemUsedLocked(n.name)
	now := s.now().Add(n.skew)
	return map[string]any{
		"uptime":         int64(s.now().Sub(n.boot).Seconds()),
		"time":           now.Unix(),
		"cpu":            0.02,
		"wait":           0.0,
		"idle":           0,
		"loadavg":        []string{"0.10", "0.12", "0.09"},
		"kversion":       "Linux 6.17.2-1-pve #1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1 x86_64",
		"pveversion":     "pve-manager/" + s.opts.Version + "/d0ec33c6e7b35cda",
		"current-kernel": map[string]any{"sysname": "Linux", "release": "6.17.2-1-pve", "machine": "x86_64", "version": "#1 SMP PREEMPT_DYNAMIC PMX 6.17.2-1"},
		"boot-info":      map[string]any{"mode": "efi", "secureboot": 0},
		"cpuinfo":        map[string]any{"cpus": nodeCPUs, "cores": nodeCPUs / 2, "sockets": 1, "model": "pvesim virtual CPU", "mhz": "3000.000", "hvm": "1", "flags": "", "user_hz": 100},
		"memory":         map[string]any{"total": nodeMaxMem, "used": used, "free": nodeMaxMem - used, "available": nodeMaxMem - used},
		"swap":           map[string]any{"total": int64(8) << 30, "used": 0, "free": int64(8) << 30},
		"rootfs":         map[string]any{"total": nodeMaxDisk, "used": int64(12) << 30, "free": nodeMaxDisk - int64(12)<<30, "avail": nodeMaxDisk - int64(12)<<30},
		"ksm":            map[string]any{"shared": 0},
	}, nil
}

func (s *Sim) getNodeTime(r *request) (any, error) {
	s.mu.Lock()
	n := s.nodes[r.str("node")]
	skew := n.skew
	s.mu.Unlock()
	now := s.now().Add(skew).Unix()
	return map[string]any{"time": now, "localtime": now, "timezone": "UTC"}, nil
}

func (s *Sim) getClusterStatus(*request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	online := 0
	for _, n := range s.nodes {
		if n.online {
			online++
		}
	}
	out := []map[string]any{{"type": "cluster", "id": "cluster", "name": s.opts.Cluster, "nodes": len(s.nodes),
		"quorate": boolInt(online*2 > len(s.nodes)), "version": len(s.nodes)}}
	for i, name := range s.nodeOrder {
		n := s.nodes[name]
		out = append(out, map[string]any{"type": "node", "id": "node/" + name, "name": name, "nodeid": i + 1,
			"online": boolInt(n.online), "local": boolInt(i == 0), "ip": fmt.Sprintf("127.0.0.%d", i+1), "level": ""})
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (s *Sim) getClusterResources(r *request) (any, error) {
	typ := r.str("type")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	if typ == "" || typ == "vm" {
		for _, id := range slices.Sorted(maps.Keys(s.vms)) {
			out = append(out, s.vmResourceLocked(s.vms[id]))
		}
	}
	if typ == "" || typ == "node" {
		for _, name := range s.nodeOrder {
			out = append(out, s.nodeEntryLocked(s.nodes[name], true))
		}
	}
	if typ == "" || typ == "storage" {
		for _, name := range s.nodeOrder {
			for _, id := range slices.Sorted(maps.Keys(s.storages)) {
				st := s.storages[id]
				if !storageOnNode(st, name) {
					continue
				}
				total, used := s.storageUsageLocked(name, st)
				e := map[string]any{"id": "storage/" + name + "/" + id, "storage": id, "node": name,
					"type": "storage", "content": strings.Join(sortedContent(st.Content), ","),
					"shared": boolInt(st.Shared), "plugintype": st.Type}
				if s.nodes[name].online {
					e["status"] = "available"
					e["disk"] = used
					e["maxdisk"] = total
				} else {
					e["status"] = "unknown"
				}
				out = append(out, e)
			}
		}
	}
	return out, nil
}

func (s *Sim) vmResourceLocked(v *simVM) map[string]any {
	cores, _ := strconv.Atoi(v.conf["cores"])
	if cores == 0 {
		cores = 1
	}
	sockets, _ := strconv.Atoi(v.conf["sockets"])
	if sockets == 0 {
		sockets = 1
	}
	e := map[string]any{
		"id": fmt.Sprintf("qemu/%d", v.vmid), "vmid": v.vmid, "name": v.conf["name"], "node": v.node,
		"type": "qemu", "template": boolInt(v.conf["template"] == "1"),
		"maxmem": memBytes(v.conf["memory"]), "maxcpu": cores * sockets,
		"maxdisk": s.vmDiskSizeLocked(v), "disk": 0, "mem": 0, "cpu": 0, "uptime": 0,
		"netin": 0, "netout": 0, "diskread": 0, "diskwrite": 0,
	}
	if n := s.nodes[v.node]; n != nil && !n.online {
		e["status"] = "unknown"
	} else if v.running {
		e["status"] = "running"
		e["uptime"] = int64(s.now().Sub(v.startedAt).Seconds())
		e["mem"] = memBytes(v.conf["memory"]) / 4
	} else {
		e["status"] = "stopped"
	}
	if l := v.conf["lock"]; l != "" {
		e["lock"] = l
	}
	if t := v.conf["tags"]; t != "" {
		e["tags"] = t
	}
	return e
}

// vmDiskSizeLocked is the size of the boot disk (first disk with a size).
func (s *Sim) vmDiskSizeLocked(v *simVM) int64 {
	for _, slot := range diskSlots() {
		if d, ok := v.conf[slot]; ok && !strings.Contains(d, "media=cdrom") {
			if sz := propValue(d, "size"); sz != "" {
				return parseSize(sz)
			}
		}
	}
	return 0
}

func (s *Sim) getNextID(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r.has("vmid") {
		id := r.int("vmid")
		if _, taken := s.vms[id]; taken {
			return nil, paramErr1("vmid", fmt.Sprintf("VM %d already exists", id))
		}
		return strconv.Itoa(id), nil
	}
	for id := s.nextLower; id < s.nextUpper; id++ {
		if _, taken := s.vms[id]; !taken {
			return strconv.Itoa(id), nil
		}
	}
	return nil, errf(http.StatusInternalServerError, "unable to get any free VMID in range [%d, %d]", s.nextLower, s.nextUpper-1)
}

func (s *Sim) getHAResource(r *request) (any, error) {
	sid := r.str("sid")
	if !strings.Contains(sid, ":") {
		sid = "vm:" + sid
	}
	return nil, errf(http.StatusInternalServerError, "no such resource '%s'", sid)
}

func (s *Sim) getHAResources(*request) (any, error) { return []any{}, nil }

func storageOnNode(st *Storage, node string) bool {
	return len(st.Nodes) == 0 || slices.Contains(st.Nodes, node)
}

func sortedContent(c []string) []string {
	out := slices.Clone(c)
	slices.Sort(out)
	return out
}

func (s *Sim) storageUsageLocked(node string, st *Storage) (total, used int64) {
	used = st.Used
	for _, v := range s.volumes[s.contentKey(node, st.ID)] {
		used += v.size
	}
	return st.Total, used
}

// canSeeStorageLocked is the storage index filter: Datastore.Audit or
// Datastore.AllocateSpace on /storage/{id}.
func (s *Sim) canSeeStorageLocked(r *request, id string) bool {
	if r.authID == "" {
		return true
	}
	p := s.privsLocked(r.authID, "/storage/"+id)
	return p["Datastore.Audit"] || p["Datastore.AllocateSpace"]
}

func (s *Sim) storageConfig(st *Storage) map[string]any {
	e := map[string]any{"storage": st.ID, "type": st.Type, "content": strings.Join(sortedContent(st.Content), ","),
		"digest": "3f2a1c0e9b8d7c6a5f4e3d2c1b0a99887766554433"}
	if st.Shared {
		e["shared"] = 1
	}
	if len(st.Nodes) > 0 {
		e["nodes"] = strings.Join(st.Nodes, ",")
	}
	if st.Path != "" {
		e["path"] = st.Path
	}
	switch st.Type {
	case "lvmthin":
		e["thinpool"] = "data"
		e["vgname"] = "pve"
	case "nfs":
		e["server"] = "127.0.0.1"
		e["export"] = "/export/" + st.ID
	}
	return e
}

func (s *Sim) getStorages(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.storages)) {
		st := s.storages[id]
		if t := r.str("type"); t != "" && st.Type != t {
			continue
		}
		if !s.canSeeStorageLocked(r, id) {
			continue
		}
		out = append(out, s.storageConfig(st))
	}
	return out, nil
}

func (s *Sim) getStorage(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.storages[r.str("storage")]
	if st == nil {
		return nil, errf(http.StatusInternalServerError, "storage '%s' does not exist", r.str("storage"))
	}
	return s.storageConfig(st), nil
}

func (s *Sim) nodeStorageEntryLocked(node string, st *Storage) map[string]any {
	total, used := s.storageUsageLocked(node, st)
	avail := max(total-used, 0)
	e := map[string]any{"storage": st.ID, "type": st.Type, "content": strings.Join(sortedContent(st.Content), ","),
		"active": 1, "enabled": 1, "shared": boolInt(st.Shared), "total": total, "used": used, "avail": avail}
	if total > 0 {
		e["used_fraction"] = float64(used) / float64(total)
	}
	return e
}

func (s *Sim) getNodeStorages(r *request) (any, error) {
	node := r.str("node")
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.storages)) {
		st := s.storages[id]
		if !storageOnNode(st, node) {
			continue
		}
		if r.has("storage") && r.str("storage") != id {
			continue
		}
		if !s.canSeeStorageLocked(r, id) {
			continue
		}
		if c := r.str("content"); c != "" {
			ok := true
			for _, want := range splitList(c) {
				if !slices.Contains(st.Content, want) {
					ok = false
				}
			}
			if !ok {
				continue
			}
		}
		if t := r.str("target"); t != "" && t != node && !st.Shared {
			continue
		}
		out = append(out, s.nodeStorageEntryLocked(node, st))
	}
	return out, nil
}

func (s *Sim) storageOnNodeLocked(node, storage string) (*Storage, error) {
	st := s.storages[storage]
	if st == nil {
		return nil, errf(http.StatusInternalServerError, "storage '%s' does not exist", storage)
	}
	if !storageOnNode(st, node) {
		return nil, errf(http.StatusInternalServerError, "storage '%s' is not available on node '%s'", storage, node)
	}
	return st, nil
}

func (s *Sim) getNodeStorageStatus(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.storageOnNodeLocked(r.str("node"), r.str("storage"))
	if err != nil {
		return nil, err
	}
	return s.nodeStorageEntryLocked(r.str("node"), st), nil
}

func (s *Sim) getStorageContent(r *request) (any, error) {
	node := r.str("node")
	s.mu.Lock()
	defer s.mu.Unlock()
	st, err := s.storageOnNodeLocked(node, r.str("storage"))
	if err != nil {
		return nil, err
	}
	vols := s.volumes[s.contentKey(node, st.ID)]
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(vols)) {
		v := vols[id]
		if c := r.str("content"); c != "" && v.content != c {
			continue
		}
		if r.has("vmid") && v.vmid != r.int("vmid") {
			continue
		}
		e := map[string]any{"volid": v.volid, "content": v.content, "format": v.format, "size": v.size, "ctime": v.ctime}
		if v.vmid != 0 {
			e["vmid"] = v.vmid
		}
		out = append(out, e)
	}
	return out, nil
}

func (s *Sim) getUsers(r *request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := []map[string]any{}
	for _, id := range slices.Sorted(maps.Keys(s.users)) {
		e := map[string]any{"userid": id, "enable": 1, "expire": 0, "realm-type": realmType(id)}
		if r.bool("full") {
			toks := []map[string]any{}
			for _, tid := range slices.Sorted(maps.Keys(s.tokens)) {
				t := s.tokens[tid]
				if t.user == id {
					_, name, _ := strings.Cut(tid, "!")
					toks = append(toks, map[string]any{"tokenid": name, "privsep": boolInt(t.privsep), "expire": 0})
				}
			}
			e["tokens"] = toks
			e["groups"] = ""
		}
		out = append(out, e)
	}
	return out, nil
}

func realmType(userid string) string {
	_, realm, _ := strings.Cut(userid, "@")
	if realm == "pam" {
		return "pam"
	}
	return "pve"
}

func (s *Sim) getPermissions(r *request) (any, error) {
	target := r.authID
	if r.has("userid") {
		target = r.str("userid")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if target != r.authID {
		// A user may see its own tokens; others need Sys.Audit on /access.
		owner, _, _ := strings.Cut(target, "!")
		if owner != r.userID || strings.Contains(r.authID, "!") && target != r.authID {
			if !s.privsLocked(r.authID, "/access")["Sys.Audit"] {
				return nil, errf(http.StatusForbidden, "Permission check failed (/access, Sys.Audit)")
			}
		}
		uid, _, _ := strings.Cut(target, "!")
		if s.users[uid] == nil && uid != "root@pam" {
			return nil, paramErr1("userid", fmt.Sprintf("no such user ('%s')", uid))
		}
	}
	paths := map[string]bool{"/": true}
	if r.has("path") {
		paths = map[string]bool{r.str("path"): true}
	} else {
		uid, tname, isTok := strings.Cut(target, "!")
		if u := s.users[uid]; u != nil {
			for p := range u.acl {
				paths[p] = true
			}
		}
		if isTok {
			if t := s.tokens[uid+"!"+tname]; t != nil {
				for p := range t.acl {
					paths[p] = true
				}
			}
		}
	}
	out := map[string]map[string]int{}
	for p := range paths {
		privs := map[string]int{}
		for priv := range s.privsLocked(target, p) {
			privs[priv] = 1
		}
		out[p] = privs
	}
	return out, nil
}

// ticketSecret signs tickets of this process; tickets are only checked
// against s.tickets, the signature makes them look like PVE's.
func (s *Sim) postTicket(r *request) (any, error) {
	username, password := r.str("username"), r.str("password")
	if realm := r.str("realm"); realm != "" && !strings.Contains(username, "@") {
		username += "@" + realm
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.users[username]
	if u == nil || password == "" {
		return nil, errf(http.StatusUnauthorized, "authentication failure")
	}
	// The simulator accepts a user's password only if one was set with
	// SetPassword; users without a password cannot log in.
	if want, ok := s.passwords[username]; !ok || !hmac.Equal([]byte(want), []byte(password)) {
		return nil, errf(http.StatusUnauthorized, "authentication failure")
	}
	mac := sha256.Sum256([]byte(username + strconv.FormatInt(s.now().UnixNano(), 10) + newUUID()))
	ticket := fmt.Sprintf("PVE:%s:%08X::%s", username, s.now().Unix(), base64.StdEncoding.EncodeToString(mac[:]))
	s.tickets[ticket] = username
	return map[string]any{"username": username, "ticket": ticket, "CSRFPreventionToken": csrfToken(ticket),
		"cap": map[string]any{}}, nil
}

// csrfToken derives a ticket's CSRF prevention token.
func csrfToken(ticket string) string {
	sum := sha256.Sum256([]byte("csrf:" + ticket))
	return fmt.Sprintf("%08X:%s", time.Unix(0, 0).Unix(), base64.RawStdEncoding.EncodeToString(sum[:16]))
}
