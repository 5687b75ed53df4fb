// Command netboot-test is `make netboot-test`: the proof that a Pi's root
// boots over the network. It gives one Pi of the inventory its root the
// way `provision netboot serve` does (internal/rpi/netboot/nbdroot: a
// qcow2 overlay over the golden image, exported by qemu-nbd on loopback),
// then boots the golden image's own kernel and initramfs under
// qemu-system-aarch64 -M virt (TCG, -nic none) with that export as its
// root disk, through qemu's own NBD client (this host's kernel has no nbd
// module; the guest sees a virtio disk whose every block comes over NBD
// from the Pi's overlay: same server, export and overlay as a Pi's kernel
// NBD client would use). The guest applies the Pi's NoCloud seed and
// internal/rpi/smoke checks it over the serial console (cloud-init done,
// hostname, tuning, dockerd answering, ...). A file the guest writes
// during first boot must then be in the Pi's overlay (read back with
// qemu-img convert + debugfs, after the export has stopped), absent from
// the golden image, and the golden image's sha256 must be unchanged.
//
//	go run ./internal/rpi/cmd/netboot-test -image out/golden/images/debian-pi4/debian-pi4.img \
//	    -i inventory/example.yaml [-node pi-r1-01] [-timeout 15m] [-keep DIR]
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/netboot/nbdroot"
	"github.com/fhlab/provision/internal/rpi/smoke"
	"github.com/fhlab/provision/templates"
)

// proofPath is the file the guest writes on its NBD root.
const proofPath = "/var/lib/provision-netboot/proof"

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "netboot-test:", err)
		os.Exit(1)
	}
}

