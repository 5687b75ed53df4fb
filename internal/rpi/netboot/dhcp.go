package netboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"golang.org/x/sys/unix"

	"github.com/fhlab/provision/internal/inventory"
)

// DHCPMode is how provision answers DHCP.
type DHCPMode string

// The DHCP modes.
const (
	// DHCPProxy answers only the Pi bootloader, with where to boot from
	// and no address, beside the lab's own DHCP server (proxy DHCP).
	DHCPProxy DHCPMode = "proxy"
	// DHCPFull also hands each netbooted Pi its inventory address, for an
	// isolated boot network without another DHCP server.
	DHCPFull DHCPMode = "full"
	// DHCPOff answers nothing (the lab's DHCP server sends option 43/66).
	DHCPOff DHCPMode = "off"
)

// ParseDHCPMode returns the mode named s: proxy, full or off.
func ParseDHCPMode(s string) (DHCPMode, error) {
	switch m := DHCPMode(s); m {
	case DHCPProxy, DHCPFull, DHCPOff:
		return m, nil
	}
	return "", fmt.Errorf("%q: use proxy, full or off", s)
}

// DHCPServer answers the Pi bootloader's DHCP requests (a PXE client with
// a Raspberry Pi MAC, or a MAC of the inventory) with option 43 "Raspberry
// Pi Boot" and the TFTP server's address; in full mode with the node's
// inventory address as a static lease as well. Anything else is ignored;
// a malformed packet is logged and ignored.
type DHCPServer struct {
	Mode     DHCPMode
	ServerIP netip.Addr // this server's address on the boot network (option 54)
	TFTPIP   netip.Addr // the TFTP server's address (siaddr, option 66); default ServerIP
	Boards   *Boards
	Inv      *inventory.Inventory // full mode: addresses, mask, gateway, DNS
	Lease    time.Duration        // full mode; default 1 hour
	Events   EventSink
	Log      *slog.Logger
}

// ListenDHCP opens the DHCP server socket on port of every address,
// bound to interface ifname (so broadcast answers leave through it).
func ListenDHCP(ctx context.Context, ifname string, port int) (net.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range [][2]int{{unix.SO_BROADCAST, 1}, {unix.SO_REUSEADDR, 1}} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o[0], o[1]); serr != nil {
					return
				}
			}
			if ifname != "" {
				serr = unix.BindToDevice(int(fd), ifname)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	conn, err := lc.ListenPacket(ctx, "udp4", fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		return nil, fmt.Errorf("dhcp: listen on port %d of %s: %w", port, ifname, err)
	}
	return conn, nil
}

// InterfaceOf names the interface that holds addr.
func InterfaceOf(addr netip.Addr) (string, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return "", err
	}
	for _, ifc := range ifs {
		addrs, _ := ifc.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(ipn.IP); ok && ip.Unmap() == addr {
					return ifc.Name, nil
				}
			}
		}
	}
	return "", fmt.Errorf("no interface has address %s", addr)
}

// Serve answers requests on conn until ctx ends.
func (s *DHCPServer) Serve(ctx context.Context, conn net.PacketConn) error {
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if !s.ServerIP.Is4() {
		return errors.New("dhcp: the server's IPv4 address is not set")
	}
	if s.Mode == DHCPFull && s.Inv == nil {
		return errors.New("dhcp: full mode needs the inventory's addresses")
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	buf := make([]byte, 4096)
	for {
		n, src, err := conn.ReadFrom(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("dhcp: %w", err)
			}
			log.Warn("dhcp: read", "err", err)
			continue
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			log.Warn("dhcp: ignored a malformed packet", "from", src, "bytes", n, "err", err)
			continue
		}
		reply, ev, why := s.answer(req)
		if reply == nil {
			log.Debug("dhcp: not answered", "from", src, "mac", req.ClientHWAddr, "type", req.MessageType(), "why", why)
			continue
		}
		to := replyAddr(req)
		if _, err := conn.WriteTo(reply.ToBytes(), to); err != nil {
			log.Warn("dhcp: send the answer", "to", to, "mac", req.ClientHWAddr, "err", err)
			continue
		}
		log.Info("dhcp: answered the Pi bootloader", "node", ev.Node, "mac", ev.MAC, "type", reply.MessageType(), "mode", s.Mode)
		if s.Events != nil {
			s.Events.Record(ev)
		}
	}
}

