package netboot

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"golang.org/x/sys/unix"
)

// peer is a transfer's socket before the engine takes it (for refusals),
// connected to the client when it can be.
type peer struct {
	conn   net.PacketConn
	remote netip.AddrPort
	addr   *net.UDPAddr
	udp    *net.UDPConn // set when connected
}

func newPeer(conn net.PacketConn, remote netip.AddrPort) *peer {
	p := &peer{conn: conn, remote: remote, addr: net.UDPAddrFromAddrPort(remote)}
	if uc, ok := conn.(*net.UDPConn); ok && remote.Addr().Is4() {
		if rc, err := uc.SyscallConn(); err == nil {
			var cerr error
			sa := &unix.SockaddrInet4{Port: int(remote.Port()), Addr: remote.Addr().As4()}
			if err := rc.Control(func(fd uintptr) { cerr = unix.Connect(int(fd), sa) }); err == nil && cerr == nil {
				p.udp = uc
			}
		}
	}
	return p
}

func (p *peer) send(b []byte) error {
	if p.udp != nil {
		_, err := p.udp.Write(b)
		return err
	}
	_, err := p.conn.WriteTo(b, p.addr)
	return err
}

// errClientGone: the client stopped answering.
var errClientGone = errors.New("the client stopped answering")

// ClientAbort is an ERROR packet from the client (the Pi's bootloader
// sends one after an OACK that told it the size it wanted).
type ClientAbort struct {
	Code uint16
	Msg  string
}

func (e *ClientAbort) Error() string {
	return fmt.Sprintf("the client ended the transfer: error %d %q", e.Code, e.Msg)
}
