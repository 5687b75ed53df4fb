package pvesim

// An SFTP endpoint for a simulated Proxmox host: a real OpenSSH sshd on
// loopback, chrooted into the node's directory (Sim.SetNodeDir).

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
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
)

// DefaultSSHDPath is where Debian's openssh-server puts sshd.
const DefaultSSHDPath = "/usr/sbin/sshd"

// SSHDConfig describes the sshd of one simulated Proxmox host.
type SSHDConfig struct {
	Node string // the simulated host, for messages
	// Root is the node's directory (the chroot), as given to
	// Sim.SetNodeDir: an upload to /var/lib/vz/snippets/x lands in
	// Root/var/lib/vz/snippets/x. sshd wants Root and every directory above
	// it owned by root and writable by nobody else (so not under /tmp).
	Root string
	// Dir holds the sshd's config, log, authorized keys and host key
	// (kept: a host key made once stays the host's key, as known_hosts
	// expects). It must not be under Root.
	Dir string
	// Addr is a loopback host:port; port 0 picks a free one.
	Addr string
	// User may log in, by one of AuthorizedKeys; it must exist on this
	// machine (proxmox.sshUser, root by default).
	User           string
	AuthorizedKeys []string
	Path           string        // sshd binary; default DefaultSSHDPath
	ReadyTimeout   time.Duration // default 20 s
}

// SSHD is a running sshd serving SFTP only (internal-sftp, no shell).
type SSHD struct {
	Node    string
	Addr    string // 127.0.0.1:port
	Port    int
	HostKey string // public host key, authorized_keys format
	Log     string // sshd's log file

	cmd    *exec.Cmd
	exited chan error
	once   sync.Once
}

// hostKeyName is the sshd's host key file in SSHDConfig.Dir.
const hostKeyName = "ssh_host_ed25519_key"

// StartSSHD starts a real sshd for a simulated host and waits until it
// greets. Stop it with Close; it also ends when ctx does.
func StartSSHD(ctx context.Context, c SSHDConfig) (*SSHD, error) {
	fail := func(err error) (*SSHD, error) {
		return nil, fmt.Errorf("pvesim: sshd for %s: %w", c.Node, err)
	}
	if c.Path == "" {
		c.Path = DefaultSSHDPath
	}
	if c.ReadyTimeout <= 0 {
		c.ReadyTimeout = 20 * time.Second
	}
	if c.User == "" || strings.ContainsAny(c.User, " \t\n,*?!") {
		return fail(fmt.Errorf("user %q is not a user name", c.User))
	}
	if len(c.AuthorizedKeys) == 0 {
		return fail(errors.New("no authorized key: nobody could log in"))
	}
	host, portStr, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return fail(fmt.Errorf("address %q: %w", c.Addr, err))
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fail(fmt.Errorf("address %q: not a loopback address", c.Addr))
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return fail(fmt.Errorf("address %q: bad port", c.Addr))
	}
	if _, err := os.Stat(c.Path); err != nil {
		return fail(fmt.Errorf("%w (install openssh-server)", err))
	}
	if err := checkChroot(c.Root); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fail(err)
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege separation directory
		return fail(err)
	}
	pub, err := ensureSSHDHostKey(filepath.Join(c.Dir, hostKeyName))
	if err != nil {
		return fail(err)
	}
	keys := strings.Join(c.AuthorizedKeys, "\n") + "\n"
	if err := os.WriteFile(filepath.Join(c.Dir, "authorized_keys"), []byte(keys), 0o644); err != nil {
		return fail(err)
	}
	// A port picked here may be taken before sshd binds it: try again.
	for attempt := 0; ; attempt++ {
		p := port
		if p == 0 {
			if p, err = freePort(ip); err != nil {
				return fail(err)
			}
		}
		d, err := startSSHD(ctx, c, netip.AddrPortFrom(ip, uint16(p)), pub)
		if err == nil {
			return d, nil
		}
		if port != 0 || attempt == 2 || ctx.Err() != nil {
			return fail(err)
		}
	}
}

func startSSHD(ctx context.Context, c SSHDConfig, addr netip.AddrPort, pub string) (*SSHD, error) {
	cfgPath := filepath.Join(c.Dir, "sshd_config")
	if err := os.WriteFile(cfgPath, []byte(sshdConfig(c, addr)), 0o644); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, c.Path, "-t", "-f", cfgPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("check %s: %s", cfgPath, strings.TrimSpace(string(out)))
	}
	logPath := filepath.Join(c.Dir, "sshd.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	defer logFile.Close()
	// sshd re-executes itself and needs its absolute path for that.
	cmd := exec.Command(c.Path, "-D", "-e", "-f", cfgPath)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Close ends its session processes too; it dies with this process
	// even when that cannot run Close (a second Ctrl-C, SIGKILL).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &SSHD{Node: c.Node, Addr: addr.String(), Port: int(addr.Port()), HostKey: pub, Log: logPath,
		cmd: cmd, exited: make(chan error, 1)}
	go func() { d.exited <- cmd.Wait() }()
	stop := context.AfterFunc(ctx, func() { _ = d.Close() })
	if err := d.waitReady(ctx, c.ReadyTimeout); err != nil {
		stop()
		_ = d.Close()
		return nil, err
	}
	return d, nil
}

