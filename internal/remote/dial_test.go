package remote_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fhlab/provision/internal/remote"
)

func (s *testSSHD) config(signer ssh.Signer, kh *remote.KnownHosts) remote.Config {
	return remote.Config{
		Host: "127.0.0.1", Port: s.port, User: s.user,
		Signer: signer, KnownHosts: kh,
		Timeout: 20 * time.Second,
		Retry:   remote.RetryPolicy{InitialDelay: 50 * time.Millisecond, MaxDelay: 500 * time.Millisecond},
	}
}

func mustDial(t *testing.T, cfg remote.Config) *remote.Client {
	t.Helper()
	c, err := remote.Dial(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	dir := filepath.Join(t.TempDir(), "state", "ssh") // missing: created 0700
	path := filepath.Join(dir, "known_hosts")
	kh := remote.NewKnownHosts(path)

	c := mustDial(t, srv.config(key, kh))
	if got := c.Target(); got != fmt.Sprintf("%s@127.0.0.1:%d", srv.user, srv.port) {
		t.Errorf("Target() = %q", got)
	}
	first := readFile(t, path)
	want := knownhosts.Line([]string{fmt.Sprintf("127.0.0.1:%d", srv.port)}, srv.hostPublicKey(0)) + "\n"
	if string(first) != want {
		t.Errorf("known_hosts after first connect:\n%q\nwant\n%q", first, want)
	}
	if !strings.HasPrefix(string(first), fmt.Sprintf("[127.0.0.1]:%d ssh-ed25519 ", srv.port)) {
		t.Errorf("known_hosts line %q does not start with [127.0.0.1]:%d ssh-ed25519", first, srv.port)
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %#o, want %#o", p, fi.Mode().Perm(), mode)
		}
	}

	// A second connection, with a new KnownHosts over the same file,
	// finds the key and changes nothing.
	mustDial(t, srv.config(key, remote.NewKnownHosts(path)))
	if second := readFile(t, path); !bytes.Equal(first, second) {
		t.Errorf("second connect changed known_hosts:\n%s", second)
	}

	// OpenSSH reads the file as we wrote it.
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(keygen, "-F", fmt.Sprintf("[127.0.0.1]:%d", srv.port), "-f", path).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "ssh-ed25519") {
			t.Errorf("ssh-keygen -F does not find the host: %v\n%s", err, out)
		}
	}
}

func TestHostKeyChangedIsRefused(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh := remote.NewKnownHosts(path)
	mustDial(t, srv.config(key, kh)).Close()
	before := readFile(t, path)
	oldKey := srv.hostPublicKey(0)

	srv.newHostKeys()
	srv.restart()
	newKey := srv.hostPublicKey(0)

	cfg := srv.config(key, kh)
	cfg.Timeout = time.Minute // must not be waited out: a changed key is final
	start := time.Now()
	c, err := remote.Dial(t.Context(), cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial accepted a changed host key")
	}
	if elapsed := time.Since(start); elapsed > 5*time.Second {
		t.Errorf("Dial retried a changed host key for %s", elapsed)
	}
	t.Logf("error: %v", err)
	if !errors.Is(err, remote.ErrHostKeyChanged) {
		t.Fatalf("error %v is not ErrHostKeyChanged", err)
	}
	var changed *remote.HostKeyChangedError
	if !errors.As(err, &changed) {
		t.Fatalf("error %T is not a *HostKeyChangedError", err)
	}
	host := fmt.Sprintf("[127.0.0.1]:%d", srv.port)
	if changed.Host != host || changed.File != path || changed.Line != 1 ||
		!strings.HasSuffix(changed.Known, ssh.FingerprintSHA256(oldKey)) ||
		!strings.HasSuffix(changed.Presented, ssh.FingerprintSHA256(newKey)) {
		t.Errorf("HostKeyChangedError = %+v", changed)
	}
	msg := err.Error()
	for _, want := range []string{
		fmt.Sprintf("ssh %s@127.0.0.1:%d: ", srv.user, srv.port),
		ssh.FingerprintSHA256(oldKey), ssh.FingerprintSHA256(newKey),
		"remove line 1 from " + path,
	} {
		if !strings.Contains(msg, want) {
			t.Errorf("error %q does not contain %q", msg, want)
		}
	}
	if after := readFile(t, path); !bytes.Equal(before, after) {
		t.Errorf("known_hosts changed after a refused key:\n%s", after)
	}
}

// A host with several host keys presents the type recorded for it, as with
// OpenSSH; a recorded key the host does not have is a change.
func TestRecordedHostKeyTypeIsPreferred(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{hostKeyTypes: []string{"ed25519", "ecdsa"}}, key.PublicKey())
	hostport := fmt.Sprintf("127.0.0.1:%d", srv.port)
	foreign := newClientKey(t).PublicKey()

	tests := []struct {
		name    string
		known   ssh.PublicKey
		changed bool
	}{
		{"ecdsa recorded", srv.hostPublicKey(1), false},
		{"ed25519 recorded", srv.hostPublicKey(0), false},
		{"other ed25519 recorded", foreign, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			content := "# recorded earlier\n" + knownhosts.Line([]string{hostport}, tt.known) + "\n"
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			c, err := remote.Dial(t.Context(), srv.config(key, remote.NewKnownHosts(path)))
			if err == nil {
				c.Close()
			}
			if got := errors.Is(err, remote.ErrHostKeyChanged); got != tt.changed {
				t.Errorf("Dial error %v; want changed=%v", err, tt.changed)
			}
			if got := string(readFile(t, path)); got != content {
				t.Errorf("known_hosts changed:\n%s", got)
			}
		})
	}
}

