// Command apply benchmarks `provision apply` on the emulated lab at the
// lab's full size: 3 manager VMs, 12 worker VMs and 4 racks of 36 Pis that
// boot from the network (159 nodes), against the way it is done by hand.
//
//   - power-on and the Pis' own boot (timed, not part of the figure):
//     `provision lab up --boot netboot` makes the 159 nodes, the Pis
//     powered on but waiting; `provision netboot serve` (the server apply's
//     pi-boot stage starts) and `provision lab boot` make each Pi do what
//     its bootloader does and start its system. On hardware every Pi boots
//     on its own CPU during apply's discover stage; here their 144 systems
//     start on two shared cores, so that time is measured apart;
//   - provision: `provision apply --only validate,render,pi-boot,discover,
//     swarm,verify` from nothing to a verified swarm (pi-boot serving the
//     racks: proxy DHCP, TFTP from a golden image, an NBD root each); its
//     time per stage from its own ✓ lines, and a re-run;
//   - anchor, measured in the same run: a sequential shell loop of one
//     `ssh NODE docker info` per node (the cheapest step of the hand-run
//     way); estimated from it: three such steps per node (copy the seed,
//     join, label), which is still without writing 144 cards or starting a
//     netboot server by hand.
//
// The golden image is a synthetic Raspberry Pi OS image (the build is
// bench/image's); no image is built. Without -mirror the VMs are the
// emulated lab's, made by lab up, and Terraform is not part of the figure.
// With -mirror DIR (a provider mirror holding telmate/proxmox 3.0.2-rc07),
// `provision pve-sim --lab --sftp` serves the Proxmox API and apply runs
// its vms stage too: Terraform creates the 15 VMs, whose start brings up
// their lab nodes. Needs root.
//
//	go run ./bench/apply [-racks 4] [-mirror DIR] [-keep]
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
)

