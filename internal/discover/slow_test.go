//go:build linux

package discover

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// fullListener is a listening socket whose accept queue (of one) is full,
// so SYNs to it are dropped until it accepts or closes.
func fullListener(t *testing.T, addr netip.Addr, port uint16) int {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: addr.As4(), Port: int(port)}); err != nil {
		t.Fatal(err)
	}
	if err := unix.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, port).String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return fd
}

// TestSweepSlowAnswers: attempts that wait in epoll end as open or closed
// when the answer comes late. Both SYNs are dropped at first (full accept
// queues); once the sweep has started, one listener accepts its queued
// connection and the other closes, so the kernel's retransmitted SYN (about
// a second later) is answered with SYN-ACK or RST.
func TestSweepSlowAnswers(t *testing.T) {
	r := testRange(t)
	r4 := netip.PrefixFrom(r.Addr(), 30)
	opens := fullListener(t, host(r, 1), 2377)
	t.Cleanup(func() { unix.Close(opens) })
	closes := fullListener(t, host(r, 2), 2377)
	closed := false
	t.Cleanup(func() {
		if !closed {
			unix.Close(closes)
		}
	})
	acted := false
	found, stats, err := Sweep(context.Background(), Options{
		Range: r4, Ports: []uint16{2377}, Timeout: 20 * time.Second,
		ProgressEvery: time.Millisecond,
		Progress: func(s Stats) {
			if acted || s.Attempts < 4 {
				return
			}
			acted = true
			nfd, _, err := unix.Accept(opens)
			if err != nil {
				t.Errorf("accept: %v", err)
				return
			}
			unix.Close(nfd)
			unix.Close(closes)
			closed = true
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Addr != host(r, 1) || found[0].Port != 2377 {
		t.Errorf("found %+v, want %s:2377 only", found, host(r, 1))
	}
	if stats.Open != 1 || stats.Closed != 3 || stats.Filtered != 0 {
		t.Errorf("stats %+v, want 1 open, 3 closed (one of them late), 0 filtered", stats)
	}
}
