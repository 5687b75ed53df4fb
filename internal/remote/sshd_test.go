package remote_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

const sshdPath = "/usr/sbin/sshd"

// requireSSHD skips the test when a real sshd cannot be run here, or fails
// it under CI, which installs openssh-server and runs as root.
func requireSSHD(t *testing.T) {
	t.Helper()
	var why string
	if _, err := os.Stat(sshdPath); err != nil {
		why = sshdPath + " not found (install openssh-server: make deps)"
	} else if os.Geteuid() != 0 {
		why = "sshd needs root to run with privilege separation (run the tests as root)"
	}
	if why == "" {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI is set but a real sshd cannot run: %s", why)
	}
	t.Skipf("skipping: %s", why)
}

// testSSHD is a real OpenSSH server on 127.0.0.1 with its own config, host
// keys and authorized_keys in a temporary directory.
type testSSHD struct {
	t        *testing.T
	dir      string
	port     int
	user     string
	hostKeys []string // paths of the host private keys
	authKeys string   // AuthorizedKeysFile

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  *syncBuffer
}

// sshdOptions tune newSSHD.
type sshdOptions struct {
	hostKeyTypes []string // "ed25519" (default), "ecdsa"
	noStart      bool     // write config and keys only
}

// newSSHD starts an sshd that accepts the given client keys. It is stopped
// when the test ends, also when it fails.
func newSSHD(t *testing.T, opts sshdOptions, clientKeys ...ssh.PublicKey) *testSSHD {
	t.Helper()
	requireSSHD(t)
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation dir
		t.Fatalf("create /run/sshd: %v", err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	s := &testSSHD{t: t, dir: t.TempDir(), user: u.Username, log: &syncBuffer{}}
	s.authKeys = filepath.Join(s.dir, "authorized_keys")
	s.authorize(clientKeys...)
	types := opts.hostKeyTypes
	if len(types) == 0 {
		types = []string{"ed25519"}
	}
	for _, typ := range types {
		s.hostKeys = append(s.hostKeys, filepath.Join(s.dir, "ssh_host_"+typ+"_key"))
	}
	s.newHostKeys()
	s.port = freePort(t)
	t.Cleanup(s.stop) // before starting, so a failed start is cleaned up too
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("sshd log (port %d):\n%s", s.port, s.log.String())
		}
	})
	if !opts.noStart {
		s.start()
	}
	return s
}

// authorize replaces the authorized keys.
func (s *testSSHD) authorize(keys ...ssh.PublicKey) {
	s.t.Helper()
	var b bytes.Buffer
	for _, k := range keys {
		b.Write(ssh.MarshalAuthorizedKey(k))
	}
	if err := os.WriteFile(s.authKeys, b.Bytes(), 0o600); err != nil {
		s.t.Fatal(err)
	}
}

// newHostKeys writes fresh host keys; a running sshd uses them after a
// restart.
func (s *testSSHD) newHostKeys() {
	s.t.Helper()
	for _, path := range s.hostKeys {
		var key any
		switch {
		case strings.Contains(path, "ecdsa"):
			k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			if err != nil {
				s.t.Fatal(err)
			}
			key = k
		default:
			_, k, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				s.t.Fatal(err)
			}
			key = k
		}
		block, err := ssh.MarshalPrivateKey(key, "test host key")
		if err != nil {
			s.t.Fatal(err)
		}
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			s.t.Fatal(err)
		}
	}
}

// hostPublicKey returns the public half of the i-th host key.
func (s *testSSHD) hostPublicKey(i int) ssh.PublicKey {
	s.t.Helper()
	data, err := os.ReadFile(s.hostKeys[i])
	if err != nil {
		s.t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		s.t.Fatal(err)
	}
	return signer.PublicKey()
}

func (s *testSSHD) writeConfig() string {
	s.t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "ListenAddress 127.0.0.1:%d\n", s.port)
	for _, k := range s.hostKeys {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	fmt.Fprintf(&b, "AuthorizedKeysFile %s\n", s.authKeys)
	fmt.Fprintf(&b, "PidFile %s\n", filepath.Join(s.dir, "sshd.pid"))
	b.WriteString(`UsePAM no
StrictModes no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
AllowStreamLocalForwarding yes
AllowTcpForwarding yes
MaxStartups 200
MaxSessions 50
LogLevel VERBOSE
Subsystem sftp /usr/lib/openssh/sftp-server
`)
	path := filepath.Join(s.dir, "sshd_config")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		s.t.Fatal(err)
	}
	return path
}

// start runs sshd and waits until it listens.
func (s *testSSHD) start() {
	s.t.Helper()
	for try := 0; ; try++ {
		err := s.tryStart()
		if err == nil {
			return
		}
		// Another test may have taken the free port meanwhile.
		if try < 3 && strings.Contains(err.Error(), "Address already in use") {
			s.port = freePort(s.t)
			continue
		}
		s.t.Fatalf("start sshd: %v\n%s", err, s.log.String())
	}
}

func (s *testSSHD) tryStart() error {
	config := s.writeConfig()
	cmd := exec.Command(sshdPath, "-D", "-e", "-f", config)
	cmd.Stdout = s.log
	cmd.Stderr = s.log
	dieWithTest(cmd)
	mark := s.log.Len()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan struct{})
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-done:
			return fmt.Errorf("sshd exited: %s", s.log.String()[mark:])
		case <-time.After(20 * time.Millisecond):
		}
		if strings.Contains(s.log.String()[mark:], "Server listening on") {
			return nil
		}
	}
	s.stop()
	return errors.New("sshd did not listen within 10s")
}

// stop terminates sshd (the listener; sessions end with their clients).
func (s *testSSHD) stop() {
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.cmd = nil
	s.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	// Let sessions whose clients are gone end first, so that sshd reaps
	// them rather than leaving them to init.
	children := fmt.Sprintf("/proc/%d/task/%d/children", cmd.Process.Pid, cmd.Process.Pid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		b, err := os.ReadFile(children)
		if err != nil || len(bytes.TrimSpace(b)) == 0 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// restart stops sshd and starts it again on the same port.
func (s *testSSHD) restart() {
	s.t.Helper()
	s.stop()
	if err := s.tryStart(); err != nil { // same port: the host must look the same
		s.t.Fatalf("restart sshd: %v", err)
	}
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
