// Package hosts brings existing machines ("bring your own node") into the
// lab: over SSH it reads each host's facts, plans what it would change
// (Docker from the configured apt source, the host tuning files every VM
// and Pi gets, services) and applies only that, idempotently.
package hosts

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fhlab/provision/internal/remote"
)

// Facts are what provision reads from a host before it plans.
type Facts struct {
	OSID, OSLike, OSVersion, Codename string // /etc/os-release
	Arch                              string // dpkg --print-architecture
	Kernel                            string // uname -r
	Cmdline                           string // /proc/cmdline
	Systemd                           bool   // booted with systemd (/run/systemd/system)
	CgroupV2                          bool   // /sys/fs/cgroup is cgroup2 (unified)
	MemoryCgroup                      bool   // the memory controller is on
	Root                              bool   // logged in as root
	Sudo                              bool   // sudo -n works (when not root)

	DockerPackage string // version of the configured package, "" when not installed
	Dockerd       string // dockerd --version, "" when there is no dockerd
	SwarmState    string // Swarm.LocalNodeState from the engine: inactive, active, pending, ...
	SwarmCluster  string // Swarm.Cluster.ID when the engine is a manager
	SwarmNodeID   string // Swarm.NodeID

	ClockOffset time.Duration // host clock minus this machine's, at the midpoint of the read

	Packages map[string]bool   // which of the wanted packages are installed
	Files    map[string]string // wanted path → "mode sha256" of the file on the host ("" = absent)
	Sysctls  map[string]string // wanted key → the live value
	// ReadOnly are wanted keys whose /proc/sys file cannot be written
	// here (a container: the kernel is the machine's it runs on).
	ReadOnly map[string]bool
	// SysctlFiles are the settings of wanted keys in other sysctl files
	// (/etc/sysctl.conf, /etc/sysctl.d, /run/sysctl.d, /usr/lib/sysctl.d).
	SysctlFiles []SysctlSetting
	Services    map[string]ServiceState
	Groups      string // groups of the login user (id -nG)
}

// SysctlSetting is one key = value line of a sysctl file.
type SysctlSetting struct {
	File  string
	Line  int
	Key   string
	Value string
}

// ServiceState is what systemctl says of a unit.
type ServiceState struct {
	Enabled string // is-enabled: enabled, disabled, static, not-found, ...
	Active  string // is-active: active, inactive, failed, ...
	// Condition is the unit's ConditionResult: "no" when systemd skipped
	// starting it (chrony without CAP_SYS_TIME in a container).
	Condition string
}

func (f *Facts) writable(key string) bool { return !f.ReadOnly[key] }

// readOnlySysctls lists the wanted keys this host cannot set.
func (f *Facts) readOnlySysctls(w Want) []string {
	var out []string
	for _, k := range sortedKeys(w.Sysctls) {
		if f.ReadOnly[k] {
			out = append(out, k)
		}
	}
	return out
}

// Want is what facts are gathered against: the files, packages, sysctls
// and services a host should end up with.
type Want struct {
	Packages []string
	Files    []File
	Sysctls  map[string]string
	Services []string
}

// factsScript prints one "key<TAB>value" line per fact. Every command that
// may be missing is guarded, so a host without dpkg or systemd still
// answers (and is then refused with the reason).
func factsScript(w Want) string {
	var b strings.Builder
	b.WriteString(`set +e
exec 2>/dev/null
say() { printf '%s\t%s\n' "$1" "$2"; }
if [ -r /etc/os-release ]; then . /etc/os-release; fi
say os.id "$ID"; say os.like "$ID_LIKE"; say os.version "$VERSION_ID"; say os.codename "$VERSION_CODENAME"
say arch "$(dpkg --print-architecture || uname -m)"
say kernel "$(uname -r)"
say cmdline "$(cat /proc/cmdline)"
[ -d /run/systemd/system ] && say systemd yes
[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] && say cgroup2 yes
if [ -r /sys/fs/cgroup/cgroup.controllers ]; then
  grep -qw memory /sys/fs/cgroup/cgroup.controllers && say memcg yes
else
  awk '$1=="memory" && $4=="1" {f=1} END {exit !f}' /proc/cgroups && say memcg yes
fi
[ "$(id -u)" = 0 ] && say root yes
sudo -n true && say sudo yes
say groups "$(id -nG)"
say dockerd "$(dockerd --version)"
say swarm "$(docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{if .Swarm.Cluster}}{{.Swarm.Cluster.ID}}{{end}}' || sudo -n docker info --format '{{.Swarm.LocalNodeState}} {{.Swarm.NodeID}} {{if .Swarm.Cluster}}{{.Swarm.Cluster.ID}}{{end}}')"
`)
	for _, p := range w.Packages {
		fmt.Fprintf(&b, "say pkg.%s \"$(dpkg-query -W -f='${db:Status-Abbrev}${Version}' %s)\"\n", p, shellQuote(p))
	}
	for _, f := range w.Files {
		q := shellQuote(f.Path)
		fmt.Fprintf(&b, "if [ -f %s ]; then say file.%s \"$(stat -c %%a %s) $( (cat %s || sudo -n cat %s) | sha256sum | cut -d' ' -f1)\"; fi\n", q, f.Path, q, q, q)
	}
	for _, k := range sortedKeys(w.Sysctls) {
		proc := shellQuote("/proc/sys/" + strings.ReplaceAll(k, ".", "/"))
		fmt.Fprintf(&b, "if [ -w %s ]; then say sysctl.%s \"rw $(sysctl -n %s)\"; else say sysctl.%s \"ro $(sysctl -n %s)\"; fi\n", proc, k, shellQuote(k), k, shellQuote(k))
	}
	// Every setting of a wanted key in every sysctl file systemd-sysctl reads.
	if len(w.Sysctls) > 0 {
		b.WriteString(`for f in /etc/sysctl.conf /etc/sysctl.d/*.conf /run/sysctl.d/*.conf /usr/local/lib/sysctl.d/*.conf /usr/lib/sysctl.d/*.conf /lib/sysctl.d/*.conf; do
  [ -f "$f" ] || continue
  awk -v f="$f" '{ line=$0; sub(/^[ \t]*-/, "", line) } line ~ /^[ \t]*[#;]/ || line !~ /=/ { next } { k=line; sub(/[ \t]*=.*/, "", k); sub(/^[ \t]*/, "", k); v=line; sub(/^[^=]*=[ \t]*/, "", v); sub(/[ \t]*$/, "", v); gsub(/\//, ".", k); printf "sysctlfile\t%s\t%d\t%s\t%s\n", f, NR, k, v }' "$f"
done
`)
	}
	for _, s := range w.Services {
		q := shellQuote(s)
		fmt.Fprintf(&b, "say service.%s \"$(systemctl is-enabled %s) $(systemctl is-active %s) $(systemctl show -p ConditionResult --value %s)\"\n", s, q, q, q)
	}
	return b.String()
}

