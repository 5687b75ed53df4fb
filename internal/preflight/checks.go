package preflight

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/par"
	"github.com/fhlab/provision/internal/proxmox"
)

// facts are the cluster-wide reads every check draws on.
type facts struct {
	nodes    []proxmox.Node
	nodesErr error
	vms      []proxmox.Resource // /cluster/resources?type=vm
	vmsErr   error
	perms    proxmox.Permissions
	permsErr error
	users    []proxmox.User
	usersErr error
	storages []proxmox.StorageConfig
	storErr  error

	mu          sync.Mutex
	nodeStorage map[string][]proxmox.NodeStorage
	nodeStorErr map[string]error
	configs     map[string]proxmox.VMConfig // "node/vmid" → config
	configErr   map[string]error
}

func key(node string, vmid int) string { return fmt.Sprintf("%s/%d", node, vmid) }

func (f *facts) setConfig(node string, vmid int, cfg proxmox.VMConfig, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.configs[key(node, vmid)], f.configErr[key(node, vmid)] = cfg, err
}

func (f *facts) config(node string, vmid int) (proxmox.VMConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.configs[key(node, vmid)], f.configErr[key(node, vmid)]
}

func (r *run) all(ctx context.Context) error {
	v, err := r.c.Version(ctx)
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if !r.apiAndToken(v, err) {
		return nil
	}

	f := &facts{
		nodeStorage: map[string][]proxmox.NodeStorage{}, nodeStorErr: map[string]error{},
		configs: map[string]proxmox.VMConfig{}, configErr: map[string]error{},
	}
	reads := []func(ctx context.Context){
		func(ctx context.Context) { f.nodes, f.nodesErr = r.c.Nodes(ctx) },
		func(ctx context.Context) { f.vms, f.vmsErr = r.c.ClusterResources(ctx, "vm") },
		func(ctx context.Context) { f.perms, f.permsErr = r.c.Permissions(ctx, r.c.TokenID(), "/") },
		func(ctx context.Context) { f.users, f.usersErr = r.c.Users(ctx) },
		func(ctx context.Context) { f.storages, f.storErr = r.c.Storages(ctx) },
	}
	each(ctx, r, reads, func(ctx context.Context, fn func(context.Context)) { fn(ctx) })
	if ctx.Err() != nil {
		return ctx.Err()
	}

	r.privileges(f)
	online := r.hosts(f)
	targets := r.targetHosts(online)

	// Per-host and per-guest reads, all at once.
	var jobs []func(ctx context.Context)
	for _, n := range r.p.Nodes {
		if !online[n.Name] {
			continue
		}
		node := n.Name
		jobs = append(jobs,
			func(ctx context.Context) { r.clock(ctx, node) },
			func(ctx context.Context) {
				ss, err := r.c.NodeStorages(ctx, node)
				f.mu.Lock()
				f.nodeStorage[node], f.nodeStorErr[node] = ss, err
				f.mu.Unlock()
			})
	}
	plan := r.planTemplates(f, targets)
	for _, g := range plan.fetch {
		jobs = append(jobs, func(ctx context.Context) {
			cfg, err := r.c.VMConfig(ctx, g.node, g.vmid)
			f.setConfig(g.node, g.vmid, cfg, err)
		})
	}
	others, unreadable := r.otherGuests(f, online)
	for _, g := range others {
		jobs = append(jobs, func(ctx context.Context) {
			cfg, err := r.c.GuestConfig(ctx, g.Node, g.Type, int(g.VMID))
			f.setConfig(g.Node, int(g.VMID), cfg, err)
		})
	}
	par.Each(ctx, r.opts.Concurrency, len(jobs), func(ctx context.Context, i int) error {
		jobs[i](ctx)
		return nil
	})
	if ctx.Err() != nil {
		return ctx.Err()
	}

	r.templates(f, plan, targets)
	for _, n := range r.p.Nodes {
		if online[n.Name] {
			r.snippets(f, n.Name)
		}
	}
	r.room(f, targets)
	r.vmids(f)
	r.ips(f, others, unreadable)
	return nil
}

