package netboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// peer is a transfer's socket, connected to the client when it can be (the
// kernel then drops packets from other ports, and each send skips the
// address lookup).
type peer struct {
	conn      net.PacketConn
	remote    netip.AddrPort
	addr      *net.UDPAddr
	udp       *net.UDPConn // set when connected
	buf, recv []byte
}

func newPeer(conn net.PacketConn, remote netip.AddrPort) *peer {
	p := &peer{conn: conn, remote: remote, addr: net.UDPAddrFromAddrPort(remote), recv: make([]byte, 516)}
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

// read waits until deadline for a packet from the client.
func (p *peer) read(deadline time.Time) ([]byte, error) {
	if err := p.conn.SetReadDeadline(deadline); err != nil {
		return nil, err
	}
	for {
		if p.udp != nil {
			n, err := p.udp.Read(p.recv)
			if err != nil {
				return nil, err
			}
			return p.recv[:n], nil
		}
		n, src, err := p.conn.ReadFrom(p.recv)
		if err != nil {
			return nil, err
		}
		if ua, ok := src.(*net.UDPAddr); ok && ua.AddrPort().Addr().Unmap() == p.remote.Addr() && ua.AddrPort().Port() == p.remote.Port() {
			return p.recv[:n], nil
		}
		p.conn.WriteTo(errorPacket(errUnknownTID, "unknown transfer ID"), src)
	}
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

// sendFile sends f with the negotiated parameters: an OACK first when any
// option was granted, then windows of blocks; an ACK inside the window
// moves it on; a duplicate or stale ACK is ignored (no re-send storm); a
// timeout re-sends the window from the first unacknowledged block, at most
// retries times in a row. It returns the bytes acknowledged and whether
// the last block was.
func (p *peer) sendFile(f File, prm params, retries int) (int64, bool, error) {
	size := f.Size()
	bs := int64(prm.blksize)
	last := uint64(size/bs) + 1 // the last block holds size%bs bytes, maybe 0
	p.buf = make([]byte, 4+prm.blksize)
	acked := func(k uint64) int64 { return min(int64(k)*bs, size) }

	if len(prm.oack) > 0 {
		oack := oackPacket(prm.oack)
		ok := false
		for try := 0; try <= retries && !ok; try++ {
			if err := p.send(oack); err != nil {
				return 0, false, fmt.Errorf("send OACK: %w", err)
			}
			deadline := time.Now().Add(prm.timeout)
			for {
				pkt, err := p.read(deadline)
				if isTimeout(err) {
					break
				}
				if err != nil {
					return 0, false, err
				}
				if len(pkt) >= 4 && binary.BigEndian.Uint16(pkt) == opERROR {
					c, m := parseError(pkt)
					return 0, false, &ClientAbort{Code: c, Msg: m}
				}
				if len(pkt) >= 4 && binary.BigEndian.Uint16(pkt) == opACK && binary.BigEndian.Uint16(pkt[2:]) == 0 {
					ok = true
					break
				}
			}
		}
		if !ok {
			return 0, false, errClientGone
		}
	}

	base := uint64(1) // the first block not acknowledged
	misses := 0
	for base <= last {
		end := min(base+uint64(prm.window)-1, last)
		for k := base; k <= end; k++ {
			if err := p.sendBlock(f, k, bs, size); err != nil {
				return acked(base - 1), false, err
			}
		}
		deadline := time.Now().Add(prm.timeout)
		for {
			pkt, err := p.read(deadline)
			if isTimeout(err) {
				misses++
				if misses > retries {
					return acked(base - 1), false, fmt.Errorf("%w: no ACK for block %d after %d re-sends", errClientGone, base, retries)
				}
				break
			}
			if err != nil {
				return acked(base - 1), false, err
			}
			if len(pkt) < 4 {
				continue
			}
			switch binary.BigEndian.Uint16(pkt) {
			case opERROR:
				c, m := parseError(pkt)
				return acked(base - 1), false, &ClientAbort{Code: c, Msg: m}
			case opACK:
				n := binary.BigEndian.Uint16(pkt[2:])
				// The absolute block this ACK names, within base-1 .. end.
				k := base - 1 + uint64(uint16(n-uint16(base-1)))
				if k < base || k > end {
					continue // stale or duplicate: wait on
				}
				base, misses = k+1, 0
			default:
				continue
			}
			break
		}
	}
	return size, true, nil
}

func (p *peer) sendBlock(f File, k uint64, bs, size int64) error {
	off := int64(k-1) * bs
	n := min(bs, size-off)
	binary.BigEndian.PutUint16(p.buf[0:], opDATA)
	binary.BigEndian.PutUint16(p.buf[2:], uint16(k))
	if n > 0 {
		m, err := f.ReadAt(p.buf[4:4+n], off)
		if int64(m) < n {
			if err == nil || errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			p.send(errorPacket(errUndefined, "read error"))
			return fmt.Errorf("read block %d: %w", k, err)
		}
	}
	if err := p.send(p.buf[:4+n]); err != nil && !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("send block %d: %w", k, err)
	}
	return nil
}

func isTimeout(err error) bool {
	return err != nil && errors.Is(err, os.ErrDeadlineExceeded)
}
