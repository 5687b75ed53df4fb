package hosts

import (
	"fmt"
	"slices"
	"strings"

	"github.com/fhlab/provision/internal/inventory"
)

// Options change what a plan may do.
type Options struct {
	Force       bool   // leave another swarm, overwrite conflicting sysctls
	AllowReboot bool   // reboot when the kernel command line must change
	ClusterID   string // the lab's swarm, when it exists (from the state)
	NodeID      string // this host's swarm node ID in the lab's swarm (from the state)
}

// Item is one change a plan makes.
type Item struct {
	Kind   string // package, file, sysctl, group, service, cmdline
	Name   string
	Detail string
}

func (i Item) String() string {
	if i.Detail == "" {
		return i.Kind + " " + i.Name
	}
	return i.Kind + " " + i.Name + ": " + i.Detail
}

// Plan is what apply would do to one host.
type Plan struct {
	Host    string
	Refused string // why the host is left alone ("" when it is not)
	Items   []Item
	// Conflicts are settings made by hand that the tuning would
	// overwrite: reported always, overwritten only with Options.Force.
	Conflicts []Conflict
	// Notes are facts worth knowing that change nothing.
	Notes  []string
	Reboot bool
	facts  *Facts
	want   Want
	node   inventory.Node
}

// Conflict is a sysctl of the tuning that something else sets otherwise.
type Conflict struct {
	Key, Want, Have string
	Where           string // file:line, or "live" for a value set with sysctl -w
	file            string
	line            int
}

func (c Conflict) String() string {
	return fmt.Sprintf("%s = %s (%s), the tuning says %s", c.Key, c.Have, c.Where, c.Want)
}

// Unchanged reports whether the plan changes nothing.
func (p *Plan) Unchanged() bool { return p.Refused == "" && len(p.Items) == 0 }

// supportedOS are the distributions whose docker.io and systemd provision
// knows (os-release ID or ID_LIKE).
var supportedOS = []string{"debian", "ubuntu"}

// unsupported says why provision cannot prepare a host with these facts,
// or "".
func unsupported(n inventory.Node, f *Facts) string {
	like := append([]string{f.OSID}, strings.Fields(f.OSLike)...)
	ok := false
	for _, id := range like {
		ok = ok || slices.Contains(supportedOS, id)
	}
	switch {
	case !ok:
		name := f.OSID
		if name == "" {
			name = "unknown (no /etc/os-release)"
		}
		return fmt.Sprintf("unsupported system %s: provision prepares Debian and Ubuntu hosts (apt, docker.io)", name)
	case !f.Systemd:
		return "not booted with systemd (/run/systemd/system is missing): provision manages docker and the tuning timer as systemd units"
	case !f.CgroupV2 && !f.MemoryCgroup:
		return "cgroup v1 without the memory controller: docker cannot limit container memory; boot with cgroup_enable=memory (or the unified hierarchy) first"
	case f.Arch != n.Arch:
		return fmt.Sprintf("the host is %s but the inventory says arch: %s", f.Arch, n.Arch)
	case !f.Root && !f.Sudo:
		return "the SSH user is not root and cannot use sudo without a password"
	}
	return ""
}

