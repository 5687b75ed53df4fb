// Command tftp benchmarks `provision netboot serve`'s TFTP server against
// dnsmasq's, on loopback, in one run.
//
// It builds a synthetic Raspberry Pi golden image (imagetest) whose FAT
// partition holds a Pi 4 boot set of about 30 MB (start4.elf, fixup4.dat,
// the DTB, kernel8.img, initramfs8 and config.txt/cmdline.txt, files of
// those sizes with random bytes), and an inventory with one rack of 36
// netbooted Pis. provision serves each Pi's SERIAL/ directory straight out
// of the image (the real binary, `provision netboot serve --dhcp off`);
// dnsmasq (--enable-tftp, --port=0) serves a directory tree with the same
// files under the same names, hard links of one copy, with the cmdline.txt
// and config.txt provision generates for each Pi. The same client, this
// program's (provision's Fetch: blksize 1468 and tsize, lock-step, as the
// Pi 4 bootloader asks), fetches the boot set of all 36 Pis at once from
// each server, in alternating rounds; the best round of each counts.
// Goal (issue 12): at least 1.2x dnsmasq's aggregate throughput.
//
//	go run ./bench/tftp [-rounds 3] [-pis 36] [-keep]
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
)

// bootSet is a Pi 4 boot set in the order the bootloader asks for it, with
// sizes like Raspberry Pi OS's; config.txt and cmdline.txt are generated.
var bootSet = []struct {
	name string
	size int
}{
	{"start4.elf", 2_281_696},
	{"fixup4.dat", 5_399},
	{"config.txt", 0},
	{"bcm2711-rpi-4-b.dtb", 55_793},
	{"kernel8.img", 9_463_168},
	{"initramfs8", 17_861_320},
	{"cmdline.txt", 0},
}

const (
	provisionAddr = "127.0.0.3"
	dnsmasqAddr   = "127.0.0.2"
)

