package netboot

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
)

// PXEMenuItem is the boot menu item the Pi bootloader looks for in option
// 43 (its EEPROM setting PXE_OPTION43, default "Raspberry Pi Boot").
const PXEMenuItem = "Raspberry Pi Boot"

// piOUIs are the Raspberry Pi MAC prefixes (Raspberry Pi Foundation
// b8:27:eb; Raspberry Pi Trading dc:a6:32, e4:5f:01, d8:3a:dd, 28:cd:c1,
// 2c:cf:67), as tinkerbell/smee and piserver filter them.
var piOUIs = [][3]byte{
	{0xb8, 0x27, 0xeb}, {0xdc, 0xa6, 0x32}, {0xe4, 0x5f, 0x01},
	{0xd8, 0x3a, 0xdd}, {0x28, 0xcd, 0xc1}, {0x2c, 0xcf, 0x67},
}

// IsPiMAC reports whether hw has a Raspberry Pi OUI.
func IsPiMAC(hw net.HardwareAddr) bool {
	if len(hw) != 6 {
		return false
	}
	for _, o := range piOUIs {
		if bytes.Equal(hw[:3], o[:]) {
			return true
		}
	}
	return false
}

// option43 is the PXE vendor option the bootloader accepts (Raspberry Pi
// documentation, boot-net.adoc capture): discovery control 3, menu prompt
// "PXE", one menu item of type 0 named PXEMenuItem, end.
func option43(item string) []byte {
	b := []byte{6, 1, 3, 10, 4, 0, 'P', 'X', 'E', 9, byte(3 + len(item)), 0, 0, byte(len(item))}
	b = append(b, item...)
	return append(b, 0xff)
}

// isPXEBootloader reports whether req is a PXE client's request (option
// 60 starting "PXEClient", as the Pi bootloader sends
// "PXEClient:Arch:00000:UNDI:002001").
func isPXEBootloader(req *dhcpv4.DHCPv4) bool {
	return strings.HasPrefix(req.ClassIdentifier(), "PXEClient")
}

// lease is what a full DHCP reply hands out.
type lease struct {
	IP      netip.Addr
	Mask    net.IPMask
	Gateway netip.Addr
	DNS     []netip.Addr
	Time    time.Duration
}

// bootReply builds the answer to req: an OFFER to a DISCOVER, an ACK to a
// REQUEST; with l, a full lease, without it (proxy DHCP) no address, only
// where to boot from.
func bootReply(req *dhcpv4.DHCPv4, server, tftp netip.Addr, l *lease) (*dhcpv4.DHCPv4, error) {
	var typ dhcpv4.MessageType
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest, dhcpv4.MessageTypeInform:
		typ = dhcpv4.MessageTypeAck
	default:
		return nil, fmt.Errorf("no answer to a DHCP %s", req.MessageType())
	}
	mods := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ),
		dhcpv4.WithServerIP(net.IP(tftp.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(server.AsSlice()))),
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		dhcpv4.WithOption(dhcpv4.OptTFTPServerName(tftp.String())),
		dhcpv4.WithGeneric(dhcpv4.OptionVendorSpecificInformation, option43(PXEMenuItem)),
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	}
	if l != nil {
		mods = append(mods,
			dhcpv4.WithYourIP(net.IP(l.IP.AsSlice())),
			dhcpv4.WithNetmask(l.Mask),
			dhcpv4.WithLeaseTime(uint32(l.Time/time.Second)),
		)
		if l.Gateway.IsValid() {
			mods = append(mods, dhcpv4.WithRouter(net.IP(l.Gateway.AsSlice())))
		}
		var dns []net.IP
		for _, d := range l.DNS {
			dns = append(dns, net.IP(d.AsSlice()))
		}
		if len(dns) > 0 {
			mods = append(mods, dhcpv4.WithDNS(dns...))
		}
	}
	return dhcpv4.NewReplyFromRequest(req, mods...)
}

// replyAddr is where a reply to req goes: the relay that forwarded it, the
// client's own address when it has one, else broadcast (a booting Pi has
// no address yet).
func replyAddr(req *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case req.GatewayIPAddr != nil && !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: 67}
	case req.ClientIPAddr != nil && !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: 68}
	default:
		return &net.UDPAddr{IP: net.IPv4bcast, Port: 68}
	}
}
