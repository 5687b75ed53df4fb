package vms_test

import (
	"net"
	"path/filepath"
	"testing"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/vms"
)

// TestSSHDialerPort: a Proxmox host's sshPort is where its snippets go;
// without one the dialer's default port is used.
func TestSSHDialerPort(t *testing.T) {
	listen := func() (port int, accepted chan struct{}) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		accepted = make(chan struct{}, 16)
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- struct{}{}
				c.Close() // not an SSH server: the dial fails after connecting
			}
		}()
		return ln.Addr().(*net.TCPAddr).Port, accepted
	}
	defPort, atDefault := listen()
	hostPort, atHost := listen()
	signer, _, err := remote.EnsureKey(filepath.Join(t.TempDir(), "id_ed25519"))
	if err != nil {
		t.Fatal(err)
	}
	dial := vms.SSHDialer("root", defPort, remote.Config{
		Signer: signer, KnownHosts: remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")),
		Retry: remote.RetryPolicy{MaxAttempts: 1},
	})
	for _, tc := range []struct {
		name string
		host inventory.ProxmoxNode
		want chan struct{}
	}{
		{"sshPort", inventory.ProxmoxNode{Name: "pve1", Address: "127.0.0.1", SSHPort: hostPort}, atHost},
		{"default", inventory.ProxmoxNode{Name: "pve2", Address: "127.0.0.1"}, atDefault},
	} {
		if _, _, err := dial(t.Context(), tc.host); err == nil {
			t.Fatalf("%s: dial of a server that is not SSH succeeded", tc.name)
		}
		select {
		case <-tc.want:
		default:
			t.Errorf("%s: %s (sshPort %d) was not dialled where it should be (default port %d)", tc.name, tc.host.Name, tc.host.SSHPort, defPort)
		}
	}
}
