package netboot

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// engine runs transfers in an event loop on one OS thread (epoll), the
// way dnsmasq does, instead of a goroutine and the Go netpoller per
// transfer: a block costs one recv, one pread and one send, and one wake-up
// serves every transfer that is ready. A transfer's socket is taken from
// its net.PacketConn (duplicated, the original closed) and owned here.
type engine struct {
	epfd, wake int
	add        chan *xfer
	xfers      map[int]*xfer
	done       chan struct{}
	soonest    time.Time // the earliest deadline of a transfer added since the last scan
}

func newEngine() (*engine, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("tftp: epoll: %w", err)
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("tftp: eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		unix.Close(epfd)
		unix.Close(wake)
		return nil, fmt.Errorf("tftp: epoll: %w", err)
	}
	return &engine{epfd: epfd, wake: wake, add: make(chan *xfer, 64), xfers: map[int]*xfer{}, done: make(chan struct{})}, nil
}

func (e *engine) kick() {
	var one [8]byte
	binary.NativeEndian.PutUint64(one[:], 1)
	unix.Write(e.wake, one[:])
}

// submit hands a started transfer to the engine.
func (e *engine) submit(x *xfer) bool {
	select {
	case <-e.done:
		return false
	default:
	}
	select {
	case e.add <- x:
		e.kick()
		return true
	case <-e.done:
		return false
	}
}

// run is the loop; it returns when ctx ends, ending every transfer. The
// epoll descriptor itself waits in the Go netpoller (it is readable when a
// transfer's socket is), so no thread blocks in epoll_wait and the
// scheduler hands nothing off.
func (e *engine) run(ctx context.Context) {
	defer func() {
		close(e.done)
		for { // a transfer submitted while the loop ended
			select {
			case x := <-e.add:
				x.start = time.Now()
				e.finish(x, context.Canceled)
				continue
			default:
			}
			return
		}
	}()
	defer unix.Close(e.wake)
	unix.SetNonblock(e.epfd, true)
	ep := os.NewFile(uintptr(e.epfd), "tftp-epoll")
	defer ep.Close()
	rc, err := ep.SyscallConn()
	if err != nil {
		return
	}
	stop := context.AfterFunc(ctx, e.kick)
	defer stop()
	events := make([]unix.EpollEvent, 128)
	rbuf := make([]byte, 1024)
	next := time.Now().Add(time.Second)
	e.soonest = never
	var deadline time.Time
	for {
		if !next.Equal(deadline) {
			ep.SetReadDeadline(next)
			deadline = next
		}
		n := 0
		err := rc.Read(func(fd uintptr) bool {
			n, _ = unix.EpollWait(int(fd), events, 0)
			return n > 0
		})
		if err != nil {
			n = 0
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				time.Sleep(10 * time.Millisecond)
			}
		}
		if ctx.Err() != nil {
			for _, x := range e.xfers {
				e.finish(x, ctx.Err())
			}
			return
		}
		now := time.Now()
		for _, ev := range events[:n] {
			fd := int(ev.Fd)
			if fd == e.wake {
				var b [8]byte
				unix.Read(e.wake, b[:])
				e.drainAdds(now)
				continue
			}
			x := e.xfers[fd]
			if x == nil {
				continue
			}
			// One packet per event: a socket with more stays ready
			// (level-triggered) and costs no extra read that finds none.
			m, err := unix.Read(fd, rbuf)
			if err != nil {
				if err != unix.EAGAIN && err != unix.EINTR {
					e.finish(x, fmt.Errorf("%w: %v", errClientGone, err))
				}
				continue
			}
			e.packet(x, rbuf[:m], now)
		}
		if !now.Before(next) || n == 0 {
			next = now.Add(time.Second)
			for _, x := range e.xfers {
				if !now.Before(x.deadline) {
					e.timeout(x, now)
				}
				if x.live && x.deadline.Before(next) {
					next = x.deadline
				}
			}
		}
		if e.soonest.Before(next) {
			next = e.soonest
		}
		e.soonest = never
	}
}

func (e *engine) drainAdds(now time.Time) {
	for {
		select {
		case x := <-e.add:
			if err := unix.EpollCtl(e.epfd, unix.EPOLL_CTL_ADD, x.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(x.fd)}); err != nil {
				x.start = now
				e.xfers[x.fd] = x
				e.finish(x, fmt.Errorf("epoll: %w", err))
				continue
			}
			e.xfers[x.fd] = x
			x.begin(now)
			if x.err != nil {
				e.finish(x, x.err)
				continue
			}
			if x.deadline.Before(e.soonest) {
				e.soonest = x.deadline
			}
		default:
			return
		}
	}
}

func (e *engine) packet(x *xfer, pkt []byte, now time.Time) {
	x.onPacket(pkt, now)
	if x.err != nil || x.complete {
		e.finish(x, x.err)
	}
}

func (e *engine) timeout(x *xfer, now time.Time) {
	x.onTimeout(now)
	if x.err != nil {
		e.finish(x, x.err)
	}
}

func (e *engine) finish(x *xfer, err error) {
	if !x.live {
		return
	}
	x.live = false
	delete(e.xfers, x.fd)
	unix.EpollCtl(e.epfd, unix.EPOLL_CTL_DEL, x.fd, nil) // fails harmlessly once the loop closed it
	unix.Close(x.fd)
	st := x.st
	st.Err = err
	st.Done = x.complete && err == nil
	st.Took = time.Since(x.start)
	if x.finished != nil {
		x.finished(st)
	}
}

