package remote

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// ErrHostKeyChanged is the sentinel for a host that presented a key other
// than the one recorded for it. It is never retried: either the host was
// reinstalled or someone is in the middle. errors.As a *HostKeyChangedError
// for the details.
var ErrHostKeyChanged = errors.New("host key changed")

// HostKeyChangedError reports a host whose key differs from the recorded one.
type HostKeyChangedError struct {
	Host      string // as written in known_hosts: "1.2.3.4" or "[1.2.3.4]:2222"
	File      string // the known_hosts file
	Line      int    // the line that holds the recorded key
	Known     string // fingerprint (type and SHA256) of the recorded key
	Presented string // fingerprint of the key the host presented
}

func (e *HostKeyChangedError) Error() string {
	return fmt.Sprintf("host key for %s changed: %s:%d records %s but the host presented %s; "+
		"this is either a reinstalled host or a machine in the middle: check the new key on the host's console "+
		"(ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub), then remove line %d from %s (ssh-keygen -R '%s' -f %s) and connect again",
		e.Host, e.File, e.Line, e.Known, e.Presented, e.Line, e.File, e.Host, e.File)
}

// Unwrap lets errors.Is(err, ErrHostKeyChanged) match.
func (e *HostKeyChangedError) Unwrap() error { return ErrHostKeyChanged }

// hostKeyRevokedError reports a key marked @revoked in known_hosts.
type hostKeyRevokedError struct {
	host, file string
	line       int
	key        string
}

func (e *hostKeyRevokedError) Error() string {
	return fmt.Sprintf("host key %s presented by %s is marked @revoked in %s:%d", e.key, e.host, e.file, e.line)
}

// knownHostsFileError reports a known_hosts file that cannot be read,
// parsed or written; it is not retried either.
type knownHostsFileError struct{ err error }

func (e *knownHostsFileError) Error() string { return "known hosts: " + e.err.Error() }
func (e *knownHostsFileError) Unwrap() error { return e.err }

// KnownHosts is a host key policy over one known_hosts file in OpenSSH
// format: a known host must present its recorded key; an unknown host is
// trusted on first use and its key appended to the file; a host with a
// different key is refused with a *HostKeyChangedError.
//
// One KnownHosts may be used by many goroutines at once. Checks and appends
// are serialized by a mutex and, where the platform has flock(2), by an
// exclusive lock on the file, so concurrent first connections to one host,
// also from several processes, record exactly one line.
type KnownHosts struct {
	path string
	mu   sync.Mutex
}

// NewKnownHosts returns the policy for the known_hosts file at path. The
// file and its parent directory are created (0600, 0700) when the first
// unknown host is recorded.
func NewKnownHosts(path string) *KnownHosts {
	return &KnownHosts{path: path}
}

// Path returns the known_hosts file.
func (k *KnownHosts) Path() string { return k.path }

// HostKeyCallback returns Check as an ssh.HostKeyCallback.
func (k *KnownHosts) HostKeyCallback() ssh.HostKeyCallback { return k.Check }

// Check verifies key for hostport ("host:port", as passed to
// ssh.NewClientConn; the remote address is used when hostport is empty).
// It has the ssh.HostKeyCallback signature.
func (k *KnownHosts) Check(hostport string, remote net.Addr, key ssh.PublicKey) error {
	if hostport == "" && remote != nil {
		hostport = remote.String()
	}
	if remote == nil { // knownhosts needs one, though hostport takes precedence
		remote = addrString(hostport)
	}
	if k.path == "" {
		return &knownHostsFileError{errors.New("no known_hosts file configured")}
	}
	k.mu.Lock()
	defer k.mu.Unlock()

	if err := os.MkdirAll(filepath.Dir(k.path), 0o700); err != nil {
		return &knownHostsFileError{err}
	}
	f, err := os.OpenFile(k.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return &knownHostsFileError{err}
	}
	defer f.Close()
	unlock, err := lockFile(f)
	if err != nil {
		return &knownHostsFileError{fmt.Errorf("lock %s: %w", k.path, err)}
	}
	defer unlock()

	// Read the file again under the lock: another goroutine or process may
	// have recorded this host since the caller started its handshake.
	check, err := knownhosts.New(k.path)
	if err != nil {
		return &knownHostsFileError{err}
	}
	err = check(hostport, remote, key)
	var keyErr *knownhosts.KeyError
	var revoked *knownhosts.RevokedError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
		return k.appendLocked(f, hostport, key)
	case errors.As(err, &keyErr):
		return &HostKeyChangedError{
			Host:      knownhosts.Normalize(hostport),
			File:      keyErr.Want[0].Filename,
			Line:      keyErr.Want[0].Line,
			Known:     fingerprint(keyErr.Want[0].Key),
			Presented: fingerprint(key),
		}
	case errors.As(err, &revoked):
		return &hostKeyRevokedError{
			host: knownhosts.Normalize(hostport), file: revoked.Revoked.Filename,
			line: revoked.Revoked.Line, key: fingerprint(key),
		}
	default:
		return &knownHostsFileError{err}
	}
}