// apiAndToken reports the API and token checks from GET /version; false
// stops the run (nothing else can be checked).
func (r *run) apiAndToken(v proxmox.Version, err error) bool {
	host := r.c.Host()
	tok := r.c.TokenID()
	envs := fmt.Sprintf("$%s and $%s", r.p.TokenIDEnv, r.p.TokenSecretEnv)
	var apiErr *proxmox.APIError
	switch {
	case err == nil:
	case proxmox.IsTLS(err):
		r.fail(CheckAPI, host, fmt.Sprintf("the API's TLS certificate is not trusted: %v", err),
			"set proxmox.caFile in "+r.file+" to the cluster CA (copy /etc/pve/pve-root-ca.pem from a node), or proxmox.insecure: true for a lab you trust")
		return false
	case proxmox.IsAuth(err):
		r.pass(CheckAPI, host, "answers at %s", r.c.BaseURL())
		r.fail(CheckToken, tok, fmt.Sprintf("the API refuses the token: %v", err),
			fmt.Sprintf("check %s (names from proxmox.tokenIDEnv/tokenSecretEnv); on a node: pveum user token list %s; a new one: pveum user token add %s %s --privsep 0",
				envs, userOf(tok), userOf(tok), tokenName(tok)))
		return false
	case errors.As(err, &apiErr) && apiErr.StatusCode >= 500:
		r.fail(CheckAPI, host, fmt.Sprintf("the API answers with an error: %v", err), r.apiFailing())
		return false
	case errors.As(err, &apiErr):
		r.pass(CheckAPI, host, "answers at %s", r.c.BaseURL())
		r.fail(CheckToken, tok, fmt.Sprintf("GET /version with the token: %v", err),
			"grant the token Sys.Audit on / (see the privileges check) and check "+envs)
		return false
	default:
		r.fail(CheckAPI, host, fmt.Sprintf("the API does not answer: %v", err),
			fmt.Sprintf("check proxmox.apiURL in %s and that pveproxy runs on the node (systemctl status pveproxy); try: curl -k %s/version (a slow API: --api-timeout)", r.file, r.c.BaseURL()))
		return false
	}
	msg := fmt.Sprintf("Proxmox VE %s at %s", v.Version, r.c.BaseURL())
	switch {
	case v.Major() < 8 || (v.Major() == 8 && v.Minor() < 3):
		r.warn(CheckAPI, host, msg+": older than 8.3, which `provision template` needs (import content for cloud images)",
			"upgrade the cluster to Proxmox VE 8.3 or later (9.x is tested), or prepare the template by hand (qm importdisk)")
	default:
		r.pass(CheckAPI, host, "%s", msg)
	}
	r.pass(CheckToken, tok, "authenticates")
	return true
}

// apiFailing is the fix for an API that answered with a server error or
// not in time, after its retries.
func (r *run) apiFailing() string {
	return "the API failed, not the token: check pveproxy and pvedaemon on the node (systemctl status pveproxy pvedaemon; journalctl -u pveproxy), the node's load and the network to " +
		r.c.BaseURL() + ", then run preflight again (--api-timeout for a slow API)"
}

func userOf(tokenID string) string {
	u, _, _ := strings.Cut(tokenID, "!")
	return u
}

func tokenName(tokenID string) string {
	_, t, _ := strings.Cut(tokenID, "!")
	return t
}

// hosts reports every listed host's state and returns the online ones.
func (r *run) hosts(f *facts) map[string]bool {
	online := map[string]bool{}
	if f.nodesErr != nil {
		fix := "grant the token Sys.Audit on / (see the privileges check)"
		if !proxmox.IsForbidden(f.nodesErr) {
			fix = r.apiFailing()
		}
		for _, n := range r.p.Nodes {
			r.fail(CheckHost, n.Name, fmt.Sprintf("cannot list the cluster's nodes: %v", f.nodesErr), fix)
		}
		return online
	}
	status := map[string]string{}
	var names []string
	for _, n := range f.nodes {
		status[n.Node] = n.Status
		names = append(names, n.Node)
	}
	sort.Strings(names)
	for _, n := range r.p.Nodes {
		st, ok := status[n.Name]
		switch {
		case !ok:
			r.fail(CheckHost, n.Name, fmt.Sprintf("not a node of this cluster (its nodes: %s); its clock, template, snippets and storage checks were skipped", strings.Join(names, ", ")),
				fmt.Sprintf("correct proxmox.nodes in %s, or join %s to the cluster (pvecm add on it)", r.file, n.Name))
		case st != "online":
			r.fail(CheckHost, n.Name, fmt.Sprintf("%s; its clock, template, snippets and storage checks were skipped", st),
				fmt.Sprintf("start %s or restore its cluster link (pvecm status on any node); or remove it from proxmox.nodes and its VMs' hosts in %s", n.Name, r.file))
		default:
			online[n.Name] = true
			r.pass(CheckHost, n.Name, "online")
		}
	}
	return online
}

