package netboot

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// TestAnswerRequests: which REQUESTs each mode answers (no network).
func TestAnswerRequests(t *testing.T) {
	inv := testLab(t)
	boards, err := NewBoards(inv, BySerial)
	if err != nil {
		t.Fatal(err)
	}
	us := netip.MustParseAddr("10.9.9.1")
	hw, _ := net.ParseMAC(macR1)
	request := func(server net.IP) *dhcpv4.DHCPv4 {
		m, err := dhcpv4.New(dhcpv4.WithHwAddr(hw), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier(piClass)),
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.IPv4(192, 168, 11, 1))))
		if err != nil {
			t.Fatal(err)
		}
		if server != nil {
			m.UpdateOption(dhcpv4.OptServerIdentifier(server))
		}
		return m
	}
	tests := []struct {
		name   string
		mode   DHCPMode
		server net.IP
		want   dhcpv4.MessageType // 0: no answer
		why    string
	}{
		{"proxy, to us", DHCPProxy, net.IP(us.AsSlice()), dhcpv4.MessageTypeAck, ""},
		{"proxy, to the lab's server", DHCPProxy, net.IPv4(10, 9, 9, 254), 0, "a request to server"},
		{"proxy, naming no server", DHCPProxy, nil, 0, "naming no server"},
		{"full, naming no server", DHCPFull, nil, dhcpv4.MessageTypeAck, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &DHCPServer{Mode: tt.mode, ServerIP: us, Boards: boards, Inv: inv}
			reply, _, why := s.answer(request(tt.server))
			switch {
			case tt.want == 0 && (reply != nil || !strings.Contains(why, tt.why)):
				t.Errorf("answered %v (%q), want no answer because %q", reply, why, tt.why)
			case tt.want != 0 && (reply == nil || reply.MessageType() != tt.want):
				t.Errorf("answer %v (%q), want %s", reply, why, tt.want)
			}
		})
	}
}

func TestParseDHCPMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want DHCPMode
		err  string
	}{
		{"proxy", DHCPProxy, ""},
		{"full", DHCPFull, ""},
		{"off", DHCPOff, ""},
		{"", "", `"": use proxy, full or off`},
		{"Proxy", "", `"Proxy": use proxy, full or off`},
	} {
		got, err := ParseDHCPMode(tc.in)
		if got != tc.want || (err == nil) != (tc.err == "") || (err != nil && err.Error() != tc.err) {
			t.Errorf("ParseDHCPMode(%q) = %q, %v; want %q, %q", tc.in, got, err, tc.want, tc.err)
		}
	}
}
