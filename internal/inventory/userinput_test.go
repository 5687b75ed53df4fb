package inventory_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
)

// smallLab is a valid inventory: 3 manager VMs, 2 worker VMs, a rack of 3
// Pis booting from SD cards.
func smallLab(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("testdata/invalid/netboot-no-csv.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return strings.Replace(string(data), "boot: netboot", "boot: sd", 1)
}

// edit applies old→new replacements, each of which must match.
func edit(t *testing.T, s string, oldNew ...string) string {
	t.Helper()
	for i := 0; i+1 < len(oldNew); i += 2 {
		if !strings.Contains(s, oldNew[i]) {
			t.Fatalf("%q not in the inventory", oldNew[i])
		}
		s = strings.Replace(s, oldNew[i], oldNew[i+1], 1)
	}
	return s
}

// loadReturns loads path and fails the test instead of hanging when Load
// blocks (as it once did on a FIFO).
func loadReturns(t *testing.T, path string) (*inventory.Inventory, error) {
	t.Helper()
	type result struct {
		inv *inventory.Inventory
		err error
	}
	done := make(chan result, 1)
	go func() {
		inv, err := inventory.Load(path)
		done <- result{inv, err}
	}()
	select {
	case r := <-done:
		return r.inv, r.err
	case <-time.After(time.Minute):
		t.Fatalf("Load(%s) blocked", path)
		return nil, nil
	}
}

// TestUserFilesMustBeRegular covers the files that cannot be fixtures: a
// FIFO (it blocked Load for good) and links to devices. Each is refused,
// naming the file and the inventory field that names it.
func TestUserFilesMustBeRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.csv")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	rack := "{name: r1, count: 3, boot: sd, ipStart: 192.168.10.101}"
	for _, tc := range []struct {
		name, edit, field, msg string
		line                   int
	}{
		{"rack CSV is a FIFO", edit(t, rack, "}", ", nodes: fifo}"), "pis.racks[0].nodes", "cannot read rack CSV " + fifo + ": a named pipe (FIFO), not a regular file", 26},
		{"rack CSV links to /dev/zero", edit(t, rack, "}", ", nodes: zero.csv}"), "pis.racks[0].nodes", "cannot read rack CSV " + zero + ": a character device, not a regular file", 26},
		{"private key is a FIFO", "ssh: {privateKeyFile: fifo, authorizedKeys: [" + strings.Split(smallLab(t), "    - ")[1][:strings.Index(strings.Split(smallLab(t), "    - ")[1], "\n")] + "]}",
			"ssh.privateKeyFile", "cannot use " + fifo + ": a named pipe (FIFO), not a regular file", 9},
		{"public key of a created key is a FIFO", "ssh: {privateKeyFile: fif, createKey: true}", "ssh.privateKeyFile", "cannot read public key file " + filepath.Join(dir, "fif") + ".pub: a named pipe (FIFO)", 9},
		{"CA file is a FIFO", "  caFile: fifo\n  apiURL:", "proxmox.caFile", "cannot use " + fifo + ": a named pipe (FIFO), not a regular file", 15},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := smallLab(t)
			switch {
			case strings.HasPrefix(tc.edit, "{name: r1"):
				lab = edit(t, lab, rack, tc.edit)
			case strings.HasPrefix(tc.edit, "ssh:"):
				lab = edit(t, lab, "ssh:\n  authorizedKeys:\n    - "+strings.Split(strings.Split(lab, "    - ")[1], "\n")[0]+"\n", tc.edit+"\n")
			default:
				lab = edit(t, lab, "  apiURL:", tc.edit)
			}
			if tc.name == "public key of a created key is a FIFO" {
				if err := syscall.Mkfifo(filepath.Join(dir, "fif.pub"), 0o600); err != nil && !errors.Is(err, os.ErrExist) {
					t.Fatal(err)
				}
			}
			path := filepath.Join(dir, "lab.yaml")
			if err := os.WriteFile(path, []byte(lab), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := loadReturns(t, path)
			var probs inventory.Problems
			if !errors.As(err, &probs) {
				t.Fatalf("error %v, want Problems", err)
			}
			for _, p := range probs {
				if p.File == path && p.Line == tc.line && p.Field == tc.field && strings.Contains(p.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("no problem %s:%d: %s: ...%s...; got:\n%v", path, tc.line, tc.field, tc.msg, probs)
		})
	}

	t.Run("the inventory is a FIFO", func(t *testing.T) {
		_, err := loadReturns(t, fifo)
		var probs inventory.Problems
		if !errors.As(err, &probs) || len(probs) != 1 || probs[0].File != fifo || probs[0].Msg != "cannot read the inventory: a named pipe (FIFO), not a regular file" {
			t.Fatalf("error %v", err)
		}
	})
	t.Run("the inventory is /dev/zero", func(t *testing.T) {
		_, err := loadReturns(t, "/dev/zero")
		if err == nil || err.Error() != "/dev/zero: cannot read the inventory: a character device, not a regular file" {
			t.Fatalf("error %v", err)
		}
	})
}

// TestExplicitZeroCount: count: 0 empties a VM group or rack (kept in the
// file for later); a rack without a count is a problem, and a VM group
// without one has one VM.
func TestExplicitZeroCount(t *testing.T) {
	for _, tc := range []struct {
		name      string
		edit      []string
		wantNodes int
		msg       string
	}{
		{"group count 0", []string{"{name: wrk-%d, count: 2,", "{name: wrk-%d, count: 0,"}, 6, ""},
		{"group count absent", []string{"{name: wrk-%d, count: 2,", "{name: wrk-%d,"}, 7, ""},
		{"rack count 0", []string{"{name: r1, count: 3,", "{name: r1, count: 0,"}, 5, ""},
		{"rack count 0 keeps its CSV", []string{"{name: r1, count: 3, boot: sd,", "{name: r1, count: 0, boot: netboot, nodes: racks/dup-ip-racks-r1.csv,"}, 5, ""},
		{"rack count absent", []string{"{name: r1, count: 3,", "{name: r1,"}, 0, "pis.racks[0].count: missing: how many Pis the rack holds (0 for an empty rack)"},
		{"rack count negative", []string{"{name: r1, count: 3,", "{name: r1, count: -1,"}, 0, "pis.racks[0].count: must be between 0 (an empty rack) and"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join("testdata", "invalid", "zero-count.yaml") // racks/ is beside it
			inv, err := inventory.Parse(path, []byte(edit(t, smallLab(t), tc.edit...)), inventory.OSFS{})
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("error %v, want ...%s...", err, tc.msg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Nodes) != tc.wantNodes {
				t.Errorf("%d nodes, want %d", len(inv.Nodes), tc.wantNodes)
			}
		})
	}
}

