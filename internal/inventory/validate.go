package inventory

import (
	"fmt"
	"net/netip"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// maxVMID is the largest VMID Proxmox VE accepts.
const maxVMID = 999999999

// dockerLocalPools are the ranges Docker takes bridge networks from when
// daemon.json sets no default-address-pools; a swarm pool must stay clear.
var dockerLocalPools = []string{"172.17.0.0/16", "172.18.0.0/16", "172.16.0.0/12", "192.168.0.0/16"}

var (
	labName    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userName   = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	diskSize   = regexp.MustCompile(`^[1-9][0-9]*[MGT]$`)
	timeSpan   = regexp.MustCompile(`^[1-9][0-9]*(s|min|h)$`)
	labelKey   = regexp.MustCompile(`^[a-zA-Z0-9]([a-zA-Z0-9._-]*[a-zA-Z0-9])?$`)
	limitValue = regexp.MustCompile(`^(infinity|[1-9][0-9]*)$`)
	sysctlKey  = regexp.MustCompile(`^[a-z0-9_]+(\.[a-zA-Z0-9_-]+)+$`)
	debPackage = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// validator collects problems about one inventory.
type validator struct {
	inv   *Inventory
	probs Problems
	lan   netip.Prefix
}

func (v *validator) add(path, format string, args ...any) {
	v.probs = append(v.probs, v.inv.problem(path, format, args...))
}

// validate checks the defaulted, expanded inventory and returns every
// problem it finds.
func (inv *Inventory) validate() Problems {
	v := &validator{inv: inv}
	l := &inv.Lab
	if !labName.MatchString(l.Metadata.Name) {
		v.add("metadata.name", "%q is not a lab name (lower-case letters, digits and '-')", l.Metadata.Name)
	}
	v.network()
	v.ssh()
	v.swarmPools()
	v.tuning()
	v.proxmox()
	v.racks()
	v.hosts()
	v.mirror()
	v.nodes()
	v.managers()
	return v.probs
}

func (v *validator) network() {
	n := v.inv.Lab.Network
	lan, err := netip.ParsePrefix(n.CIDR)
	if err != nil || !lan.Addr().Is4() {
		v.add("network.cidr", "%q is not an IPv4 network like 192.168.10.0/23", n.CIDR)
		return
	}
	if lan.Masked() != lan {
		v.add("network.cidr", "%q has host bits set; the network is %s", n.CIDR, lan.Masked())
		return
	}
	switch {
	case lan.Bits() > 30:
		v.add("network.cidr", "%s leaves no room for a gateway and nodes: a LAN needs /30 or shorter", lan)
		return
	case lan.Bits() < 8:
		v.add("network.cidr", "%s is larger than any LAN: use /8 to /30", lan)
		return
	}
	if why := specialRange(lan); why != "" {
		v.add("network.cidr", "%s %s, not a LAN", lan, why)
		return
	}
	v.lan = lan
	gw, err := netip.ParseAddr(n.Gateway)
	switch {
	case err != nil:
		v.add("network.gateway", "%q is not an IPv4 address", n.Gateway)
	case !usable(lan, gw):
		v.add("network.gateway", "%s is not a host address of %s", gw, lan)
	}
	for i, s := range n.DNS {
		if _, err := netip.ParseAddr(s); err != nil {
			v.add(index("network.dns", i), "%q is not an IP address", s)
		}
	}
	for i, s := range n.NTP {
		if _, err := netip.ParseAddr(s); err != nil && !isDNSName(s) {
			v.add(index("network.ntp", i), "%q is not an NTP server name or address", s)
		}
	}
	if n.Domain != "" && !isDNSName(n.Domain) {
		v.add("network.domain", "%q is not a DNS domain like lab.example.org (letters, digits, '-' and dots)", n.Domain)
	}
}

// dnsLabel is one label of a DNS name (RFC 1123).
var dnsLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// isDNSName reports whether s is a host or domain name (one trailing dot
// allowed).
func isDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for _, l := range strings.Split(s, ".") {
		if !dnsLabel.MatchString(l) {
			return false
		}
	}
	return true
}

// specialRanges are IPv4 ranges no LAN, overlay or bridge network can use.
var specialRanges = []struct {
	p   netip.Prefix
	why string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "is in 0.0.0.0/8 (\"this network\")"},
	{netip.MustParsePrefix("127.0.0.0/8"), "is loopback (127.0.0.0/8)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "is link-local (169.254.0.0/16)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "is multicast (224.0.0.0/4)"},
	{netip.MustParsePrefix("240.0.0.0/4"), "is reserved (class E, 240.0.0.0/4)"},
}

