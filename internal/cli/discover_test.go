package cli

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/testtool"
)

func TestDiscoverHelpWarns(t *testing.T) {
	code, out, _ := run(t, "discover", "--help")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{"WARNING: discover sends a connection attempt to every address", "network that is yours to scan", "--rate", "--docker-ping", "stranger", "/16"} {
		if !strings.Contains(out, want) {
			t.Errorf("discover --help lacks %q:\n%s", want, out)
		}
	}
}

func TestDiscoverRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"discover", "10.0.0.0/8"}, "range 10.0.0.0/8 holds 16777216 addresses: wider than a /16 (65536 addresses), refused without --force"},
		{[]string{"discover", "10.0.0.5/24"}, "host bits are set; the network is 10.0.0.0/24"},
		{[]string{"discover", "127.0.0.1", "--port", "22,ssh"}, `--port: port "ssh"`},
		{[]string{"discover", "127.0.0.1", "--rate", "-5"}, "--rate -5"},
		{[]string{"discover", "127.0.0.1", "--timeout", "0s"}, "--timeout 0s"},
		{[]string{"discover", "127.0.0.1", "-o", "yaml"}, `--output "yaml"`},
	} {
		code, out, errs := run(t, c.args...)
		if code != 2 || out != "" || !strings.Contains(errs, c.want) {
			t.Errorf("provision %s: exit %d, stdout %q, stderr %q; want exit 2 and %q", strings.Join(c.args, " "), code, out, errs, c.want)
		}
	}
}

// TestDiscoverTable sweeps a /24 of loopback of this run's own.
func TestDiscoverTable(t *testing.T) {
	base := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(256)), 0})
	a := base.Next().Next().Next().Next().Next().Next().Next() // .7
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(a, 22).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte("SSH-2.0-OpenSSH_9.2p1\r\n"))
			time.Sleep(100 * time.Millisecond)
			c.Close()
		}
	}()
	code, out, errs := run(t, "discover", base.String()+"/24", "--port", "22,2377")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := fmt.Sprintf("ADDRESS PORT NODE WHAT\n%s 22 - SSH-2.0-OpenSSH_9.2p1", a)
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		lines = append(lines, strings.Join(strings.Fields(l), " "))
	}
	if strings.Join(lines, "\n") != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", out, want)
	}
	if !strings.Contains(errs, "1 open, 511 closed, 0 filtered, 0 unreachable of 512") {
		t.Errorf("stderr lacks the summary:\n%s", errs)
	}
}

// TestDiscoverInventory: the addresses of inventory/local.yaml's nodes
// (TEST-NET-2) live on lo of a network namespace of the test's own; the
// test binary runs itself in it to sweep them and tell nodes from
// strangers.
func TestDiscoverInventory(t *testing.T) {
	if os.Getenv("PROVISION_TEST_DISCOVER_NETNS") != "" {
		discoverInNetns(t)
		return
	}
	if os.Geteuid() != 0 {
		testtool.Missing(t, "needs root for a network namespace")
	}
	ip, err := exec.LookPath("ip")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("needs ip (iproute2)")
		}
		t.Skip("needs ip (iproute2)")
	}
	ns := fmt.Sprintf("prov-disc-%d-%d", os.Getpid(), rand.IntN(1e6))
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command(ip, args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("netns", "add", ns)
	t.Cleanup(func() { exec.Command(ip, "netns", "del", ns).Run() })
	sh("-n", ns, "link", "set", "lo", "up")
	for _, a := range []string{"198.51.100.11", "198.51.100.102", "198.51.100.200"} {
		sh("-n", ns, "addr", "add", a+"/32", "dev", "lo")
	}
	cmd := exec.Command(ip, "netns", "exec", ns, os.Args[0], "-test.run=^TestDiscoverInventory$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), "PROVISION_TEST_DISCOVER_NETNS=1")
	out, err := cmd.CombinedOutput()
	t.Logf("in %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("the sweep in %s failed: %v", ns, err)
	}
}

func discoverInNetns(t *testing.T) {
	greet := func(addr string, banner string) {
		ln, err := net.Listen("tcp4", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(banner))
				time.Sleep(100 * time.Millisecond)
				c.Close()
			}
		}()
	}
	greet("198.51.100.11:22", "SSH-2.0-OpenSSH_9.2p1\r\n")
	greet("198.51.100.102:2377", "")
	greet("198.51.100.200:22", "SSH-2.0-dropbear\r\n")
	code, out, errs := run(t, "discover", "198.51.100.0/24", "-i", "../../inventory/local.yaml", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	var r struct {
		Endpoints []struct {
			Address  string
			Port     int
			Node     string
			Stranger *bool
			Banner   string
		}
		Stats struct{ Targets, Open, Closed, Unreachable int }
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		t.Fatalf("%v:\n%s", err, out)
	}
	var got []string
	for _, e := range r.Endpoints {
		if e.Stranger == nil {
			t.Fatalf("%s:%d has no stranger field with an inventory", e.Address, e.Port)
		}
		got = append(got, fmt.Sprintf("%s:%d %s stranger=%v %s", e.Address, e.Port, e.Node, *e.Stranger, e.Banner))
	}
	want := []string{
		"198.51.100.11:22 mgr-1 stranger=false SSH-2.0-OpenSSH_9.2p1",
		"198.51.100.102:2377 pi-p1-02 stranger=false ",
		"198.51.100.200:22  stranger=true SSH-2.0-dropbear",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("endpoints:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Only the three addresses are on lo; the namespace has no route to
	// the rest of the /24.
	if r.Stats.Targets != 768 || r.Stats.Open != 3 || r.Stats.Closed != 6 || r.Stats.Unreachable != 759 {
		t.Errorf("stats %+v", r.Stats)
	}
}

// TestDiscoverWarnsOutsideInventory: a range that holds no node of the
// inventory says so, since every host found will be a stranger.
func TestDiscoverWarnsOutsideInventory(t *testing.T) {
	base := netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(256)), 0})
	code, _, errs := run(t, "discover", base.String()+"/28", "--port", "22", "-i", "../../inventory/local.yaml")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	want := fmt.Sprintf("no node of ../../inventory/local.yaml has an address in %s/28 (the lab's network is 198.51.100.0/24)", base)
	if !strings.Contains(errs, want) {
		t.Errorf("stderr lacks %q:\n%s", want, errs)
	}
}