func main() {
	racks := flag.Int("racks", 4, "racks of 36 netbooted Pis (beside 15 VMs)")
	keep := flag.Bool("keep", false, "keep the work directory (inventory, provision's output)")
	mirror := flag.String("mirror", "", "provider mirror with telmate/proxmox 3.0.2-rc07: the VMs through Terraform and pve-sim --lab")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	tb := &labtest.Outside{}
	err := tb.Run(func() error { return run(ctx, tb, *racks, *keep, *mirror) })
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/apply: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, tb *labtest.Outside, racks int, keep bool, mirror string) error {
	if racks < 1 || racks > 4 {
		return fmt.Errorf("-racks %d: from 1 to 4 (the lab's /24 holds 4 racks of 36)", racks)
	}
	dir, err := os.MkdirTemp("", "provision-bench-apply-")
	if err != nil {
		return err
	}
	if keep {
		fmt.Printf("work directory: %s\n", dir)
	} else {
		tb.Cleanup(func() { os.RemoveAll(dir) }) // the last cleanup: lab down reads the inventory
	}
	bin := filepath.Join(dir, "provision")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/provision")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("build provision (run from the repository's root): %w", err)
	}
	f := labtest.New(tb, dir, io.Discard)
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 3, ingress: {enabled: false}}"
	var rackYAML []string
	for r := 1; r <= racks; r++ {
		var csv strings.Builder
		csv.WriteString("slot,serial,mac\n")
		for s := 1; s <= 36; s++ {
			fmt.Fprintf(&csv, "%d,9ffe%02x%02x,dc:a6:32:b0:%02x:%02x\n", s, r, s, r, s)
		}
		name := fmt.Sprintf("r%d.csv", r)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(csv.String()), 0o644); err != nil {
			return err
		}
		rackYAML = append(rackYAML, fmt.Sprintf("    - {name: r%d, count: 36, boot: netboot, ipStart: {{ADDR %d}}, nodes: %s}", r, 100+36*(r-1), name))
	}
	invName := fmt.Sprintf("bap%x.yaml", time.Now().UnixNano()&0xfffff)
	inv := f.Inventory(tb, invName, "    - {name: mgr-%d, count: 3, role: manager, ipStart: {{ADDR 11}}}\n    - {name: wrk-%02d, count: 12, ipStart: {{ADDR 21}}}", strings.Join(rackYAML, "\n"))
	invPath := filepath.Join(dir, invName)
	state := filepath.Join(dir, "state")
	var ports []int
	if mirror != "" {
		if ports, err = simInventory(invPath); err != nil {
			return err
		}
	}
	img, err := imagetest.MakeBase(dir, imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		return err
	}
	p := func(ctx context.Context, args ...string) (time.Duration, string, error) {
		cmd := exec.CommandContext(ctx, bin, append(args, "-i", invPath, "--state-dir", state)...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		cmd.WaitDelay = 10 * time.Second
		start := time.Now()
		err := cmd.Run()
		if err != nil {
			err = fmt.Errorf("provision %s: %w\n%s", strings.Join(args, " "), err, out.String())
		}
		return time.Since(start), out.String(), err
	}
	tb.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
		defer cancel()
		if _, _, err := p(dctx, "lab", "down"); err != nil {
			tb.Fail(err)
		}
	})
	pis := 36 * racks
	fmt.Printf("bench/apply: %d nodes (3 manager VMs, 12 worker VMs, %d netbooted Pis) on %s, 2 cores\n", len(inv.Nodes), pis, f.Net)

	upArgs := []string{"lab", "up", "--boot", "netboot"}
	upSays := "lab up --boot netboot"
	only := "validate,render,pi-boot,discover,swarm,verify"
	if mirror != "" {
		// The VMs' nodes come with their VMs, from Terraform through the
		// simulator; lab up powers on the Pis only.
		var pis []string
		for _, n := range inv.Nodes {
			if n.Kind == inventory.KindPi {
				pis = append(pis, n.Name)
			}
		}
		upArgs = append(upArgs, "--limit", strings.Join(pis, ","))
		upSays += " of the Pis; the VMs come from Terraform"
		only = "validate,render,vms,pi-boot,discover,swarm,verify"
		stopSim, err := startSim(ctx, bin, invPath, dir, ports[0])
		if err != nil {
			return err
		}
		defer stopSim()
	}
	up, _, err := p(ctx, upArgs...)
	if err != nil {
		return err
	}
	fmt.Printf("  power-on (%s, not part of the figure): %s\n", upSays, up.Round(10*time.Millisecond))

	// The Pis' own boot: the same server as apply's pi-boot stage
	// (netboot serve), and lab boot to the end. On real hardware each Pi
	// boots on its own CPU while apply waits in its discover stage; here
	// the 144 daemons start on two shared cores, which would outlast
	// discover's SSH budget, so that cost is measured on its own.
	srvCtx, stopServe := context.WithCancel(ctx)
	serve := exec.CommandContext(srvCtx, bin, "netboot", "serve", "-i", invPath, "--state-dir", state, "--image", img, "--listen", f.Addr(1), "--dhcp", "proxy")
	serve.Cancel = func() error { return serve.Process.Signal(os.Interrupt) }
	serve.WaitDelay = 30 * time.Second
	var serveOut bytes.Buffer
	serve.Stdout, serve.Stderr = &serveOut, &serveOut
	if err := serve.Start(); err != nil {
		stopServe()
		return err
	}
	boot, bout, err := p(ctx, "lab", "boot", "--image", img, "--retry", "1s", "--timeout", "20m")
	stopServe()
	serve.Wait()
	if err != nil {
		return fmt.Errorf("the Pis' boot: %w\nnetboot serve:\n%s", err, serveOut.String())
	}
	fmt.Printf("  the Pis' own boot (netboot serve + lab boot: DHCP, TFTP, then %d emulated systems started on 2 cores; not part of the figure): %s; %s",
		pis, boot.Round(10*time.Millisecond), lastLine(bout))

	applyArgs := []string{"apply", "--only", only, "--netboot-image", img, "--netboot-listen", f.Addr(1)}
	if mirror != "" {
		applyArgs = append(applyArgs, "--yes", "--terraform-mirror", mirror)
	}
	took, out, err := p(ctx, applyArgs...)
	if err != nil {
		return err
	}
	fmt.Printf("(p) provision apply, nothing to a verified swarm: %s\n", took.Round(10*time.Millisecond))
	for _, s := range stageTimes(out) {
		fmt.Printf("      %s\n", s)
	}
	again, out2, err := p(ctx, applyArgs...)
	if err != nil {
		return fmt.Errorf("re-run: %w", err)
	}
	fmt.Printf("    re-run: %s (%s)\n", again.Round(10*time.Millisecond), changed(out2))

	loop, err := sshLoop(ctx, f, inv, state)
	if err != nil {
		return err
	}
	perNode := loop / time.Duration(len(inv.Nodes))
	est := 3 * loop
	fmt.Printf("(a) anchor, measured: a sequential ssh loop of one `docker info` per node: %s (%s per node)\n", loop.Round(10*time.Millisecond), perNode.Round(time.Millisecond))
	fmt.Printf("    anchor, estimated from it: three such steps per node (seed, join, label): %s, without writing %d cards or serving them by hand\n", est.Round(time.Second), pis)
	fmt.Printf("ratio anchor/provision: measured loop %.2fx, estimated hand run %.2fx   goal: apply under 90 s (image builds excluded): %s\n",
		loop.Seconds()/took.Seconds(), est.Seconds()/took.Seconds(), met(took < 90*time.Second))
	return nil
}

