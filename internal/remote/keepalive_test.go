package remote_test

import (
	"io"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/remote"
)

// relay forwards loopback TCP connections to target until frozen: then it
// forwards nothing more and keeps the connections open, as a cut cable
// does to a connection whose ends do not know it yet.
type relay struct {
	ln     net.Listener
	mu     sync.Mutex
	frozen bool
	conns  []net.Conn
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	t.Cleanup(func() {
		ln.Close()
		r.mu.Lock()
		defer r.mu.Unlock()
		for _, c := range r.conns {
			c.Close()
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, s)
			r.mu.Unlock()
			go r.pipe(c, s)
			go r.pipe(s, c)
		}
	}()
	return r
}

func (r *relay) pipe(dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		r.mu.Lock()
		frozen := r.frozen
		r.mu.Unlock()
		if frozen {
			io.Copy(io.Discard, src) // swallow, never answer
			return
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (r *relay) freeze() {
	r.mu.Lock()
	r.frozen = true
	r.mu.Unlock()
}

// TestKeepaliveClosesADeadConnection: a connection whose peer stops
// answering (the relay goes silent) is closed after three unanswered
// keepalive intervals; a command running on it fails instead of waiting
// for ever, and the client says why. A live connection stays up.
func TestKeepaliveClosesADeadConnection(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	cfg := srv.config(key, remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")))
	r := newRelay(t, net.JoinHostPort(cfg.Host, strconv.Itoa(cfg.Port)))
	cfg.Port = r.ln.Addr().(*net.TCPAddr).Port
	cfg.Keepalive = 200 * time.Millisecond
	c := mustDial(t, cfg)
	defer c.Close()

	time.Sleep(time.Second) // five keepalives, answered
	if !c.Alive() || c.Lost() != nil {
		t.Fatalf("a live connection was closed: %v", c.Lost())
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := c.Run(t.Context(), "sleep 60")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	r.freeze()
	select {
	case err := <-done:
		if err == nil {
			t.Errorf("sleep 60 on a dead connection succeeded")
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("a command on a dead connection still waits after 20 s")
	}
	if c.Alive() {
		t.Errorf("the dead connection is still up")
	}
	if err := c.Lost(); err == nil || !strings.Contains(err.Error(), "connection lost: no answer to a keepalive for 600ms") {
		t.Errorf("Lost() = %v", err)
	}
}