// sshdConfig is the whole config: nothing is read from /etc/ssh. One user,
// by key, SFTP only, chrooted into the node's directory.
func sshdConfig(c SSHDConfig, addr netip.AddrPort) string {
	lines := []string{
		"# provision pve-sim: simulated Proxmox host " + c.Node + "; generated, do not edit",
		"ListenAddress " + addr.String(),
		"HostKey " + filepath.Join(c.Dir, hostKeyName),
		"PidFile none",
		"AuthorizedKeysFile " + filepath.Join(c.Dir, "authorized_keys"),
		"AllowUsers " + c.User,
		"PermitRootLogin prohibit-password",
		"PubkeyAuthentication yes",
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"UsePAM no",
		"StrictModes no", // the keys file is ours, not the user's
		"ChrootDirectory " + c.Root,
		"ForceCommand internal-sftp",
		"Subsystem sftp internal-sftp",
		"AllowTcpForwarding no",
		"AllowStreamLocalForwarding no",
		"X11Forwarding no",
		"PermitTTY no",
		"PrintMotd no",
		"UseDNS no",
		"MaxStartups 100:30:200",
		"LogLevel INFO",
	}
	return strings.Join(lines, "\n") + "\n"
}

func (d *SSHD) waitReady(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		err := sshBanner(ctx, d.Addr)
		if err == nil {
			return nil
		}
		select {
		case werr := <-d.exited:
			d.exited <- werr
			return fmt.Errorf("sshd exited (%v); %s says: %s", werr, d.Log, logTail(d.Log))
		case <-ctx.Done():
			return fmt.Errorf("sshd not ready at %s (%v); its log is %s", d.Addr, err, d.Log)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Close stops the sshd and the session processes it started.
func (d *SSHD) Close() error {
	var err error
	d.once.Do(func() {
		pgid := d.cmd.Process.Pid
		_ = syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case werr := <-d.exited:
			d.exited <- werr
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-pgid, syscall.SIGKILL)
			werr := <-d.exited
			d.exited <- werr
			err = fmt.Errorf("pvesim: sshd for %s did not stop on SIGTERM; killed", d.Node)
		}
	})
	return err
}

// checkChroot refuses a root sshd would refuse, with the reason: it and
// every directory above it owned by root and writable only by root.
func checkChroot(root string) error {
	if !filepath.IsAbs(root) {
		return fmt.Errorf("chroot %q: not an absolute path", root)
	}
	for p := filepath.Clean(root); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("chroot %s: %w", root, err)
		}
		uid := -1
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid = int(st.Uid)
		}
		if !fi.IsDir() || uid != 0 || fi.Mode().Perm()&0o022 != 0 {
			return fmt.Errorf("chroot %s: sshd wants %s to be a directory owned by root and writable by nobody else (it is %s, uid %d); use a directory under /run or /srv",
				root, p, fi.Mode(), uid)
		}
		if p == "/" {
			return nil
		}
	}
}

// ensureSSHDHostKey makes an ed25519 host key unless one exists and
// returns its public half in authorized_keys format.
func ensureSSHDHostKey(path string) (string, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		_, priv, gerr := ed25519.GenerateKey(rand.Reader)
		if gerr != nil {
			return "", fmt.Errorf("generate host key: %w", gerr)
		}
		block, merr := ssh.MarshalPrivateKey(priv, "")
		if merr != nil {
			return "", fmt.Errorf("encode host key: %w", merr)
		}
		data = pem.EncodeToMemory(block)
		if werr := os.WriteFile(path, data, 0o600); werr != nil {
			return "", fmt.Errorf("write host key: %w", werr)
		}
	} else if err != nil {
		return "", fmt.Errorf("read host key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	if err != nil {
		return "", fmt.Errorf("host key %s: %w", path, err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}

func freePort(ip netip.Addr) (int, error) {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// sshBanner connects to addr and reads the server's SSH version line.
func sshBanner(ctx context.Context, addr string) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("read SSH banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-2.0-") {
		return fmt.Errorf("%s answered %q, not an SSH server", addr, strings.TrimSpace(line))
	}
	return nil
}

// logTail is the last lines of a log, for an error message.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "; ")
}