// simToken is the simulator's API token, in the environment of every
// provision the bench runs (the simulator's and apply's).
const simToken, simSecret = "provision@pve!bench", "bench-sim-secret-0000"

// simInventory points the inventory's proxmox section at a simulator on
// loopback (its API port and one SFTP port per host) and returns the
// ports.
func simInventory(path string) ([]int, error) {
	ports, err := freePorts(4)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	text := strings.Replace(string(data), "  apiURL: https://127.0.0.1:8006/api2/json\n",
		fmt.Sprintf("  apiURL: https://127.0.0.1:%d/api2/json\n  insecure: true\n", ports[0]), 1)
	text = strings.Replace(text, "nodes: [{name: pve1}, {name: pve2}, {name: pve3}]",
		fmt.Sprintf("nodes: [{name: pve1, address: 127.0.0.1, sshPort: %d}, {name: pve2, address: 127.0.0.1, sshPort: %d}, {name: pve3, address: 127.0.0.1, sshPort: %d}]", ports[1], ports[2], ports[3]), 1)
	if !strings.Contains(text, "insecure: true") || !strings.Contains(text, "sshPort") {
		return nil, fmt.Errorf("could not point %s at the simulator", path)
	}
	os.Setenv("PM_API_TOKEN_ID", simToken)
	os.Setenv("PM_API_TOKEN_SECRET", simSecret)
	return ports, os.WriteFile(path, []byte(text), 0o600)
}

// startSim runs `provision pve-sim --lab --sftp` until stop, and waits
// until it answers.
func startSim(ctx context.Context, bin, inv, dir string, port int) (stop func(), err error) {
	simCtx, cancel := context.WithCancel(ctx)
	cmd := exec.CommandContext(simCtx, bin, "pve-sim", "-i", inv, "--state-dir", filepath.Join(dir, "sim-state"),
		"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--lab", "--sftp", "--sftp-root", filepath.Join("/run", filepath.Base(dir)+"-sftp"))
	cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
	cmd.WaitDelay = 30 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	stop = func() {
		cancel()
		cmd.Wait()
		os.RemoveAll(filepath.Join("/run", filepath.Base(dir)+"-sftp"))
	}
	for range 300 {
		d := &net.Dialer{Timeout: time.Second}
		if c, err := tls.DialWithDialer(d, "tcp", fmt.Sprintf("127.0.0.1:%d", port), &tls.Config{InsecureSkipVerify: true}); err == nil {
			c.Close()
			return stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	stop()
	return nil, fmt.Errorf("pve-sim did not answer in 30 s:\n%s", out.String())
}

// freePorts are n loopback ports free now.
func freePorts(n int) ([]int, error) {
	var out []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		out = append(out, l.Addr().(*net.TCPAddr).Port)
	}
	return out, nil
}

var stageLine = regexp.MustCompile(`✓ (.+) \(([0-9.]+(?:ms|s|m[0-9.]*s?))\)`)

// stageTimes are apply's ✓ lines: each stage's title and time.
func stageTimes(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if m := stageLine.FindStringSubmatch(l); m != nil && !strings.HasPrefix(l, "  ") {
			lines = append(lines, fmt.Sprintf("%-60s %s", m[1], m[2]))
		}
	}
	return lines
}

func changed(out string) string {
	if strings.Contains(out, "nothing changed") {
		return "nothing changed"
	}
	return "changes made: " + lastLine(out)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1] + "\n"
}

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// sshLoop is the anchor: one ssh per node, one after the other, as a shell
// loop runs it, with the host keys apply trusted.
func sshLoop(ctx context.Context, f *labtest.Fixture, inv *inventory.Inventory, state string) (time.Duration, error) {
	start := time.Now()
	for _, n := range inv.Nodes {
		cmd := exec.CommandContext(ctx, "ssh", "-i", f.KeyPath, "-o", "UserKnownHostsFile="+filepath.Join(state, "known_hosts"),
			"-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
			"provision@"+n.IP, "docker", "info", "--format", "{{.Swarm.LocalNodeState}}")
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "active" {
			return 0, fmt.Errorf("ssh %s docker info: %v: %s", n.Name, err, out)
		}
	}
	return time.Since(start), nil
}
