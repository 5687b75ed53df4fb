package netboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// File is what a Handler opens for one transfer.
type File interface {
	io.ReaderAt
	Size() int64
}

// Handler opens the file a read request names, for the client at remote.
// An error is sent to the client: a *Refusal with its code and message,
// anything else as "file not found".
type Handler interface {
	Open(ctx context.Context, req Request, remote netip.AddrPort) (File, error)
}

// Refusal is a Handler's answer that a request is refused: Msg goes to the
// client in an ERROR packet with Code; Err (if any) is only logged.
type Refusal struct {
	Code uint16
	Msg  string
	Err  error
}

func (r *Refusal) Error() string {
	if r.Err != nil {
		return r.Msg + ": " + r.Err.Error()
	}
	return r.Msg
}

func (r *Refusal) Unwrap() error { return r.Err }

// ListenFunc opens a UDP socket (tests open theirs in a network namespace).
type ListenFunc func(ctx context.Context, network, address string) (net.PacketConn, error)

// DefaultListen listens in the process's network namespace.
func DefaultListen(ctx context.Context, network, address string) (net.PacketConn, error) {
	var lc net.ListenConfig
	return lc.ListenPacket(ctx, network, address)
}

// TransferStat says how one transfer ended.
type TransferStat struct {
	Remote   netip.AddrPort
	Filename string
	Size     int64 // the file's size; 0 when it was not opened
	Bytes    int64 // bytes the client acknowledged
	Blksize  int
	Window   int
	Took     time.Duration
	Done     bool  // the client acknowledged the last block
	Err      error // refused, aborted by the client, dropped, or an I/O error
}

// TFTPServer serves read requests (RFC 1350) with option negotiation (RFC
// 2347: blksize 2348, tsize and timeout 2349, windowsize 7440). Each
// transfer runs on a socket of its own (a new port, the RFC's transfer
// identifier), with one packet buffer, and ends when the last block is
// acknowledged, the client sends an ERROR, or the client has not answered
// Limits.Retries re-sends. Write requests are refused.
type TFTPServer struct {
	Handler Handler
	Limits  Limits
	Listen  ListenFunc
	Log     *slog.Logger
	// Done, if set, is called after every request, from its goroutine.
	Done func(TransferStat)
}

// Serve answers requests arriving on conn until ctx ends, then closes conn
// and waits for the transfers under way to stop.
func (s *TFTPServer) Serve(ctx context.Context, conn net.PacketConn) error {
	lim := s.Limits.withDefaults()
	listen := s.Listen
	if listen == nil {
		listen = DefaultListen
	}
	log := s.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	engines, err := startEngines(ctx, &wg, lim.Engines)
	if err != nil {
		conn.Close()
		return err
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	// The address each request was sent to: the transfer answers from it.
	var pc *ipv4.PacketConn
	if _, ok := conn.(*net.UDPConn); ok {
		pc = ipv4.NewPacketConn(conn)
		if err := pc.SetControlMessage(ipv4.FlagDst, true); err != nil {
			pc = nil
		}
	}
	fallback := netip.IPv4Unspecified()
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok {
		if a, ok := netip.AddrFromSlice(ua.IP); ok {
			fallback = a.Unmap()
		}
	}
	slots := make(chan struct{}, lim.MaxTransfers)
	buf := make([]byte, maxRequest+1)
	for {
		var (
			n    int
			src  net.Addr
			cm   *ipv4.ControlMessage
			err  error
			dest = fallback
		)
		if pc != nil {
			n, cm, src, err = pc.ReadFrom(buf)
		} else {
			n, src, err = conn.ReadFrom(buf)
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			if errors.Is(err, net.ErrClosed) {
				return fmt.Errorf("tftp: %w", err)
			}
			log.Warn("tftp: read a request", "err", err)
			continue
		}
		if cm != nil && cm.Dst != nil {
			if a, ok := netip.AddrFromSlice(cm.Dst); ok && !a.IsMulticast() && a.Unmap() != netip.IPv4Unspecified() {
				dest = a.Unmap()
			}
		}
		ua, ok := src.(*net.UDPAddr)
		if !ok {
			continue
		}
		remote := ua.AddrPort()
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		pkt := append([]byte(nil), buf[:n]...)
		select {
		case slots <- struct{}{}:
		default:
			log.Warn("tftp: too many transfers at once: refused", "client", remote, "max", lim.MaxTransfers)
			conn.WriteTo(errorPacket(errUndefined, "server busy, try again"), src)
			continue
		}
		finished := func(st TransferStat) {
			<-slots
			if s.Done != nil {
				s.Done(st)
			}
		}
		wg.Go(func() {
			if st, handed := s.transfer(ctx, lim, listen, log, engines, dest, remote, pkt, finished); !handed {
				finished(st)
			}
		})
	}
}

// transfer answers one request from a new socket: a refusal here, a file
// by handing the socket to an engine (handed: finished is called when the
// transfer ends).
func (s *TFTPServer) transfer(ctx context.Context, lim Limits, listen ListenFunc, log *slog.Logger, es *engines, local netip.Addr, remote netip.AddrPort, pkt []byte, finished func(TransferStat)) (st TransferStat, handed bool) {
	start := time.Now()
	st.Remote = remote
	defer func() { st.Took = time.Since(start) }()
	conn, err := listen(ctx, "udp4", netip.AddrPortFrom(local, 0).String())
	if err != nil {
		st.Err = fmt.Errorf("open a transfer socket on %s: %w", local, err)
		log.Warn("tftp: "+st.Err.Error(), "client", remote)
		return st, false
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	p := newPeer(conn, remote)

	req, err := ParseRequest(pkt)
	if err != nil {
		st.Err = fmt.Errorf("malformed request: %w", err)
		log.Warn("tftp: refused a malformed request", "client", remote, "err", err)
		p.send(errorPacket(errIllegalOp, "malformed request: "+err.Error()))
		return st, false
	}
	st.Filename = req.Filename
	refuse := func(code uint16, msg string, err error) (TransferStat, bool) {
		st.Err = &Refusal{Code: code, Msg: msg, Err: err}
		p.send(errorPacket(code, msg))
		return st, false
	}
	switch {
	case req.Write:
		log.Warn("tftp: refused a write request", "client", remote, "file", req.Filename)
		return refuse(errAccess, "write requests are refused: this server only serves boot files", nil)
	case req.Mode != "octet":
		log.Warn("tftp: refused a transfer mode", "client", remote, "file", req.Filename, "mode", req.Mode)
		return refuse(errUndefined, "mode "+req.Mode+" is not supported: use octet (binary)", nil)
	}
	f, err := s.Handler.Open(ctx, req, remote)
	if err != nil {
		var r *Refusal
		if errors.As(err, &r) {
			st.Err = err
			p.send(errorPacket(r.Code, r.Msg))
			return st, false
		}
		return refuse(errNotFound, "file not found", err)
	}
	st.Size = f.Size()
	prm := negotiate(req, st.Size, lim)
	st.Blksize, st.Window = prm.blksize, prm.window
	fd, err := takeSocket(conn, remote)
	if err != nil {
		st.Err = fmt.Errorf("transfer socket: %w", err)
		log.Warn("tftp: "+st.Err.Error(), "client", remote)
		return st, false
	}
	if !es.pick().submit(newXfer(fd, f, prm, lim.Retries, st, finished)) {
		unix.Close(fd)
		st.Err = ctx.Err()
		return st, false
	}
	return st, true
}
