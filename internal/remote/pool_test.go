package remote_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/remote"
)

// TestPoolSharesOneConnectionPerNode: concurrent Connects to one node get
// the same connection; the key is created once, the host key trusted into
// the known_hosts file the Dest names.
func TestPoolSharesOneConnectionPerNode(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keyPath := filepath.Join(dir, "keys", "id_ed25519")
	signer, created, err := remote.EnsureKey(keyPath)
	if err != nil || !created {
		t.Fatalf("EnsureKey: created %v, %v", created, err)
	}
	srv := newSSHD(t, sshdOptions{}, signer.PublicKey())
	pool := remote.NewPool(remote.PoolConfig{Timeout: 20 * time.Second})
	defer pool.Close()
	dest := remote.Dest{Name: "node-1", Host: "127.0.0.1", Port: srv.port, User: srv.user,
		KeyPath: keyPath, CreateKey: true, KnownHosts: filepath.Join(dir, "known_hosts")}

	clients := make([]*remote.Client, 8)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := pool.Connect(t.Context(), dest)
			if err != nil {
				t.Errorf("Connect: %v", err)
			}
			clients[i] = c
		}()
	}
	wg.Wait()
	for _, c := range clients[1:] {
		if c != clients[0] {
			t.Fatalf("concurrent Connects to one node got different connections")
		}
	}
	if out, _, err := clients[0].Run(t.Context(), "echo ok"); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Errorf("run over the pooled connection: %q, %v", out, err)
	}
	if kh := string(readFile(t, dest.KnownHosts)); !strings.Contains(kh, "127.0.0.1") {
		t.Errorf("known_hosts does not trust the host: %q", kh)
	}
	// Another name is another connection.
	other := dest
	other.Name = "node-2"
	c2, err := pool.Connect(t.Context(), other)
	if err != nil || c2 == clients[0] {
		t.Errorf("Connect node-2: same connection %v, err %v", c2 == clients[0], err)
	}
}

// TestPoolKeyProblemsFailBeforeDialling: a missing key is reported with
// its path, without any connection attempt (the host does not exist).
func TestPoolKeyProblemsFailBeforeDialling(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	pool := remote.NewPool(remote.PoolConfig{Timeout: time.Minute})
	defer pool.Close()
	missing := filepath.Join(dir, "no_such_key")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := pool.Connect(ctx, remote.Dest{Name: "n", Host: "127.0.0.1", Port: 1, User: "u", KeyPath: missing, KnownHosts: filepath.Join(dir, "kh")})
	if err == nil || !strings.Contains(err.Error(), "ssh key: ") || !strings.Contains(err.Error(), missing) {
		t.Fatalf("Connect with a missing key: %v, want ssh key: and the path", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "kh")); !os.IsNotExist(err) {
		t.Errorf("known_hosts touched without a key: %v", err)
	}
}
