package nbdroot

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/testtool"
)

// skipOrFail skips a test that cannot run here, and fails it under CI,
// where everything it needs must be installed.
func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	testtool.Missing(t, format, args...)
}

func needTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			skipOrFail(t, "needs %s (scripts/install-deps.sh: qemu-utils, libnbd-bin, e2fsprogs)", tool)
		}
	}
}

func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// prefix names this run's nodes.
func prefix(t testing.TB) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "nbdt-" + hex.EncodeToString(b)
}

// makeGolden writes a 32 MiB ext4 image holding /etc/hostname.
func makeGolden(t testing.TB, dir string) string {
	t.Helper()
	tree := filepath.Join(dir, "tree")
	os.MkdirAll(filepath.Join(tree, "etc"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc", "hostname"), []byte("golden\n"), 0o644)
	img := filepath.Join(dir, "golden.img")
	run(t, "mke2fs", "-q", "-t", "ext4", "-d", tree, "-F", img, "32M")
	return img
}

func sum(t testing.TB, path string) string {
	t.Helper()
	s, err := SHA256(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// freeBase finds n consecutive free TCP ports on loopback.
func freeBase(t testing.TB, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		var b [2]byte
		rand.Read(b[:])
		base := 20000 + int(b[0])<<8 | int(b[1])
		base = 20000 + base%30000
		ok := true
		for p := base; p < base+n && ok; p++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports on loopback")
	return 0
}

// setup makes a golden image and the exports of nodes (not started).
func setup(t *testing.T, nodes ...string) (*Exports, Config) {
	t.Helper()
	needTools(t, "qemu-nbd", "qemu-img", "nbdcopy", "nbdinfo", "mke2fs", "debugfs")
	dir := t.TempDir()
	cfg := Config{
		Golden: makeGolden(t, dir), Dir: filepath.Join(dir, "roots"),
		Bind: "127.0.0.1", BasePort: freeBase(t, len(nodes)+2), RestartDelay: 100 * time.Millisecond,
	}
	for _, n := range nodes {
		cfg.Nodes = append(cfg.Nodes, Node{Name: n})
	}
	x, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return x, cfg
}

// start serves x's exports until the test ends, and checks that every
// qemu-nbd it started is gone afterwards.
func start(t *testing.T, x *Exports) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	if err := x.Start(ctx); err != nil {
		cancel()
		x.Wait()
		t.Fatal(err)
	}
	var pids []int
	for _, s := range x.Status() {
		if s.PID > 0 {
			pids = append(pids, s.PID)
		}
	}
	t.Cleanup(func() {
		cancel()
		x.Wait()
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("qemu-nbd pid %d still runs after the exports stopped", pid)
			}
		}
	})
}

// read copies the whole export to a file and returns its bytes.
func read(t testing.TB, e Export) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "read.raw")
	run(t, "nbdcopy", e.URI(), out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// write writes data at the start of the export.
func write(t testing.TB, e Export, data []byte) {
	t.Helper()
	src := filepath.Join(t.TempDir(), "write.raw")
	os.WriteFile(src, data, 0o600)
	run(t, "nbdcopy", "--flush", src, e.URI())
}

func TestOverlayCreateAndReset(t *testing.T) {
	p := prefix(t)
	a, b := p+"-a", p+"-b"
	x, cfg := setup(t, a, b)
	ea, _ := x.Export(a)
	eb, _ := x.Export(b)
	if ea.Overlay == eb.Overlay || ea.Port == eb.Port {
		t.Fatalf("two Pis share an overlay or port: %+v %+v", ea, eb)
	}
	if ea.Port != cfg.BasePort || eb.Port != cfg.BasePort+1 {
		t.Errorf("ports %d, %d; want %d, %d", ea.Port, eb.Port, cfg.BasePort, cfg.BasePort+1)
	}
	info := run(t, "qemu-img", "info", ea.Overlay)
	abs, _ := filepath.Abs(cfg.Golden)
	for _, want := range []string{"file format: qcow2", "backing file: " + abs, "backing file format: raw"} {
		if !strings.Contains(info, want) {
			t.Errorf("qemu-img info %s lacks %q:\n%s", ea.Overlay, want, info)
		}
	}
	if fi, _ := os.Stat(ea.Overlay); fi.Mode().Perm() != 0o600 {
		t.Errorf("overlay mode %v, want 0600 (it holds the Pi's root, keys included)", fi.Mode().Perm())
	}
	// A second New keeps the overlays and the ports, and puts a new Pi
	// after them even when it comes first in the inventory.
	c := p + "-c"
	cfg.Nodes = append([]Node{{Name: c}}, cfg.Nodes...)
	mark := filepath.Join(cfg.Dir, "keep")
	os.WriteFile(mark, nil, 0o600)
	before, _ := os.Stat(ea.Overlay)
	x2, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ea2, _ := x2.Export(a)
	ec, _ := x2.Export(c)
	after, _ := os.Stat(ea2.Overlay)
	if ea2.Port != ea.Port || ec.Port != cfg.BasePort+2 {
		t.Errorf("ports moved: a %d→%d, new c got %d (want %d)", ea.Port, ea2.Port, ec.Port, cfg.BasePort+2)
	}
	if !after.ModTime().Equal(before.ModTime()) {
		t.Errorf("New remade an existing overlay")
	}
	if err := x2.Reset(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ea2.Overlay); err != nil {
		t.Fatalf("reset left no overlay: %v", err)
	}
	if err := x2.Reset(context.Background(), "nope"); err == nil {
		t.Error("reset of an unknown node succeeded")
	}
}

func TestExportServesGoldenAndKeepsWrites(t *testing.T) {
	p := prefix(t)
	a, b := p+"-a", p+"-b"
	x, cfg := setup(t, a, b)
	goldenSum := sum(t, cfg.Golden)
	golden, _ := os.ReadFile(cfg.Golden)
	start(t, x)
	ea, _ := x.Export(a)
	eb, _ := x.Export(b)

	// Read over NBD from loopback: the golden bytes.
	if got := read(t, ea); !bytes.Equal(got, golden) {
		t.Fatalf("%s served %d bytes that differ from the golden image (%d bytes)", ea.URI(), len(got), len(golden))
	}
	info := run(t, "nbdinfo", ea.URI())
	if !strings.Contains(info, fmt.Sprintf("export-size: %d", len(golden))) {
		t.Errorf("nbdinfo %s:\n%s", ea.URI(), info)
	}
	// The wrong export name on a Pi's port is refused.
	wrong := ea
	wrong.Name = b
	if out, err := exec.Command("nbdinfo", wrong.URI()).CombinedOutput(); err == nil {
		t.Errorf("nbdinfo %s (another Pi's name on a's port) succeeded:\n%s", wrong.URI(), out)
	}

	// A write through a's export lands in a's overlay, not in the golden
	// image, and not in b's.
	data := make([]byte, 1<<20)
	rand.Read(data)
	write(t, ea, data)
	if got := read(t, ea); !bytes.Equal(got[:len(data)], data) || !bytes.Equal(got[len(data):], golden[len(data):]) {
		t.Fatal("a's export does not read back what was written over the golden bytes")
	}
	if got := read(t, eb); !bytes.Equal(got, golden) {
		t.Fatal("a write to a's export shows in b's")
	}
	if s := sum(t, cfg.Golden); s != goldenSum {
		t.Fatalf("the golden image changed: sha256 %s, was %s", s, goldenSum)
	}
	// The overlay holds it: qemu-img compare (reading the overlay file
	// itself, -U as qemu-nbd holds its lock) finds a's first megabyte new.
	out, _ := exec.Command("qemu-img", "compare", "-U", "-f", "raw", "-F", "qcow2", cfg.Golden, ea.Overlay).CombinedOutput()
	if !strings.Contains(string(out), "Content mismatch at offset 0") {
		t.Errorf("qemu-img compare golden %s: %s", ea.Overlay, out)
	}
	if st := x.Status(); st[0].State != Serving || st[0].PID == 0 {
		t.Errorf("status %+v", st[0])
	}

	// Reset refuses while the export runs, here and from another process.
	if err := x.Reset(context.Background(), a); !errors.Is(err, ErrInUse) {
		t.Fatalf("reset of a served root: %v, want ErrInUse", err)
	}
	other, err := New(context.Background(), Config{Golden: cfg.Golden, Dir: cfg.Dir, Bind: "127.0.0.1", BasePort: cfg.BasePort, Nodes: []Node{{Name: a}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Reset(context.Background(), a); !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), "qemu-nbd pid") {
		t.Fatalf("reset from a second Exports while served: %v, want ErrInUse naming the pid", err)
	}

	// Persistent: stopped and served again, the write is still there.
	if err := x.Stop(a); err != nil {
		t.Fatal(err)
	}
	if err := x.StartNode(a); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ea); !bytes.Equal(got[:len(data)], data) {
		t.Fatal("the write did not survive a restart of the export")
	}
	// Reset after Stop: the golden bytes again.
	if err := x.Stop(a); err != nil {
		t.Fatal(err)
	}
	if err := x.Reset(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	if err := x.StartNode(a); err != nil {
		t.Fatal(err)
	}
	if got := read(t, ea); !bytes.Equal(got, golden) {
		t.Fatal("after reset the export does not serve the golden image")
	}
	if s := sum(t, cfg.Golden); s != goldenSum {
		t.Fatalf("the golden image changed: sha256 %s, was %s", s, goldenSum)
	}
}

func TestDeadExportIsRestarted(t *testing.T) {
	a := prefix(t) + "-a"
	var mu sync.Mutex
	var events []Event
	x, _ := setup(t, a)
	x.cfg.OnEvent = func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, e)
	}
	start(t, x)
	first := x.Status()[0].PID
	syscall.Kill(first, syscall.SIGKILL)
	deadline := time.Now().Add(3 * time.Minute) // a bound against hanging, not a speed check
	for {
		s := x.Status()[0]
		if s.State == Serving && s.PID != first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("export not restarted after its qemu-nbd was killed: %+v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}
	ea, _ := x.Export(a)
	run(t, "nbdinfo", ea.URI())
	mu.Lock()
	defer mu.Unlock()
	var states []string
	for _, e := range events {
		states = append(states, string(e.State))
		if e.State == Restarting && (e.Err == nil || !strings.Contains(e.Err.Error(), "qemu-nbd for "+a+" exited")) {
			t.Errorf("restarting event without the reason: %+v", e)
		}
	}
	if got := strings.Join(states, " "); got != "serving restarting serving" {
		t.Errorf("events %q, want serving restarting serving", got)
	}
}

func TestBadGolden(t *testing.T) {
	needTools(t, "qemu-img", "mke2fs")
	dir := t.TempDir()
	good := makeGolden(t, dir)
	gb, _ := os.ReadFile(good)
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, b, 0o644)
		return p
	}
	junk := make([]byte, 1<<20)
	rand.Read(junk)
	sumFile := write("summed.img", gb)
	os.WriteFile(sumFile+".sha256", []byte(strings.Repeat("0", 64)+"  summed.img\n"), 0o644)
	cases := []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope.img"), "does not exist"},
		{"directory", dir, "not a regular file"},
		{"empty", write("empty.img", nil), "not a whole number of 512-byte sectors"},
		{"not a disk", write("junk.img", junk), "neither an ext4 filesystem nor a disk"},
		{"truncated", write("cut.img", gb[:len(gb)/2]), "truncated or corrupt"},
		{"checksum", sumFile, "the image is corrupt or was changed"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			roots := filepath.Join(dir, "roots-"+strings.ReplaceAll(c.name, " ", "-"))
			_, err := New(context.Background(), Config{Golden: c.path, Dir: roots, Bind: "127.0.0.1", VerifyGolden: true, Nodes: []Node{{Name: "pi-a"}}})
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), filepath.Base(c.path)) {
				t.Fatalf("err = %v, want one naming %s and saying %q", err, c.path, c.want)
			}
			if _, err := os.Stat(roots); err == nil {
				t.Errorf("a bad golden image still made %s", roots)
			}
		})
	}
}