func main() {
	rounds := flag.Int("rounds", 3, "rounds per server (alternating); the best counts")
	pis := flag.Int("pis", 36, "Pis booting at once")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, *rounds, *pis, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "bench/tftp:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, rounds, pis int, keep bool) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (dnsmasq's TFTP server binds port 69)")
	}
	for _, tool := range append([]string{"dnsmasq", "go", "debugfs"}, imagetest.Tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			if _, err := os.Stat("/usr/sbin/" + tool); err != nil {
				return fmt.Errorf("needs %s (scripts/install-deps.sh)", tool)
			}
		}
	}
	work, err := os.MkdirTemp("", "tftp-bench-")
	if err != nil {
		return err
	}
	if !keep {
		defer os.RemoveAll(work)
	}
	// dnsmasq drops to user nobody: it must reach the tree.
	if err := os.Chmod(work, 0o755); err != nil {
		return err
	}
	fmt.Printf("work directory %s\n", work)

	// The golden image with the boot set.
	spec := imagetest.Flavours()["raspios-trixie"]
	files := map[string]string{}
	for k, v := range spec.BootFiles {
		files[k] = v
	}
	var setBytes int64
	rnd := rand.New(rand.NewPCG(1, 2))
	for _, f := range bootSet {
		if f.size == 0 {
			continue
		}
		b := make([]byte, f.size)
		for i := range b {
			b[i] = byte(rnd.Uint32())
		}
		files[f.name] = string(b)
	}
	spec.BootFiles = files
	imgDir := filepath.Join(work, "image")
	if err := os.MkdirAll(imgDir, 0o755); err != nil {
		return err
	}
	img, err := imagetest.MakeBase(imgDir, spec)
	if err != nil {
		return err
	}

	// The inventory: one rack of netbooted Pis.
	var csv strings.Builder
	csv.WriteString("slot,serial,mac\n")
	serials := make([]string, pis)
	for i := range pis {
		serials[i] = fmt.Sprintf("b0%06x", i+1)
		fmt.Fprintf(&csv, "%d,%s,dc:a6:32:00:%02x:%02x\n", i+1, serials[i], (i+1)>>8, (i+1)&0xff)
	}
	inv := filepath.Join(work, "lab.yaml")
	if err := os.WriteFile(filepath.Join(work, "r1.csv"), []byte(csv.String()), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(inv, []byte(fmt.Sprintf(inventory, pis)), 0o644); err != nil {
		return err
	}

	// provision netboot serve, the real command.
	bin := filepath.Join(work, "provision")
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/provision").CombinedOutput(); err != nil {
		return fmt.Errorf("go build: %v\n%s", err, out)
	}
	stopProvision, pPID, err := start(ctx, "provision netboot serve", bin, []string{"netboot", "serve", "-i", inv, "--state-dir", filepath.Join(work, "state"),
		"--image", img, "--listen", provisionAddr + ":69", "--dhcp", "off"}, "Ctrl-C stops")
	if err != nil {
		return err
	}
	defer stopProvision()
	pAddr := netip.MustParseAddrPort(provisionAddr + ":69")

	// dnsmasq's tree: the same files, hard links of one copy, and each Pi's
	// generated files as provision serves them.
	root := filepath.Join(work, "tftproot")
	shared := filepath.Join(work, "shared")
	for _, d := range []string{root, shared} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	for _, f := range bootSet {
		if f.size > 0 {
			if err := os.WriteFile(filepath.Join(shared, f.name), []byte(files[f.name]), 0o644); err != nil {
				return err
			}
		}
	}
	for _, s := range serials {
		dir := filepath.Join(root, s)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		for _, f := range bootSet {
			dst := filepath.Join(dir, f.name)
			if f.size > 0 {
				if err := os.Link(filepath.Join(shared, f.name), dst); err != nil {
					return err
				}
				continue
			}
			data, err := fetchAll(ctx, pAddr, s+"/"+f.name)
			if err != nil {
				return fmt.Errorf("fetch %s/%s from provision: %w", s, f.name, err)
			}
			if err := os.WriteFile(dst, data, 0o644); err != nil {
				return err
			}
		}
	}
	for _, f := range bootSet {
		if f.size == 0 {
			st, _ := os.Stat(filepath.Join(root, serials[0], f.name))
			setBytes += st.Size()
		} else {
			setBytes += int64(f.size)
		}
	}
	stopDnsmasq, dPID, err := start(ctx, "dnsmasq", "dnsmasq", []string{"--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--log-facility=-",
		"--enable-tftp", "--tftp-root=" + root, "--listen-address=" + dnsmasqAddr, "--bind-interfaces", "--tftp-max=1000", "--quiet-tftp", "--pid-file="}, "")
	if err != nil {
		return err
	}
	defer stopDnsmasq()
	dAddr := netip.MustParseAddrPort(dnsmasqAddr + ":69")
	if err := waitServing(ctx, dAddr, serials[0]+"/cmdline.txt"); err != nil {
		return fmt.Errorf("dnsmasq: %w", err)
	}

	total := setBytes * int64(pis)
	fmt.Printf("%d Pis at once, each fetching a Pi 4 boot set of %.1f MB (%d files), blksize 1468 + tsize, lock-step: %.0f MB per round\n",
		pis, float64(setBytes)/1e6, len(bootSet), float64(total)/1e6)
	best := map[string]time.Duration{}
	cpu := map[string]time.Duration{}
	for r := 1; r <= rounds; r++ {
		for _, c := range []struct {
			name string
			addr netip.AddrPort
			pid  int
		}{{"dnsmasq", dAddr, dPID}, {"provision", pAddr, pPID}} {
			s0, c0 := cpuOf(c.pid), cpuOf(os.Getpid())
			d, err := boot(ctx, c.addr, serials, files)
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", r, c.name, err)
			}
			sc := cpuOf(c.pid) - s0
			cpu[c.name] += sc
			fmt.Printf("  round %d  %-10s %6.2f s  %6.1f MB/s  server CPU %5.1f s, client CPU %5.1f s\n", r, c.name, d.Seconds(), float64(total)/d.Seconds()/1e6,
				sc.Seconds(), (cpuOf(os.Getpid()) - c0).Seconds())
			if b, ok := best[c.name]; !ok || d < b {
				best[c.name] = d
			}
		}
	}
	p, d := float64(total)/best["provision"].Seconds()/1e6, float64(total)/best["dnsmasq"].Seconds()/1e6
	fmt.Println()
	fmt.Printf("best of %d: provision netboot serve %.1f MB/s, dnsmasq %.1f MB/s aggregate: %.2fx dnsmasq (goal: at least 1.2x)\n", rounds, p, d, p/d)
	fmt.Printf("server CPU per GB served, all rounds: provision %.1f s, dnsmasq %.1f s: provision uses %.2fx dnsmasq's CPU per block\n",
		cpu["provision"].Seconds()/(float64(total)*float64(rounds)/1e9), cpu["dnsmasq"].Seconds()/(float64(total)*float64(rounds)/1e9), cpu["provision"].Seconds()/cpu["dnsmasq"].Seconds())
	return nil
}

