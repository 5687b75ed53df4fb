package lab

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// hostKeyFile is a node's sshd host key (the .pub beside it).
const hostKeyFile = "ssh_host_ed25519_key"

// ensureHostKey makes the node's ed25519 host key unless it exists, and
// returns its public half (authorized_keys format) and fingerprint.
func ensureHostKey(dir string) (pub, fingerprint string, err error) {
	path := filepath.Join(dir, hostKeyFile)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return "", "", fmt.Errorf("generate host key: %w", gerr)
		}
		block, merr := ssh.MarshalPrivateKey(priv, "")
		if merr != nil {
			return "", "", fmt.Errorf("encode host key: %w", merr)
		}
		data = pem.EncodeToMemory(block)
		if werr := os.WriteFile(path, data, 0o600); werr != nil {
			return "", "", fmt.Errorf("write host key: %w", werr)
		}
	} else if err != nil {
		return "", "", fmt.Errorf("read host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return "", "", fmt.Errorf("read host key %s: %w", path, err)
	}
	line := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	if err := os.WriteFile(path+".pub", []byte(line+"\n"), 0o644); err != nil {
		return "", "", fmt.Errorf("write host key: %w", err)
	}
	return line, ssh.FingerprintSHA256(signer.PublicKey()), nil
}

// sshdConfig is a node's complete sshd_config: nothing is read from
// /etc/ssh. Only the lab user may log in, by key; an SSH session talks to
// the node's dockerd through DOCKER_HOST; streamlocal forwarding lets a
// client reach the docker socket directly (the swarm stage does).
func (l *Lab) sshdConfig(n Node) string {
	lines := []string{
		"# provision lab " + l.cfg.Prefix + ", node " + n.Name + ": generated, do not edit",
		"ListenAddress " + net.JoinHostPort(n.IP.String(), "22"),
		"HostKey " + filepath.Join(n.Dir, hostKeyFile),
		"PidFile " + filepath.Join(n.Dir, "sshd.pid"),
		"AuthorizedKeysFile " + l.authorizedKeysPath(),
		"AllowUsers " + l.cfg.SSHUser,
		"PermitRootLogin no",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		// The keys file is root's, under /run: nothing for StrictModes to
		// protect, and the user's home may be gone while sessions run.
		"StrictModes no",
		"AllowStreamLocalForwarding yes",
		"AllowTcpForwarding yes",
		"SetEnv DOCKER_HOST=unix://" + n.DockerSocket,
		"Subsystem sftp internal-sftp",
		"PrintMotd no",
		"UseDNS no",
		// Parallel joins open many connections at once.
		"MaxStartups 200:30:400",
		"LogLevel INFO",
	}
	return strings.Join(lines, "\n") + "\n"
}

// ensureSSHD writes the node's sshd_config and starts its sshd unless one
// runs, then waits until <ip>:22 greets with an SSH banner.
func (l *Lab) ensureSSHD(ctx context.Context, n Node) error {
	cfg := filepath.Join(n.Dir, "sshd_config")
	if err := os.WriteFile(cfg, []byte(l.sshdConfig(n)), 0o644); err != nil {
		return fmt.Errorf("write sshd_config: %w", err)
	}
	var exited <-chan error
	logPath := filepath.Join(n.Dir, "sshd.log")
	if _, ok := pidFromFile(filepath.Join(n.Dir, "sshd.pid"), cfg); !ok {
		if out, err := run(ctx, l.tools.sshd, "-t", "-f", cfg); err != nil {
			return fmt.Errorf("check sshd_config: %w", errors.New(strings.TrimSpace(out)))
		}
		// sshd re-executes itself and needs its absolute path for that.
		s, err := l.spawn(n, logPath, nil, l.tools.sshd, "-D", "-e", "-f", cfg)
		if err != nil {
			return fmt.Errorf("start sshd: %w", err)
		}
		exited = s.exited
		l.log.Debug("started sshd", "node", n.Name, "pid", s.pid)
	}
	return waitReady(ctx, l.cfg.ReadyTimeout, exited, logPath, "sshd", func(ctx context.Context) error {
		return sshBanner(ctx, n.SSHAddr)
	})
}

// sshBanner connects to addr and reads the server's SSH version line.
func sshBanner(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read SSH banner from %s: %w", addr, err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("%s answered %q, not an SSH server", addr, strings.TrimSpace(line))
	}
	return nil
}

// writeAuthorizedKeys writes the inventory's public keys to the file every
// node's sshd reads.
func (l *Lab) writeAuthorizedKeys() error {
	var b strings.Builder
	for _, k := range l.cfg.AuthorizedKeys {
		b.WriteString(strings.TrimSpace(k))
		b.WriteByte('\n')
	}
	if err := os.WriteFile(l.authorizedKeysPath(), []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("write authorized keys: %w", err)
	}
	return nil
}