// MakePlan compares a host's facts with what it should have.
func MakePlan(n inventory.Node, f *Facts, w Want, o Options) *Plan {
	p := &Plan{Host: n.Name, facts: f, want: w, node: n}
	if why := unsupported(n, f); why != "" {
		p.Refused = why
		return p
	}
	if other := otherSwarm(f, o); other != "" {
		if !o.Force {
			p.Refused = other + ": left alone (--force to prepare it anyway; the swarm stage then moves it)"
			return p
		}
		p.Notes = append(p.Notes, other+" (--force: the swarm stage makes it leave)")
	}
	if off := f.ClockOffset; off > 2e9 || off < -2e9 {
		p.Notes = append(p.Notes, fmt.Sprintf("clock is off by %s: swarm TLS certificates fail when clocks drift; chrony is enabled", off))
	}
	pkg := w.Packages[0]
	if !f.Packages[pkg] && f.Dockerd != "" {
		p.Refused = fmt.Sprintf("%s from another package is installed, not %s: set hostTuning.docker.package to that package, or remove it", f.Dockerd, pkg)
		return p
	}
	if f.CgroupV2 && !f.MemoryCgroup {
		if !o.AllowReboot {
			p.Refused = "the memory cgroup is off (" + strings.TrimSpace(f.Cmdline) + "): the kernel command line needs cgroup_enable=memory and a reboot; run with --allow-reboot"
			return p
		}
		p.Items = append(p.Items, Item{Kind: "cmdline", Name: "cgroup_enable=memory", Detail: "reboot"})
		p.Reboot = true
	}
	p.Conflicts = conflicts(f, w)
	if len(p.Conflicts) > 0 && !o.Force {
		lines := make([]string, len(p.Conflicts))
		for i, c := range p.Conflicts {
			lines[i] = c.String()
		}
		p.Refused = "sysctls set by hand conflict with the tuning: " + strings.Join(lines, "; ") + ": left alone (--force overwrites them)"
		return p
	}
	for _, c := range p.Conflicts {
		p.Items = append(p.Items, Item{Kind: "sysctl", Name: c.Key, Detail: fmt.Sprintf("overwrite %s = %s (%s) with %s", c.Key, c.Have, c.Where, c.Want)})
	}
	for _, file := range w.Files {
		switch have := f.Files[file.Path]; {
		case have == "":
			p.Items = append(p.Items, Item{Kind: "file", Name: file.Path, Detail: "create"})
		case have != file.sum():
			p.Items = append(p.Items, Item{Kind: "file", Name: file.Path, Detail: "update"})
		}
	}
	var missing []string
	for _, pkg := range w.Packages {
		if !f.Packages[pkg] {
			missing = append(missing, pkg)
		}
	}
	if len(missing) > 0 {
		p.Items = append(p.Items, Item{Kind: "package", Name: strings.Join(missing, " "), Detail: "install"})
	}
	if !f.Root && !slices.Contains(strings.Fields(f.Groups), "docker") {
		p.Items = append(p.Items, Item{Kind: "group", Name: "docker", Detail: "add " + n.SSHUser})
	}
	for _, k := range sortedKeys(w.Sysctls) {
		have, wv := norm(f.Sysctls[k]), norm(w.Sysctls[k])
		if have != wv && f.writable(k) && !hasConflict(p.Conflicts, k) {
			p.Items = append(p.Items, Item{Kind: "sysctl", Name: k, Detail: have + " → " + wv})
		}
	}
	for _, s := range w.Services {
		st, ok := f.Services[s]
		switch {
		case !ok || st.Enabled != "enabled":
			p.Items = append(p.Items, Item{Kind: "service", Name: s, Detail: "enable and start"})
		case st.Active != "active" && st.Condition != "no":
			p.Items = append(p.Items, Item{Kind: "service", Name: s, Detail: "start (" + st.Active + ")"})
		}
	}
	if ro := f.readOnlySysctls(w); len(ro) > 0 {
		p.Notes = append(p.Notes, "read-only here, left to the kernel this host runs on: "+strings.Join(ro, ", "))
	}
	return p
}

// otherSwarm says which swarm the host is in when that is not the lab's.
func otherSwarm(f *Facts, o Options) string {
	if f.SwarmState == "" || f.SwarmState == "inactive" {
		return ""
	}
	if f.SwarmNodeID != "" && f.SwarmNodeID == o.NodeID || f.SwarmCluster != "" && f.SwarmCluster == o.ClusterID {
		return ""
	}
	what := "another swarm"
	if f.SwarmCluster != "" {
		what = "another swarm (cluster " + f.SwarmCluster + ")"
	}
	return fmt.Sprintf("already in %s as node %s (%s)", what, f.SwarmNodeID, f.SwarmState)
}

// conflicts are the wanted sysctls set otherwise: by another sysctl file
// (which would win or lose depending on its name), or, once provision's
// file is in place, live by hand (sysctl -w).
func conflicts(f *Facts, w Want) []Conflict {
	var out []Conflict
	for _, s := range f.SysctlFiles {
		if s.File == SysctlFile {
			continue
		}
		if want, ok := w.Sysctls[s.Key]; ok && norm(s.Value) != norm(want) {
			out = append(out, Conflict{Key: s.Key, Want: want, Have: s.Value, Where: fmt.Sprintf("%s:%d", s.File, s.Line), file: s.File, line: s.Line})
		}
	}
	var sysctlFile *File
	for i := range w.Files {
		if w.Files[i].Path == SysctlFile {
			sysctlFile = &w.Files[i]
		}
	}
	if sysctlFile == nil || f.Files[SysctlFile] != sysctlFile.sum() {
		return out
	}
	for _, k := range sortedKeys(w.Sysctls) {
		have := f.Sysctls[k]
		if have != "" && norm(have) != norm(w.Sysctls[k]) && f.writable(k) && !hasConflict(out, k) {
			out = append(out, Conflict{Key: k, Want: w.Sysctls[k], Have: have, Where: "live, set with sysctl -w"})
		}
	}
	return out
}

func hasConflict(cs []Conflict, key string) bool {
	for _, c := range cs {
		if c.Key == key {
			return true
		}
	}
	return false
}

// norm compares sysctl values the way the kernel prints them: fields
// separated by single spaces.
func norm(s string) string { return strings.Join(strings.Fields(s), " ") }

// String is the plan in a few lines.
func (p *Plan) String() string {
	var b strings.Builder
	switch {
	case p.Refused != "":
		fmt.Fprintf(&b, "%s: refused: %s\n", p.Host, p.Refused)
	case len(p.Items) == 0:
		fmt.Fprintf(&b, "%s: unchanged\n", p.Host)
	default:
		fmt.Fprintf(&b, "%s: %d changes\n", p.Host, len(p.Items))
		for _, i := range p.Items {
			fmt.Fprintf(&b, "  + %s\n", i)
		}
	}
	for _, c := range p.Conflicts {
		fmt.Fprintf(&b, "  ! conflict: %s\n", c)
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "  - %s\n", n)
	}
	return b.String()
}