// never is a time no deadline reaches.
var never = time.Now().Add(100 * 365 * 24 * time.Hour)

// engines are a server's event loops (Limits.Engines).
type engines struct {
	list []*engine
	mu   sync.Mutex
	next int
}

func startEngines(ctx context.Context, wg *sync.WaitGroup, n int) (*engines, error) {
	es := &engines{}
	for range n {
		e, err := newEngine()
		if err != nil {
			return nil, err
		}
		es.list = append(es.list, e)
		wg.Go(func() { e.run(ctx) })
	}
	return es, nil
}

func (es *engines) pick() *engine {
	es.mu.Lock()
	defer es.mu.Unlock()
	e := es.list[es.next%len(es.list)]
	es.next++
	return e
}

// xfer is one transfer's state: an OACK to be acknowledged, then windows
// of blocks; an ACK inside the window moves it on, a duplicate or stale
// ACK is ignored (no re-send storm), a timeout re-sends from the first
// unacknowledged block, at most retries times in a row.
type xfer struct {
	fd       int
	file     File
	prm      params
	retries  int
	size     int64
	last     uint64 // the last block holds size%blksize bytes, maybe 0
	oack     []byte // nil once acknowledged (or when none)
	base     uint64 // the first block not acknowledged
	end      uint64 // the last block of the window sent
	misses   int
	deadline time.Time
	buf      []byte
	start    time.Time
	live     bool
	complete bool
	err      error
	st       TransferStat
	finished func(TransferStat)
}

// takeSocket takes conn's socket for the engine: connected to remote (the
// kernel then drops other senders' packets), non-blocking; conn is closed.
func takeSocket(conn net.PacketConn, remote netip.AddrPort) (int, error) {
	defer conn.Close()
	sc, ok := conn.(syscallConner)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var cerr error
	if err := rc.Control(func(s uintptr) {
		fd, cerr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if cerr != nil {
		return -1, cerr
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(remote.Port()), Addr: remote.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect to %s: %w", remote, err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

type syscallConner interface {
	SyscallConn() (syscall.RawConn, error)
}

func newXfer(fd int, f File, prm params, retries int, st TransferStat, finished func(TransferStat)) *xfer {
	size := f.Size()
	x := &xfer{fd: fd, file: f, prm: prm, retries: retries, size: size, last: uint64(size/int64(prm.blksize)) + 1,
		base: 1, buf: make([]byte, 4+prm.blksize), st: st, finished: finished, live: true}
	if len(prm.oack) > 0 {
		x.oack = oackPacket(prm.oack)
	}
	return x
}

func (x *xfer) begin(now time.Time) {
	x.start = now
	x.resend(now)
}

func (x *xfer) send(b []byte) {
	if _, err := unix.Write(x.fd, b); err != nil && !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.ECONNREFUSED) && !errors.Is(err, unix.ENOBUFS) {
		x.err = fmt.Errorf("send: %w", err)
	}
}

// resend sends the OACK, or the window from base.
func (x *xfer) resend(now time.Time) {
	x.deadline = now.Add(x.prm.timeout)
	if x.oack != nil {
		x.send(x.oack)
		return
	}
	x.end = min(x.base+uint64(x.prm.window)-1, x.last)
	bs := int64(x.prm.blksize)
	for k := x.base; k <= x.end && x.err == nil; k++ {
		off := int64(k-1) * bs
		n := min(bs, x.size-off)
		binary.BigEndian.PutUint16(x.buf[0:], opDATA)
		binary.BigEndian.PutUint16(x.buf[2:], uint16(k))
		if n > 0 {
			m, err := x.file.ReadAt(x.buf[4:4+n], off)
			if int64(m) < n {
				if err == nil || errors.Is(err, io.EOF) {
					err = io.ErrUnexpectedEOF
				}
				x.send(errorPacket(errUndefined, "read error"))
				x.err = fmt.Errorf("read block %d: %w", k, err)
				return
			}
		}
		x.send(x.buf[:4+n])
	}
}

func (x *xfer) onPacket(pkt []byte, now time.Time) {
	if len(pkt) < 4 {
		return
	}
	switch binary.BigEndian.Uint16(pkt) {
	case opERROR:
		c, m := parseError(pkt)
		x.err = &ClientAbort{Code: c, Msg: m}
	case opACK:
		n := binary.BigEndian.Uint16(pkt[2:])
		if x.oack != nil {
			if n == 0 {
				x.oack, x.misses = nil, 0
				x.resend(now)
			}
			return
		}
		// The absolute block this ACK names, within base-1 .. end.
		k := x.base - 1 + uint64(uint16(n-uint16(x.base-1)))
		if k < x.base || k > x.end {
			return // stale or duplicate: wait on
		}
		x.st.Bytes = min(int64(k)*int64(x.prm.blksize), x.size)
		x.base, x.misses = k+1, 0
		if x.base > x.last {
			x.complete = true
			return
		}
		x.resend(now)
	}
}

func (x *xfer) onTimeout(now time.Time) {
	x.misses++
	if x.misses > x.retries {
		what := "the OACK"
		if x.oack == nil {
			what = fmt.Sprintf("block %d", x.base)
		}
		x.err = fmt.Errorf("%w: no ACK for %s after %d re-sends", errClientGone, what, x.retries)
		return
	}
	x.resend(now)
}