// answer decides about one request: the reply and its event, or why none.
func (s *DHCPServer) answer(req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, Event, string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, Event{}, "not a request"
	}
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover, dhcpv4.MessageTypeRequest:
	default:
		return nil, Event{}, "message type " + req.MessageType().String()
	}
	if !isPXEBootloader(req) {
		return nil, Event{}, "not a PXE client (option 60 " + req.ClassIdentifier() + ")"
	}
	hw := req.ClientHWAddr
	n, known := s.Boards.ByMAC(hw)
	if !known && !IsPiMAC(hw) {
		return nil, Event{}, "not a Raspberry Pi MAC"
	}
	ev := Event{Kind: EventDHCP, MAC: hw.String()}
	if known {
		ev.Node, ev.Serial = n.Name, s.Boards.Dir(n)
		if n.Boot != inventory.BootNetboot {
			return nil, Event{}, n.Name + " boots from " + n.Boot
		}
	}
	// A REQUEST for another server (the lab's DHCP server) is not ours;
	// in proxy mode neither is one naming no server (the client is
	// renewing or confirming the lab server's lease: an answer without an
	// address would only confuse it).
	if req.MessageType() == dhcpv4.MessageTypeRequest {
		id := req.ServerIdentifier()
		if id != nil && !id.Equal(net.IP(s.ServerIP.AsSlice())) {
			return nil, Event{}, "a request to server " + id.String()
		}
		if id == nil && s.Mode == DHCPProxy {
			return nil, Event{}, "proxy DHCP: a request naming no server"
		}
	}
	tftp := s.TFTPIP
	if !tftp.IsValid() {
		tftp = s.ServerIP
	}
	var l *lease
	if s.Mode == DHCPFull {
		if !known {
			return nil, Event{}, "full DHCP: not in the inventory"
		}
		var err error
		if l, err = s.leaseOf(n); err != nil {
			return nil, Event{}, err.Error()
		}
		ev.IP = l.IP.String()
		if req.MessageType() == dhcpv4.MessageTypeRequest {
			want := req.RequestedIPAddress()
			if want == nil || want.IsUnspecified() {
				want = req.ClientIPAddr
			}
			if !want.Equal(net.IP(l.IP.AsSlice())) {
				nak, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
					dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(s.ServerIP.AsSlice()))))
				if err != nil {
					return nil, Event{}, err.Error()
				}
				ev.Detail = "NAK: asked for " + want.String()
				return nak, ev, ""
			}
		}
	}
	reply, err := bootReply(req, s.ServerIP, tftp, l)
	if err != nil {
		return nil, Event{}, err.Error()
	}
	ev.Detail = string(s.Mode) + " " + reply.MessageType().String()
	return reply, ev, ""
}

func (s *DHCPServer) leaseOf(n *inventory.Node) (*lease, error) {
	ip, err := netip.ParseAddr(n.IP)
	if err != nil {
		return nil, fmt.Errorf("%s: address %q: %w", n.Name, n.IP, err)
	}
	lan, err := netip.ParsePrefix(s.Inv.Lab.Network.CIDR)
	if err != nil {
		return nil, fmt.Errorf("network.cidr: %w", err)
	}
	l := &lease{IP: ip, Mask: net.CIDRMask(lan.Bits(), 32), Time: s.Lease}
	if l.Time <= 0 {
		l.Time = time.Hour
	}
	if gw, err := netip.ParseAddr(s.Inv.Lab.Network.Gateway); err == nil {
		l.Gateway = gw
	}
	for _, d := range s.Inv.Lab.Network.DNS {
		if a, err := netip.ParseAddr(d); err == nil {
			l.DNS = append(l.DNS, a)
		}
	}
	return l, nil
}
