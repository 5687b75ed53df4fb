package cli

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha512"
	"encoding/hex"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/fhlab/provision/internal/lab"
	"github.com/fhlab/provision/internal/labtest"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/testtool"
	"github.com/fhlab/provision/internal/ui"
)

// logRecord matches slog's text or JSON records: what the terminal must
// not show at the default level.
var logRecord = regexp.MustCompile(`(^|\s)(time=|level=)|"level":`)

// needTerraform skips the test without terraform, but fails it under CI.
func needTerraform(t *testing.T) {
	t.Helper()
	if _, err := terraform.Find(t.Context(), terraform.FindOptions{}); err != nil {
		testtool.Missing(t, "terraform: %v", err)
	}
}

// TestVMsApplyOutputModel runs `provision vms apply` with the real
// terraform against an empty provider mirror (so terraform init fails
// without any network): at the default level (and at -v: terraform's lines
// are debug records) stderr holds the error and the log file's path but no
// log record; -vv and --log-level debug show them;
// every run's records, terraform's lines among them, are in provision.log.
func TestVMsApplyOutputModel(t *testing.T) {
	needTerraform(t)
	stateDir, mirror := t.TempDir(), t.TempDir()
	secret := "0f6b" + strings.Repeat("9", 28)
	t.Setenv("PM_API_TOKEN_ID", "provision@pve!out")
	t.Setenv("PM_API_TOKEN_SECRET", secret)
	args := []string{"vms", "apply", "-i", "../../inventory/local.yaml", "--state-dir", stateDir, "--terraform-mirror", mirror, "--yes", "--no-snippets"}
	logPath := filepath.Join(stateDir, ui.LogFileName)
	tests := []struct {
		name    string
		flags   []string
		records string // a record stderr must hold; "" for none at all
	}{
		{"default level", nil, ""},
		{"-v: terraform's output is at debug, so still none", []string{"-v"}, ""},
		{"-vv shows terraform's output as debug records", []string{"-vv"}, `level=DEBUG msg="terraform: Initializing provider plugins..."`},
		{"--log-level warn shows none here", []string{"--log-level", "warn"}, ""},
		{"--log-level debug --log-format json", []string{"--log-level", "debug", "--log-format", "json"}, `"level":"DEBUG","msg":"terraform: Error: Failed to query available provider packages"`},
	}
	var all strings.Builder
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errs := run(t, append(args, tt.flags...)...)
			all.WriteString(out + errs)
			if code != 1 || !strings.Contains(errs, "ERROR: terraform init in ") || !strings.HasSuffix(errs, "\ndetails: "+logPath+"\n") {
				t.Fatalf("exit %d; want 1 with the error and then the log file's path:\n%s", code, errs)
			}
			if logRecord.MatchString(out) {
				t.Errorf("stdout holds log records:\n%s", out)
			}
			switch {
			case tt.records == "" && logRecord.MatchString(errs):
				t.Errorf("stderr holds log records:\n%s", errs)
			case tt.records != "" && !strings.Contains(errs, tt.records):
				t.Errorf("stderr lacks %s:\n%s", tt.records, errs)
			}
		})
	}
	data, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	log := string(data)
	for _, want := range []string{
		"===== ", // a run marker per run
		`level=DEBUG msg="terraform: Initializing provider plugins..."`,
		`level=DEBUG msg="terraform: Error: Failed to query available provider packages"`,
		`level=ERROR msg=failed`,
	} {
		if !strings.Contains(log, want) {
			t.Errorf("provision.log lacks %q:\n%s", want, log)
		}
	}
	if n := strings.Count(log, "\n===== "); n != len(tests)-1 || !strings.HasPrefix(log, "===== ") {
		t.Errorf("provision.log has %d run markers after the first, want %d", n, len(tests)-1)
	}
	if fi, _ := os.Stat(logPath); fi.Mode().Perm() != 0o600 {
		t.Errorf("provision.log mode %v, want 0600", fi.Mode().Perm())
	}
	if strings.Contains(log+all.String(), secret) {
		t.Errorf("the token secret was logged or printed")
	}
}

// TestCommandsWithoutAStateDirWriteNoLog: validate, inventory and version
// only read; they write no log file, and their failures name none.
func TestCommandsWithoutAStateDirWriteNoLog(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{
		{"validate", "-i", example, "--state-dir", dir},
		{"inventory", "-i", example, "--state-dir", dir},
		{"version"},
	} {
		if code, _, errs := run(t, args...); code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errs)
		}
	}
	if code, _, errs := run(t, "validate", "-i", "no-such.yaml", "--state-dir", dir); code == 0 || strings.Contains(errs, "details:") {
		t.Errorf("validate of a missing file: exit %d\n%s", code, errs)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("read-only commands wrote %v", entries)
	}
}

