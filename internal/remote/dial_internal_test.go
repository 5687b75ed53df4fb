package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

func TestRetryable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{"host unreachable", &net.OpError{Op: "dial", Err: syscall.EHOSTUNREACH}, true},
		{"reset in handshake", fmt.Errorf("ssh: handshake failed: %w", syscall.ECONNRESET), true},
		{"closed in handshake", fmt.Errorf("ssh: handshake failed: %w", io.EOF), true},
		{"attempt timeout", fmt.Errorf("ssh handshake: %w", context.DeadlineExceeded), true},
		{"key not authorized yet", errors.New("ssh: handshake failed: ssh: unable to authenticate, attempted methods [none publickey], no supported methods remain"), true},
		{"host key changed", fmt.Errorf("x: %w", &HostKeyChangedError{}), false},
		{"host key revoked", &hostKeyRevokedError{}, false},
		{"known_hosts unreadable", &knownHostsFileError{errors.New("permission denied")}, false},
		{"canceled", context.Canceled, false},
		{"unknown name", &net.DNSError{Err: "no such host", IsNotFound: true}, false},
		{"dns timeout", &net.DNSError{Err: "timeout", IsTimeout: true}, true},
		{"no common algorithm", errors.New("ssh: handshake failed: ssh: no common algorithm for host key"), false},
	}
	for _, tt := range tests {
		if got := retryable(tt.err); got != tt.want {
			t.Errorf("%s: retryable(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	p := RetryPolicy{InitialDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for attempt, base := range map[int]time.Duration{1: 100 * time.Millisecond, 2: 200 * time.Millisecond, 4: 800 * time.Millisecond, 5: time.Second, 30: time.Second} {
		d := p.delay(attempt)
		if d < base*8/10 || d > base*12/10 {
			t.Errorf("delay(%d) = %s, want %s ±20%%", attempt, d, base)
		}
	}
}