// Gather reads a host's facts over SSH: one command for the clock (so the
// offset is off by at most half a round trip), one for the rest. now is
// this machine's clock.
func Gather(ctx context.Context, r remote.Runner, w Want, now func() time.Time) (*Facts, error) {
	before := now()
	clock, _, err := r.Run(ctx, "date +%s.%N")
	after := now()
	if err != nil {
		return nil, fmt.Errorf("read the clock: %w", err)
	}
	out, _, err := r.Run(ctx, "sh -c "+shellQuote(factsScript(w)))
	if err != nil {
		return nil, fmt.Errorf("read facts: %w", err)
	}
	f, err := parseFacts(out, w)
	if err != nil {
		return nil, err
	}
	if sec, err := strconv.ParseFloat(strings.TrimSpace(string(clock)), 64); err == nil {
		mid := before.Add(after.Sub(before) / 2)
		f.ClockOffset = time.Unix(0, int64(sec*1e9)).Sub(mid).Round(time.Millisecond)
	}
	return f, nil
}

func parseFacts(out []byte, w Want) (*Facts, error) {
	f := &Facts{Packages: map[string]bool{}, Files: map[string]string{}, Sysctls: map[string]string{}, ReadOnly: map[string]bool{}, Services: map[string]ServiceState{}}
	wanted := map[string]bool{}
	for k := range w.Sysctls {
		wanted[k] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		key, val, ok := strings.Cut(sc.Text(), "\t")
		if !ok {
			continue
		}
		switch {
		case key == "os.id":
			f.OSID = val
		case key == "os.like":
			f.OSLike = val
		case key == "os.version":
			f.OSVersion = val
		case key == "os.codename":
			f.Codename = val
		case key == "arch":
			f.Arch = val
		case key == "kernel":
			f.Kernel = val
		case key == "cmdline":
			f.Cmdline = val
		case key == "systemd":
			f.Systemd = true
		case key == "cgroup2":
			f.CgroupV2 = true
		case key == "memcg":
			f.MemoryCgroup = true
		case key == "root":
			f.Root = true
		case key == "sudo":
			f.Sudo = true
		case key == "groups":
			f.Groups = val
		case key == "dockerd":
			f.Dockerd = val
		case key == "swarm":
			fs := strings.Fields(val)
			if len(fs) > 0 {
				f.SwarmState = fs[0]
			}
			if len(fs) > 1 {
				f.SwarmNodeID = fs[1]
			}
			if len(fs) > 2 {
				f.SwarmCluster = fs[2]
			}
		case strings.HasPrefix(key, "pkg."):
			// db:Status-Abbrev is "ii " for an installed package.
			if strings.HasPrefix(val, "ii ") {
				f.Packages[key[4:]] = true
				if key[4:] == firstOr(w.Packages, "") {
					f.DockerPackage = strings.TrimSpace(val[3:])
				}
			}
		case strings.HasPrefix(key, "file."):
			f.Files[key[5:]] = val
		case strings.HasPrefix(key, "sysctl."):
			mode, v, _ := strings.Cut(val, " ")
			f.Sysctls[key[7:]] = v
			if mode != "rw" {
				f.ReadOnly[key[7:]] = true
			}
		case key == "sysctlfile":
			parts := strings.SplitN(val, "\t", 4)
			if len(parts) != 4 || !wanted[parts[2]] {
				continue
			}
			line, _ := strconv.Atoi(parts[1])
			f.SysctlFiles = append(f.SysctlFiles, SysctlSetting{File: parts[0], Line: line, Key: parts[2], Value: parts[3]})
		case strings.HasPrefix(key, "service."):
			fs := append(strings.Fields(val), "", "", "")
			f.Services[key[8:]] = ServiceState{Enabled: fs[0], Active: fs[1], Condition: fs[2]}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read facts: %w", err)
	}
	return f, nil
}

func firstOr(s []string, def string) string {
	if len(s) == 0 {
		return def
	}
	return s[0]
}

// shellQuote quotes s for a POSIX shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