// specialRange says why p cannot carry unicast host traffic, or "".
func specialRange(p netip.Prefix) string {
	for _, s := range specialRanges {
		if p.Overlaps(s.p) {
			return s.why
		}
	}
	return ""
}

// ipv4Network checks an IPv4 network field (a pool or subnet) and returns it;
// example is shown in the message when s is not a network at all.
func (v *validator) ipv4Network(path, s, example string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(s)
	switch {
	case err != nil || !p.Addr().Is4():
		v.add(path, "%q is not an IPv4 network like %s", s, example)
	case p.Masked() != p:
		v.add(path, "%s has host bits set; did you mean %s?", p, p.Masked())
	case specialRange(p) != "":
		v.add(path, "%s %s: containers cannot use it", p, specialRange(p))
	default:
		return p, true
	}
	return p, false
}

// usable reports whether a is a host address of p (not network, broadcast).
func usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Masked().Addr() {
		return false
	}
	last := p.Masked().Addr()
	for i := 0; i < 32-p.Bits(); i++ {
		last = setBit(last, i)
	}
	return a != last
}

func setBit(a netip.Addr, bit int) netip.Addr {
	b := a.As4()
	b[3-bit/8] |= 1 << (bit % 8)
	return netip.AddrFrom4(b)
}

func (v *validator) ssh() {
	s := v.inv.Lab.SSH
	if !userName.MatchString(s.User) || s.User == "root" {
		v.add("ssh.user", "%q is not a usable login name (not root; lower-case letters, digits, '_' and '-')", s.User)
	}
	if len(s.AuthorizedKeys) == 0 && !s.CreateKey {
		v.add("ssh.authorizedKeys", "at least one public key is needed, or no one can log in to the nodes")
	}
	for i, k := range s.AuthorizedKeys {
		if r, _ := controlChar(k); r != 0 {
			v.add(index("ssh.authorizedKeys", i), "contains the control character %U: a public key is one line of printable text", r)
			continue
		}
		if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k)); err != nil {
			v.add(index("ssh.authorizedKeys", i), "not an SSH public key (%v); paste a line of ~/.ssh/id_ed25519.pub", err)
		}
	}
	if s.Port < 1 || s.Port > 65535 {
		v.add("ssh.port", "%d is not a TCP port", s.Port)
	}
}

// Capacity is what a swarm address pool gives: how many overlay networks of
// how many task addresses each.
type Capacity struct {
	Pool      netip.Prefix
	MaskLen   int
	Networks  int
	Addresses int
}

func (c Capacity) String() string {
	return fmt.Sprintf("%s in /%d networks: %s networks of %s addresses each", c.Pool, c.MaskLen, thousands(c.Networks), thousands(c.Addresses))
}

func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// PoolCapacity reports each configured swarm pool's capacity. Call it on a
// validated inventory.
func (inv *Inventory) PoolCapacity() []Capacity {
	var out []Capacity
	mask := inv.Lab.Swarm.DefaultAddrPoolMaskLength
	for _, s := range inv.Lab.Swarm.DefaultAddrPool {
		p, err := netip.ParsePrefix(s)
		if err != nil || mask < p.Bits() || mask > 30 {
			continue
		}
		out = append(out, Capacity{Pool: p, MaskLen: mask, Networks: 1 << (mask - p.Bits()), Addresses: 1<<(32-mask) - 2})
	}
	return out
}

