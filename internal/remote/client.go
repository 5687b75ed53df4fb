package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
)

// Runner runs a shell command on a node. *Client implements it; tests of
// the packages that use SSH can script a fake.
type Runner interface {
	Run(ctx context.Context, cmd string) (stdout, stderr []byte, err error)
}

var _ Runner = (*Client)(nil)

// Client is an authenticated SSH connection to one node. It is safe for
// concurrent use: every Run opens its own session and every dial its own
// channel.
type Client struct {
	conn        *ssh.Client
	target      string // user@host:port
	redactor    *Redactor
	cancelGrace time.Duration
	done        chan struct{} // closed when the connection has ended
	mu          sync.Mutex
	lost        error // why keepalives closed the connection
}

func newClient(conn *ssh.Client, target string, cfg Config) *Client {
	grace := cfg.CancelGrace
	if grace <= 0 {
		grace = DefaultCancelGrace
	}
	c := &Client{conn: conn, target: target, redactor: cfg.Redactor, cancelGrace: grace, done: make(chan struct{})}
	go func() {
		conn.Wait()
		close(c.done)
	}()
	interval := cfg.Keepalive
	if interval == 0 {
		interval = DefaultKeepalive
	}
	if interval > 0 {
		go c.keepalive(interval)
	}
	return c
}

// keepalive sends a keepalive request every interval and closes the
// connection when one goes unanswered for keepaliveMisses intervals.
func (c *Client) keepalive(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
		}
		answered := make(chan struct{})
		go func() {
			c.conn.SendRequest("keepalive@openssh.com", true, nil)
			close(answered)
		}()
		select {
		case <-answered:
		case <-c.done:
			return
		case <-time.After(keepaliveMisses * interval):
			c.mu.Lock()
			c.lost = fmt.Errorf("ssh %s: connection lost: no answer to a keepalive for %s", c.target, keepaliveMisses*interval)
			c.mu.Unlock()
			c.conn.Close()
			return
		}
	}
}

// Alive reports whether the connection is still up.
func (c *Client) Alive() bool {
	select {
	case <-c.done:
		return false
	default:
		// The keepalive closed it: conn.Wait (and so done) may follow a
		// moment after the sessions on it have already failed.
		return c.Lost() == nil
	}
}

// Lost is why the keepalives closed the connection, nil while it is up
// or when it ended otherwise.
func (c *Client) Lost() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lost
}

// Target returns "user@host:port".
func (c *Client) Target() string { return c.target }

// Close closes the connection and every session and channel on it.
func (c *Client) Close() error { return c.conn.Close() }

// ExitError is a command that ran and exited non-zero, or was killed by a
// signal. Command and Stderr are redacted with the Client's Redactor.
type ExitError struct {
	Target   string // user@host:port
	Command  string
	ExitCode int    // -1 when the command was killed by a signal or sent no status
	Signal   string // e.g. "TERM" when killed by a signal
	Stderr   []byte
}

// maxStderrInMessage bounds the stderr shown by ExitError.Error; the field
// holds all of it.
const maxStderrInMessage = 4096

func (e *ExitError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ssh %s: command %s ", e.Target, quoteCommand(e.Command))
	switch {
	case e.Signal != "":
		fmt.Fprintf(&b, "killed by signal %s", e.Signal)
	case e.ExitCode < 0:
		b.WriteString("ended without an exit status")
	default:
		fmt.Fprintf(&b, "exited with code %d", e.ExitCode)
	}
	stderr := bytes.TrimSpace(e.Stderr)
	if len(stderr) > maxStderrInMessage {
		stderr = append([]byte("..."), stderr[len(stderr)-maxStderrInMessage:]...)
	}
	if len(stderr) > 0 {
		fmt.Fprintf(&b, ": stderr: %s", stderr)
	} else {
		b.WriteString(" (no stderr)")
	}
	return b.String()
}

// quoteCommand shortens a long script for a one-line message.
func quoteCommand(cmd string) string {
	const maxLen = 200
	if len(cmd) > maxLen {
		cmd = cmd[:maxLen] + "..."
	}
	return fmt.Sprintf("%q", cmd)
}