func run() error {
	image := flag.String("image", "out/golden/images/debian-pi4/debian-pi4.img", "the golden image (MBR disk or bare ext4 root)")
	invPath := flag.String("i", "inventory/example.yaml", "inventory")
	node := flag.String("node", "", "the Pi whose root and seed the guest gets (default: the inventory's first netbooted Pi)")
	timeout := flag.Duration("timeout", 15*time.Minute, "boot timeout")
	keep := flag.String("keep", "", "keep the Pi's overlay in this directory (default: a temporary directory, removed)")
	console := flag.String("console", "", "file for the guest's console output (default: <image dir>/netboot-test-console.log)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	stamp := func(format string, args ...any) {
		fmt.Printf("%6s  %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}

	inv, err := inventory.Load(*invPath)
	if err != nil {
		return err
	}
	n, err := smoke.PickPi(inv, *node, inventory.BootNetboot)
	if err != nil {
		return err
	}
	data, err := render.NewData(inv, n)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		return err
	}
	seed, err := r.Node(inv, n)
	if err != nil {
		return fmt.Errorf("render %s: %w", n.Name, err)
	}
	nonce := make([]byte, 8)
	rand.Read(nonce)
	proof := n.Name + " " + hex.EncodeToString(nonce)
	if seed.UserData, err = addProof(seed.UserData, proof); err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}

	work := *keep
	if work == "" {
		if work, err = os.MkdirTemp("", "provision-netboot-test-"); err != nil {
			return err
		}
		defer os.RemoveAll(work)
	}
	stamp("sha256 of the golden image %s", *image)
	before, err := nbdroot.SHA256(ctx, *image)
	if err != nil {
		return err
	}
	stamp("golden sha256 %s", before)

	port, err := freePort()
	if err != nil {
		return err
	}
	x, err := nbdroot.New(ctx, nbdroot.Config{
		Golden: *image, Dir: filepath.Join(work, "roots"), Bind: "127.0.0.1", BasePort: port,
		Nodes: []nbdroot.Node{{Name: n.Name, Serial: n.Serial}},
	})
	if err != nil {
		return err
	}
	xctx, stopExports := context.WithCancel(ctx)
	defer func() { stopExports(); x.Wait() }()
	if err := x.Start(xctx); err != nil {
		return err
	}
	ex, err := x.Export(n.Name)
	if err != nil {
		return err
	}
	st := x.Status()[0]
	stamp("%s's root: %s (qemu-nbd pid %d, overlay %s); on a Pi: %s", n.Name, ex.URI(), st.PID, ex.Overlay, ex.KernelArgs())

	if *console == "" {
		*console = filepath.Join(filepath.Dir(*image), "netboot-test-console.log")
	}
	cf, err := os.Create(*console)
	if err != nil {
		return err
	}
	defer cf.Close()
	attached := false
	out, bootErr := smoke.Run(ctx, smoke.Config{
		Image: *image, Data: data, Seed: seed, Timeout: *timeout,
		RootDrive: "file=" + ex.URI() + ",format=raw,if=virtio",
		Console:   cf, Progress: stamp, WorkDir: work,
		OnLine: func(line string) {
			if !attached && strings.Contains(line, "EXT4-fs (vda): mounted") {
				attached = true
				stamp("root attached: %d NBD connection(s) to port %d", x.Status()[0].Clients, ex.Port)
			}
			if smoke.Milestone(line) {
				stamp("console: %s", line)
			}
		},
	})
	if out != nil {
		fmt.Print(smoke.Report(out.Results))
		fmt.Printf("boot and checks took %s; console: %s\n", out.Duration.Round(time.Second), *console)
	}
	// Stop the export: qemu-nbd flushes the overlay and lets go of it.
	stopExports()
	x.Wait()
	var problems []error
	if bootErr != nil {
		problems = append(problems, bootErr)
	}
	if out != nil && out.Console != nil {
		got := out.Console.Values["netboot_proof"]
		fmt.Printf("guest: %s\n", got)
		if !strings.HasPrefix(got, proof+" ") || !strings.Contains(got, "root=/dev/vda") || !strings.Contains(got, "docker=ext4") {
			problems = append(problems, fmt.Errorf("the guest's proof line %q: want %q, root /dev/vda, /var/lib/docker on ext4", got, proof))
		}
	}

	// The file the guest wrote is in the overlay ...
	raw := filepath.Join(work, "overlay.raw")
	stamp("reading %s back from the overlay (qemu-img convert, debugfs)", proofPath)
	if b, err := exec.CommandContext(ctx, "qemu-img", "convert", "-O", "raw", ex.Overlay, raw).CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img convert %s: %w: %s", ex.Overlay, err, b)
	}
	got, err := debugfsCat(ctx, raw, proofPath)
	os.Remove(raw)
	switch {
	case err != nil:
		problems = append(problems, fmt.Errorf("the overlay %s: %w", ex.Overlay, err))
	case strings.TrimSpace(got) != proof:
		problems = append(problems, fmt.Errorf("the overlay's %s holds %q, want %q", proofPath, got, proof))
	default:
		fmt.Printf("overlay: %s holds %q\n", proofPath, strings.TrimSpace(got))
	}
	// ... not in the golden image, which is unchanged.
	switch g, err := debugfsCat(ctx, *image, proofPath); {
	case err == nil:
		problems = append(problems, fmt.Errorf("the golden image has %s (%q): the guest wrote into it", proofPath, g))
	case !strings.Contains(err.Error(), "File not found"):
		problems = append(problems, fmt.Errorf("the golden image: %w", err))
	default:
		fmt.Printf("golden: no %s in it\n", proofPath)
	}
	info, _ := exec.CommandContext(ctx, "qemu-img", "info", ex.Overlay).Output()
	for _, l := range strings.Split(string(info), "\n") {
		if strings.HasPrefix(l, "disk size:") {
			fmt.Printf("overlay: %s after first boot (%s)\n", l, ex.Overlay)
		}
	}
	after, err := nbdroot.SHA256(ctx, *image)
	if err != nil {
		return err
	}
	if after != before {
		problems = append(problems, fmt.Errorf("the golden image changed: sha256 %s, was %s", after, before))
	} else {
		fmt.Printf("golden: sha256 %s unchanged\n", after)
	}
	if len(problems) > 0 {
		return errors.Join(problems...)
	}
	fmt.Printf("netboot-test: %s booted with its root on %s, seed applied, dockerd answered, its writes in its overlay; total %s\n",
		n.Name, ex.URI(), time.Since(start).Round(time.Second))
	return nil
}

// addProof adds to user-data a bootcmd entry that writes proof to
// proofPath early in first boot (so a boot too slow to finish the smoke
// check still leaves it in the overlay), and a runcmd entry (before the
// smoke check's) that prints it with where / and /var/lib/docker live.
func addProof(userData []byte, proof string) ([]byte, error) {
	return smoke.EditUserData(userData, func(root *yaml.Node) {
		smoke.AddCommand(root, "bootcmd", "sh", "-c", fmt.Sprintf(`mkdir -p %[1]s && echo '%[2]s' > %[3]s && sync`, filepath.Dir(proofPath), proof, proofPath))
		smoke.AddCommand(root, "runcmd", "sh", "-c", fmt.Sprintf(`echo "SMOKE netboot_proof=$(cat %[1]s) root=$(findmnt -no SOURCE /) docker=$(findmnt -no FSTYPE -T /var/lib/docker)" > /dev/console`, proofPath))
	})
}

// debugfsCat reads path from the root file system of img (a disk image or
// a bare ext4 file system).
func debugfsCat(ctx context.Context, img, path string) (string, error) {
	root, err := smoke.FindRootFS(img)
	if err != nil {
		return "", err
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "debugfs", "-R", "cat "+path, root.Spec(img))
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("debugfs cat %s: %w: %s", path, err, stderr.String())
	}
	for _, l := range strings.Split(stderr.String(), "\n") {
		if l != "" && !strings.HasPrefix(l, "debugfs ") {
			return "", fmt.Errorf("debugfs cat %s in %s: %s", path, img, l)
		}
	}
	return stdout.String(), nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