const inventory = `apiVersion: provision/v1
kind: Lab
metadata: {name: tftp-bench}
network: {cidr: 192.168.10.0/23, gateway: 192.168.10.1, dns: [192.168.10.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq3mIzxp6Yw6z1s8m0b1f0ZC8qW2l2Hn0JXQZ3x7a9P admin@lab"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 16, managers: 1}
pis:
  racks:
    - {name: m1, count: 1, boot: sd, ipStart: 192.168.10.200, role: manager}
    - {name: r1, count: %d, boot: netboot, ipStart: 192.168.11.1, nodes: r1.csv}
`

// start runs a server until the returned stop (SIGINT, then wait), after
// waiting for ready on its stderr when set.
func start(ctx context.Context, name, bin string, args []string, ready string) (func(), int, error) {
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, 0, err
	}
	cmd.Stdout = io.Discard
	if err := cmd.Start(); err != nil {
		return nil, 0, fmt.Errorf("%s: %w", name, err)
	}
	pid := cmd.Process.Pid
	lines := make(chan string, 100)
	var tail []string
	var mu sync.Mutex
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			mu.Lock()
			tail = append(tail, sc.Text())
			mu.Unlock()
			select {
			case lines <- sc.Text():
			default:
			}
		}
		close(lines)
	}()
	stop := func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				mu.Lock()
				fmt.Fprintf(os.Stderr, "%s exited: %v\n%s\n", name, err, strings.Join(tail, "\n"))
				mu.Unlock()
			}
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-done
			fmt.Fprintf(os.Stderr, "%s did not stop on SIGINT within 30 s: killed\n", name)
		}
	}
	if ready == "" {
		return stop, pid, nil
	}
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				stop()
				mu.Lock()
				defer mu.Unlock()
				return nil, 0, fmt.Errorf("%s ended before it was ready:\n%s", name, strings.Join(tail, "\n"))
			}
			if strings.Contains(l, ready) {
				return stop, pid, nil
			}
		case <-timeout:
			stop()
			return nil, 0, fmt.Errorf("%s: not ready after 2 minutes", name)
		case <-ctx.Done():
			stop()
			return nil, 0, ctx.Err()
		}
	}
}

func fetchAll(ctx context.Context, server netip.AddrPort, name string) ([]byte, error) {
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	var b strings.Builder
	_, err = netboot.Fetch(ctx, conn, server, name, netboot.FetchOptions{Blksize: 1468, TSize: true}, &b)
	return []byte(b.String()), err
}

func waitServing(ctx context.Context, server netip.AddrPort, name string) error {
	var err error
	for range 50 {
		if _, err = fetchAll(ctx, server, name); err == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// cpuOf is the user+system CPU time process pid has used (/proc/PID/stat).
func cpuOf(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(data)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		s = s[i+2:]
	}
	f := strings.Fields(s)
	if len(f) < 13 {
		return 0
	}
	var u, k int64
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &k)
	return time.Duration(u+k) * time.Second / 100 // USER_HZ
}

// countWriter counts bytes and checks a file's size.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// boot has every Pi fetch its boot set at once; it returns the wall time
// until the last finished. Every file's size is checked; the bytes of the
// image's files too, on the first Pi.
func boot(ctx context.Context, server netip.AddrPort, serials []string, files map[string]string) (time.Duration, error) {
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	t0 := time.Now()
	for i, s := range serials {
		wg.Go(func() {
			conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
			if err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return
			}
			defer conn.Close()
			for _, f := range bootSet {
				var w io.Writer
				var c countWriter
				var b strings.Builder
				w = &c
				if i == 0 && f.size > 0 {
					w = &b
				}
				n, err := netboot.Fetch(ctx, conn, server, s+"/"+f.name, netboot.FetchOptions{Blksize: 1468, TSize: true, Timeout: 2 * time.Second}, w)
				if err == nil && f.size > 0 && n != int64(f.size) {
					err = fmt.Errorf("%d bytes, want %d", n, f.size)
				}
				if err == nil && i == 0 && f.size > 0 && b.String() != files[f.name] {
					err = errors.New("not the image's bytes")
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("%s/%s: %w", s, f.name, err))
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return time.Since(t0), errors.Join(errs...)
}