func TestChangedGoldenIsRefusedUntilReset(t *testing.T) {
	p := prefix(t)
	a, b := p+"-a", p+"-b"
	_, cfg := setup(t, a, b)
	// A rebuilt golden image (same path, new contents).
	later := time.Now().Add(time.Hour)
	os.Chtimes(cfg.Golden, later, later)
	x, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range x.Status() {
		if s.State != Refused || !strings.Contains(s.Err.Error(), "changed after its overlay was made") || !strings.Contains(s.Err.Error(), "provision netboot reset "+s.Node) {
			t.Errorf("%s: %s %v", s.Node, s.State, s.Err)
		}
	}
	// The others keep serving: reset one and serve it.
	if err := x.Reset(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	start(t, x)
	st := x.Status()
	if st[0].State != Serving || st[1].State != Refused {
		t.Fatalf("after resetting %s: %s, %s", a, st[0].State, st[1].State)
	}
}

func TestConfigErrors(t *testing.T) {
	needTools(t, "qemu-img", "mke2fs")
	dir := t.TempDir()
	g := makeGolden(t, dir)
	for _, c := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"wildcard without host", Config{Golden: g, Dir: dir, Nodes: []Node{{Name: "a"}}}, "the Pis need the server's own address"},
		{"bad bind", Config{Golden: g, Dir: dir, Bind: "pi-server"}, "not an IP address"},
		{"twice", Config{Golden: g, Dir: dir, Bind: "127.0.0.1", Nodes: []Node{{Name: "a"}, {Name: "a"}}}, "listed twice"},
		{"path in name", Config{Golden: g, Dir: dir, Bind: "127.0.0.1", Nodes: []Node{{Name: "../a"}}}, "not a node name"},
		{"too small", Config{Golden: g, Dir: dir, Bind: "127.0.0.1", Size: 1 << 20}, "smaller than the golden image"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := New(context.Background(), c.cfg); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want %q", err, c.want)
			}
		})
	}
}

