package remote_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/fhlab/provision/internal/remote"
)

// Hermetic checks of the policy, without a server.
func TestKnownHostsCheck(t *testing.T) {
	keyA := newClientKey(t).PublicKey()
	keyB := newClientKey(t).PublicKey()
	addr := &net.TCPAddr{IP: net.IPv4(198, 51, 100, 11), Port: 22}

	tests := []struct {
		name     string
		existing string // known_hosts before; "-" for no file
		hostport string
		key      ssh.PublicKey
		wantErr  error
		wantFile string
	}{
		{
			name: "unknown host on port 22 is written bare", existing: "-",
			hostport: "198.51.100.11:22", key: keyA,
			wantFile: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
		},
		{
			name: "unknown host on another port is written [ip]:port", existing: "-",
			hostport: "198.51.100.11:2222", key: keyA,
			wantFile: "[198.51.100.11]:2222 " + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(keyA))) + "\n",
		},
		{
			name: "known host passes", existing: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
			hostport: "198.51.100.11:22", key: keyA,
			wantFile: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
		},
		{
			name: "changed key is refused", existing: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
			hostport: "198.51.100.11:22", key: keyB, wantErr: remote.ErrHostKeyChanged,
			wantFile: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
		},
		{
			name: "same ip on another port is another host", existing: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
			hostport: "198.51.100.11:2222", key: keyB,
			wantFile: knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n" + knownhosts.Line([]string{"198.51.100.11:2222"}, keyB) + "\n",
		},
		{
			name: "hashed entry matches", existing: knownhosts.HashHostname("198.51.100.11") + " " + string(ssh.MarshalAuthorizedKey(keyA)),
			hostport: "198.51.100.11:22", key: keyA,
		},
		{
			name: "missing final newline is added", existing: "# comment",
			hostport: "198.51.100.11:22", key: keyA,
			wantFile: "# comment\n" + knownhosts.Line([]string{"198.51.100.11"}, keyA) + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "known_hosts")
			if tt.existing != "-" {
				if err := os.WriteFile(path, []byte(tt.existing), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			kh := remote.NewKnownHosts(path)
			err := kh.HostKeyCallback()(tt.hostport, addr, tt.key)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Check: %v, want %v", err, tt.wantErr)
			}
			if tt.wantFile != "" {
				if got := string(readFile(t, path)); got != tt.wantFile {
					t.Errorf("known_hosts:\n%q\nwant\n%q", got, tt.wantFile)
				}
			}
			// Whatever was accepted is accepted again.
			if err == nil {
				if err := kh.Check(tt.hostport, addr, tt.key); err != nil {
					t.Errorf("second Check: %v", err)
				}
			}
		})
	}
}

func TestKnownHostsBadFileIsNotTrusted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(path, []byte("198.51.100.11 ssh-ed25519 not-base64!\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := remote.NewKnownHosts(path).Check("198.51.100.11:22", nil, newClientKey(t).PublicKey())
	if err == nil || !strings.Contains(err.Error(), "known hosts") {
		t.Errorf("Check with a broken file: %v", err)
	}
}

func TestHostKeyAlgorithms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "known_hosts")
	kh := remote.NewKnownHosts(path)
	algos, err := kh.HostKeyAlgorithms("198.51.100.11:22")
	if err != nil || algos[0] != ssh.KeyAlgoED25519 {
		t.Fatalf("no file: %v, %v", algos, err)
	}
	ecPriv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ssh.NewPublicKey(&ecPriv.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(knownhosts.Line([]string{"198.51.100.11"}, ec)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	algos, err = kh.HostKeyAlgorithms("198.51.100.11:22")
	if err != nil || algos[0] != ssh.KeyAlgoECDSA256 || !slices.Contains(algos, ssh.KeyAlgoED25519) {
		t.Errorf("recorded ecdsa: %v, %v", algos, err)
	}
	algos, _ = kh.HostKeyAlgorithms("198.51.100.12:22")
	if algos[0] != ssh.KeyAlgoED25519 {
		t.Errorf("other host: %v", algos)
	}
}