// targetHosts are the online hosts VMs will be created on, in inventory
// order (all listed online hosts if the inventory has no VMs).
func (r *run) targetHosts(online map[string]bool) []string {
	want := map[string]bool{}
	for _, n := range r.inv.Nodes {
		if n.Kind == inventory.KindVM {
			want[n.Host] = true
		}
	}
	var out []string
	for _, n := range r.p.Nodes {
		if online[n.Name] && (len(want) == 0 || want[n.Name]) {
			out = append(out, n.Name)
		}
	}
	return out
}

// clock compares a host's clock with this machine's, from the middle of the
// request (PVE reports whole seconds).
func (r *run) clock(ctx context.Context, node string) {
	t0 := r.now()
	t, err := r.c.NodeTime(ctx, node)
	t1 := r.now()
	if err != nil {
		if ctx.Err() == nil {
			r.fail(CheckClock, node, fmt.Sprintf("cannot read the clock: %v", err), "grant the token Sys.Audit on / (see the privileges check)")
		}
		return
	}
	// PVE truncates to whole seconds: the node's clock read somewhere in
	// [time, time+1).
	local := t0.Add(t1.Sub(t0) / 2)
	skew := time.Unix(int64(t.Time), 0).Add(500 * time.Millisecond).Sub(local)
	abs := skew.Abs()
	dir := "ahead of"
	if skew < 0 {
		dir = "behind"
	}
	msg := fmt.Sprintf("%.0f s %s this machine", abs.Seconds(), dir)
	if abs < time.Second {
		msg = "within 1 s of this machine"
	}
	fix := fmt.Sprintf("turn on NTP on %s (timedatectl set-ntp true; chronyc tracking) and on this machine", node)
	switch {
	case abs >= r.opts.SkewFail:
		r.fail(CheckClock, node, msg+fmt.Sprintf(" (limit %s): TLS, cloud-init and swarm certificates break", r.opts.SkewFail), fix)
	case abs >= r.opts.SkewWarn:
		r.warn(CheckClock, node, msg+fmt.Sprintf(" (more than %s)", r.opts.SkewWarn), fix)
	default:
		r.pass(CheckClock, node, "%s", msg)
	}
}

// snippets checks that the snippets storage exists on node and holds the
// snippets content type, and that its path matches proxmox.snippetsDir.
func (r *run) snippets(f *facts, node string) {
	id := r.p.SnippetsStorage
	f.mu.Lock()
	ss, err := f.nodeStorage[node], f.nodeStorErr[node]
	f.mu.Unlock()
	if err != nil {
		r.fail(CheckSnippets, node, fmt.Sprintf("cannot list storages: %v", err), "grant the token Datastore.Audit on / (see the privileges check)")
		return
	}
	i := slices.IndexFunc(ss, func(s proxmox.NodeStorage) bool { return s.Storage == id })
	if i < 0 {
		r.fail(CheckSnippets, node, fmt.Sprintf("storage %s (proxmox.snippetsStorage) is not available on %s", id, node),
			fmt.Sprintf("make it available: pvesm set %s --nodes <its nodes>,%s (or add a dir storage with --content snippets), or set proxmox.snippetsStorage in %s", id, node, r.file))
		return
	}
	s := ss[i]
	if !s.HasContent("snippets") {
		content := s.Content
		if content == "" {
			content = "snippets"
		} else {
			content += ",snippets"
		}
		r.fail(CheckSnippets, node, fmt.Sprintf("storage %s does not allow snippets (content: %s); cicustom user-data cannot be read and the VMs will not start", id, s.Content),
			fmt.Sprintf("pvesm set %s --content %s", id, content))
		return
	}
	if s.Enabled == 0 || s.Active == 0 {
		r.fail(CheckSnippets, node, fmt.Sprintf("storage %s is not active on %s (enabled %d, active %d)", id, node, s.Enabled, s.Active),
			fmt.Sprintf("pvesm set %s --disable 0, then check pvesm status on %s", id, node))
		return
	}
	if f.storErr == nil {
		for _, sc := range f.storages {
			if sc.Storage == id && sc.Path != "" && strings.TrimRight(sc.Path, "/")+"/snippets" != strings.TrimRight(r.p.SnippetsDir, "/") {
				r.fail(CheckSnippets, node, fmt.Sprintf("storage %s keeps snippets in %s/snippets, but proxmox.snippetsDir is %s: uploads would land where PVE does not look", id, sc.Path, r.p.SnippetsDir),
					fmt.Sprintf("set proxmox.snippetsDir: %s/snippets in %s", strings.TrimRight(sc.Path, "/"), r.file))
				return
			}
		}
	}
	shared := ""
	if s.Shared != 0 {
		shared = ", shared"
	}
	r.pass(CheckSnippets, node, "storage %s allows snippets (%s%s)", id, s.Content, shared)
}

