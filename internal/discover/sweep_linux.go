package discover

import (
	"context"
	"fmt"
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The sweep's event loop. Per address it costs two connect(2) calls when
// the port is closed: the first sends the SYN and returns EINPROGRESS; the
// second, made after the batch, returns the outcome if the answer has come
// (ECONNREFUSED, which also leaves the socket unconnected and ready for the
// next address, or EISCONN) or EALREADY, and only then is the socket put in
// epoll with a deadline. On a LAN most answers come within the batch, so
// the costs are the kernel's own: no goroutine, file or timer per address,
// no epoll_ctl for the common case, no TIME_WAIT (SO_LINGER 0).

// batchSize is the most attempts started before the second look. Small
// batches find the sockets still in the CPU's cache: 16 cost about a fifth
// less CPU than 256 on loopback (bench/discover).
const batchSize = 16

// maxWait bounds one epoll_wait so a cancelled context is noticed.
const maxWait = 50 * time.Millisecond

// fdMargin is what the sweep leaves of the open-file limit to the rest
// of the process.
const fdMargin = 64

type sock struct {
	target     uint64 // index of the attempt (address × port)
	seq        uint32 // bumped on every attempt, to spot stale FIFO entries
	pending    bool
	registered bool // in epoll (EPOLLONESHOT, re-armed with MOD)
}

type waiting struct {
	fd       int
	seq      uint32
	deadline time.Duration // since the start
}

type loop struct {
	o       Options
	p       *prober
	epfd    int
	start   time.Time
	stats   Stats
	socks   []sock // by fd
	free    []int  // unconnected sockets ready for the next attempt
	fifo    []waiting
	head    int
	inUse   int // sockets in flight (pending or in the current batch)
	sa      unix.RawSockaddrInet4
	nports  uint64
	bucket  bucket
	window  int
	started []int
}

func sweep(ctx context.Context, o Options, p *prober) (Stats, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return Stats{}, fmt.Errorf("epoll: %w", err)
	}
	l := &loop{o: o, p: p, epfd: epfd, start: time.Now(), nports: uint64(len(o.Ports)), window: o.Window}
	defer l.closeAll()
	var lim unix.Rlimit
	if unix.Getrlimit(unix.RLIMIT_NOFILE, &lim) == nil && lim.Cur < uint64(l.window)+2*fdMargin {
		l.window = max(1, int(lim.Cur)-2*fdMargin)
	}
	l.bucket = newBucket(o.Rate)
	l.stats.Targets = size(o.Range) * l.nports
	return l.run(ctx)
}

func (l *loop) now() time.Duration { return time.Since(l.start) }

func (l *loop) run(ctx context.Context) (Stats, error) {
	var next uint64
	events := make([]unix.EpollEvent, 256)
	nextProgress := l.o.ProgressEvery
	for {
		if err := ctx.Err(); err != nil {
			l.stats.Elapsed = l.now()
			return l.stats, err
		}
		now := l.now()
		// Start a batch.
		l.started = l.started[:0]
		n := l.bucket.allowed(now, batchSize)
		for n > 0 && next < l.stats.Targets && l.inUse < l.window && len(l.started) < batchSize {
			if err := l.attempt(next); err != nil {
				l.stats.Elapsed = l.now()
				return l.stats, err
			}
			next++
			n--
		}
		// The second look.
		for _, fd := range l.started {
			l.settle(fd, false)
		}
		now = l.now()
		if l.o.Progress != nil && now >= nextProgress {
			l.stats.Elapsed = now
			l.o.Progress(l.stats)
			nextProgress = now + l.o.ProgressEvery
		}
		if next == l.stats.Targets && l.inUse == 0 {
			l.stats.Elapsed = l.now()
			if l.o.Progress != nil {
				l.o.Progress(l.stats)
			}
			return l.stats, nil
		}
		// Wait for answers, the next token or the first deadline.
		wait := maxWait
		if next < l.stats.Targets && l.inUse < l.window {
			wait = min(wait, l.bucket.wait(now))
		}
		if l.head < len(l.fifo) {
			wait = min(wait, max(0, l.fifo[l.head].deadline-now))
		}
		if l.inUse == 0 {
			if wait > 0 {
				// Nothing in flight: only the rate limit holds us.
				time.Sleep(wait)
			}
			continue
		}
		ms := int((wait + time.Millisecond - 1) / time.Millisecond)
		got, err := unix.EpollWait(l.epfd, events, ms)
		if err != nil && err != unix.EINTR {
			return l.stats, fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:max(got, 0)] {
			fd := int(ev.Fd)
			if fd < len(l.socks) && l.socks[fd].pending {
				l.settle(fd, true)
			}
		}
		l.expire(l.now())
	}
}

