package hosts

import (
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
)

// want is a small wanted state: one sysctl file, the docker package, one
// service.
func testWant() Want {
	return Want{
		Packages: []string{"docker.io", "chrony"},
		Files: []File{
			{Path: DaemonJSON, Mode: 0o644, Content: []byte("{}\n")},
			{Path: SysctlFile, Mode: 0o644, Content: []byte("net.ipv4.tcp_keepalive_time = 600\nfs.file-max = 2097152\n")},
		},
		Sysctls:  map[string]string{"net.ipv4.tcp_keepalive_time": "600", "fs.file-max": "2097152"},
		Services: []string{"docker.service"},
	}
}

// tuned is a Debian host on which a previous apply did everything.
func tuned(w Want) *Facts {
	f := &Facts{
		OSID: "debian", OSVersion: "12", Arch: "amd64", Systemd: true, CgroupV2: true, MemoryCgroup: true, Root: true,
		Packages: map[string]bool{"docker.io": true, "chrony": true}, DockerPackage: "20.10.24", Dockerd: "Docker version 20.10.24",
		Files: map[string]string{}, Sysctls: map[string]string{}, ReadOnly: map[string]bool{},
		Services:   map[string]ServiceState{"docker.service": {Enabled: "enabled", Active: "active", Condition: "yes"}},
		SwarmState: "inactive",
	}
	for _, file := range w.Files {
		f.Files[file.Path] = file.sum()
	}
	for k, v := range w.Sysctls {
		f.Sysctls[k] = v
	}
	return f
}

