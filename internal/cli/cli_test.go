package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// run runs provision with args. A run in the package directory that names
// no --state-dir gets a temporary one, so that no test writes a log file
// into the source tree; a test that moved to a directory of its own keeps
// the default.
func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runIn(t, "", args...)
}

// mustRun runs provision and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	code, out, errs := run(t, args...)
	if code != 0 {
		t.Fatalf("provision %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out, errs
}

// runIn runs provision with stdin. A run in the package directory that
// names no state dir gets a temporary one, so that no test leaves a
// .provision/ (and its log file) in the source tree.
func runIn(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	wd, _ := os.Getwd()
	if wd == cwdAtStart && slices.Contains(args, "-i") && !slices.Contains(args, "--state-dir") && os.Getenv("PROVISION_STATE_DIR") == "" {
		args = append(args, "--state-dir", t.TempDir())
	}
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return code, out.String(), errb.String()
}

const example = "../../inventory/example.yaml"

func TestValidateExample(t *testing.T) {
	code, out, errs := run(t, "validate", "-i", example)
	if code != 0 {
		t.Fatalf("validate example.yaml exited %d: %s", code, errs)
	}
	for _, want := range []string{"valid", "159 nodes", "16 networks of 65,534 addresses"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// copyExample copies example.yaml and its rack CSVs into a temp dir and
// applies edit to the YAML.
func copyExample(t *testing.T, edit func(string) string) string {
	t.Helper()
	dir := t.TempDir()
	data, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "racks"), 0o755); err != nil {
		t.Fatal(err)
	}
	csvs, _ := filepath.Glob("../../inventory/racks/r*.csv")
	for _, c := range csvs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, "racks", filepath.Base(c)), b, 0o644)
	}
	path := filepath.Join(dir, "lab.yaml")
	if err := os.WriteFile(path, []byte(edit(string(data))), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateDuplicateIPNamesBothNodesAndLines(t *testing.T) {
	// The worker group starts at a manager's address: wrk-01 takes mgr-2's.
	path := copyExample(t, func(s string) string {
		return strings.Replace(s, "ipStart: 192.168.10.21", "ipStart: 192.168.10.12", 1)
	})
	code, _, errs := run(t, "validate", "-i", path)
	if code == 0 {
		t.Fatal("validate of a duplicated IP exited 0")
	}
	mgrLine, wrkLine := lineOf(t, path, "name: mgr-%d"), lineOf(t, path, "ipStart: 192.168.10.12")
	for _, want := range []string{
		"wrk-01", "mgr-2", "192.168.10.12",
		path + ":" + itoa(wrkLine) + ": proxmox.vms[1].ipStart",
		path + ":" + itoa(mgrLine),
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("error output lacks %q:\n%s", want, errs)
		}
	}
}

func lineOf(t *testing.T, path, substr string) int {
	data, _ := os.ReadFile(path)
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, substr) {
			return i + 1
		}
	}
	t.Fatalf("%s has no line with %q", path, substr)
	return 0
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestInventoryJSONAndUsageErrors(t *testing.T) {
	code, out, _ := run(t, "inventory", "-i", example, "-o", "json")
	if code != 0 || strings.Count(out, `"name"`) != 159 {
		t.Fatalf("inventory -o json: exit %d, %d nodes", code, strings.Count(out, `"name"`))
	}
	if code, _, errs := run(t, "inventory", "-i", example, "-o", "xml"); code != 2 || !strings.Contains(errs, "use table or json") {
		t.Errorf("inventory -o xml: exit %d, %s", code, errs)
	}
	if code, _, errs := run(t, "validate"); code != 2 || !strings.Contains(errs, "PROVISION_INVENTORY") {
		t.Errorf("validate without -i: exit %d, %s", code, errs)
	}
}

func TestSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	inv, err := filepath.Abs(filepath.Join(cwdAtStart, example))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile("provision.yaml", []byte("inventory: "+inv+"\nconcurrency: 7\nlog-format: json\n"), 0o644)

	// provision.yaml gives the inventory.
	if code, _, errs := run(t, "validate"); code != 0 {
		t.Fatalf("inventory from provision.yaml: exit %d %s", code, errs)
	}
	check := func(args []string, want int) {
		t.Helper()
		var out, errb bytes.Buffer
		a := newApp(Streams{Out: &out, Err: &errb}, nil)
		root := a.rootCommand()
		root.SetArgs(append([]string{"validate"}, args...))
		root.SetOut(&out)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if a.settings.Concurrency != want {
			t.Errorf("args %v env %q: concurrency %d, want %d", args, os.Getenv("PROVISION_CONCURRENCY"), a.settings.Concurrency, want)
		}
	}
	check(nil, 7) // file beats default
	t.Setenv("PROVISION_CONCURRENCY", "9")
	check(nil, 9)                            // env beats file
	check([]string{"--concurrency", "3"}, 3) // flag beats env

	os.WriteFile("provision.yaml", []byte("inventroy: x\n"), 0o644)
	if code, _, errs := run(t, "validate", "-i", inv); code == 0 || !strings.Contains(errs, "unknown setting inventroy") {
		t.Errorf("typo in provision.yaml: exit %d %s", code, errs)
	}
}

var cwdAtStart, _ = os.Getwd()
