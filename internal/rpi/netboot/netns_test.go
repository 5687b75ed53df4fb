package netboot

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/netns"
	"github.com/fhlab/provision/internal/testtool"
)

// netnsPair is two network namespaces of this test joined by a veth pair:
// the server's (10.A.B.1/24) and the client's (10.A.B.2/24), no default
// route, nothing else. Both go away in t.Cleanup, also when the test fails.
// (internal/lab's namespaces come with a bridge, dockerd and sshd per node;
// this test needs only the link.)
type netnsPair struct {
	Server, Client     string // namespace names
	ServerIf, ClientIf string
	ServerIP, ClientIP netip.Addr
}

func newNetnsPair(t *testing.T) *netnsPair {
	t.Helper()
	ipTool := need(t, "ip", "iproute2")
	if os.Geteuid() != 0 {
		testtool.Missing(t, "network namespaces need root")
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	prefix := "nbt" + hex.EncodeToString(rnd[:])[:6]
	p := &netnsPair{
		Server: prefix + "s", Client: prefix + "c",
		ServerIf: prefix + "a", ClientIf: prefix + "b",
		ServerIP: netip.AddrFrom4([4]byte{10, 200 + rnd[3]%50, rnd[2], 1}),
		ClientIP: netip.AddrFrom4([4]byte{10, 200 + rnd[3]%50, rnd[2], 2}),
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ipTool, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	t.Cleanup(func() {
		for _, ns := range []string{p.Server, p.Client} {
			exec.Command(ipTool, "netns", "del", ns).Run()
		}
		exec.Command(ipTool, "link", "del", p.ServerIf).Run()
	})
	ip("netns", "add", p.Server)
	ip("netns", "add", p.Client)
	ip("link", "add", p.ServerIf, "type", "veth", "peer", "name", p.ClientIf)
	ip("link", "set", p.ServerIf, "netns", p.Server)
	ip("link", "set", p.ClientIf, "netns", p.Client)
	for _, s := range []struct {
		ns, ifc string
		a       netip.Addr
	}{{p.Server, p.ServerIf, p.ServerIP}, {p.Client, p.ClientIf, p.ClientIP}} {
		ip("-n", s.ns, "link", "set", "lo", "up")
		ip("-n", s.ns, "addr", "add", netip.PrefixFrom(s.a, 24).String(), "dev", s.ifc)
		ip("-n", s.ns, "link", "set", s.ifc, "up")
	}
	return p
}

// in runs fn on a thread inside namespace ns; sockets fn opens stay there.
func in(ns string, fn func() error) error { return netns.In("/run/netns/"+ns, fn) }

// listenIn is a ListenFunc whose sockets live in namespace ns.
func listenIn(ns string) ListenFunc {
	return func(ctx context.Context, network, address string) (net.PacketConn, error) {
		var c net.PacketConn
		err := in(ns, func() (err error) {
			c, err = DefaultListen(ctx, network, address)
			return err
		})
		return c, err
	}
}

// run runs a program inside namespace ns.
func run(ctx context.Context, ns string, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
}
