package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRackAdd: a rack added to a rendered lab is one new line in the
// inventory; the render plan then creates only its nodes' seeds and keeps
// every other node's; bad racks change nothing and say where and why.
func TestRackAdd(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", "../../inventory/example.yaml", "../../inventory/racks", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	inv := filepath.Join(dir, "example.yaml")
	state := filepath.Join(dir, "state")
	if code, _, errs := run(t, "apply", "-i", inv, "--state-dir", state, "--only", "validate,render"); code != 0 {
		t.Fatalf("apply: exit %d\n%s", code, errs)
	}
	before, err := os.ReadFile(inv)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"a name taken", []string{"r4", "--count", "2"}, 1, "pis.racks[4].name"},
		{"addresses taken", []string{"r5", "--count", "2", "--ip-start", "192.168.11.5"}, 1, "is also the address of pi-r1-05"},
		{"netboot without serials", []string{"r5", "--count", "2", "--boot", "netboot"}, 1, "needs a CSV of slot,serial,mac"},
		{"no count", []string{"r5"}, 2, "--count N is required"},
		{"a CSV that is not there", []string{"r5", "--count", "2", "--boot", "netboot", "--csv", "no-such.csv"}, 2, "rack add: --csv: stat "},
		{"dry run", []string{"r5", "--count", "3", "--dry-run"}, 0, "dry run:"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, out, errs := run(t, append([]string{"rack", "add", "-i", inv, "--state-dir", state}, c.args...)...)
			if code != c.code || !strings.Contains(out+errs, c.want) {
				t.Errorf("exit %d, want %d with %q:\n%s%s", code, c.code, c.want, out, errs)
			}
			if now, _ := os.ReadFile(inv); string(now) != string(before) {
				t.Fatal("the inventory changed")
			}
		})
	}

	code, out, errs := run(t, "rack", "add", "r5", "-i", inv, "--state-dir", state, "--count", "3", "--label", "zone=b")
	if code != 0 || !strings.Contains(out, "rack r5: 3 Pis, pi-r5-01 (192.168.11.157) to pi-r5-03 (192.168.11.159)") {
		t.Fatalf("rack add: exit %d\n%s%s", code, out, errs)
	}
	after, _ := os.ReadFile(inv)
	if got := strings.Replace(string(after), "    - {name: r5, count: 3, boot: sd, ipStart: 192.168.11.157, labels: {zone: b}}\n", "", 1); got != string(before) {
		t.Errorf("more than the rack's line changed:\n%s", after)
	}
	code, out, errs = run(t, "plan", "-i", inv, "--state-dir", state, "--only", "render", "--detail")
	if code != 0 {
		t.Fatalf("plan: exit %d\n%s", code, errs)
	}
	creates := 0
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "create" {
			creates++
			if !strings.HasPrefix(f[1], "pi-r5-") {
				t.Errorf("plan creates %s, not of the new rack:\n%s", f[1], out)
			}
		}
	}
	if creates != 3 || !strings.Contains(out, "unchanged") {
		t.Errorf("plan: %d creates, want the new rack's 3 and the rest unchanged:\n%s", creates, out)
	}
}
