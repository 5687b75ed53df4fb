package netboot

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/testtool"
	"github.com/fhlab/provision/templates"
)

// need skips the test when tool is missing, or fails it under CI.
func need(t testing.TB, tool, pkg string) string {
	t.Helper()
	return testtool.Need(t, tool, pkg)
}

// pseudoRandom is n bytes that do not repeat in blocks.
func pseudoRandom(seed uint64, n int) string {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return string(b)
}

// testBoot is a synthetic Raspberry Pi OS Trixie golden image (imagetest)
// with boot files of the given sizes in its FAT partition.
type testBoot struct {
	Dir, Image string
	Spec       imagetest.BaseSpec
}

// Sizes of the test's boot files: start4.elf spans block-number rollover
// at blksize 512 (more than 65535 blocks would take long; 2.3 MB is 4,500).
var testFileSizes = map[string]int{
	"start4.elf":          2_300_000,
	"fixup4.dat":          5_400,
	"bcm2711-rpi-4-b.dtb": 52_000,
	"kernel8.img":         1_468 * 700, // a multiple of 1468: an empty last block
}

var (
	imageOnce sync.Once
	imageDir  string
	imageErr  error
)

// makeTestImage builds the image once per test binary run.
func makeTestImage(t testing.TB) testBoot {
	t.Helper()
	for _, tool := range imagetest.Tools {
		need(t, tool, "dosfstools, mtools, e2fsprogs")
	}
	need(t, "debugfs", "e2fsprogs")
	spec := imagetest.Flavours()["raspios-trixie"]
	files := map[string]string{}
	for k, v := range spec.BootFiles {
		files[k] = v
	}
	for name, size := range testFileSizes {
		files[name] = pseudoRandom(uint64(len(name))<<32|uint64(size), size)
	}
	spec.BootFiles = files
	imageOnce.Do(func() {
		imageDir, imageErr = os.MkdirTemp("", "netboot-test-image-")
		if imageErr == nil {
			_, imageErr = imagetest.MakeBase(imageDir, spec)
		}
	})
	if imageErr != nil {
		t.Fatalf("make the test image: %v", imageErr)
	}
	return testBoot{Dir: imageDir, Image: filepath.Join(imageDir, "base.img"), Spec: spec}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if imageDir != "" {
		os.RemoveAll(imageDir)
	}
	os.Exit(code)
}

const testInventory = `apiVersion: provision/v1
kind: Lab
metadata: {name: nb-lab}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager, nodes: m1.csv}
    - {name: r1, count: 3, boot: netboot, ipStart: 192.168.11.1, nodes: r1.csv}
`

// Serials and MACs of the test inventory.
const (
	serialR1 = "9ffefd01" // pi-r1-01
	serialSD = "5d000001" // pi-m1-01, boots from SD
	macR1    = "dc:a6:32:01:00:01"
	macSD    = "e4:5f:01:00:00:01"
)

func testLab(t testing.TB) *inventory.Inventory {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"lab.yaml": testInventory,
		"m1.csv":   "slot,serial,mac\n1," + serialSD + "," + macSD + "\n",
		"r1.csv":   "slot,serial,mac\n1," + serialR1 + "," + macR1 + "\n2,9ffefd02,dc:a6:32:01:00:02\n3,9FFEFD03,dc:a6:32:01:00:03\n",
	}
	for name, c := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	inv, err := inventory.Load(filepath.Join(dir, "lab.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return inv
}

func testRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// logBuffer is a concurrency-safe log sink tests can search.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// served is a running TFTP server of the test image for the test lab.
type served struct {
	Addr   netip.AddrPort
	Files  *BootFiles
	Image  *BootImage
	Events *Recorder
	Log    *logBuffer
	// Transfers counts transfers under way (for "the goroutine ended").
	mu        sync.Mutex
	active    int
	finished  []TransferStat
	serveDone chan error
}

func (s *served) stats() []TransferStat {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]TransferStat(nil), s.finished...)
}

func (s *served) running() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active
}

// startTFTP serves the test image on addr (host:port, port 0 for any)
// with listen (nil: this namespace) and limits.
func startTFTP(t *testing.T, addr string, listen ListenFunc, lim Limits) *served {
	t.Helper()
	tb := makeTestImage(t)
	ctx, cancel := context.WithCancel(context.Background())
	img, err := OpenBootImage(ctx, tb.Image, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	inv := testLab(t)
	boards, err := NewBoards(inv, BySerial)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := NewRecorder(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	host, _, _ := net.SplitHostPort(addr)
	files, err := NewBootFiles(inv, testRenderer(t), img, boards, RootOptions{NBDServer: host}, rec, log)
	if err != nil {
		t.Fatal(err)
	}
	if listen == nil {
		listen = DefaultListen
	}
	conn, err := listen(ctx, "udp4", addr)
	if err != nil {
		cancel()
		t.Fatalf("listen %s: %v", addr, err)
	}
	s := &served{Addr: conn.LocalAddr().(*net.UDPAddr).AddrPort(), Files: files, Image: img, Events: rec, Log: logs, serveDone: make(chan error, 1)}
	srv := &TFTPServer{Handler: files, Limits: lim, Listen: func(ctx context.Context, network, address string) (net.PacketConn, error) {
		c, err := listen(ctx, network, address)
		if err == nil {
			s.mu.Lock()
			s.active++
			s.mu.Unlock()
		}
		return c, err
	}, Log: log, Done: func(st TransferStat) {
		files.Done(st)
		s.mu.Lock()
		s.active--
		s.finished = append(s.finished, st)
		s.mu.Unlock()
	}}
	go func() { s.serveDone <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-s.serveDone:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", logs.String())
		}
	})
	return s
}

// waitFor polls cond until it holds or the test's patience ends.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for i := 0; i < 600; i++ {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("still waiting for %s", what)
}

func fileOf(tb testBoot, name string) []byte {
	return []byte(tb.Spec.BootFiles[name])
}

func mustContain(t *testing.T, what, s string, subs ...string) {
	t.Helper()
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			t.Errorf("%s lacks %q:\n%s", what, sub, s)
		}
	}
}

var _ = fmt.Sprint
