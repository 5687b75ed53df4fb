//go:build linux

package discover

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestSeqSurvivesClose: a socket number closed and handed out again keeps
// counting its attempts from where it was, so a FIFO entry of an earlier
// socket with that number (settled through epoll, its deadline still
// queued) never matches a later attempt and ends it early.
func TestSeqSurvivesClose(t *testing.T) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	l := &loop{epfd: epfd}
	defer l.closeAll()
	fd, err := l.socket()
	if err != nil {
		t.Fatal(err)
	}
	l.socks[fd].seq = 1
	l.fifo = append(l.fifo, waiting{fd: fd, seq: 1})
	l.close(fd)
	fd2, err := l.socket()
	if err != nil {
		t.Fatal(err)
	}
	l.free = append(l.free, fd2)
	if fd2 != fd {
		t.Skipf("socket number %d not handed out again (got %d)", fd, fd2)
	}
	l.socks[fd2].seq++ // as attempt does
	l.socks[fd2].pending = true
	l.inUse = 1
	l.expire(1)
	if !l.socks[fd2].pending || l.stats.Filtered != 0 {
		t.Errorf("the stale deadline of attempt 1 ended attempt %d", l.socks[fd2].seq)
	}
}