// appendLocked records key for hostport; k.mu and the file lock are held.
func (k *KnownHosts) appendLocked(f *os.File, hostport string, key ssh.PublicKey) error {
	line := knownhosts.Line([]string{hostport}, key) + "\n"
	fi, err := f.Stat()
	if err != nil {
		return &knownHostsFileError{err}
	}
	if n := fi.Size(); n > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, n-1); err != nil && !errors.Is(err, io.EOF) {
			return &knownHostsFileError{err}
		}
		if last[0] != '\n' {
			line = "\n" + line
		}
	}
	if _, err := f.WriteString(line); err != nil {
		return &knownHostsFileError{fmt.Errorf("record host key of %s: %w", knownhosts.Normalize(hostport), err)}
	}
	if err := f.Sync(); err != nil {
		return &knownHostsFileError{err}
	}
	return nil
}

// addrString is a net.Addr for a "host:port" string.
type addrString string

func (a addrString) Network() string { return "tcp" }
func (a addrString) String() string  { return string(a) }

// preferredHostKeyAlgos is the order in which host key algorithms are asked
// for when nothing is known about a host (OpenSSH's order, without
// certificates and without SHA-1 RSA).
var preferredHostKeyAlgos = []string{
	ssh.KeyAlgoED25519,
	ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521,
	ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256,
}

// HostKeyAlgorithms returns the host key algorithms to offer when
// connecting to hostport: the algorithms of the keys recorded for it first,
// then the usual ones. A host that holds several keys (ed25519, ecdsa, rsa)
// thus presents the one recorded, as OpenSSH arranges it, instead of
// failing as changed because the client preferred another type; a host that
// no longer has any recorded type still presents a key and is refused as
// changed.
func (k *KnownHosts) HostKeyAlgorithms(hostport string) ([]string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	check, err := knownhosts.New(k.path)
	if errors.Is(err, os.ErrNotExist) {
		return slices.Clone(preferredHostKeyAlgos), nil
	}
	if err != nil {
		return nil, &knownHostsFileError{err}
	}
	// Ask with a throwaway key: the answer lists the keys recorded.
	_, probe, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	probeKey, err := ssh.NewSignerFromKey(probe)
	if err != nil {
		return nil, err
	}
	var algos []string
	var keyErr *knownhosts.KeyError
	if err := check(hostport, addrString(hostport), probeKey.PublicKey()); errors.As(err, &keyErr) {
		for _, want := range keyErr.Want {
			algos = appendNew(algos, algorithmsForKey(want.Key.Type())...)
		}
	}
	return appendNew(algos, preferredHostKeyAlgos...), nil
}

func algorithmsForKey(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256}
	}
	return []string{keyType}
}

func appendNew(list []string, items ...string) []string {
	for _, it := range items {
		if !slices.Contains(list, it) {
			list = append(list, it)
		}
	}
	return list
}

// fingerprint renders a key the way ssh-keygen -l does: "ED25519 SHA256:...".
func fingerprint(key ssh.PublicKey) string {
	t := strings.TrimPrefix(key.Type(), "ssh-")
	switch {
	case strings.HasPrefix(t, "ecdsa-"):
		t = "ECDSA"
	case t == "rsa":
		t = "RSA"
	case t == "ed25519":
		t = "ED25519"
	}
	return t + " " + ssh.FingerprintSHA256(key)
}