// room checks that the VM storage has space for the disks of the inventory
// VMs that do not exist yet: per host, or once for a shared storage.
func (r *run) room(f *facts, targets []string) {
	id := r.p.Storage
	exists := existing(f)
	need := map[string]int64{}
	count := map[string]int{}
	var badSize []string
	for _, n := range r.inv.Nodes {
		if n.Kind != inventory.KindVM || exists[n.VMID] == n.Name {
			continue
		}
		b, err := proxmox.ParseSize(n.Disk)
		if err != nil {
			badSize = append(badSize, fmt.Sprintf("%s: %v", n.Name, err))
			continue
		}
		need[n.Host] += b
		count[n.Host]++
	}
	var sharedNeed int64
	var sharedCount int
	var sharedSt *proxmox.NodeStorage
	var sharedHosts []string
	for _, h := range targets {
		f.mu.Lock()
		ss, err := f.nodeStorage[h], f.nodeStorErr[h]
		f.mu.Unlock()
		if err != nil {
			r.fail(CheckStorage, h, fmt.Sprintf("cannot list storages: %v", err), "grant the token Datastore.Audit on / (see the privileges check)")
			continue
		}
		i := slices.IndexFunc(ss, func(s proxmox.NodeStorage) bool { return s.Storage == id })
		if i < 0 {
			r.fail(CheckStorage, h, fmt.Sprintf("storage %s (proxmox.storage) is not available on %s", id, h),
				fmt.Sprintf("make it available (pvesm set %s --nodes ...,%s) or set proxmox.storage in %s", id, h, r.file))
			continue
		}
		s := ss[i]
		if !s.HasContent("images") {
			r.fail(CheckStorage, h, fmt.Sprintf("storage %s does not hold VM disks (content: %s)", id, s.Content),
				fmt.Sprintf("pvesm set %s --content %s", id, strings.Trim(s.Content+",images", ",")))
			continue
		}
		if s.Enabled == 0 || s.Active == 0 {
			r.fail(CheckStorage, h, fmt.Sprintf("storage %s is not active on %s", id, h), fmt.Sprintf("pvesm set %s --disable 0, then check pvesm status on %s", id, h))
			continue
		}
		if s.Shared != 0 {
			sharedNeed += need[h]
			sharedCount += count[h]
			sharedSt = &s
			sharedHosts = append(sharedHosts, h)
			continue
		}
		r.roomResult(h, id, s, need[h], count[h])
	}
	if sharedSt != nil {
		r.roomResult(id+" (shared)", id, *sharedSt, sharedNeed, sharedCount)
	}
	if len(badSize) > 0 {
		r.fail(CheckStorage, "inventory", "disk sizes not understood: "+strings.Join(badSize, "; "), "use sizes like 32G in proxmox.vms[].disk")
	}
}