func (v *validator) swarmPools() {
	sw := v.inv.Lab.Swarm
	mask := sw.DefaultAddrPoolMaskLength
	var pools []netip.Prefix
	var paths []string
	bridge := v.bridgePools()
	for i, s := range sw.DefaultAddrPool {
		path := index("swarm.defaultAddrPool", i)
		p, ok := v.ipv4Network(path, s, "10.128.0.0/12")
		if !ok {
			continue
		}
		if mask < p.Bits() || mask > 29 {
			v.add("swarm.defaultAddrPoolMaskLength", "/%d does not fit in pool %s: use a mask length between %d and 29", mask, p, p.Bits())
		}
		if v.lan.IsValid() && p.Overlaps(v.lan) {
			v.add(path, "pool %s overlaps the host network %s: overlay traffic would shadow the lab LAN", p, v.lan)
		}
		for j, q := range pools {
			if p.Overlaps(q) {
				v.add(path, "pool %s overlaps pool %s (%s)", p, q, paths[j])
				break // one problem per pool, not one per pair
			}
		}
		for _, s := range bridge {
			if p.Overlaps(s) {
				v.add(path, "pool %s overlaps Docker's bridge pool %s (docker0, docker_gwbridge and compose networks come from there)", p, s)
				break
			}
		}
		pools = append(pools, p)
		paths = append(paths, path)
	}
	v.ingress(pools)
	if sw.Managers != 0 && (sw.Managers < 1 || sw.Managers > 7 || sw.Managers%2 == 0) {
		v.add("swarm.managers", "%d managers: use 1, 3, 5 or 7 (an even count tolerates no more failures than one less, and more than 7 slows Raft)", sw.Managers)
	}
}

// ingress checks the routing-mesh network's subnet: it must not shadow the
// lab LAN, Docker's bridge pools or the overlay pools.
func (v *validator) ingress(pools []netip.Prefix) {
	in := v.inv.Lab.Swarm.Ingress
	if in.Subnet == "" {
		return
	}
	const path = "swarm.ingress.subnet"
	if !in.On() {
		v.add(path, "is set but swarm.ingress.enabled is false: drop one of them")
		return
	}
	p, ok := v.ipv4Network(path, in.Subnet, "10.127.0.0/24")
	if !ok {
		return
	}
	if p.Bits() > 29 {
		v.add(path, "%s is too small for the routing mesh: use /29 or shorter, like 10.127.0.0/24", p)
		return
	}
	if v.lan.IsValid() && p.Overlaps(v.lan) {
		v.add(path, "ingress %s overlaps the host network %s", p, v.lan)
	}
	for _, q := range append(pools, v.bridgePools()...) {
		if p.Overlaps(q) {
			v.add(path, "ingress %s overlaps %s: pick a subnet outside the overlay and bridge pools", p, q)
			break
		}
	}
}

