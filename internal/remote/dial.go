package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// Defaults used where a Config or RetryPolicy field is zero.
const (
	DefaultPort           = 22
	DefaultTimeout        = 2 * time.Minute
	DefaultAttemptTimeout = 20 * time.Second
	DefaultInitialDelay   = 250 * time.Millisecond
	DefaultMaxDelay       = 5 * time.Second
	DefaultCancelGrace    = 2 * time.Second
	DefaultKeepalive      = 5 * time.Second
)

// keepaliveMisses is how many keepalive intervals a connection may leave
// unanswered before it is closed as dead (a cut cable, a node gone).
const keepaliveMisses = 3

// Config says how to reach one node.
type Config struct {
	Host string // IP address or name
	Port int    // 0 means 22
	User string

	// Signer authenticates the user (LoadSigner, EnsureKey, or an agent key).
	Signer ssh.Signer
	// KnownHosts is the host key policy; required, host keys are always
	// checked.
	KnownHosts *KnownHosts

	// Timeout bounds the whole of Dial, retries included; 0 means
	// DefaultTimeout. The context may end it sooner.
	Timeout time.Duration
	// Retry says how to retry while the host is unreachable or refuses
	// the key (it may still be booting or running cloud-init).
	Retry RetryPolicy

	// CancelGrace is how long Run waits after signalling a command whose
	// context ended before it closes the session; 0 means
	// DefaultCancelGrace.
	CancelGrace time.Duration
	// Keepalive is how often the connection is checked with an OpenSSH
	// keepalive request (0: DefaultKeepalive; negative: never). One left
	// unanswered for three intervals closes it, so that what runs over it
	// fails instead of waiting for ever on a link that is gone.
	Keepalive time.Duration
	// Redactor hides secrets in the errors of Run and DialContext; nil
	// hides only swarm tokens.
	Redactor *Redactor
	// Logger receives one debug line per failed attempt; nil discards.
	Logger *slog.Logger
}

// RetryPolicy is an exponential backoff with jitter between connection
// attempts. The zero value retries until Config.Timeout.
type RetryPolicy struct {
	MaxAttempts    int           // 0: until the timeout; 1: no retry
	InitialDelay   time.Duration // 0: DefaultInitialDelay
	MaxDelay       time.Duration // 0: DefaultMaxDelay
	AttemptTimeout time.Duration // TCP connect + handshake + auth; 0: DefaultAttemptTimeout
}

func (p RetryPolicy) delay(attempt int) time.Duration {
	initial, maxDelay := p.InitialDelay, p.MaxDelay
	if initial <= 0 {
		initial = DefaultInitialDelay
	}
	if maxDelay <= 0 {
		maxDelay = DefaultMaxDelay
	}
	d := initial
	for i := 1; i < attempt && d < maxDelay; i++ {
		d *= 2
	}
	d = min(d, maxDelay)
	// ±20% jitter, so that a rack of nodes does not retry in lockstep.
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// DialError is returned by Dial. Its message names the target as
// "ssh user@host:port: ...". It unwraps to the last attempt's error and,
// when Dial gave up because the context ended or the timeout passed, to the
// context's error too.
type DialError struct {
	Target   string // user@host:port
	Attempts int
	Elapsed  time.Duration
	Err      error // the last attempt's error
	Ctx      error // context.Canceled or DeadlineExceeded if that ended Dial
}

func (e *DialError) Error() string {
	var b strings.Builder
	b.WriteString("ssh " + e.Target + ": ")
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	} else if e.Ctx != nil {
		b.WriteString(e.Ctx.Error())
	}
	if e.Ctx != nil && e.Err != nil {
		fmt.Fprintf(&b, " (gave up after %d attempts in %s: %v)", e.Attempts, e.Elapsed.Round(time.Millisecond), e.Ctx)
	} else if e.Attempts > 1 {
		fmt.Fprintf(&b, " (after %d attempts in %s)", e.Attempts, e.Elapsed.Round(time.Millisecond))
	}
	return b.String()
}

