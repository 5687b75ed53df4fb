// Command render benchmarks `provision render` on a 2,000-node inventory.
//
// It prints provision's wall time and peak memory (max RSS of a child
// process that loads, validates and renders everything) beside an anchor
// measured in the same run: what labs do today, a bash loop that fills a
// template with sed for every node. Goal (issue 2): under 1 s and 100 MB.
//
//	go run ./bench/render            # or: make bench
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/templates"
)

const (
	racks    = 50 // x 36 Pis
	perRack  = 36
	managers = 3
	workers  = 197 // 3 + 197 + 1,800 = 2,000 nodes
	runs     = 3
)

func main() {
	child := flag.String("child", "", "internal: render this inventory into -out and exit")
	out := flag.String("out", "", "internal: output directory for -child")
	profile := flag.String("cpuprofile", "", "internal: write a CPU profile of -child here")
	flag.Parse()
	if *child != "" {
		if *profile != "" {
			f, err := os.Create(*profile)
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				os.Exit(1)
			}
			pprof.StartCPUProfile(f)
			defer pprof.StopCPUProfile()
		}
		if err := renderOnce(*child, *out); err != nil {
			fmt.Fprintln(os.Stderr, err)
			pprof.StopCPUProfile()
			os.Exit(1)
		}
		return
	}
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "bench/render:", err)
		os.Exit(1)
	}
}

func renderOnce(invPath, out string) error {
	inv, err := inventory.Load(invPath)
	if err != nil {
		return err
	}
	r, err := render.New(templates.FS)
	if err != nil {
		return err
	}
	_, err = render.WriteAll(context.Background(), r, inv, out, runtime.GOMAXPROCS(0)*4)
	return err
}

func run() error {
	dir, err := os.MkdirTemp("", "provision-bench-render-")
	if err != nil {
		return err
	}
	if os.Getenv("PROVISION_BENCH_KEEP") == "" {
		defer os.RemoveAll(dir)
	} else {
		fmt.Println("keeping", dir)
	}
	invPath, err := writeInventory(dir)
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}

	var times []time.Duration
	var peak int64
	for i := 0; i < runs; i++ {
		outDir := filepath.Join(dir, fmt.Sprintf("out-%d", i))
		start := time.Now()
		cmd := exec.Command(self, "-child", invPath, "-out", outDir)
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("provision render: %w", err)
		}
		times = append(times, time.Since(start))
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && ru.Maxrss > peak {
			peak = ru.Maxrss // KiB on Linux
		}
	}
	nodes, err := countDirs(filepath.Join(dir, "out-0"))
	if err != nil {
		return err
	}
	ours := median(times)

	anchor, err := runAnchor(dir)
	if err != nil {
		return err
	}

	peakMB := float64(peak) / 1024
	fmt.Printf("bench/render: %d nodes, 3 files each, median of %d runs\n", nodes, runs)
	fmt.Printf("  provision render (load + validate + render + write): %8.3f s   peak RSS %.1f MB\n", ours.Seconds(), peakMB)
	fmt.Printf("  anchor: bash loop of sed over a template:          %8.3f s\n", anchor.Seconds())
	fmt.Printf("  ratio (anchor / provision): %.1fx faster\n", anchor.Seconds()/ours.Seconds())
	verdict := "met"
	if ours > time.Second || peakMB > 100 {
		verdict = "NOT met"
	}
	fmt.Printf("  goal under 1 s and under 100 MB: %s\n", verdict)
	return nil
}