// bridgePools are the local pools Docker will use on the nodes: the ones
// daemon.json sets, which are the inventory's hostTuning.docker.addressPools.
func (v *validator) bridgePools() []netip.Prefix {
	var out []netip.Prefix
	pools := v.inv.Lab.HostTuning.Docker.AddressPools
	if len(pools) == 0 {
		for _, s := range dockerLocalPools {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, p := range pools {
		if pr, err := netip.ParsePrefix(p.Base); err == nil {
			out = append(out, pr)
		}
	}
	return out
}

func (v *validator) tuning() {
	t := v.inv.Lab.HostTuning
	if t.Keepalive.Time < 1 || t.Keepalive.Time >= 900 {
		v.add("hostTuning.keepalive.time", "%d s: must be below 900 s, the IPVS idle expiry, or idle connections are still dropped", t.Keepalive.Time)
	}
	for path, n := range map[string]int{
		"hostTuning.keepalive.interval": t.Keepalive.Interval, "hostTuning.keepalive.probes": t.Keepalive.Probes,
		"hostTuning.ipvs.tcpTimeout": t.IPVS.TCPTimeout, "hostTuning.docker.logMaxFile": t.Docker.LogMaxFile,
		"hostTuning.limits.pidMax": t.Limits.PIDMax, "hostTuning.limits.fileMax": t.Limits.FileMax,
		"hostTuning.limits.inotifyMaxUserWatches":   t.Limits.InotifyMaxWatches,
		"hostTuning.limits.inotifyMaxUserInstances": t.Limits.InotifyMaxInstances,
	} {
		if n < 1 {
			v.add(path, "%d: must be a positive number", n)
		}
	}
	if n := t.Neighbour; n.GCThresh1 < 1 || n.GCThresh1 > n.GCThresh2 || n.GCThresh2 > n.GCThresh3 {
		v.add("hostTuning.neighbour", "thresholds must rise: gcThresh1 (%d) ≤ gcThresh2 (%d) ≤ gcThresh3 (%d)", n.GCThresh1, n.GCThresh2, n.GCThresh3)
	}
	if !timeSpan.MatchString(t.IPVS.Interval) {
		v.add("hostTuning.ipvs.interval", "%q is not a systemd time span like 5min, 300s or 1h", t.IPVS.Interval)
	}
	switch t.LinkPolicy.MACAddressPolicy {
	case "none", "random", "persistent":
	default:
		v.add("hostTuning.linkPolicy.macAddressPolicy", "%q: use none (recommended), random or persistent", t.LinkPolicy.MACAddressPolicy)
	}
	for i, d := range t.LinkPolicy.Drivers {
		if !labName.MatchString(d) {
			v.add(index("hostTuning.linkPolicy.drivers", i), "%q is not a kernel driver name", d)
		}
	}
	for path, s := range map[string]string{"hostTuning.docker.tasksMax": t.Docker.TasksMax, "hostTuning.docker.limitNPROC": t.Docker.LimitNPROC, "hostTuning.docker.limitNOFILE": t.Docker.LimitNOFILE} {
		if !limitValue.MatchString(s) {
			v.add(path, "%q: use infinity or a number", s)
		}
	}
	if !regexp.MustCompile(`^[1-9][0-9]*[kmg]$`).MatchString(t.Docker.LogMaxSize) {
		v.add("hostTuning.docker.logMaxSize", "%q is not a size like 10m", t.Docker.LogMaxSize)
	}
	if !debPackage.MatchString(t.Docker.Package) {
		v.add("hostTuning.docker.package", "%q is not a Debian package name (docker.io or docker-ce)", t.Docker.Package)
	}
	if !labName.MatchString(t.Docker.LogDriver) {
		v.add("hostTuning.docker.logDriver", "%q is not a Docker log driver name (json-file, local, journald)", t.Docker.LogDriver)
	}
	for i, p := range t.Docker.AddressPools {
		path := index("hostTuning.docker.addressPools", i)
		pr, ok := v.ipv4Network(path+".base", p.Base, "172.16.0.0/12")
		if !ok {
			continue
		}
		if p.Size < pr.Bits() || p.Size > 29 {
			v.add(path+".size", "/%d does not fit in %s", p.Size, pr)
		}
		if v.lan.IsValid() && pr.Overlaps(v.lan) {
			v.add(path+".base", "bridge pool %s overlaps the host network %s", pr, v.lan)
		}
	}
	for k, val := range t.Sysctls {
		if !sysctlKey.MatchString(k) || strings.ContainsAny(val, "\n\r") || val == "" {
			v.add("hostTuning.sysctls."+k, "%q = %q is not a sysctl setting", k, val)
		}
	}
	for i, p := range t.ExtraPkgs {
		if !debPackage.MatchString(p) {
			v.add(index("hostTuning.extraPackages", i), "%q is not a Debian package name", p)
		}
	}
	if t.Zram.Percent < 1 || t.Zram.Percent > 100 {
		v.add("hostTuning.zram.percent", "%d: use 1 to 100 (percent of RAM)", t.Zram.Percent)
	}
	if !regexp.MustCompile(`^[a-z0-9-]+$`).MatchString(t.Zram.Algorithm) {
		v.add("hostTuning.zram.algorithm", "%q is not a compression algorithm name", t.Zram.Algorithm)
	}
	if !regexp.MustCompile(`^[A-Za-z0-9_+/-]+$`).MatchString(t.Timezone) {
		v.add("hostTuning.timezone", "%q is not a time zone like Europe/Berlin", t.Timezone)
	}
}

func (v *validator) proxmox() {
	p := v.inv.Lab.Proxmox
	if p == nil {
		return
	}
	u, err := url.Parse(p.APIURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		v.add("proxmox.apiURL", "%q is not an https URL like https://pve1:8006/api2/json", p.APIURL)
	}
	if len(p.Nodes) == 0 {
		v.add("proxmox.nodes", "list the Proxmox hosts the VMs may run on")
	}
	known := map[string]int{}
	for i, n := range p.Nodes {
		path := index("proxmox.nodes", i)
		if !labName.MatchString(n.Name) {
			v.add(path+".name", "%q is not a Proxmox node name", n.Name)
		}
		if j, dup := known[n.Name]; dup {
			v.add(path+".name", "Proxmox host %q is listed twice (also proxmox.nodes[%d])", n.Name, j)
		}
		known[n.Name] = i
		if _, set := v.inv.lines[path+".sshPort"]; (set || n.SSHPort != 0) && (n.SSHPort < 1 || n.SSHPort > 65535) {
			v.add(path+".sshPort", "%d is not a TCP port (1-65535; leave sshPort out for 22)", n.SSHPort)
		}
		if a, err := netip.ParseAddr(n.Address); err == nil {
			if !a.IsGlobalUnicast() && !a.IsLoopback() || a.Zone() != "" {
				v.add(path+".address", "%s is not a host's address", a)
			}
		} else if !isDNSName(n.Address) || allDigitsAndDots(n.Address) {
			v.add(path+".address", "%q is not an IP address or host name (no scheme, port or path: the API URL is proxmox.apiURL)", n.Address)
		}
	}
	if len(p.VMs) > 0 && p.Template == "" {
		v.add("proxmox.template", "name the cloud-init template the VMs are cloned from (see `provision template`)")
	}
	for _, env := range []struct{ path, v string }{{"proxmox.tokenIDEnv", p.TokenIDEnv}, {"proxmox.tokenSecretEnv", p.TokenSecretEnv}} {
		if !regexp.MustCompile(`^[A-Z_][A-Z0-9_]*$`).MatchString(env.v) {
			// Not the value: it may be the token itself, written where
			// the name of its variable belongs.
			v.add(env.path, "is not an environment variable name: write the name of the variable that holds the token (like PM_API_TOKEN_SECRET), never the token")
		}
	}
	if p.VMIDStart < 100 || p.VMIDStart > maxVMID {
		v.add("proxmox.vmidStart", "%d: Proxmox VMIDs run from 100 to %d", p.VMIDStart, maxVMID)
	}
	for gi, g := range p.VMs {
		path := index("proxmox.vms", gi)
		if g.Role != Manager && g.Role != Worker {
			v.add(path+".role", "%q: use manager or worker", g.Role)
		}
		if g.Cores < 1 || g.Memory < 512 {
			v.add(path, "cores (%d) must be at least 1 and memory (%d MiB) at least 512", g.Cores, g.Memory)
		}
		if !diskSize.MatchString(g.Disk) {
			v.add(path+".disk", "%q is not a disk size like 32G", g.Disk)
		}
		if g.VMIDStart != 0 && (g.VMIDStart < 100 || g.VMIDStart > maxVMID) {
			v.add(path+".vmidStart", "%d: Proxmox VMIDs run from 100 to %d", g.VMIDStart, maxVMID)
		}
		for hi, h := range g.Hosts {
			if _, ok := known[h]; !ok {
				v.add(index(path+".hosts", hi), "%q is not one of proxmox.nodes (%s)", h, nodeNames(p.Nodes))
			}
		}
		v.labels(path+".labels", g.Labels)
	}
}

func nodeNames(ns []ProxmoxNode) string {
	names := make([]string, len(ns))
	for i, n := range ns {
		names[i] = n.Name
	}
	return strings.Join(names, ", ")
}

// builtinLabels are the labels provision gives every node; placement
// constraints rely on them, so an inventory may not change them.
var builtinLabels = map[string]bool{"role": true, "kind": true, "arch": true, "host": true, "rack": true}

func (v *validator) labels(path string, labels map[string]string) {
	for k := range labels {
		switch {
		case !labelKey.MatchString(k):
			v.add(path+"."+k, "%q is not a node label key (letters, digits, '.', '_' and '-')", k)
		case builtinLabels[k]:
			v.add(path+"."+k, "%q is a label provision sets itself (role, kind, arch, host, rack): use another key", k)
		}
	}
}

func (v *validator) racks() {
	p := v.inv.Lab.Pis
	if p == nil {
		return
	}
	names := map[string]int{}
	selfJoin := false
	for i, r := range p.Racks {
		path := index("pis.racks", i)
		if !labName.MatchString(r.Name) {
			v.add(path+".name", "%q is not a rack name", r.Name)
		}
		if j, dup := names[r.Name]; dup {
			v.add(path+".name", "rack %q is listed twice (also pis.racks[%d])", r.Name, j)
		}
		names[r.Name] = i
		if r.Boot != BootSD && r.Boot != BootNetboot {
			v.add(path+".boot", "%q: use sd or netboot", r.Boot)
		}
		if r.Role != Manager && r.Role != Worker {
			v.add(path+".role", "%q: use manager or worker", r.Role)
		}
		switch r.Join {
		case JoinPush:
		case JoinSelf:
			selfJoin = true
			if r.Role == Manager {
				v.add(path+".join", "a rack of managers cannot join by itself (its seed holds only a ticket for the worker token): use join: push")
			}
		default:
			v.add(path+".join", "%q: use push (provision joins the Pis over SSH) or self (each Pi joins at first boot)", r.Join)
		}
		v.labels(path+".labels", r.Labels)
	}
	if selfJoin || v.inv.lines["pis.joinServer"] != 0 {
		v.joinServer(selfJoin)
	}
}

// maxTicketTTL bounds pis.joinServer.ticketTTL: a ticket is a short-lived
// credential, not a standing one.
const maxTicketTTL = 30 * 24 * time.Hour

// joinServer checks pis.joinServer; its address is required when a rack
// self-joins.
func (v *validator) joinServer(needed bool) {
	js := v.inv.Lab.Pis.JoinServer
	const path = "pis.joinServer"
	switch ip, err := netip.ParseAddr(js.Address); {
	case js.Address == "" && needed:
		v.add(path+".address", "a rack joins by itself (join: self), so the join endpoint needs the admin host's IP address on the LAN")
	case js.Address == "":
	case err != nil || !ip.Is4():
		v.add(path+".address", "%q is not an IPv4 address (the Pis check the endpoint's certificate against it)", js.Address)
	case v.lan.IsValid() && !v.lan.Contains(ip):
		v.add(path+".address", "%s is outside network.cidr %s: the Pis reach the endpoint on the LAN", ip, v.lan)
	}
	if js.Port < 1 || js.Port > 65535 {
		v.add(path+".port", "%d is not a TCP port (1-65535; leave port out for %d)", js.Port, DefaultJoinPort)
	}
	ttl, err := time.ParseDuration(js.TicketTTL)
	switch {
	case err != nil:
		v.add(path+".ticketTTL", "%q is not a duration like 24h or 90m", js.TicketTTL)
	case ttl <= 0:
		v.add(path+".ticketTTL", "%s: a ticket must live for some time", js.TicketTTL)
	case ttl > maxTicketTTL:
		v.add(path+".ticketTTL", "%s is longer than %s: tickets are short-lived; seed the cards again when they boot later", js.TicketTTL, maxTicketTTL)
	}
}

// seen remembers the first node to claim a value.
type seen map[string]*Node

func (v *validator) unique(s seen, what, value string, n *Node, field string) {
	if value == "" {
		return
	}
	if first, dup := s[value]; dup {
		v.probs = append(v.probs, Problem{
			File: v.fileOf(n, field), Line: v.lineOf(n, field), Field: v.fieldOf(n, field),
			Msg: fmt.Sprintf("%s %s of %s is also the %s of %s (%s:%d)", what, value, n.Name, what, first.Name, v.fileOf(first, field), v.lineOf(first, field)),
		})
		return
	}
	s[value] = n
}

// fileOf, lineOf and fieldOf name where a node's fact came from: the group's
// or rack's ipStart for addresses, the CSV row for a Pi's name, serial and
// MAC, the group or rack field otherwise.
func (v *validator) fileOf(n *Node, field string) string {
	if field == "ip" {
		return v.inv.File
	}
	return n.Source.File
}

func (v *validator) lineOf(n *Node, field string) int {
	if field == "ip" {
		return v.inv.lines[n.ipField]
	}
	if n.Source.File != v.inv.File {
		return n.Source.Line
	}
	if field == "vmid" {
		if l := v.inv.lines[n.field+".vmidStart"]; l > 0 {
			return l
		}
	}
	return n.Source.Line
}

func (v *validator) fieldOf(n *Node, field string) string {
	if field == "ip" {
		return n.ipField
	}
	if n.Source.File != v.inv.File {
		return field
	}
	return n.field + "." + map[string]string{"name": "name", "vmid": "vmidStart"}[field]
}

func (v *validator) nodes() {
	names, ips, macs, serials, vmids := seen{}, seen{}, seen{}, seen{}, seen{}
	gw, _ := netip.ParseAddr(v.inv.Lab.Network.Gateway)
	for i := range v.inv.Nodes {
		n := &v.inv.Nodes[i]
		v.unique(names, "hostname", n.Name, n, "name")
		v.unique(ips, "address", n.IP, n, "ip")
		v.unique(macs, "MAC", n.MAC, n, "mac")
		v.unique(serials, "serial", n.Serial, n, "serial")
		if n.VMID != 0 {
			v.unique(vmids, "VMID", fmt.Sprint(n.VMID), n, "vmid")
			if n.VMID > maxVMID {
				v.probs = append(v.probs, Problem{File: v.fileOf(n, "vmid"), Line: v.lineOf(n, "vmid"), Field: v.fieldOf(n, "vmid"),
					Msg: fmt.Sprintf("VMID %d of %s is past %d, the largest Proxmox accepts", n.VMID, n.Name, maxVMID)})
			}
		}
		ip, _ := netip.ParseAddr(n.IP)
		switch {
		case !v.lan.IsValid():
		case ip == gw:
			v.probs = append(v.probs, Problem{File: v.inv.File, Line: v.lineOf(n, "ip"), Field: n.ipField, Msg: fmt.Sprintf("%s of %s is the gateway's address", ip, n.Name)})
		case !usable(v.lan, ip):
			v.probs = append(v.probs, Problem{File: v.inv.File, Line: v.lineOf(n, "ip"), Field: n.ipField, Msg: fmt.Sprintf("%s of %s is outside the network %s (or its network/broadcast address)", ip, n.Name, v.lan)})
		}
	}
}

func (v *validator) managers() {
	var mgrs []Node
	domains := map[string]bool{}
	for _, n := range v.inv.Nodes {
		domains[n.FailureDomain()] = true
		if n.Role == Manager {
			mgrs = append(mgrs, n)
		}
	}
	if len(v.inv.Nodes) == 0 {
		v.add("", "the inventory describes no nodes: add proxmox.vms, pis.racks or hosts")
		return
	}
	want := v.inv.Lab.Swarm.Managers
	switch {
	case len(mgrs) == 0:
		v.add("swarm.managers", "no node has role manager: give a VM group or rack role: manager")
	case len(mgrs)%2 == 0 || len(mgrs) > 7:
		v.add("swarm.managers", "%d nodes have role manager (%s): use 1, 3, 5 or 7", len(mgrs), names(mgrs))
	case want != 0 && want != len(mgrs):
		v.add("swarm.managers", "says %d, but %d nodes have role manager (%s)", want, len(mgrs), names(mgrs))
	}
	used := map[string]bool{}
	for _, m := range mgrs {
		used[m.FailureDomain()] = true
	}
	if len(mgrs) > 1 && len(used) == 1 && len(domains) > 1 {
		v.add("swarm.managers", "all %d managers are on %s although %d failure domains exist: losing it loses the swarm", len(mgrs), mgrs[0].FailureDomain(), len(domains))
	}
}

func names(ns []Node) string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.Name
	}
	sort.Strings(out)
	return strings.Join(out, ", ")
}

// allDigitsAndDots catches "10.0.0" and "300.1.1.1": not an address, and a
// resolver would turn some of them into one nobody meant.
func allDigitsAndDots(s string) bool {
	return strings.Trim(s, "0123456789.") == ""
}
