package remote

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/userfile"
)

// ErrKeyEncrypted is returned by LoadSigner for a passphrase-protected key:
// provision never prompts.
var ErrKeyEncrypted = errors.New("private key is encrypted with a passphrase")

// LoadSigner reads an unencrypted private key (ed25519, ECDSA or RSA; in
// OpenSSH, PKCS#1, PKCS#8 or SEC 1 format). Like ssh, it refuses a key file
// that group or others may access.
func LoadSigner(path string) (ssh.Signer, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("load private key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 && runtime.GOOS != "windows" {
		return nil, fmt.Errorf("load private key %s: permissions %#o are too open: "+
			"a private key must not be accessible by group or others; run: chmod 600 %s", path, perm, path)
	}
	data, err := userfile.Read(path, userfile.MaxSmall)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(data)
	var missing *ssh.PassphraseMissingError
	switch {
	case errors.As(err, &missing):
		fp := ""
		if missing.PublicKey != nil {
			fp = " (" + fingerprint(missing.PublicKey) + ")"
		}
		return nil, fmt.Errorf("load private key %s%s: %w; provision cannot ask for a passphrase: "+
			"use a key held by ssh-agent or an unencrypted deploy key (an inventory with ssh.createKey gets one created)",
			path, fp, ErrKeyEncrypted)
	case err != nil:
		return nil, fmt.Errorf("load private key %s: %w", path, err)
	}
	return signer, nil
}

// EnsureKey returns the private key at path, first creating an ed25519 key
// pair there when the file does not exist: the private key in OpenSSH
// format with mode 0600, the public key in path+".pub" with mode 0644, and
// missing parent directories with mode 0700. created reports whether the
// key was made now. A missing .pub beside an existing key is written again.
// Concurrent callers (also in other processes) end up with the same key.
func EnsureKey(path string) (signer ssh.Signer, created bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		created, err = createKey(path)
		if err != nil {
			return nil, false, fmt.Errorf("create SSH key %s: %w", path, err)
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("create SSH key: %w", err)
	}
	signer, err = LoadSigner(path)
	if err != nil {
		return nil, false, err
	}
	pubPath := path + ".pub"
	if _, err := os.Lstat(pubPath); errors.Is(err, os.ErrNotExist) {
		if err := writeFileAtomic(pubPath, ssh.MarshalAuthorizedKey(signer.PublicKey()), 0o644, false); err != nil {
			return nil, false, fmt.Errorf("write public key: %w", err)
		}
	} else if err != nil {
		return nil, false, fmt.Errorf("write public key: %w", err)
	}
	return signer, created, nil
}

// keyComment is written into generated keys; it shows in authorized_keys.
const keyComment = "provision deploy key"

// createKey writes a new key pair unless another caller got there first.
func createKey(path string) (created bool, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return false, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return false, err
	}
	block, err := ssh.MarshalPrivateKey(priv, keyComment)
	if err != nil {
		return false, err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return false, err
	}
	authorized := bytes.TrimSuffix(ssh.MarshalAuthorizedKey(sshPub), []byte("\n"))
	authorized = append(authorized, []byte(" "+keyComment+"\n")...)
	// The private key appears whole or not at all, and only once; the .pub
	// follows (EnsureKey rewrites it if this process dies in between).
	if err := writeFileAtomic(path, pem.EncodeToMemory(block), 0o600, true); err != nil {
		if errors.Is(err, os.ErrExist) {
			return false, nil // someone else created it; use theirs
		}
		return false, err
	}
	if err := writeFileAtomic(path+".pub", authorized, 0o644, false); err != nil {
		return true, err
	}
	return true, nil
}

// writeFileAtomic writes data to a temporary file beside path and moves it
// into place with exactly mode perm. With exclusive set, an existing path
// is left alone and os.ErrExist returned.
func writeFileAtomic(path string, data []byte, perm os.FileMode, exclusive bool) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		tmp.Close()
		os.Remove(tmp.Name())
	}()
	if err := tmp.Chmod(perm); err != nil {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if exclusive {
		// link(2) fails if path exists: no window where a second writer
		// replaces a key the first has already handed out.
		return os.Link(tmp.Name(), path)
	}
	return os.Rename(tmp.Name(), path)
}
