package remote_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/remote"
)

// newTestClient starts an sshd and connects to it.
func newTestClient(t *testing.T, mod func(*remote.Config)) *remote.Client {
	t.Helper()
	key := newClientKey(t)
	srv := newSSHD(t, sshdOptions{}, key.PublicKey())
	cfg := srv.config(key, remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")))
	if mod != nil {
		mod(&cfg)
	}
	return mustDial(t, cfg)
}

func TestRun(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, nil)
	tests := []struct {
		name       string
		cmd        string
		wantOut    string
		wantErrOut string
		wantCode   int // -2: no error expected
	}{
		{"stdout", "echo hello; echo world", "hello\nworld\n", "", -2},
		{"stdout and stderr", "echo out; echo err >&2", "out\n", "err\n", -2},
		{"exit code and stderr", "echo partial; echo 'it broke' >&2; exit 3", "partial\n", "it broke\n", 3},
		{"command not found", "no-such-command-xyz", "", "", 127},
		{"stdin is empty", "cat", "", "", -2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			out, errOut, err := c.Run(t.Context(), tt.cmd)
			if string(out) != tt.wantOut {
				t.Errorf("stdout = %q, want %q", out, tt.wantOut)
			}
			if tt.wantErrOut != "" && string(errOut) != tt.wantErrOut {
				t.Errorf("stderr = %q, want %q", errOut, tt.wantErrOut)
			}
			if tt.wantCode == -2 {
				if err != nil {
					t.Errorf("Run: %v", err)
				}
				return
			}
			var exitErr *remote.ExitError
			if !errors.As(err, &exitErr) {
				t.Fatalf("error %v (%T) is not an *ExitError", err, err)
			}
			if exitErr.ExitCode != tt.wantCode || exitErr.Command != tt.cmd || string(exitErr.Stderr) != string(errOut) {
				t.Errorf("ExitError = %+v, want code %d for %q with stderr %q", exitErr, tt.wantCode, tt.cmd, errOut)
			}
			msg := err.Error()
			for _, want := range []string{
				"ssh " + c.Target() + ": ", strconv.Quote(tt.cmd),
				fmt.Sprintf("exited with code %d", tt.wantCode), strings.TrimSpace(string(errOut)),
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
		})
	}
}

func TestRunCancel(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, nil)
	// A duration no other test uses, to find the process afterwards.
	const sleep = "3017"
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(300*time.Millisecond, cancel)
	start := time.Now()
	_, _, err := c.Run(ctx, "sleep "+sleep)
	elapsed := time.Since(start)
	t.Logf("Run returned %s after it started: %v", elapsed, err)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run error %v is not context.Canceled", err)
	}
	if elapsed > 5*time.Second {
		t.Errorf("Run returned %s after cancel", elapsed)
	}
	if !strings.Contains(err.Error(), "ssh "+c.Target()+": run \"sleep "+sleep+"\"") {
		t.Errorf("error %q does not name the target and command", err)
	}
	// sshd runs on this machine: the signal must have ended the command.
	deadline := time.Now().Add(3 * time.Second)
	for pidOf(t, "sleep", sleep) != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("remote 'sleep %s' still running (pid %d) after cancel", sleep, pidOf(t, "sleep", sleep))
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The connection is still usable.
	if out, _, err := c.Run(t.Context(), "echo ok"); err != nil || string(out) != "ok\n" {
		t.Errorf("Run after cancel: %q, %v", out, err)
	}
}

// pidOf finds a local process by its exact argv.
func pidOf(t *testing.T, argv ...string) int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Join(argv, "\x00") + "\x00"
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && string(b) == want {
			return pid
		}
	}
	return 0
}

func TestDialUnixSocketThroughSSH(t *testing.T) {
	t.Parallel()
	c := newTestClient(t, nil)

	// A tiny HTTP server on a Unix socket, standing in for dockerd.
	sock := filepath.Join(t.TempDir(), "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "pong %s %s", r.Method, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })

	tr := &http.Transport{DialContext: c.UnixSocketDialer(sock)}
	t.Cleanup(tr.CloseIdleConnections)
	hc := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for range 3 { // several requests, new and reused channels
		resp, err := hc.Get("http://docker/_ping")
		if err != nil {
			t.Fatalf("GET through SSH: %v", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || string(body) != "pong GET /_ping" {
			t.Fatalf("GET through SSH: %d %q %v", resp.StatusCode, body, err)
		}
	}

	// The plain dialer, for other protocols.
	conn, err := c.DialContext(t.Context(), "unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET /raw HTTP/1.0\r\nHost: docker\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.Contains(string(raw), "pong GET /raw") {
		t.Errorf("raw request through SSH returned %q", raw)
	}

	missing := filepath.Join(t.TempDir(), "missing.sock")
	if conn, err := c.DialUnix(t.Context(), missing); err == nil {
		conn.Close()
		t.Error("DialUnix to a missing socket succeeded")
	} else if !strings.Contains(err.Error(), "ssh "+c.Target()+": dial unix "+missing) {
		t.Errorf("error %q does not name the target and socket", err)
	}
}

func TestRunErrorsAreRedacted(t *testing.T) {
	t.Parallel()
	const registered = "s3cr3t-api-token-value"
	var swarmToken = fakeSwarmToken()
	red := remote.NewRedactor(registered)
	c := newTestClient(t, func(cfg *remote.Config) { cfg.Redactor = red })

	cmd := fmt.Sprintf("docker swarm join --token %s 10.0.0.1:2377; echo \"bad token %s, api %s\" >&2; exit 1", swarmToken, swarmToken, registered)
	_, stderr, err := c.Run(t.Context(), cmd)
	if err == nil {
		t.Fatal("Run succeeded")
	}
	msg := err.Error()
	for _, secret := range []string{registered, swarmToken, "SWMTKN-1-3pu6"} {
		if strings.Contains(msg, secret) {
			t.Errorf("error leaks %q: %s", secret, msg)
		}
	}
	if !strings.Contains(msg, "--token [redacted]") || !strings.Contains(msg, "api [redacted]") {
		t.Errorf("error %q does not show [redacted] in place of the secrets", msg)
	}
	var exitErr *remote.ExitError
	if !errors.As(err, &exitErr) || exitErr.ExitCode != 1 {
		t.Fatalf("error %v is not an ExitError with code 1", err)
	}
	if strings.Contains(exitErr.Command+string(exitErr.Stderr), registered) {
		t.Errorf("ExitError fields leak the secret: %+v", exitErr)
	}
	// The caller gets the real output.
	if !strings.Contains(string(stderr), swarmToken) {
		t.Errorf("stderr returned to the caller was redacted: %q", stderr)
	}

	// Errors other than an exit status are redacted too.
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err = c.Run(ctx, "echo "+registered)
	if err == nil || strings.Contains(err.Error(), registered) || !errors.Is(err, context.Canceled) {
		t.Errorf("canceled Run error %v leaks the secret or lost context.Canceled", err)
	}
}
