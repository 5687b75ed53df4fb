package smoke

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/fhlab/provision/internal/render"
)

// Check is one thing the smoke boot verifies: the guest prints
// "SMOKE <Key>=<value>" on the console and OK decides whether the value is
// right.
type Check struct {
	Key  string
	Want string // what a passing value looks like, for the report
	OK   func(got string) bool
}

// Result is a check with the value the guest printed.
type Result struct {
	Check
	Got     string
	Present bool
	Passed  bool
}

func equals(want string) func(string) bool {
	return func(got string) bool { return got == want }
}

func hasPrefix(p string) func(string) bool {
	return func(got string) bool { return strings.HasPrefix(got, p) }
}

func contains(s string) func(string) bool {
	return func(got string) bool { return strings.Contains(got, s) }
}

// LinkFile is where the link policy file is written on a node.
const LinkFile = "/etc/systemd/network/10-provision-docker.link"

// Sysctls are the kernel settings the host tuning sets, with the values d's
// inventory asks for (hostTuning.sysctls last, as in the sysctl.d file).
func Sysctls(d *render.Data) [][2]string {
	t := d.Tuning
	s := [][2]string{
		{"net.ipv4.tcp_keepalive_time", strconv.Itoa(t.Keepalive.Time)},
		{"net.ipv4.tcp_keepalive_intvl", strconv.Itoa(t.Keepalive.Interval)},
		{"net.ipv4.tcp_keepalive_probes", strconv.Itoa(t.Keepalive.Probes)},
		{"net.ipv4.neigh.default.gc_thresh1", strconv.Itoa(t.Neighbour.GCThresh1)},
		{"net.ipv4.neigh.default.gc_thresh2", strconv.Itoa(t.Neighbour.GCThresh2)},
		{"net.ipv4.neigh.default.gc_thresh3", strconv.Itoa(t.Neighbour.GCThresh3)},
		{"net.ipv4.ip_forward", "1"},
		{"fs.inotify.max_user_watches", strconv.Itoa(t.Limits.InotifyMaxWatches)},
		{"fs.inotify.max_user_instances", strconv.Itoa(t.Limits.InotifyMaxInstances)},
		{"fs.file-max", strconv.Itoa(t.Limits.FileMax)},
		{"kernel.pid_max", strconv.Itoa(t.Limits.PIDMax)},
	}
	keys := make([]string, 0, len(t.Sysctls))
	for k := range t.Sysctls {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i := slices.IndexFunc(s, func(kv [2]string) bool { return kv[0] == k })
		if i >= 0 {
			s[i][1] = t.Sysctls[k]
		} else {
			s = append(s, [2]string{k, t.Sysctls[k]})
		}
	}
	return s
}

// Checks are what the smoke boot of node d verifies.
func Checks(d *render.Data) []Check {
	t := d.Tuning
	cs := []Check{
		{Key: "cloud_init", Want: "done", OK: equals("done")},
		{Key: "hostname", Want: d.Hostname, OK: equals(d.Hostname)},
		{Key: "machine_id", Want: "set", OK: equals("set")},
		{Key: "ssh_user", Want: "groups with docker", OK: func(got string) bool { return slices.Contains(strings.Fields(got), "docker") }},
		{Key: "ssh_user_keys", Want: strconv.Itoa(len(d.SSH.AuthorizedKeys)), OK: equals(strconv.Itoa(len(d.SSH.AuthorizedKeys)))},
	}
	for _, kv := range Sysctls(d) {
		// sysctl -n prints vectors with tabs; the file has spaces.
		want := strings.Join(strings.Fields(kv[1]), " ")
		cs = append(cs, Check{Key: "sysctl." + kv[0], Want: want, OK: equals(want)})
	}
	cs = append(cs,
		Check{Key: "link_file", Want: "present", OK: equals("present")},
		// udev's net_setup_link records which .link file it applied.
		Check{Key: "link_file.docker0", Want: LinkFile, OK: equals(LinkFile)},
		Check{Key: "link_file.veth", Want: LinkFile, OK: equals(LinkFile)},
		Check{Key: "docker_active", Want: "active", OK: equals("active")},
		Check{Key: "docker_info", Want: "a server version", OK: func(got string) bool {
			return got != "" && !strings.Contains(got, "rror") && !strings.Contains(got, "annot connect")
		}},
		Check{Key: "docker_log_driver", Want: t.Docker.LogDriver, OK: equals(t.Docker.LogDriver)},
		Check{Key: "docker_limit_nofile", Want: t.Docker.LimitNOFILE, OK: equals(t.Docker.LimitNOFILE)},
		Check{Key: "ipvs_timer", Want: "enabled", OK: hasPrefix("enabled")},
		// Without an ip_vs module (mount namespace with an empty
		// /lib/modules) the tuning script must say so in plain words.
		Check{Key: "ipvs_no_module", Want: "provision-netns-tuning: this kernel has no IPVS ...", OK: contains("this kernel has no IPVS")},
		Check{Key: "ipvs_service", Want: "success", OK: equals("success")},
		Check{Key: "ipvs_log", Want: "provision-netns-tuning: tuned 1 namespaces ...", OK: contains("provision-netns-tuning: tuned 1 namespaces")},
		// The first boot's journal is whole: journalctl -u finds the
		// service (it found nothing while provision-identity changed the
		// machine-id under journald).
		Check{Key: "ipvs_journal", Want: "... provision-netns-tuning.service ...", OK: contains("provision-netns-tuning")},
		Check{Key: "netns_keepalive_time", Want: strconv.Itoa(t.Keepalive.Time), OK: equals(strconv.Itoa(t.Keepalive.Time))},
		Check{Key: "netns_ipvs_timeout", Want: strconv.Itoa(t.IPVS.TCPTimeout), OK: equals(strconv.Itoa(t.IPVS.TCPTimeout))},
	)
	if d.IsPi {
		cs = append(cs,
			Check{Key: "zram_swap", Want: "/dev/zram0", OK: hasPrefix("/dev/zram")},
			Check{Key: "zram_algorithm", Want: t.Zram.Algorithm, OK: equals(t.Zram.Algorithm)},
			Check{Key: "memory_cgroup", Want: "on", OK: equals("on")},
			// nbd-client, its nbdroot= script and the nbd module, for a
			// netbooted Pi's root (the module may be compressed: nbd.ko.xz).
			Check{Key: "initramfs_nbd", Want: "nbd nbd-client nbd.ko", OK: func(s string) bool {
				f := strings.Fields(s)
				return len(f) == 3 && f[0] == "nbd" && f[1] == "nbd-client" && strings.HasPrefix(f[2], "nbd.ko")
			}},
		)
	}
	return cs
}

// Evaluate matches the values the guest printed against cs.
func Evaluate(cs []Check, got map[string]string) (rs []Result, passed bool) {
	passed = true
	for _, c := range cs {
		v, ok := got[c.Key]
		r := Result{Check: c, Got: v, Present: ok, Passed: ok && c.OK(v)}
		passed = passed && r.Passed
		rs = append(rs, r)
	}
	return rs, passed
}

// Report prints one line per result.
func Report(rs []Result) string {
	var b strings.Builder
	for _, r := range rs {
		mark := "ok  "
		if !r.Passed {
			mark = "FAIL"
		}
		got := r.Got
		if !r.Present {
			got = "(not printed)"
		}
		if r.Passed {
			fmt.Fprintf(&b, "%s %s = %s\n", mark, r.Key, got)
		} else {
			fmt.Fprintf(&b, "%s %s = %s (want %s)\n", mark, r.Key, got, r.Want)
		}
	}
	return b.String()
}