// Many goroutines meeting the same unknown hosts at once record exactly
// one line per host, also through two KnownHosts over one file (as two
// processes would).
func TestConcurrentTrustOnFirstUse(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	const hosts, perHost = 3, 20
	var servers []*testSSHD
	for range hosts {
		servers = append(servers, newSSHD(t, sshdOptions{}, key.PublicKey()))
	}
	path := filepath.Join(t.TempDir(), "known_hosts")
	policies := []*remote.KnownHosts{remote.NewKnownHosts(path), remote.NewKnownHosts(path)}

	var wg sync.WaitGroup
	errs := make(chan error, hosts*perHost)
	for i := range hosts * perHost {
		srv := servers[i%hosts]
		wg.Go(func() {
			c, err := remote.Dial(t.Context(), srv.config(key, policies[i%2]))
			if err != nil {
				errs <- err
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	lines := strings.Split(strings.TrimSuffix(string(readFile(t, path)), "\n"), "\n")
	if len(lines) != hosts {
		t.Fatalf("known_hosts has %d lines, want %d:\n%s", len(lines), hosts, strings.Join(lines, "\n"))
	}
	for i, srv := range servers {
		want := knownhosts.Line([]string{fmt.Sprintf("127.0.0.1:%d", srv.port)}, srv.hostPublicKey(0))
		found := 0
		for _, l := range lines {
			if l == want {
				found++
			}
		}
		if found != 1 {
			t.Errorf("host %d (port %d) recorded %d times, want once", i, srv.port, found)
		}
	}
}

func TestDialRetriesUntilReady(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)

	t.Run("sshd not started yet", func(t *testing.T) {
		t.Parallel()
		srv := newSSHD(t, sshdOptions{noStart: true}, key.PublicKey())
		go func() {
			time.Sleep(700 * time.Millisecond)
			srv.start()
		}()
		mustDial(t, srv.config(key, remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))))
	})

	t.Run("key not authorized yet", func(t *testing.T) {
		t.Parallel()
		srv := newSSHD(t, sshdOptions{})
		go func() {
			time.Sleep(700 * time.Millisecond)
			srv.authorize(key.PublicKey())
		}()
		mustDial(t, srv.config(key, remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))))
	})
}

func TestDialGivesUp(t *testing.T) {
	t.Parallel()
	key := newClientKey(t)
	port := freePort(t) // nothing listens there
	kh := remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts"))
	base := remote.Config{
		Host: "127.0.0.1", Port: port, User: "provision", Signer: key, KnownHosts: kh,
		Retry: remote.RetryPolicy{InitialDelay: 20 * time.Millisecond, MaxDelay: 100 * time.Millisecond},
	}
	prefix := fmt.Sprintf("ssh provision@127.0.0.1:%d: ", port)

	tests := []struct {
		name    string
		mod     func(*remote.Config)
		ctx     func(t *testing.T) context.Context
		wantIs  error
		wantMsg []string
	}{
		{
			name:    "timeout",
			mod:     func(c *remote.Config) { c.Timeout = 700 * time.Millisecond },
			wantIs:  context.DeadlineExceeded,
			wantMsg: []string{prefix, "connection refused", "gave up after"},
		},
		{
			name: "context canceled",
			mod:  func(c *remote.Config) { c.Timeout = time.Minute },
			ctx: func(t *testing.T) context.Context {
				ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
				t.Cleanup(cancel)
				return ctx
			},
			wantIs:  context.DeadlineExceeded,
			wantMsg: []string{prefix, "connection refused"},
		},
		{
			name:    "attempts",
			mod:     func(c *remote.Config) { c.Timeout = time.Minute; c.Retry.MaxAttempts = 3 },
			wantMsg: []string{prefix, "connection refused", "after 3 attempts"},
		},
		{
			name:    "no signer",
			mod:     func(c *remote.Config) { c.Signer = nil },
			wantMsg: []string{prefix, "no private key"},
		},
		{
			name:    "no known hosts",
			mod:     func(c *remote.Config) { c.KnownHosts = nil },
			wantMsg: []string{prefix, "no known_hosts file"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := base
			tt.mod(&cfg)
			ctx := t.Context()
			if tt.ctx != nil {
				ctx = tt.ctx(t)
			}
			start := time.Now()
			c, err := remote.Dial(ctx, cfg)
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded with nothing listening")
			}
			t.Logf("error: %v", err)
			if elapsed := time.Since(start); elapsed > 10*time.Second {
				t.Errorf("Dial took %s", elapsed)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
			for _, want := range tt.wantMsg {
				if !strings.HasPrefix(err.Error(), prefix) || !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not start with %q and contain %q", err, prefix, want)
				}
			}
		})
	}
}

// A server that accepts TCP but never speaks SSH: the context and the
// attempt timeout must still end the handshake.
func TestDialHandshakeRespectsContext(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, silent
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	port := l.Addr().(*net.TCPAddr).Port
	cfg := remote.Config{
		Host: "127.0.0.1", Port: port, User: "provision", Signer: newClientKey(t),
		KnownHosts: remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")),
		Timeout:    time.Minute,
		Retry:      remote.RetryPolicy{AttemptTimeout: 200 * time.Millisecond, InitialDelay: 10 * time.Millisecond},
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	start := time.Now()
	c, err := remote.Dial(ctx, cfg)
	if err == nil {
		c.Close()
		t.Fatal("Dial succeeded against a silent server")
	}
	t.Logf("error: %v", err)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("Dial took %s; the handshake ignored the context", elapsed)
	}
	var dialErr *remote.DialError
	if !errors.As(err, &dialErr) || dialErr.Attempts < 2 || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("want a DialError after several timed-out attempts, got %#v", err)
	}
}
