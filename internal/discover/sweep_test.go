//go:build linux

package discover

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fhlab/provision/internal/inventory"
)

// testRange is a /24 of 127/8 of this run's own (Linux answers on every
// 127/8 address of lo without configuration), so parallel runs do not meet.
func testRange(t *testing.T) netip.Prefix {
	t.Helper()
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{127, byte(100 + rand.IntN(150)), byte(rand.IntN(256)), 0}), 24)
}

func host(p netip.Prefix, n byte) netip.Addr {
	b := p.Addr().As4()
	b[3] = n
	return netip.AddrFrom4(b)
}

// listen opens addr:port; each accepted connection gets greeting (if any)
// and is held until the peer goes.
func listen(t *testing.T, addr netip.Addr, port uint16, greeting string) {
	t.Helper()
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(addr, port).String())
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				if greeting != "" {
					c.Write([]byte(greeting))
				}
				buf := make([]byte, 512)
				for {
					if _, err := c.Read(buf); err != nil {
						return
					}
				}
			})
		}
	})
}

// listenFull opens addr:port with an accept queue of one, filled: the
// kernel drops further SYNs, so a connect to it gets no answer at all,
// like a firewall that drops.
func listenFull(t *testing.T, addr netip.Addr, port uint16) {
	t.Helper()
	fd := fullListener(t, addr, port)
	t.Cleanup(func() { unix.Close(fd) })
	// Check that it drops now.
	if c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(addr, port).String(), 200*time.Millisecond); err == nil {
		c.Close()
		t.Fatalf("%s:%d still accepts connections", addr, port)
	}
}

func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// checkFDs fails the test when more files are open than before. The test's
// own servers close their side of a connection when they see the sweep's
// reset, a moment after the sweep returns: they get a few seconds.
func checkFDs(t *testing.T, before int) {
	t.Helper()
	after := openFDs(t)
	for deadline := time.Now().Add(5 * time.Second); after > before && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		after = openFDs(t)
	}
	if after > before {
		t.Errorf("%d files open before the sweep, %d after", before, after)
	}
}

