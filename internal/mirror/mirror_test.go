package mirror

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/clearsign"
)

func cand(ctl string) *Candidate {
	return &Candidate{Control: ParseControl([]byte(ctl))[0], Installed: true}
}

// The closure takes dependencies and the first available alternative,
// and leaves out the Essential packages and what they depend on.
func TestClosure(t *testing.T) {
	pool := NewPool("amd64", []*Candidate{
		cand("Package: docker.io\nArchitecture: amd64\nDepends: containerd (>= 1.4), iptables | nftables, libc6 (>= 2.34)\n"),
		cand("Package: containerd\nArchitecture: amd64\nDepends: runc, libc6\n"),
		cand("Package: runc\nArchitecture: amd64\nPre-Depends: libseccomp2\n"),
		cand("Package: libseccomp2\nArchitecture: amd64\n"),
		cand("Package: nftables\nArchitecture: amd64\n"),
		cand("Package: libc6\nArchitecture: amd64\n"),
		cand("Package: coreutils\nArchitecture: amd64\nEssential: yes\nPre-Depends: libc6\n"),
		cand("Package: arm-only\nArchitecture: arm64\n"),
	})
	got, err := pool.Closure([]string{"docker.io"})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range got {
		names = append(names, c.Name())
	}
	if want := "containerd docker.io libseccomp2 nftables runc"; strings.Join(names, " ") != want {
		t.Errorf("closure %v, want %s", names, want)
	}
	if _, err := pool.Closure([]string{"docker.io", "arm-only"}); err == nil || !strings.Contains(err.Error(), "amd64: no package in the sources for arm-only (needed by the inventory)") {
		t.Errorf("missing package: %v", err)
	}
}

// InRelease verifies with the public key the repository publishes, and
// the signing key is written 0600 and reused.
func TestSignedRelease(t *testing.T) {
	dir := t.TempDir()
	key, created, err := signingKey(filepath.Join(dir, KeyFile), "test")
	if err != nil || !created {
		t.Fatalf("key: %v %v", created, err)
	}
	if st, _ := os.Stat(filepath.Join(dir, KeyFile)); st.Mode().Perm() != 0o600 {
		t.Errorf("signing key mode %v", st.Mode().Perm())
	}
	idx := map[string]*bytes.Buffer{"amd64": bytes.NewBufferString("Package: x\n\n")}
	if err := writeDists(dir, Config{Lab: "test", Archs: []string{"amd64"}, Now: func() time.Time { return time.Unix(0, 0) }}, idx, key); err != nil {
		t.Fatal(err)
	}
	pub, _ := publicKey(key)
	ring, err := openpgp.ReadArmoredKeyRing(bytes.NewReader(pub))
	if err != nil {
		t.Fatal(err)
	}
	in, _ := os.ReadFile(filepath.Join(dir, "dists", Suite, "InRelease"))
	b, _ := clearsign.Decode(in)
	if b == nil {
		t.Fatal("InRelease is not clearsigned")
	}
	if _, err := b.VerifySignature(ring, nil); err != nil {
		t.Fatalf("InRelease does not verify: %v", err)
	}
	if !strings.Contains(string(b.Plaintext), "main/binary-amd64/Packages.gz") {
		t.Errorf("Release:\n%s", b.Plaintext)
	}
	again, created, err := signingKey(filepath.Join(dir, KeyFile), "test")
	if err != nil || created || again.PrimaryKey.Fingerprint == nil || !bytes.Equal(again.PrimaryKey.Fingerprint, key.PrimaryKey.Fingerprint) {
		t.Errorf("the key was not reused: %v %v", created, err)
	}
}