func TestKernelArgs(t *testing.T) {
	for _, c := range []struct {
		e    Export
		want string
	}{
		{Export{Host: "192.168.10.5", Port: 10809, Name: "pi-r1-01"}, "nbdroot=192.168.10.5:10809/pi-r1-01 root=/dev/nbd0 rootfstype=ext4 rw rootwait"},
		{Export{Host: "192.168.10.5", Port: 10812, Name: "pi-r1-04", Partition: 2}, "nbdroot=192.168.10.5:10812/pi-r1-04 root=/dev/nbd0p2 rootfstype=ext4 rw rootwait"},
		{Export{Host: "fd00::5", Port: 10809, Name: "pi-r1-01"}, "nbdroot=[fd00::5]:10809/pi-r1-01 root=/dev/nbd0 rootfstype=ext4 rw rootwait"},
	} {
		if got := c.e.KernelArgs(); got != c.want {
			t.Errorf("KernelArgs = %q, want %q", got, c.want)
		}
	}
	if got := (Export{Host: "127.0.0.1", Port: 10809, Name: "pi-r1-01"}).URI(); got != "nbd://127.0.0.1:10809/pi-r1-01" {
		t.Errorf("URI = %q", got)
	}
}

// TestRemove: a served root is not removed (qemu's lock); once its export
// has stopped, Remove deletes the overlay and its records, and a second
// Remove finds nothing.
func TestRemove(t *testing.T) {
	p := prefix(t)
	a := p + "-a"
	x, cfg := setup(t, a)
	ea, _ := x.Export(a)
	ctx := context.Background()
	if err := x.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := Remove(ctx, cfg.Dir, a, ""); !errors.Is(err, ErrInUse) {
		t.Errorf("Remove of a served root: %v, want ErrInUse", err)
	}
	if _, err := os.Stat(ea.Overlay); err != nil {
		t.Fatalf("the refused Remove touched the overlay: %v", err)
	}
	if err := x.Stop(a); err != nil {
		t.Fatal(err)
	}
	removed, err := Remove(ctx, cfg.Dir, a, "")
	if err != nil || !removed {
		t.Fatalf("Remove: %v %v", removed, err)
	}
	for _, ext := range []string{".qcow2", ".json", ".pid"} {
		if _, err := os.Stat(filepath.Join(cfg.Dir, a+ext)); err == nil {
			t.Errorf("%s%s is still there", a, ext)
		}
	}
	if removed, err := Remove(ctx, cfg.Dir, a, ""); err != nil || removed {
		t.Errorf("second Remove: %v %v", removed, err)
	}
}
