package inventory

import (
	"net/netip"
	"net/url"
)

// hostArchs are the Debian architectures an existing host may have: the
// ones the lab's packages (and its mirror) are built for.
var hostArchs = map[string]bool{"amd64": true, "arm64": true}

// expandHosts turns each entry of hosts into one node. Names and addresses
// are checked for duplicates against every other node in validate.
func (inv *Inventory) expandHosts() Problems {
	var probs Problems
	for i, h := range inv.Lab.Hosts {
		path := index("hosts", i)
		if len(inv.Nodes) >= maxNodes {
			return append(probs, inv.problem(path, "more than %d nodes", maxNodes))
		}
		if len(h.Name) > 63 || !namePattern.MatchString(h.Name) {
			probs = append(probs, inv.problem(path+".name", "%q is not a valid hostname (lower-case letters, digits and '-', at most 63)", h.Name))
			continue
		}
		ip, err := netip.ParseAddr(h.Address)
		if err != nil || !ip.Is4() {
			probs = append(probs, inv.problem(path+".address", "%q is not an IPv4 address (the swarm advertises it, so a host name will not do)", h.Address))
			continue
		}
		n := Node{
			Name: h.Name, Kind: KindHost, Role: h.Role, IP: ip.String(), Arch: h.Arch,
			SSHUser: h.SSHUser, SSHPort: h.SSHPort,
			Source:  Pos{File: inv.File, Line: inv.lines[path+".name"]},
			ipField: path + ".address", field: path,
		}
		n.Labels = nodeLabels(n, h.Labels)
		inv.Nodes = append(inv.Nodes, n)
	}
	return probs
}

// hosts checks the fields of each existing host that expansion does not.
func (v *validator) hosts() {
	for i, h := range v.inv.Lab.Hosts {
		path := index("hosts", i)
		if h.Role != Manager && h.Role != Worker {
			v.add(path+".role", "%q: use manager or worker", h.Role)
		}
		if !hostArchs[h.Arch] {
			v.add(path+".arch", "%q: use amd64 or arm64 (Debian's name for the machine's architecture)", h.Arch)
		}
		// root is allowed here (unlike ssh.user, which provision creates):
		// an existing machine may only be reachable as root.
		if !userName.MatchString(h.SSHUser) {
			v.add(path+".sshUser", "%q is not a login name (lower-case letters, digits, '_' and '-')", h.SSHUser)
		}
		if h.SSHPort < 1 || h.SSHPort > 65535 {
			v.add(path+".sshPort", "%d is not a TCP port", h.SSHPort)
		}
		v.labels(path+".labels", h.Labels)
	}
}

// mirror checks the lab mirror's URL: plain HTTP or HTTPS to a host, no
// credentials (apt would log them), no query.
func (v *validator) mirror() {
	m := v.inv.Lab.Mirror
	if m == nil {
		return
	}
	u, err := url.Parse(m.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "":
		v.add("mirror.url", "%q is not an http URL like http://192.168.10.1:8081/", m.URL)
	case u.RawQuery != "" || u.Fragment != "":
		v.add("mirror.url", "%q: a repository URL has no query or fragment", m.URL)
	}
}