// socket returns a free socket or a new one.
func (l *loop) socket() (int, error) {
	if n := len(l.free); n > 0 {
		fd := l.free[n-1]
		l.free = l.free[:n-1]
		return fd, nil
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	// Closing sends RST: no TIME_WAIT for an address we only touched.
	if err := unix.SetsockoptLinger(fd, unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("socket: SO_LINGER: %w", err)
	}
	for fd >= len(l.socks) {
		l.socks = append(l.socks, make([]sock, len(l.socks)+64)...)
	}
	// Keep seq: the FIFO may still hold an entry of an earlier socket
	// with this number.
	l.socks[fd] = sock{seq: l.socks[fd].seq}
	return fd, nil
}

func (l *loop) target(t uint64) (netip.Addr, uint16) {
	return netip.AddrFrom4(addrAt(l.o.Range, t/l.nports)), l.o.Ports[t%l.nports]
}

// connect calls connect(2) without the runtime's blocking-syscall hand-off:
// the socket is non-blocking, so the call never sleeps.
func (l *loop) connect(fd int, t uint64) unix.Errno {
	l.sa.Family = unix.AF_INET
	l.sa.Addr = addrAt(l.o.Range, t/l.nports)
	port := l.o.Ports[t%l.nports]
	p := (*[2]byte)(unsafe.Pointer(&l.sa.Port)) // network byte order
	p[0], p[1] = byte(port>>8), byte(port)
	_, _, e := unix.RawSyscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&l.sa)), unix.SizeofSockaddrInet4)
	return e
}

// attempt starts the connection to target t.
func (l *loop) attempt(t uint64) error {
	fd, err := l.socket()
	if err != nil {
		return err
	}
	l.stats.Attempts++
	l.bucket.take()
	s := &l.socks[fd]
	s.target, s.seq = t, s.seq+1
	l.inUse++
	switch err := l.connect(fd, t); err {
	case unix.EINPROGRESS, unix.EAGAIN:
		l.started = append(l.started, fd)
	default:
		l.outcome(fd, err)
	}
	return nil
}

// settle looks at an attempt again: a second connect(2) returns its outcome
// or EALREADY while it is under way, when it is (re)armed in epoll.
func (l *loop) settle(fd int, fromEpoll bool) {
	s := &l.socks[fd]
	err := l.connect(fd, s.target)
	if err == unix.EALREADY || err == unix.EINPROGRESS {
		if fromEpoll {
			// Spurious wake-up: wait again.
			l.arm(fd)
			return
		}
		s.pending = true
		l.arm(fd)
		l.fifo = append(l.fifo, waiting{fd: fd, seq: s.seq, deadline: l.now() + l.o.Timeout})
		return
	}
	s.pending = false
	l.outcome(fd, err)
}

func (l *loop) arm(fd int) {
	s := &l.socks[fd]
	ev := unix.EpollEvent{Events: unix.EPOLLOUT | unix.EPOLLONESHOT, Fd: int32(fd)}
	op := unix.EPOLL_CTL_MOD
	if !s.registered {
		op = unix.EPOLL_CTL_ADD
	}
	if err := unix.EpollCtl(l.epfd, op, fd, &ev); err != nil {
		// Cannot wait for it: count it unreachable rather than lose it.
		s.pending = false
		l.outcome(fd, unix.EIO)
		return
	}
	s.registered = true
}

// outcome records a finished attempt and frees or hands on its socket.
func (l *loop) outcome(fd int, err unix.Errno) {
	l.inUse--
	switch err {
	case 0, unix.EISCONN:
		l.stats.Open++
		addr, port := l.target(l.socks[fd].target)
		ep := Endpoint{Addr: addr, Port: port}
		if l.p.wants(port) {
			l.drop(fd)
			l.p.take(fd, ep)
			return
		}
		l.p.add(ep)
		l.close(fd)
	case unix.ECONNREFUSED:
		l.stats.Closed++
		l.free = append(l.free, fd)
	case unix.ETIMEDOUT:
		l.stats.Filtered++
		l.free = append(l.free, fd)
	default:
		// EHOSTUNREACH, ENETUNREACH, EACCES (a broadcast address) and the
		// like. The socket is unconnected again after any of them, but a
		// fresh one costs little here.
		l.stats.Unreachable++
		l.close(fd)
	}
}

// expire ends the attempts whose deadline has passed.
func (l *loop) expire(now time.Duration) {
	for l.head < len(l.fifo) && l.fifo[l.head].deadline <= now {
		w := l.fifo[l.head]
		l.head++
		s := &l.socks[w.fd]
		if !s.pending || s.seq != w.seq {
			continue
		}
		s.pending = false
		l.inUse--
		l.stats.Filtered++
		l.close(w.fd)
	}
	if l.head == len(l.fifo) {
		l.fifo, l.head = l.fifo[:0], 0
	} else if l.head > 4096 && l.head > len(l.fifo)/2 {
		l.fifo = l.fifo[:copy(l.fifo, l.fifo[l.head:])]
		l.head = 0
	}
}

// drop forgets fd without closing it (it was handed on).
func (l *loop) drop(fd int) {
	if l.socks[fd].registered {
		unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	}
	l.socks[fd] = sock{seq: l.socks[fd].seq}
}

func (l *loop) close(fd int) {
	l.socks[fd] = sock{seq: l.socks[fd].seq}
	unix.Close(fd)
}

// closeAll closes every socket the loop still holds.
func (l *loop) closeAll() {
	for _, fd := range l.free {
		unix.Close(fd)
	}
	for i := l.head; i < len(l.fifo); i++ {
		w := l.fifo[i]
		if s := l.socks[w.fd]; s.pending && s.seq == w.seq {
			l.close(w.fd)
		}
	}
	unix.Close(l.epfd)
}