var node = inventory.Node{Name: "byo-1", Kind: inventory.KindHost, Role: inventory.Worker, Arch: "amd64", SSHUser: "root"}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		change  func(f *Facts)
		opts    Options
		refused string   // "" when not refused
		items   []string // Item.String() prefixes, in order
		notes   string
	}{
		{name: "tuned host: nothing to do", change: func(*Facts) {}},
		{name: "alpine", change: func(f *Facts) { f.OSID, f.OSLike = "alpine", "" }, refused: "unsupported system alpine: provision prepares Debian and Ubuntu hosts"},
		{name: "no os-release", change: func(f *Facts) { f.OSID = "" }, refused: "unsupported system unknown (no /etc/os-release)"},
		{name: "raspbian is Debian", change: func(f *Facts) { f.OSID, f.OSLike = "raspbian", "debian" }},
		{name: "no systemd", change: func(f *Facts) { f.Systemd = false }, refused: "not booted with systemd"},
		{name: "cgroup v1 without memory", change: func(f *Facts) { f.CgroupV2, f.MemoryCgroup = false, false }, refused: "cgroup v1 without the memory controller"},
		{name: "cgroup v1 with memory", change: func(f *Facts) { f.CgroupV2 = false }},
		{name: "arch differs", change: func(f *Facts) { f.Arch = "arm64" }, refused: "the host is arm64 but the inventory says arch: amd64"},
		{name: "no sudo", change: func(f *Facts) { f.Root = false; f.Groups = "admin docker" }, refused: "cannot use sudo without a password"},
		{name: "docker-ce installed", change: func(f *Facts) { f.Packages["docker.io"] = false; f.Dockerd = "Docker version 27.1.1" }, refused: "Docker version 27.1.1 from another package is installed, not docker.io"},
		{name: "memory cgroup off needs a reboot", change: func(f *Facts) { f.MemoryCgroup = false; f.Cmdline = "console=tty cgroup_disable=memory" }, refused: "needs cgroup_enable=memory and a reboot; run with --allow-reboot"},
		{name: "memory cgroup off, reboot allowed", change: func(f *Facts) { f.MemoryCgroup = false }, opts: Options{AllowReboot: true}, items: []string{"cmdline cgroup_enable=memory: reboot"}},
		{name: "in another swarm", change: func(f *Facts) { f.SwarmState, f.SwarmNodeID = "active", "n0de" }, opts: Options{NodeID: "other"}, refused: "already in another swarm as node n0de (active): left alone"},
		{name: "in another swarm, forced", change: func(f *Facts) { f.SwarmState, f.SwarmNodeID = "active", "n0de" }, opts: Options{Force: true}, notes: "--force: the swarm stage makes it leave"},
		{name: "in the lab's swarm", change: func(f *Facts) { f.SwarmState, f.SwarmNodeID = "active", "n0de" }, opts: Options{NodeID: "n0de"}},
		{name: "a manager of the lab's swarm", change: func(f *Facts) { f.SwarmState, f.SwarmNodeID, f.SwarmCluster = "active", "x", "c1" }, opts: Options{ClusterID: "c1"}},
		{name: "fresh host", change: func(f *Facts) {
			f.Packages = map[string]bool{}
			f.Dockerd = ""
			f.Files = map[string]string{}
			f.Sysctls["net.ipv4.tcp_keepalive_time"] = "7200"
			f.Services = map[string]ServiceState{}
		}, items: []string{"file /etc/docker/daemon.json: create", "file " + SysctlFile + ": create", "package docker.io chrony: install", "sysctl net.ipv4.tcp_keepalive_time: 7200 → 600", "service docker.service: enable and start"}},
		{name: "changed file", change: func(f *Facts) { f.Files[DaemonJSON] = "644 0000" }, items: []string{"file /etc/docker/daemon.json: update"}},
		{name: "mode differs", change: func(f *Facts) { f.Files[DaemonJSON] = strings.Replace(f.Files[DaemonJSON], "644", "600", 1) }, items: []string{"file /etc/docker/daemon.json: update"}},
		{name: "sysctl file conflict", change: func(f *Facts) {
			f.SysctlFiles = []SysctlSetting{{File: "/etc/sysctl.d/99-local.conf", Line: 3, Key: "net.ipv4.tcp_keepalive_time", Value: "7200"}}
		}, refused: "net.ipv4.tcp_keepalive_time = 7200 (/etc/sysctl.d/99-local.conf:3), the tuning says 600: left alone (--force overwrites them)"},
		{name: "sysctl file conflict, forced", change: func(f *Facts) {
			f.SysctlFiles = []SysctlSetting{{File: "/etc/sysctl.d/99-local.conf", Line: 3, Key: "net.ipv4.tcp_keepalive_time", Value: "7200"}}
		}, opts: Options{Force: true}, items: []string{"sysctl net.ipv4.tcp_keepalive_time: overwrite net.ipv4.tcp_keepalive_time = 7200 (/etc/sysctl.d/99-local.conf:3) with 600"}},
		{name: "same value in another file is no conflict", change: func(f *Facts) {
			f.SysctlFiles = []SysctlSetting{{File: "/etc/sysctl.conf", Line: 1, Key: "net.ipv4.tcp_keepalive_time", Value: "600"}}
		}},
		{name: "sysctl set live by hand", change: func(f *Facts) { f.Sysctls["net.ipv4.tcp_keepalive_time"] = "7200" }, refused: "net.ipv4.tcp_keepalive_time = 7200 (live, set with sysctl -w), the tuning says 600"},
		{name: "read-only sysctl is a note, not a change", change: func(f *Facts) { f.Sysctls["fs.file-max"] = "9"; f.ReadOnly["fs.file-max"] = true }, notes: "read-only here, left to the kernel this host runs on: fs.file-max"},
		{name: "service skipped by its condition", change: func(f *Facts) {
			f.Services["docker.service"] = ServiceState{Enabled: "enabled", Active: "inactive", Condition: "no"}
		}},
		{name: "service stopped", change: func(f *Facts) {
			f.Services["docker.service"] = ServiceState{Enabled: "enabled", Active: "failed", Condition: "yes"}
		}, items: []string{"service docker.service: start (failed)"}},
		{name: "user not in docker group", change: func(f *Facts) { f.Root, f.Sudo, f.Groups = false, true, "admin" }, items: []string{"group docker: add root"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := testWant()
			f := tuned(w)
			tc.change(f)
			p := MakePlan(node, f, w, tc.opts)
			switch {
			case tc.refused == "" && p.Refused != "":
				t.Fatalf("refused: %s", p.Refused)
			case tc.refused != "" && !strings.Contains(p.Refused, tc.refused):
				t.Fatalf("refused %q, want ...%s...", p.Refused, tc.refused)
			case tc.refused != "" && len(p.Items) != 0:
				t.Fatalf("a refused plan has items: %v", p.Items)
			}
			var got []string
			for _, i := range p.Items {
				got = append(got, i.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.items, "\n") {
				t.Errorf("items:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.items, "\n"))
			}
			if tc.notes != "" && !strings.Contains(strings.Join(p.Notes, "\n"), tc.notes) {
				t.Errorf("notes %q, want ...%s...", p.Notes, tc.notes)
			}
		})
	}
}
