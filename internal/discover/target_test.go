package discover

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		in    string
		force bool
		want  string // the prefix, or a part of the error
		ok    bool
	}{
		{"192.168.10.0/24", false, "192.168.10.0/24", true},
		{"127.20.0.0/16", false, "127.20.0.0/16", true},
		{" 10.1.2.3 ", false, "10.1.2.3/32", true},
		{"10.0.0.0/15", false, "131072 addresses: wider than a /16", false},
		{"10.0.0.0/8", false, "refused without --force", false},
		{"10.0.0.0/8", true, "10.0.0.0/8", true},
		{"0.0.0.0/0", false, "4294967296 addresses", false},
		{"192.168.10.5/24", false, "host bits are set; the network is 192.168.10.0/24", false},
		{"fd00::/64", false, "only IPv4", false},
		{"lab", false, "not an IPv4 address or CIDR range", false},
		{"10.0.0.0/33", false, "not an IPv4 CIDR range", false},
	} {
		p, err := ParseRange(c.in, c.force)
		if c.ok {
			if err != nil || p.String() != c.want {
				t.Errorf("ParseRange(%q, %v) = %v, %v; want %s", c.in, c.force, p, err, c.want)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("ParseRange(%q, %v) error = %v; want one containing %q", c.in, c.force, err, c.want)
		}
	}
}

func TestParsePorts(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []uint16
		err  string
	}{
		{"22,2375,2377", []uint16{22, 2375, 2377}, ""},
		{" 22 , 80", []uint16{22, 80}, ""},
		{"22,22", nil, "port 22 is listed twice"},
		{"0", nil, `port "0"`},
		{"65536", nil, `port "65536"`},
		{"ssh", nil, `port "ssh": a TCP port is a number from 1 to 65535`},
		{"22,", nil, `port ""`},
	} {
		got, err := ParsePorts(c.in)
		if c.err == "" {
			if err != nil || !slices.Equal(got, c.want) {
				t.Errorf("ParsePorts(%q) = %v, %v; want %v", c.in, got, err, c.want)
			}
		} else if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("ParsePorts(%q) error = %v; want one containing %q", c.in, err, c.err)
		}
	}
}

func TestAddrAt(t *testing.T) {
	p := netip.MustParsePrefix("10.0.254.0/23")
	for i, want := range map[uint64]string{0: "10.0.254.0", 255: "10.0.254.255", 256: "10.0.255.0", 511: "10.0.255.255"} {
		if got := netip.AddrFrom4(addrAt(p, i)).String(); got != want {
			t.Errorf("addrAt(%s, %d) = %s, want %s", p, i, got, want)
		}
	}
	if size(p) != 512 {
		t.Errorf("size(%s) = %d", p, size(p))
	}
}