func (r *run) roomResult(target, id string, s proxmox.NodeStorage, need int64, count int) {
	have := int64(s.Avail)
	msg := fmt.Sprintf("%s needs %s for %s; %s free of %s", id, proxmox.FormatSize(need), plural(count, "new VM disk"), proxmox.FormatSize(have), proxmox.FormatSize(int64(s.Total)))
	if need > have {
		r.fail(CheckStorage, target, msg+fmt.Sprintf(" (%s short)", proxmox.FormatSize(need-have)),
			fmt.Sprintf("free space on %s (%s), move VMs to other hosts (proxmox.vms[].hosts), or make proxmox.vms[].disk smaller in %s", id, target, r.file))
		return
	}
	r.pass(CheckStorage, target, "%s", msg)
}

// existing maps VMID → name of every guest in the cluster.
func existing(f *facts) map[int]string {
	m := map[int]string{}
	for _, g := range f.vms {
		m[int(g.VMID)] = g.Name
	}
	return m
}

// vmids reports, per host, the inventory VMIDs another guest already uses.
func (r *run) vmids(f *facts) {
	hosts := r.vmHosts()
	if f.vmsErr != nil {
		for _, h := range hosts {
			r.fail(CheckVMIDs, h, fmt.Sprintf("cannot list the cluster's guests: %v", f.vmsErr), "grant the token VM.Audit on / (see the privileges check)")
		}
		return
	}
	byID := map[int]proxmox.Resource{}
	byName := map[string][]proxmox.Resource{}
	for _, g := range f.vms {
		byID[int(g.VMID)] = g
		byName[g.Name] = append(byName[g.Name], g)
	}
	type tally struct {
		free, own int
		taken     []string
		warns     []string
		fixes     []string
	}
	per := map[string]*tally{}
	for _, h := range hosts {
		per[h] = &tally{}
	}
	for _, n := range r.inv.Nodes {
		if n.Kind != inventory.KindVM {
			continue
		}
		t := per[n.Host]
		g, ok := byID[n.VMID]
		switch {
		case !ok:
			t.free++
			for _, o := range byName[n.Name] {
				if o.Type == "qemu" && o.Template == 0 {
					t.warns = append(t.warns, fmt.Sprintf("%s already exists as VM %d on %s: Terraform would make a second %s as %d", n.Name, o.VMID, o.Node, n.Name, n.VMID))
				}
			}
		case g.Name == n.Name && g.Type == "qemu" && g.Template == 0:
			t.own++
		default:
			kind := "VM"
			if g.Type == "lxc" {
				kind = "container"
			} else if g.Template != 0 {
				kind = "template"
			}
			t.taken = append(t.taken, fmt.Sprintf("VMID %d (%s) is taken by %s %q on %s", n.VMID, n.Name, kind, g.Name, g.Node))
			destroy := "qm destroy"
			if g.Type == "lxc" {
				destroy = "pct destroy"
			}
			t.fixes = append(t.fixes, fmt.Sprintf("%s %d on %s", destroy, n.VMID, g.Node))
		}
	}
	for _, h := range hosts {
		t := per[h]
		if len(t.taken) > 0 {
			r.fail(CheckVMIDs, h, strings.Join(t.taken, "\n"),
				fmt.Sprintf("move the VMs' ids with proxmox.vmidStart or proxmox.vms[].vmidStart in %s, or, if the other guest is no longer needed: %s", r.file, strings.Join(t.fixes, "; ")))
			continue
		}
		msg := fmt.Sprintf("%s free", plural(t.free, "VMID"))
		if t.own > 0 {
			msg += fmt.Sprintf(", %d already this inventory's VMs", t.own)
		}
		if len(t.warns) > 0 {
			r.warn(CheckVMIDs, h, msg+"\n"+strings.Join(t.warns, "\n"), "remove or rename the old VMs, or give the inventory their VMIDs")
			continue
		}
		r.pass(CheckVMIDs, h, "%s", msg)
	}
}

// vmHosts are the hosts with inventory VMs, in inventory order.
func (r *run) vmHosts() []string {
	seen := map[string]bool{}
	for _, n := range r.inv.Nodes {
		if n.Kind == inventory.KindVM {
			seen[n.Host] = true
		}
	}
	var out []string
	for _, n := range r.p.Nodes {
		if seen[n.Name] {
			out = append(out, n.Name)
		}
	}
	return out
}