// TestFullRunKeepsSecretsOut runs what CI can run of a whole rehearsal —
// preflight and template against the Proxmox simulator, then lab up,
// swarm (twice, the second with -vv) and verify on a small emulated lab —
// and searches every byte printed, every log file and every file left in the
// state directories (state.json, known_hosts, seeds) for the Proxmox token
// secret, the swarm's real join tokens and the SSH private key. It also
// checks that the default level printed no log record while provision.log
// got them. Needs root, dockerd and sshd.
func TestFullRunKeepsSecretsOut(t *testing.T) {
	labtest.Require(t)
	var printed strings.Builder
	type result struct{ out, errs string }
	runAll := func(t *testing.T, args ...string) result {
		t.Helper()
		code, out, errs := run(t, args...)
		printed.WriteString(out + errs)
		if code != 0 {
			t.Fatalf("provision %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errs)
		}
		return result{out, errs}
	}
	quiet := func(t *testing.T, r result, what string) {
		t.Helper()
		if logRecord.MatchString(r.out + r.errs) {
			t.Errorf("%s printed log records at the default level:\n%s\n%s", what, r.out, r.errs)
		}
	}

	// Proxmox: the token is in the environment, as an admin's would be.
	_, pveInv, secret := pveCLI(t, "debian-12-cloudinit", false)
	pveState := t.TempDir()
	image := make([]byte, 4096)
	copy(image, "QFI\xfb\x00\x00\x00\x02")
	img := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(image) }))
	t.Cleanup(img.Close)
	sum := sha512.Sum512(image)
	quiet(t, runAll(t, "template", "-i", pveInv, "--state-dir", pveState, "--vmid", "9100", "--image-url", img.URL+"/debian-12-genericcloud-amd64.qcow2", "--sha512", hex.EncodeToString(sum[:])), "template")
	quiet(t, runAll(t, "preflight", "-i", pveInv, "--state-dir", pveState), "preflight")
	if r := runAll(t, "preflight", "-i", pveInv, "--state-dir", pveState, "-vv"); !strings.Contains(r.errs, `level=DEBUG msg="proxmox request"`) {
		t.Errorf("preflight -vv shows no debug records:\n%s", r.errs)
	}

	// The emulated lab, brought up and formed through the CLI.
	f := labtest.New(t, t.TempDir(), &bytes.Buffer{})
	f.Swarm = "{defaultAddrPool: [10.128.0.0/12], defaultAddrPoolMaskLength: 20, managers: 1, ingress: {enabled: false}}"
	var rnd [3]byte
	rand.Read(rnd[:])
	invFile := fmt.Sprintf("out%x.yaml", rnd)
	f.Inventory(t, invFile, "    - {name: om-%d, count: 1, role: manager, ipStart: {{ADDR 11}}}\n    - {name: ow-%d, count: 1, ipStart: {{ADDR 21}}}", "    - {name: p1, count: 1, ipStart: {{ADDR 101}}}")
	inv := filepath.Join(f.Dir, invFile)
	labState := filepath.Join(f.Dir, "cli-state")
	t.Cleanup(func() {
		if code, out, errs := run(t, "lab", "down", "-i", inv, "--state-dir", labState); code != 0 {
			t.Errorf("lab down: exit %d\n%s\n%s", code, out, errs)
		}
	})
	quiet(t, runAll(t, "lab", "up", "-i", inv, "--state-dir", labState), "lab up")
	r := runAll(t, "swarm", "-i", inv, "--state-dir", labState)
	quiet(t, r, "swarm")
	if !strings.Contains(r.errs, "✓ form the Docker Swarm") || !strings.Contains(r.out, "om-1") {
		t.Errorf("swarm: no ✓ line or no table:\n%s\n%s", r.out, r.errs)
	}
	// Again at once, as make demo does (an ingress network removed by the
	// first run is still listed for a moment), with -vv.
	if r := runAll(t, "swarm", "-i", inv, "--state-dir", labState, "-vv"); !strings.Contains(r.errs, "level=DEBUG") {
		t.Errorf("swarm -vv shows no debug records:\n%s", r.errs)
	}
	quiet(t, runAll(t, "verify", "-i", inv, "--state-dir", labState), "verify")

	// The swarm's real join tokens, from a manager's engine.
	st, err := state.Load(labState, strings.TrimSuffix(invFile, ".yaml"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := lab.NewEngine(st.Nodes["om-1"].DockerSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer eng.Close()
	sw, err := eng.SwarmInspect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	key, err := os.ReadFile(f.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	keyLines := strings.Split(strings.TrimSpace(string(key)), "\n")

	logs := ""
	for _, dir := range []string{pveState, labState} {
		files, _ := filepath.Glob(filepath.Join(dir, ui.LogFileName+"*"))
		if len(files) == 0 {
			t.Errorf("no log file in %s", dir)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			logs += string(data)
		}
	}
	for _, want := range []string{`msg="proxmox request"`, `msg="join request answered"`, `msg="✓ form the Docker Swarm`} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log files lack %s", want)
		}
	}
	// Every file the runs left in their state directories (state.json,
	// known_hosts, seeds, boot events, logs), each searched on its own.
	files := map[string]string{}
	for _, dir := range []string{pveState, labState} {
		filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				if data, err := os.ReadFile(p); err == nil {
					files[p] = string(data)
				}
			}
			return nil
		})
	}
	if _, ok := files[filepath.Join(labState, "state.json")]; !ok {
		t.Errorf("no state.json among the %d files of %s", len(files), labState)
	}
	everything := logs + printed.String()
	for _, s := range []struct{ what, secret string }{
		{"the Proxmox token secret", secret},
		{"the worker join token", sw.JoinTokens.Worker},
		{"the manager join token", sw.JoinTokens.Manager},
		{"a swarm token", "SWMTKN-1-"},
		{"the SSH private key", keyLines[1]},
	} {
		if len(s.secret) < 8 {
			t.Fatalf("%s is %q: nothing to search for", s.what, s.secret)
		}
		if strings.Contains(everything, s.secret) {
			t.Errorf("%s appears in the output or the log files", s.what)
		}
		for p, data := range files {
			if strings.Contains(data, s.secret) {
				t.Errorf("%s is in %s", s.what, p)
			}
		}
	}
}
