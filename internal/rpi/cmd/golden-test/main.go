// Command golden-test is `make golden-test`: it boots the Raspberry Pi
// golden image under qemu-system-aarch64 -M virt (TCG, -nic none) with the
// NoCloud seed of one Pi of the inventory and checks over the serial
// console what internal/rpi/smoke checks. It prints each check and the boot
// time, writes the whole console to -console, and exits 1 on any failure.
//
//	go run ./internal/rpi/cmd/golden-test -image out/golden/images/debian-pi4/debian-pi4.img \
//	    -i inventory/example.yaml [-node pi-r1-01] [-seed DIR] [-timeout 15m]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/rpi/smoke"
	"github.com/fhlab/provision/templates"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "golden-test:", err)
		os.Exit(1)
	}
}

func run() error {
	image := flag.String("image", "out/golden/images/debian-pi4/debian-pi4.img", "the golden image (MBR disk or bare ext4 root)")
	invPath := flag.String("i", "inventory/example.yaml", "inventory")
	node := flag.String("node", "", "the Pi whose seed the guest gets (default: the inventory's first Pi)")
	seedDir := flag.String("seed", "", "directory with the node's user-data, meta-data, network-config (default: rendered from the inventory)")
	timeout := flag.Duration("timeout", 15*time.Minute, "boot timeout")
	console := flag.String("console", "", "file for the guest's console output (default: <image dir>/golden-test-console.log)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	inv, err := inventory.Load(*invPath)
	if err != nil {
		return err
	}
	n, err := smoke.PickPi(inv, *node, "")
	if err != nil {
		return err
	}
	data, err := render.NewData(inv, n)
	if err != nil {
		return fmt.Errorf("%s: %w", n.Name, err)
	}
	var seed render.Files
	if *seedDir != "" {
		if seed, err = readSeed(*seedDir); err != nil {
			return err
		}
	} else {
		r, err := render.New(templates.FS)
		if err != nil {
			return err
		}
		if seed, err = r.Node(inv, n); err != nil {
			return fmt.Errorf("render %s: %w", n.Name, err)
		}
	}
	if *console == "" {
		*console = filepath.Join(filepath.Dir(*image), "golden-test-console.log")
	}
	cf, err := os.Create(*console)
	if err != nil {
		return err
	}
	defer cf.Close()

	start := time.Now()
	stamp := func(format string, args ...any) {
		fmt.Printf("%6s  %s\n", time.Since(start).Round(time.Second), fmt.Sprintf(format, args...))
	}
	out, err := smoke.Run(ctx, smoke.Config{
		Image: *image, Data: data, Seed: seed, Timeout: *timeout,
		Console: cf, Progress: stamp,
		OnLine: func(line string) {
			if smoke.Milestone(line) { // the whole console is in the file
				stamp("console: %s", line)
			}
		},
	})
	if out != nil {
		fmt.Print(smoke.Report(out.Results))
		fmt.Printf("boot and checks took %s (%s); console: %s\n", out.Duration.Round(time.Second), out.Duration, *console)
	}
	if err != nil {
		return err
	}
	fmt.Printf("golden-test: %s passed as %s (%d checks)\n", *image, n.Name, len(out.Results))
	return nil
}

func readSeed(dir string) (render.Files, error) {
	var f render.Files
	for name, dst := range map[string]*[]byte{render.UserData: &f.UserData, render.MetaData: &f.MetaData, render.NetworkConfig: &f.NetworkConfig} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil && !(name == render.NetworkConfig && os.IsNotExist(err)) {
			return f, fmt.Errorf("seed: %w", err)
		}
		*dst = b
	}
	return f, nil
}
