package cli

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/lab"
	statefile "github.com/fhlab/provision/internal/state"

	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/rpi/image/imagetest"
	"github.com/fhlab/provision/internal/rpi/netboot"
	"github.com/fhlab/provision/internal/testtool"
)

// TestEndToEndWithNetbootedPis rehearses the lab's life on the emulated
// lab, with the Pis' own boot: lab up --boot netboot powers the netbooted
// rack's Pis on without starting them; lab boot with no server running
// gives up, saying how often each Pi asked for DHCP; then apply serves
// them (pi-boot: proxy DHCP and TFTP from a golden image, an NBD root
// each) while lab boot does what each Pi's bootloader does (DISCOVER, its
// boot files, checked against the golden image and its inventory entry)
// and starts them (before that, a Pi whose files are refused: see
// refusedBoot); apply goes on to discover, swarm and verify with the
// Pis in the swarm, and the netboot events record both Pis' files. A
// second apply makes no changing Engine API call (counted) outside
// verify's own test service. rack add, lab up and apply then touch only
// the new rack's Pi: one seed, one join. destroy takes every node out of
// the swarm, its roots and state entries; lab down leaves nothing.
func TestEndToEndWithNetbootedPis(t *testing.T) {
	labtest.Require(t)
	testtool.NeedAll(t, "mkfs.vfat:dosfstools", "mcopy:mtools", "mke2fs:e2fsprogs", "debugfs:e2fsprogs", "qemu-img:qemu-utils", "qemu-nbd:qemu-utils")
	f := labtest.New(t, t.TempDir(), &bytes.Buffer{})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	img, err := imagetest.MakeBase(t.TempDir(), imagetest.Flavours()["raspios-trixie"])
	if err != nil {
		t.Fatal(err)
	}
	csv := "slot,serial,mac\n1,9ffe0d01,dc:a6:32:0d:00:01\n2,9ffe0d02,dc:a6:32:0d:00:02\n"
	if err := os.WriteFile(filepath.Join(f.Dir, "q1.csv"), []byte(csv), 0o644); err != nil {
		t.Fatal(err)
	}
	invName := fmt.Sprintf("nb%s.yaml", strings.TrimPrefix(f.Lab.Prefix(), "pls"))
	f.Inventory(t, invName, "    - {name: nm-%d, count: 1, role: manager, ipStart: {{ADDR 11}}}",
		"    - {name: q1, count: 2, boot: netboot, ipStart: {{ADDR 101}}, nodes: q1.csv}")
	inv := filepath.Join(f.Dir, invName)
	state := filepath.Join(f.Dir, "cli-state")
	t.Cleanup(func() {
		if code, out, errs := run(t, "lab", "down", "-i", inv, "--state-dir", state); code != 0 {
			t.Errorf("lab down: exit %d\n%s\n%s", code, out, errs)
		}
	})

	out, _ := mustRun(t, "lab", "up", "-i", inv, "--state-dir", state, "--boot", "netboot")
	if !strings.Contains(out, "2 Pis wait for their network boot") {
		t.Errorf("lab up:\n%s", out)
	}
	out, _ = mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if strings.Count(out, "(waiting for its network boot)") != 2 || !strings.Contains(out, "1 of 3 nodes up") {
		t.Errorf("lab status before the boot:\n%s", out)
	}

	// Nothing serves them yet: each Pi asks and asks, then gives up.
	code, out, errs := run(t, "lab", "boot", "-i", inv, "--state-dir", state, "--image", img, "--timeout", "2s", "--retry", "300ms")
	if code == 0 || !strings.Contains(errs, "boot pi-q1-01: dhcp: no answer to") || !strings.Contains(out, "0 of 2 netbooted Pis run") {
		t.Errorf("lab boot without a server: exit %d\n%s\n%s", code, out, errs)
	}
	// Not booted, the Pis cannot be reached: apply's report names each with
	// its cause (the netboot server never saw it) and the retry.
	code, out, errs = run(t, "apply", "-i", inv, "--state-dir", state, "--only", "validate,discover", "--ssh-timeout", "2s")
	for _, want := range []string{"discover failed on 2 nodes:", "pi-q1-01  reach pi-q1-01: ", "the netboot server never saw it (no DHCP request or TFTP read for serial 9ffe0d02)",
		"to retry just them once fixed: provision apply -i " + inv + " --from discover"} {
		if code != 1 || !strings.Contains(out, want) {
			t.Errorf("apply with the Pis not booted: exit %d, want 1 and %q in the report:\n%s\n%s", code, want, out, errs)
		}
	}
	if strings.Contains(out, "  nm-1 ") {
		t.Errorf("the report names a node that answered:\n%s", out)
	}
	refusedBoot(t, f, inv, state, img)

	applyArgs := []string{"apply", "-i", inv, "--state-dir", state, "--only", "validate,render,pi-boot,discover,swarm,verify",
		"--netboot-image", img, "--netboot-listen", f.Addr(1)}
	out, errs, bootErrs := applyWhileBooting(t, applyArgs, []string{"lab", "boot", "-i", inv, "--state-dir", state, "--image", img, "--timeout", "3m", "--retry", "500ms"}, "2 of 2 netbooted Pis run")
	for _, want := range []string{"pi-q1-01     DHCP: proxy answer from " + f.Addr(1), "pi-q1-02     read cmdline.txt", "boot files match the golden image", "running as pi-q1-02"} {
		if !strings.Contains(bootErrs, want) {
			t.Errorf("lab boot's progress lacks %q:\n%s", want, bootErrs)
		}
	}
	for _, want := range []string{"netboot: 2 Pis", "✓ form the Docker Swarm", "✓ verify"} {
		if !strings.Contains(errs, want) {
			t.Errorf("apply's progress lacks %q:\n%s", want, errs)
		}
	}
	if !strings.Contains(changingCalls(out), "swarm ") {
		t.Errorf("the first apply counted no changing call of the swarm stage:\n%s", out)
	}
	out, _ = mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if !strings.Contains(out, "3 of 3 nodes up") || strings.Count(out, "active") != 3 {
		t.Errorf("lab status after apply:\n%s", out)
	}
	boots, err := netboot.LoadBoots(state)
	if err != nil {
		t.Fatal(err)
	}
	for _, pi := range []string{"pi-q1-01", "pi-q1-02"} {
		if r := boots.Pis[pi]; r == nil || !strings.Contains(r.LastStep, "cmdline.txt") {
			t.Errorf("%s's last netboot step: %+v", pi, r)
		}
	}

	// A second apply changes nothing: no changing Engine API call outside
	// verify's own test service, nothing rendered.
	out, errs = mustRun(t, applyArgs...)
	if got := changingCalls(out); !strings.HasPrefix(got, "verify ") {
		t.Errorf("the second apply made changing calls outside verify: %q\n%s", got, out)
	}
	for _, want := range []string{"0 written, 3 unchanged", "the swarm already matches the inventory: nothing changed"} {
		if !strings.Contains(errs, want) {
			t.Errorf("the second apply's progress lacks %q:\n%s", want, errs)
		}
	}

	// A rack added touches only its node: one seed written, one join.
	if err := os.WriteFile(filepath.Join(f.Dir, "q2.csv"), []byte("slot,serial,mac\n1,9ffe0d11,dc:a6:32:0d:00:11\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "rack", "add", "q2", "-i", inv, "--state-dir", state, "--count", "1", "--csv", filepath.Join(f.Dir, "q2.csv"), "--boot", "netboot")
	out, _ = mustRun(t, "lab", "up", "-i", inv, "--state-dir", state, "--boot", "netboot")
	if !strings.Contains(out, "1 Pis wait for their network boot") {
		t.Errorf("lab up after rack add:\n%s", out)
	}
	out, errs, _ = applyWhileBooting(t, applyArgs, []string{"lab", "boot", "-i", inv, "--state-dir", state, "--image", img, "--timeout", "3m", "--retry", "500ms"}, "3 of 3 netbooted Pis run")
	for _, want := range []string{"1 written, 3 unchanged", "joined 1 (pi-q2-01)"} {
		if !strings.Contains(errs, want) {
			t.Errorf("apply after rack add: progress lacks %q:\n%s", want, errs)
		}
	}
	if m := regexp.MustCompile(`updated (\d+)(?: \(([^)]*)\))?`).FindStringSubmatch(errs); m == nil || (m[1] != "0" && m[2] != "pi-q2-01") {
		t.Errorf("apply after rack add updated other nodes than pi-q2-01: %q", m)
	}
	if got := changingCalls(out); !strings.Contains(got, "swarm ") || !strings.Contains(got, "POST /swarm/join ×1") {
		t.Errorf("apply after rack add: changing calls %q, want one join", got)
	}

	// destroy takes every node out (the lab's "VMs" are emulated: kept),
	// then lab down leaves nothing of the lab on this machine.
	out, errs = mustRun(t, "destroy", "-i", inv, "--state-dir", state, "--keep-vms", "--yes")
	st, err := statefile.Load(state, strings.TrimSuffix(invName, ".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 0 || st.Swarm != nil {
		t.Errorf("state after destroy: %d nodes, swarm %+v\n%s\n%s", len(st.Nodes), st.Swarm, out, errs)
	}
	if roots := findFiles(t, state, ".qcow2"); len(roots) > 0 {
		t.Errorf("netboot roots left after destroy: %v", roots)
	}
	out, _ = mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if strings.Count(out, " inactive ") != 4 {
		t.Errorf("lab status after destroy: want every node out of the swarm:\n%s", out)
	}
	mustRun(t, "lab", "down", "-i", inv, "--state-dir", state)
	for _, left := range labOf(t, inv).Leftovers() {
		t.Errorf("left after destroy and lab down: %s", left)
	}
}

// applyWhileBooting runs apply while lab boot boots the waiting Pis beside
// it, as they power on together; lab boot must end with bootWant in its
// output. It returns apply's output and lab boot's progress.
func applyWhileBooting(t *testing.T, apply, boot []string, bootWant string) (out, errs, bootErrs string) {
	t.Helper()
	type result struct {
		code      int
		out, errs string
	}
	booted := make(chan result, 1)
	go func() {
		code, out, errs := run(t, boot...)
		booted <- result{code, out, errs}
	}()
	code, out, errs := run(t, apply...)
	b := <-booted
	if b.code != 0 || !strings.Contains(b.out, bootWant) {
		t.Errorf("lab boot: exit %d\n%s\n%s", b.code, b.out, b.errs)
	}
	if code != 0 {
		t.Fatalf("apply: exit %d\n%s\n%s", code, out, errs)
	}
	return out, errs, b.errs
}

// labOf is the emulated lab of an inventory file.
func labOf(t *testing.T, path string) *lab.Lab {
	t.Helper()
	inv, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := lab.ConfigFromInventory(inv)
	if err != nil {
		t.Fatal(err)
	}
	l, err := lab.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// findFiles lists the files below dir whose names end in suffix.
func findFiles(t *testing.T, dir, suffix string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, suffix) {
			out = append(out, p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// changingCalls is what apply's last line counts, after its colon.
func changingCalls(out string) string {
	const head = "changing Engine API calls: "
	i := strings.LastIndex(out, head)
	if i < 0 {
		return ""
	}
	line, _, _ := strings.Cut(out[i+len(head):], "\n")
	return line
}

// refusedBoot: a Pi whose boot files are refused. pi-q1-02's own serial
// is not the one its rack's CSV gives (a typo): netboot serve answers its
// DHCP, then refuses its files, and says so; the Pi's boot fails with the
// refusal and it stays off. With the serial the inventory has (as after
// the CSV is fixed) it boots: the apply that follows shows it.
func refusedBoot(t *testing.T, f *labtest.Fixture, inv, state, img string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	serveCtx, stopServe := context.WithCancel(ctx)
	served := make(chan string, 1)
	go func() {
		var out, errb lockedBuffer
		code := Run(serveCtx, []string{"netboot", "serve", "-i", inv, "--state-dir", state, "--image", img, "--listen", f.Addr(1), "--roots=false"},
			Streams{In: strings.NewReader(""), Out: &out, Err: &errb})
		served <- fmt.Sprintf("exit %d\n%s\n%s", code, out.String(), errb.String())
	}()
	loaded, err := inventory.Load(inv)
	if err != nil {
		t.Fatal(err)
	}
	boards, err := netboot.NewBoards(loaded, netboot.BySerial)
	if err != nil {
		t.Fatal(err)
	}
	pis, err := lab.PiBoots(loaded, boards)
	if err != nil || len(pis) != 2 || pis[1].Name != "pi-q1-02" {
		t.Fatalf("the rack's Pis: %v, %v", pis, err)
	}
	typo := pis[1]
	typo.Dir = "0badc0de"
	golden, err := netboot.OpenBootImage(ctx, img, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer golden.Close()
	var steps lockedBuffer
	bootErr := labOf(t, inv).Boot(ctx, []lab.PiBoot{typo}, lab.BootOptions{Golden: golden, Retry: 300 * time.Millisecond,
		Progress: func(node, step string) { fmt.Fprintf(&steps, "%s %s\n", node, step) }})
	stopServe()
	res := <-served
	if bootErr == nil || !strings.Contains(bootErr.Error(), "boot pi-q1-02: ") || !strings.Contains(bootErr.Error(), "unknown serial 0badc0de") {
		t.Errorf("the refused Pi's boot: %v\n%s", bootErr, steps.String())
	}
	if !strings.Contains(res, "0badc0de") {
		t.Errorf("netboot serve does not say it refused serial 0badc0de:\n%s", res)
	}
	out, _ := mustRun(t, "lab", "status", "-i", inv, "--state-dir", state)
	if strings.Count(out, "(waiting for its network boot)") != 2 {
		t.Errorf("lab status after the refused boot: pi-q1-02 started:\n%s", out)
	}
}