func TestSweep(t *testing.T) {
	r := testRange(t)
	ssh, docker, swarm, stranger, filtered := host(r, 10), host(r, 11), host(r, 12), host(r, 200), host(r, 13)
	listen(t, ssh, 22, "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7\r\n")
	listen(t, stranger, 22, "a notice before the banner\r\nSSH-2.0-dropbear_2022.83\r\n")
	listen(t, swarm, 2377, "")
	listenFull(t, filtered, 22)
	engine := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/_ping" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Api-Version", "1.47")
		w.Header().Set("Ostype", "linux")
		w.Write([]byte("OK"))
	})}
	ln, err := net.Listen("tcp4", netip.AddrPortFrom(docker, 2375).String())
	if err != nil {
		t.Fatal(err)
	}
	go engine.Serve(ln)
	t.Cleanup(func() { engine.Close() })
	// A listener that says nothing on 22.
	mute := host(r, 14)
	listen(t, mute, 22, "")

	nodes := []inventory.Node{{Name: "mgr-1", IP: ssh.String()}, {Name: "wrk-01", IP: docker.String()}, {Name: "pi-r1-01", IP: swarm.String()}, {Name: "pi-r1-02", IP: mute.String()}}
	before := openFDs(t)
	var progress []Stats
	found, stats, err := Sweep(context.Background(), Options{
		Range: r, Ports: DefaultPorts, Timeout: 300 * time.Millisecond, BannerTimeout: 300 * time.Millisecond,
		DockerPing: true, Nodes: NodeNames(nodes), Rate: 0,
		Progress: func(s Stats) { progress = append(progress, s) }, ProgressEvery: time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ep := range found {
		s := fmt.Sprintf("%s:%d node=%s banner=%q problem=%q", ep.Addr, ep.Port, ep.Node, ep.Banner, ep.Problem)
		if ep.Docker != nil {
			s += fmt.Sprintf(" docker=%+v", *ep.Docker)
		}
		got = append(got, s)
	}
	want := []string{
		fmt.Sprintf(`%s:22 node=mgr-1 banner="SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u7" problem=""`, ssh),
		fmt.Sprintf(`%s:2375 node=wrk-01 banner="" problem="" docker={OK:true Status:200 OK APIVersion:1.47 OSType:linux}`, docker),
		fmt.Sprintf(`%s:2377 node=pi-r1-01 banner="" problem=""`, swarm),
		fmt.Sprintf(`%s:22 node=pi-r1-02 banner="" problem="banner: no SSH identification line before the deadline"`, mute),
		fmt.Sprintf(`%s:22 node= banner="SSH-2.0-dropbear_2022.83" problem=""`, stranger),
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("found:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	wantStats := Stats{Targets: 768, Attempts: 768, Open: 5, Filtered: 1, Closed: 762}
	stats.Elapsed = 0
	if stats != wantStats {
		t.Errorf("stats %+v, want %+v", stats, wantStats)
	}
	if len(progress) == 0 || progress[len(progress)-1].Done() != 768 {
		t.Errorf("progress reports %+v: the last should count every target", progress)
	}
	checkFDs(t, before)
}

// TestSweepReusesAfterTimeout: sockets whose attempt timed out are closed,
// and their numbers come back for later attempts without the deadline of
// the earlier attempt ending the later one (a window of 1 makes every
// attempt use the lowest free number).
func TestSweepWindowOne(t *testing.T) {
	r := testRange(t)
	listenFull(t, host(r, 1), 22)
	listen(t, host(r, 3), 22, "SSH-2.0-test\r\n")
	r4 := netip.PrefixFrom(r.Addr(), 30) // .0 to .3
	found, stats, err := Sweep(context.Background(), Options{Range: r4, Ports: []uint16{22}, Window: 1, Timeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if len(found) != 1 || found[0].Addr != host(r, 3) || found[0].Banner != "SSH-2.0-test" {
		t.Errorf("found %+v, want %s:22 with its banner", found, host(r, 3))
	}
	if stats.Filtered != 1 || stats.Closed != 2 || stats.Open != 1 {
		t.Errorf("stats %+v, want 1 filtered, 2 closed, 1 open", stats)
	}
}

func TestSweepRateLimit(t *testing.T) {
	r := testRange(t)
	const rate = 400
	var snaps []Stats
	_, stats, err := Sweep(context.Background(), Options{
		Range: r, Ports: []uint16{22}, Rate: rate,
		Progress: func(s Stats) { snaps = append(snaps, s) }, ProgressEvery: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	if stats.Attempts != 256 || stats.Closed != 256 {
		t.Fatalf("stats %+v, want 256 attempts, all closed", stats)
	}
	// Never more attempts than the bucket's burst plus the rate times the
	// time gone, by the sweep's own clock: a slow machine only makes the
	// counts smaller.
	snaps = append(snaps, stats)
	for _, s := range snaps {
		if limit := float64(Burst(rate)) + rate*s.Elapsed.Seconds(); float64(s.Attempts) > limit+1 {
			t.Errorf("%d attempts after %s: more than %.0f", s.Attempts, s.Elapsed, limit)
		}
	}
	if len(snaps) < 5 {
		t.Errorf("only %d progress reports in %s at a 10ms interval: the limit did not hold the sweep back", len(snaps), stats.Elapsed)
	}
}

func TestSweepCancel(t *testing.T) {
	p := netip.PrefixFrom(testRange(t).Addr(), 16)
	p = p.Masked()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	before := openFDs(t)
	done := make(chan struct{})
	var stats Stats
	var err error
	go func() {
		defer close(done)
		_, stats, err = Sweep(ctx, Options{
			Range: p, Ports: []uint16{22, 2375}, Rate: 1000,
			Progress: func(s Stats) {
				if s.Attempts > 0 {
					cancel()
				}
			},
			ProgressEvery: time.Millisecond,
		})
	}()
	select {
	case <-done:
	case <-time.After(time.Minute):
		t.Fatal("the sweep did not stop within a minute of its context ending")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
	if stats.Attempts == 0 || stats.Attempts >= stats.Targets/2 {
		t.Errorf("stats %+v: cancelled after the first attempts, it should have stopped long before the end", stats)
	}
	checkFDs(t, before)
}

func TestSweepRefusesBadOptions(t *testing.T) {
	if _, _, err := Sweep(context.Background(), Options{}); err == nil {
		t.Error("no range: no error")
	}
	r := testRange(t)
	if _, _, err := Sweep(context.Background(), Options{Range: r, Rate: -1}); err == nil || !strings.Contains(err.Error(), "rate -1") {
		t.Errorf("rate -1: %v", err)
	}
}