// TestRackCSVWithBOM: spreadsheets write a UTF-8 byte order mark before the
// header; it is not part of it.
func TestRackCSVWithBOM(t *testing.T) {
	lab := edit(t, smallLab(t), "{name: r1, count: 3, boot: sd,", "{name: r1, count: 3, boot: netboot, nodes: racks/r1.csv,")
	csv := "\uFEFFslot,serial,mac\r\n1,1a2b0101,dc:a6:32:01:01:01\r\n2,1a2b0102,dc:a6:32:01:01:02\r\n3,1a2b0103,dc:a6:32:01:01:03\r\n"
	inv, err := inventory.Parse("lab/lab.yaml", []byte(lab), mapFS{"lab/racks/r1.csv": []byte(csv)})
	if err != nil {
		t.Fatal(err)
	}
	if n := inv.Nodes[len(inv.Nodes)-1]; n.Serial != "1a2b0103" || n.MAC != "dc:a6:32:01:01:03" {
		t.Errorf("last Pi %+v", n)
	}
}

// TestSecretsAreNotEchoed: a refused secret never appears in the error.
func TestSecretsAreNotEchoed(t *testing.T) {
	const secret = "8c4e6a52-4f1b-4f33-9a4c-0d4f3a7e9b21"
	for _, tc := range []struct{ name, old, new string }{
		{"password in the API URL", "https://pve1:8006", "https://root:" + secret + "@pve1:8006"},
		{"token in the API URL", "https://pve1:8006", "https://root@pam!provision:" + secret + "@pve1:8006"},
		{"token ID with its secret", "  apiURL:", "  tokenIDEnv: root@pam!provision=" + secret + "\n  apiURL:"},
		{"secret where its variable's name belongs", "  apiURL:", "  tokenSecretEnv: " + secret + "\n  apiURL:"},
		{"password in the image URL", "pis:\n", "pis:\n  image: https://u:" + secret + "@images.example/pi.img\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := inventory.Parse("lab.yaml", []byte(edit(t, smallLab(t), tc.old, tc.new)), mapFS{})
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), secret[:8]) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}

// TestProblemsListIsCapped: thousands of problems print as the first
// MaxListed and a count of the rest.
func TestProblemsListIsCapped(t *testing.T) {
	var groups strings.Builder
	for i := range 120 {
		fmt.Fprintf(&groups, "    - {name: g%d-%%d, count: 0, disk: 16, ipStart: 192.168.10.%d}\n", i, 100+i)
	}
	lab := edit(t, smallLab(t), "  vms:\n", "  vms:\n"+groups.String())
	_, err := inventory.Parse("lab.yaml", []byte(lab), mapFS{})
	var probs inventory.Problems
	if !errors.As(err, &probs) || len(probs) != 120 {
		t.Fatalf("%d problems (%v), want 120", len(probs), err)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 1+inventory.MaxListed+1 || lines[0] != "120 problems:" || lines[len(lines)-1] != "  and 70 more problems (fix these and run again)" {
		t.Errorf("error has %d lines: first %q, last %q", len(lines), lines[0], lines[len(lines)-1])
	}
}
