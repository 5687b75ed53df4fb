package discover

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// MaxPrefixBits is the widest range swept without Force: a /16 is 65,536
// addresses.
const MaxPrefixBits = 16

// DefaultPorts are SSH, the Docker Engine API without TLS, and the swarm
// manager port.
var DefaultPorts = []uint16{22, 2375, 2377}

// ParseRange parses an IPv4 range in CIDR notation ("192.168.10.0/23"; a
// bare address is its /32). A range wider than a /16 is refused unless
// force is set; host bits are refused with the network meant.
func ParseRange(s string, force bool) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	var p netip.Prefix
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return p, fmt.Errorf("range %q: not an IPv4 address or CIDR range (like 192.168.10.0/24)", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	} else {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("range %q: not an IPv4 CIDR range (like 192.168.10.0/24)", s)
		}
	}
	if !p.Addr().Is4() {
		return p, fmt.Errorf("range %q: only IPv4 ranges can be swept", s)
	}
	if p.Masked() != p {
		return p, fmt.Errorf("range %q: host bits are set; the network is %s", s, p.Masked())
	}
	if p.Bits() < MaxPrefixBits && !force {
		return p, fmt.Errorf("range %s holds %d addresses: wider than a /%d (%d addresses), refused without --force", p, uint64(1)<<(32-p.Bits()), MaxPrefixBits, 1<<(32-MaxPrefixBits))
	}
	return p, nil
}

// ParsePorts parses a comma-separated list of TCP ports ("22,2375,2377").
// Duplicates are refused.
func ParsePorts(s string) ([]uint16, error) {
	var ports []uint16
	seen := map[uint16]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		n, err := strconv.ParseUint(f, 10, 16)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("port %q: a TCP port is a number from 1 to 65535", f)
		}
		if seen[uint16(n)] {
			return nil, fmt.Errorf("port %d is listed twice", n)
		}
		seen[uint16(n)] = true
		ports = append(ports, uint16(n))
	}
	return ports, nil
}

// size is the number of addresses in p.
func size(p netip.Prefix) uint64 { return uint64(1) << (32 - p.Bits()) }

// addrAt is the i-th address of p.
func addrAt(p netip.Prefix, i uint64) [4]byte {
	b := p.Addr().As4()
	v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	v += uint32(i)
	return [4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