// otherGuests are the guests whose configs may hold an inventory IP: every
// non-template guest that is not the inventory's own VM, on an online host.
// unreadable counts those on hosts that are not online.
func (r *run) otherGuests(f *facts, online map[string]bool) (out []proxmox.Resource, unreadable int) {
	own := map[int]string{}
	for _, n := range r.inv.Nodes {
		if n.Kind == inventory.KindVM {
			own[n.VMID] = n.Name
		}
	}
	for _, g := range f.vms {
		if g.Template != 0 || (g.Type != "qemu" && g.Type != "lxc") {
			continue
		}
		if name, ok := own[int(g.VMID)]; ok && name == g.Name && g.Type == "qemu" {
			continue
		}
		if !online[g.Node] {
			unreadable++
			continue
		}
		out = append(out, g)
	}
	return out, unreadable
}

// guestIPs are the IPv4 addresses a guest's config assigns: ipconfigN for
// VMs, netN ip= for containers.
func guestIPs(cfg proxmox.VMConfig) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	for k, v := range cfg {
		if !strings.HasPrefix(k, "ipconfig") && !strings.HasPrefix(k, "net") {
			continue
		}
		for _, item := range strings.Split(v, ",") {
			name, val, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok || name != "ip" {
				continue
			}
			if p, err := netip.ParsePrefix(val); err == nil {
				out[p.Addr()] = k
			} else if a, err := netip.ParseAddr(val); err == nil {
				out[a] = k
			}
		}
	}
	return out
}

// ips reports inventory addresses that another guest's config assigns.
func (r *run) ips(f *facts, others []proxmox.Resource, unreadable int) {
	type want struct {
		node   inventory.Node
		target string
	}
	wanted := map[netip.Addr]want{}
	var targets []string
	for _, n := range r.inv.Nodes {
		a, err := netip.ParseAddr(n.IP)
		if err != nil {
			continue
		}
		t := strings.TrimPrefix(n.FailureDomain(), "host ")
		wanted[a] = want{n, t}
		if !slices.Contains(targets, t) {
			targets = append(targets, t)
		}
	}
	if f.vmsErr != nil {
		r.fail(CheckIPs, "cluster", fmt.Sprintf("cannot list the cluster's guests: %v", f.vmsErr), "grant the token VM.Audit on / (see the privileges check)")
		return
	}
	conflicts := map[string][]string{}
	fixes := map[string][]string{}
	var readErrs []string
	for _, g := range others {
		cfg, err := f.config(g.Node, int(g.VMID))
		if err != nil {
			readErrs = append(readErrs, fmt.Sprintf("%d on %s: %v", g.VMID, g.Node, err))
			continue
		}
		for a, k := range guestIPs(cfg) {
			w, ok := wanted[a]
			if !ok {
				continue
			}
			kind, tool := "VM", "qm"
			if g.Type == "lxc" {
				kind, tool = "container", "pct"
			}
			conflicts[w.target] = append(conflicts[w.target], fmt.Sprintf("%s (%s) is used by %s %d %q on %s (%s)", a, w.node.Name, kind, g.VMID, g.Name, g.Node, k))
			fixes[w.target] = append(fixes[w.target], fmt.Sprintf("%s set %d --delete %s (on %s)", tool, g.VMID, k, g.Node))
		}
	}
	note := ""
	if unreadable > 0 {
		note = fmt.Sprintf("; %d guests on hosts that are not online were not checked", unreadable)
	}
	for _, t := range targets {
		if c := conflicts[t]; len(c) > 0 {
			sort.Strings(c)
			sort.Strings(fixes[t])
			r.fail(CheckIPs, t, strings.Join(c, "\n"),
				fmt.Sprintf("change the addresses (proxmox.vms[].ipStart, pis.racks[].ipStart) in %s, or free them: %s", r.file, strings.Join(fixes[t], "; ")))
			continue
		}
		if len(readErrs) > 0 {
			r.warn(CheckIPs, t, fmt.Sprintf("no other guest uses these addresses, but %d guest configs could not be read%s: %s", len(readErrs), note, strings.Join(readErrs, "; ")),
				"grant the token VM.Audit on / (see the privileges check)")
			continue
		}
		r.pass(CheckIPs, t, "no other guest's config uses these addresses (%s read%s)", plural(len(others), "guest"), note)
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}
