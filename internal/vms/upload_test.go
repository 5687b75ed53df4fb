package vms_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/fhlab/provision/internal/remote"
	"github.com/fhlab/provision/internal/vms"
)

// refusedPort is a loopback port nothing listens on: connecting to it is
// refused at once.
func refusedPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

// silentPort is a loopback port that accepts connections and never says a
// word, as a hung sshd or a host behind a dropping firewall would look.
func silentPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				break
			}
			conns = append(conns, c)
		}
		for _, c := range conns {
			c.Close()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
	})
	return l.Addr().(*net.TCPAddr).Port
}

// Proxmox hosts are up already: a host whose sshd refuses connections, or
// answers nothing, is not waited for as a booting VM would be. It fails
// after at most two attempts, naming the host and what to check.
func TestSnippetUploadToABrokenHostFailsFast(t *testing.T) {
	cases := []struct {
		name  string
		port  func(t *testing.T) int
		cause string
	}{
		{"refused", refusedPort, "connection refused (after 2 attempts in "},
		{"silent", silentPort, "no SSH handshake within 5s: context deadline exceeded (after 2 attempts in "},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			testBrokenHost(t, c.port(t), c.cause)
		})
	}
}

func testBrokenHost(t *testing.T, port int, cause string) {
	d := build(t, "../../inventory/local.yaml")
	for i := range d.VMs {
		d.VMs[i].Host.Address = "127.0.0.1"
		d.VMs[i].Host.SSHPort = 0 // local.yaml names ports of pve-sim's sshds; dial the broken one
	}
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dial := vms.SSHDialer("root", port, remote.Config{
		Signer: signer, KnownHosts: remote.NewKnownHosts(filepath.Join(t.TempDir(), "known_hosts")),
	})
	// The old behaviour retried for two minutes; this bound only keeps a
	// regression from holding the test that long.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	_, err = vms.UploadSnippets(ctx, d, dial, 4, nil)
	if err == nil {
		t.Fatal("upload to a broken host succeeded")
	}
	var de *remote.DialError
	if !errors.As(err, &de) {
		t.Fatalf("error is no *remote.DialError: %v", err)
	}
	if de.Attempts > 2 || de.Ctx != nil {
		t.Errorf("dialled %d times (context: %v), want at most 2 quick attempts", de.Attempts, de.Ctx)
	}
	msg := err.Error()
	for _, host := range []string{"pve1", "pve2", "pve3"} {
		for _, s := range []string{
			"snippets to " + host + " (127.0.0.1): ssh root@127.0.0.1:" + itoa(port) + ": ",
			cause,
			") — check sshd on " + host + " (port " + itoa(port) + "), proxmox.sshUser (root), or pass --no-snippets",
		} {
			if !strings.Contains(msg, s) {
				t.Errorf("error lacks %q:\n%s", s, msg)
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
