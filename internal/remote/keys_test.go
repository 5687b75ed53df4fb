package remote_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/remote"
)

func TestLoadSigner(t *testing.T) {
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	openssh := func(key any) []byte {
		block, err := ssh.MarshalPrivateKey(key, "test")
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(block)
	}
	ecDER, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	encBlock, err := ssh.MarshalPrivateKeyWithPassphrase(edKey, "test", []byte("passphrase"))
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		data     []byte
		mode     os.FileMode
		wantType string
		wantErr  []string
		wantIs   error
	}{
		{"ed25519 openssh", openssh(edKey), 0o600, ssh.KeyAlgoED25519, nil, nil},
		{"rsa openssh", openssh(rsaKey), 0o600, ssh.KeyAlgoRSA, nil, nil},
		{"ecdsa openssh", openssh(ecKey), 0o400, ssh.KeyAlgoECDSA256, nil, nil},
		{"rsa pkcs1 pem", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}), 0o600, ssh.KeyAlgoRSA, nil, nil},
		{"ecdsa sec1 pem", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: ecDER}), 0o600, ssh.KeyAlgoECDSA256, nil, nil},
		{"readable by others", openssh(edKey), 0o644, "", []string{"permissions 0644 are too open", "chmod 600"}, nil},
		{"readable by group", openssh(edKey), 0o640, "", []string{"permissions 0640 are too open"}, nil},
		{"encrypted", pem.EncodeToMemory(encBlock), 0o600, "", []string{"ssh-agent", "unencrypted deploy key", "ED25519 SHA256:"}, remote.ErrKeyEncrypted},
		{"garbage", []byte("not a key\n"), 0o600, "", []string{"load private key"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "id")
			if err := os.WriteFile(path, tt.data, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			signer, err := remote.LoadSigner(path)
			if tt.wantType != "" {
				if err != nil {
					t.Fatalf("LoadSigner: %v", err)
				}
				if got := signer.PublicKey().Type(); got != tt.wantType {
					t.Errorf("key type %s, want %s", got, tt.wantType)
				}
				return
			}
			if err == nil {
				t.Fatal("LoadSigner accepted the key")
			}
			for _, want := range append(tt.wantErr, path) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("error %v is not %v", err, tt.wantIs)
			}
		})
	}

	if _, err := remote.LoadSigner(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing key: %v", err)
	}
}

func TestEnsureKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "keys", "lab")
	path := filepath.Join(dir, "id_ed25519")

	signer, created, err := remote.EnsureKey(path)
	if err != nil || !created {
		t.Fatalf("EnsureKey: created=%v, %v", created, err)
	}
	if signer.PublicKey().Type() != ssh.KeyAlgoED25519 {
		t.Errorf("key type %s", signer.PublicKey().Type())
	}
	for p, mode := range map[string]os.FileMode{path: 0o600, path + ".pub": 0o644, dir: 0o700, filepath.Dir(dir): 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s has mode %#o, want %#o", p, fi.Mode().Perm(), mode)
		}
	}
	priv := readFile(t, path)
	if !bytes.HasPrefix(priv, []byte("-----BEGIN "+"OPENSSH PRIVATE KEY-----")) {
		t.Errorf("private key is not in OpenSSH format:\n%s", priv)
	}
	pub := readFile(t, path+".pub")
	pk, _, _, _, err := ssh.ParseAuthorizedKey(pub)
	if err != nil || !bytes.Equal(pk.Marshal(), signer.PublicKey().Marshal()) {
		t.Errorf(".pub does not hold the public key: %v\n%s", err, pub)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("%s holds %d entries, want the two key files (no temporary files)", dir, len(entries))
	}

	// Idempotent: the same key, nothing rewritten.
	again, created, err := remote.EnsureKey(path)
	if err != nil || created {
		t.Fatalf("second EnsureKey: created=%v, %v", created, err)
	}
	if !bytes.Equal(again.PublicKey().Marshal(), signer.PublicKey().Marshal()) ||
		!bytes.Equal(readFile(t, path), priv) || !bytes.Equal(readFile(t, path+".pub"), pub) {
		t.Error("second EnsureKey changed the key")
	}

	// A lost .pub is written again from the private key.
	if err := os.Remove(path + ".pub"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := remote.EnsureKey(path); err != nil {
		t.Fatal(err)
	}
	if pk, _, _, _, err := ssh.ParseAuthorizedKey(readFile(t, path+".pub")); err != nil || !bytes.Equal(pk.Marshal(), signer.PublicKey().Marshal()) {
		t.Errorf(".pub not restored: %v", err)
	}

	// OpenSSH reads the key we wrote.
	if keygen, err := exec.LookPath("ssh-keygen"); err == nil {
		out, err := exec.Command(keygen, "-y", "-f", path).Output()
		if err != nil || !strings.HasPrefix(string(out), "ssh-ed25519 ") {
			t.Errorf("ssh-keygen -y: %v\n%s", err, out)
		}
	}

	// An existing key readable by others is refused, not replaced.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, _, err := remote.EnsureKey(path); err == nil || !strings.Contains(err.Error(), "too open") {
		t.Errorf("EnsureKey over a 0644 key: %v", err)
	}
	if !bytes.Equal(readFile(t, path), priv) {
		t.Error("EnsureKey replaced an existing key")
	}
}

func TestEnsureKeyConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "id_ed25519")
	const n = 16
	keys := make([][]byte, n)
	var createdCount int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, created, err := remote.EnsureKey(path)
			if err != nil {
				t.Error(err)
				return
			}
			keys[i] = s.PublicKey().Marshal()
			if created {
				mu.Lock()
				createdCount++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if createdCount != 1 {
		t.Errorf("%d callers created the key, want 1", createdCount)
	}
	for i := range keys {
		if !bytes.Equal(keys[i], keys[0]) {
			t.Fatalf("caller %d got another key", i)
		}
	}
}