// Run runs cmd with the remote user's shell and returns its complete
// stdout and stderr. A command that exits non-zero returns an *ExitError
// carrying the exit code and stderr (stdout and stderr are returned too).
//
// When ctx ends first, the command's process group gets SIGTERM: as an SSH
// signal request, which OpenSSH honours for non-root logins only, and, if
// the command still runs a quarter of the cancel grace later, by "kill" in
// a second session. For that, Run has the shell print its PID to stderr
// before the command (and takes that line out again), so the login shell
// must understand "$$" (sh, bash, dash, zsh). The session is closed once
// the command exits or after the Client's cancel grace; the error wraps
// ctx's error.
//
// The returned stdout and stderr are not redacted; every error is.
func (c *Client) Run(ctx context.Context, cmd string) (stdout, stderr []byte, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, c.runError(cmd, err)
	}
	sess, err := c.conn.NewSession()
	if err != nil {
		return nil, nil, c.runError(cmd, fmt.Errorf("open session: %w", err))
	}
	defer sess.Close()
	var outBuf bytes.Buffer
	errBuf, err := newPIDWriter()
	if err != nil {
		return nil, nil, c.runError(cmd, err)
	}
	sess.Stdout = &outBuf
	sess.Stderr = errBuf
	if err := sess.Start(errBuf.announce() + cmd); err != nil {
		return nil, nil, c.runError(cmd, fmt.Errorf("start: %w", err))
	}
	// done is closed once the command ended and waitErr is set.
	done := make(chan struct{})
	var waitErr error
	go func() { waitErr = sess.Wait(); close(done) }()

	select {
	case <-done:
		err = waitErr
	case <-ctx.Done():
		c.interrupt(sess, errBuf, done)
		select {
		case <-done:
		case <-time.After(c.cancelGrace):
			// The output is still being written; don't touch it.
			return nil, nil, c.runError(cmd, fmt.Errorf("interrupted: %w", ctx.Err()))
		}
		return outBuf.Bytes(), errBuf.bytes(), c.runError(cmd, fmt.Errorf("interrupted: %w", ctx.Err()))
	}
	stdout, stderr = outBuf.Bytes(), errBuf.bytes()
	if err == nil {
		return stdout, stderr, nil
	}
	var exitErr *ssh.ExitError
	var missing *ssh.ExitMissingError
	switch {
	case errors.As(err, &exitErr):
		code, sig := exitErr.ExitStatus(), exitErr.Signal()
		if sig != "" {
			code = -1
		}
		return stdout, stderr, &ExitError{
			Target: c.target, Command: c.redactor.String(cmd),
			ExitCode: code, Signal: sig, Stderr: c.redactor.Bytes(bytes.Clone(stderr)),
		}
	case errors.As(err, &missing):
		return stdout, stderr, &ExitError{
			Target: c.target, Command: c.redactor.String(cmd),
			ExitCode: -1, Stderr: c.redactor.Bytes(bytes.Clone(stderr)),
		}
	}
	return stdout, stderr, c.runError(cmd, err)
}

// interrupt stops a running command whose context ended: SIGTERM by
// signal request first and, if the command is still running a quarter of
// the grace later, by kill; then it closes the session if the command has
// not exited within the grace.
func (c *Client) interrupt(sess *ssh.Session, errBuf *pidWriter, done <-chan struct{}) {
	_ = sess.Signal(ssh.SIGTERM)
	grace := time.NewTimer(c.cancelGrace)
	defer grace.Stop()
	signalled := time.NewTimer(c.cancelGrace / 4)
	defer signalled.Stop()
	select {
	case <-done:
		return
	case <-signalled.C:
	}
	select {
	case <-done:
		return
	case <-grace.C:
		_ = sess.Close()
		return
	case <-errBuf.ready: // the shell announces itself first thing
	}
	// The shell started by sshd leads its own session and process group,
	// so the group ID is its PID.
	kctx, cancel := context.WithTimeout(context.Background(), c.cancelGrace)
	defer cancel()
	c.kill(kctx, errBuf.pid(), done)
	select {
	case <-done:
	case <-grace.C:
		_ = sess.Close()
	}
}

// kill sends SIGTERM to process group pid from a second session, unless
// the command finished meanwhile.
func (c *Client) kill(ctx context.Context, pid int, done <-chan struct{}) {
	ks, err := c.conn.NewSession()
	if err != nil {
		return
	}
	defer ks.Close()
	select {
	case <-done: // exited already: the PID may be reused
		return
	default:
	}
	if err := ks.Start(fmt.Sprintf("kill -TERM -- -%d 2>/dev/null || kill -TERM %d 2>/dev/null", pid, pid)); err != nil {
		return
	}
	wait := make(chan struct{})
	go func() { _ = ks.Wait(); close(wait) }()
	select {
	case <-wait:
	case <-ctx.Done():
	}
}

// runError names the target and command and redacts the message.
func (c *Client) runError(cmd string, err error) error {
	return c.redactor.Error(fmt.Errorf("ssh %s: run %s: %w", c.target, quoteCommand(cmd), err))
}

// DialContext connects from the node to addr, like a net.Dialer on the
// node: network "unix" opens a direct-streamlocal channel to the Unix
// socket at path addr (OpenSSH: AllowStreamLocalForwarding, on by default);
// "tcp", "tcp4" and "tcp6" open a direct-tcpip channel to host:port as
// seen from the node. ctx bounds the opening only. The connection does not
// support deadlines.
func (c *Client) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	conn, err := c.conn.DialContext(ctx, network, addr)
	if err != nil {
		return nil, c.redactor.Error(fmt.Errorf("ssh %s: dial %s %s on the node: %w", c.target, network, addr, err))
	}
	return conn, nil
}

// DialUnix connects to the Unix socket at path on the node.
func (c *Client) DialUnix(ctx context.Context, path string) (net.Conn, error) {
	return c.DialContext(ctx, "unix", path)
}

// UnixSocketDialer returns a dial function that ignores its network and
// address and always connects to the Unix socket at path on the node. It
// fits http.Transport.DialContext and the Docker Go client's
// client.WithDialContext, so a caller can speak the node's Docker Engine
// API through SSH:
//
//	client.NewClientWithOpts(
//		client.WithHost("unix:///var/run/docker.sock"),
//		client.WithDialContext(c.UnixSocketDialer("/var/run/docker.sock")),
//		client.WithAPIVersionNegotiation())
func (c *Client) UnixSocketDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		return c.DialUnix(ctx, path)
	}
}