func (e *DialError) Unwrap() []error {
	var errs []error
	for _, err := range []error{e.Err, e.Ctx} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// Dial connects and authenticates to cfg.Host, retrying with backoff while
// the host refuses or drops connections, times out, or rejects the key,
// until cfg.Timeout or ctx ends. Host key problems (a changed or revoked
// key, an unreadable known_hosts file) and configuration errors are never
// retried. The context bounds the TCP connect and the SSH handshake; it
// does not bound the returned Client.
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	port := cfg.Port
	if port == 0 {
		port = DefaultPort
	}
	addr := net.JoinHostPort(cfg.Host, strconv.Itoa(port))
	target := cfg.User + "@" + addr
	if err := cfg.validate(port); err != nil {
		return nil, &DialError{Target: target, Err: err}
	}
	timeout := cfg.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}

	start := time.Now()
	var last error
	for attempt := 1; ; attempt++ {
		conn, err := dialOnce(ctx, cfg, addr)
		if err == nil {
			if attempt > 1 {
				logger.Debug("ssh connected", "target", target, "attempts", attempt, "elapsed", time.Since(start).Round(time.Millisecond))
			}
			return newClient(conn, target, cfg), nil
		}
		fail := func(ctxErr error) error {
			return &DialError{Target: target, Attempts: attempt, Elapsed: time.Since(start), Err: err, Ctx: ctxErr}
		}
		ctxErr := ctx.Err()
		if dl, ok := ctx.Deadline(); ok && ctxErr == nil && !time.Now().Before(dl) {
			// The dial hit the context's deadline a moment before the
			// context itself noticed.
			ctxErr = context.DeadlineExceeded
		}
		if ctxErr != nil {
			// The attempt failed because the context ended (the dialer may
			// call that an i/o timeout); report what kept the host from
			// answering before that, if anything.
			if last != nil {
				err = last
			}
			return nil, fail(ctxErr)
		}
		if !retryable(err) {
			return nil, fail(nil)
		}
		if cfg.Retry.MaxAttempts > 0 && attempt >= cfg.Retry.MaxAttempts {
			return nil, fail(nil)
		}
		last = err
		wait := cfg.Retry.delay(attempt)
		logger.Debug("ssh not ready, retrying", "target", target, "attempt", attempt, "in", wait.Round(time.Millisecond), "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			err = last
			return nil, fail(ctx.Err())
		case <-t.C:
		}
	}
}

func (cfg Config) validate(port int) error {
	var problems []string
	if cfg.Host == "" {
		problems = append(problems, "no host")
	}
	if port < 1 || port > 65535 {
		problems = append(problems, fmt.Sprintf("port %d out of range", port))
	}
	if cfg.User == "" {
		problems = append(problems, "no user")
	}
	if cfg.Signer == nil {
		problems = append(problems, "no private key (signer)")
	}
	if cfg.KnownHosts == nil || cfg.KnownHosts.Path() == "" {
		problems = append(problems, "no known_hosts file (host keys are always checked)")
	}
	if len(problems) > 0 {
		return &configError{strings.Join(problems, ", ")}
	}
	return nil
}

type configError struct{ msg string }

func (e *configError) Error() string { return "invalid connection settings: " + e.msg }

// dialOnce makes one attempt: TCP connect, handshake, authentication.
func dialOnce(ctx context.Context, cfg Config, addr string) (*ssh.Client, error) {
	attemptTimeout := cfg.Retry.AttemptTimeout
	if attemptTimeout <= 0 {
		attemptTimeout = DefaultAttemptTimeout
	}
	actx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()

	algos, err := cfg.KnownHosts.HostKeyAlgorithms(addr)
	if err != nil {
		return nil, err
	}
	var d net.Dialer
	conn, err := d.DialContext(actx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	// The handshake has no context of its own: closing the connection
	// when the context ends interrupts it.
	stop := context.AfterFunc(actx, func() { conn.Close() })
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
		HostKeyCallback:   cfg.KnownHosts.HostKeyCallback(),
		HostKeyAlgorithms: algos,
	})
	if !stop() {
		if err == nil {
			sc.Close()
		}
		if ctx.Err() == nil {
			return nil, fmt.Errorf("no SSH handshake within %s: %w", attemptTimeout, actx.Err())
		}
		return nil, fmt.Errorf("ssh handshake: %w", ctx.Err())
	}
	if err != nil {
		// Host key verdicts read better without the library's prefix.
		var changed *HostKeyChangedError
		var revoked *hostKeyRevokedError
		var fileErr *knownHostsFileError
		switch {
		case errors.As(err, &changed):
			return nil, changed
		case errors.As(err, &revoked):
			return nil, revoked
		case errors.As(err, &fileErr):
			return nil, fileErr
		case strings.Contains(err.Error(), "ssh: unable to authenticate"):
			return nil, fmt.Errorf("key %s not accepted for user %s (not in its authorized_keys yet?): %w",
				fingerprint(cfg.Signer.PublicKey()), cfg.User, err)
		}
		return nil, err
	}
	return ssh.NewClient(sc, chans, reqs), nil
}

func isContextErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// retryable reports whether err may clear by itself: the host is not up
// yet, sshd is (re)starting or busy, or the key is not installed yet.
func retryable(err error) bool {
	var changed *HostKeyChangedError
	var revoked *hostKeyRevokedError
	var fileErr *knownHostsFileError
	var cfgErr *configError
	if errors.As(err, &changed) || errors.As(err, &revoked) || errors.As(err, &fileErr) || errors.As(err, &cfgErr) {
		return false
	}
	if errors.Is(err, context.Canceled) {
		return false
	}
	if errors.Is(err, context.DeadlineExceeded) { // the attempt's own timeout
		return true
	}
	for _, errno := range []syscall.Errno{
		syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.ECONNABORTED,
		syscall.EHOSTUNREACH, syscall.ENETUNREACH, syscall.ETIMEDOUT, syscall.EPIPE,
	} {
		if errors.Is(err, errno) {
			return true
		}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout || dnsErr.IsTemporary
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return true
	}
	// sshd closing the connection during the handshake: starting up,
	// MaxStartups reached, or restarted by cloud-init.
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return true
	}
	// x/crypto/ssh has no typed error for a rejected key.
	return strings.Contains(err.Error(), "ssh: unable to authenticate")
}