// writeInventory writes a 2,000-node inventory: 200 VMs on 10 Proxmox hosts
// and 50 racks of 36 Pis with their CSVs.
func writeInventory(dir string) (string, error) {
	var b strings.Builder
	b.WriteString(`apiVersion: provision/v1
kind: Lab
metadata: {name: bench}
network: {cidr: 10.20.0.0/20, gateway: 10.20.0.1, dns: [10.20.0.1]}
ssh:
  user: provision
  authorizedKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGPVVGlKnhJV7BQ1FYjdwArZeElwVh+YVKLidECc4Bac bench"]
swarm: {defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3}
proxmox:
  apiURL: https://pve1:8006/api2/json
  template: debian-12-cloudinit
  nodes:
`)
	for i := 1; i <= 10; i++ {
		fmt.Fprintf(&b, "    - {name: pve%d}\n", i)
	}
	fmt.Fprintf(&b, "  vms:\n    - {name: mgr-%%d, count: %d, role: manager, ipStart: 10.20.0.11}\n", managers)
	fmt.Fprintf(&b, "    - {name: wrk-%%03d, count: %d, ipStart: 10.20.1.1}\n", workers)
	b.WriteString("pis:\n  racks:\n")
	if err := os.MkdirAll(filepath.Join(dir, "racks"), 0o755); err != nil {
		return "", err
	}
	for r := 1; r <= racks; r++ {
		var csv strings.Builder
		csv.WriteString("slot,serial,mac\n")
		for s := 1; s <= perRack; s++ {
			fmt.Fprintf(&csv, "%d,%08x,dc:a6:32:%02x:%02x:%02x\n", s, r<<8|s, r, s, 0)
		}
		if err := os.WriteFile(filepath.Join(dir, "racks", fmt.Sprintf("r%d.csv", r)), []byte(csv.String()), 0o644); err != nil {
			return "", err
		}
		first := 2*256 + (r-1)*perRack + 1 // from 10.20.2.1 on
		fmt.Fprintf(&b, "    - {name: r%d, count: %d, boot: netboot, ipStart: 10.20.%d.%d, nodes: racks/r%d.csv}\n",
			r, perRack, first/256, first%256, r)
	}
	path := filepath.Join(dir, "bench.yaml")
	return path, os.WriteFile(path, []byte(b.String()), 0o644)
}

// runAnchor renders the same nodes the way labs do it by hand: a bash loop
// that runs sed on a template once per file. The templates are provision's
// own output for one node with the name and address made placeholders, so
// both sides write the same bytes.
func runAnchor(dir string) (time.Duration, error) {
	inv, err := inventory.Load(filepath.Join(dir, "bench.yaml"))
	if err != nil {
		return 0, err
	}
	sample := inv.Nodes[len(inv.Nodes)-1]
	tdir := filepath.Join(dir, "anchor-templates")
	if err := os.MkdirAll(tdir, 0o755); err != nil {
		return 0, err
	}
	for _, f := range []string{"user-data", "meta-data", "network-config"} {
		data, err := os.ReadFile(filepath.Join(dir, "out-0", sample.Name, f))
		if err != nil {
			return 0, err
		}
		s := strings.ReplaceAll(string(data), sample.Name, "@NAME@")
		s = strings.ReplaceAll(s, sample.IP, "@IP@")
		if err := os.WriteFile(filepath.Join(tdir, f), []byte(s), 0o644); err != nil {
			return 0, err
		}
	}
	var list strings.Builder
	for _, n := range inv.Nodes {
		fmt.Fprintf(&list, "%s %s\n", n.Name, n.IP)
	}
	if err := os.WriteFile(filepath.Join(dir, "nodes.txt"), []byte(list.String()), 0o644); err != nil {
		return 0, err
	}
	script := `set -e
while read -r name ip; do
  mkdir -p "anchor-out/$name"
  for f in user-data meta-data network-config; do
    sed -e "s/@NAME@/$name/g" -e "s/@IP@/$ip/g" "anchor-templates/$f" > "anchor-out/$name/$f"
  done
done < nodes.txt`
	start := time.Now()
	cmd := exec.Command("bash", "-c", script)
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("anchor: %w", err)
	}
	return time.Since(start), nil
}

func countDirs(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.IsDir() {
			n++
		}
	}
	return n, nil
}

func median(ds []time.Duration) time.Duration {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	return ds[len(ds)/2]
}
