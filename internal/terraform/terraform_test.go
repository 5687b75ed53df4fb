package terraform_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/terraform"
	"github.com/fhlab/provision/internal/ui"
)

// requireTerraform returns the terraform binary, skipping the test when
// there is none, except under CI, which must provide it.
func requireTerraform(t *testing.T) string {
	t.Helper()
	p, err := terraform.Find(context.Background(), terraform.FindOptions{})
	if err == nil {
		return p
	}
	if ci := os.Getenv("CI"); ci != "" && ci != "false" {
		t.Fatalf("CI=%s but terraform cannot be found: %v", ci, err)
	}
	t.Skipf("skipping: %v", err)
	return ""
}

// logBuffer collects log records for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type item struct {
	Input   string `json:"input"`
	Trigger string `json:"trigger"`
}

// fixture copies testdata/module into a fresh directory and returns a
// Runner on it.
func fixture(t *testing.T, env map[string]string, secrets ...string) (*terraform.Runner, string, *logBuffer) {
	t.Helper()
	exe := requireTerraform(t)
	dir := t.TempDir()
	src := os.DirFS("testdata/module")
	err := fs.WalkDir(src, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(src, p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, p), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	r, err := terraform.New(terraform.Config{
		Dir: dir, ExecPath: exe, Env: env, Secrets: secrets,
		Log: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})), WaitDelay: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("terraform log:\n%s", logs.String())
		}
	})
	return r, dir, logs
}

func writeVars(t *testing.T, dir string, vars map[string]any) {
	t.Helper()
	b, err := json.Marshal(vars)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "test.auto.tfvars.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func summary(p *terraform.Plan) map[string]terraform.Action {
	out := map[string]terraform.Action{}
	for _, c := range p.Changes {
		out[c.Address] = c.Action
	}
	return out
}

func TestLifecycle(t *testing.T) {
	r, dir, logs := fixture(t, nil)
	ctx := t.Context()
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{
		"a": {"a1", "t"}, "b": {"b1", "t"}, "c": {"c1", "t"},
	}})

	p, err := r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]terraform.Action{
		`terraform_data.item["a"]`: terraform.Create,
		`terraform_data.item["b"]`: terraform.Create,
		`terraform_data.item["c"]`: terraform.Create,
	}
	if got := summary(p); !equalMap(got, want) {
		t.Fatalf("first plan = %v, want %v", got, want)
	}
	if p.Changes[0].Key != "a" {
		t.Errorf("key of %s = %q, want a", p.Changes[0].Address, p.Changes[0].Key)
	}
	if fi, err := os.Stat(p.File); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("plan file %s: %v, mode %v, want 0600", p.File, err, fi.Mode().Perm())
	}
	if err := r.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p.File); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("plan file still there after apply: %v", err)
	}
	if fi, err := os.Stat(filepath.Join(dir, "terraform.tfstate")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("state file: %v, mode %v, want 0600", err, fi.Mode().Perm())
	}
	if !strings.Contains(logs.String(), "Apply complete!") {
		t.Errorf("terraform's output was not logged line by line:\n%s", logs.String())
	}

	out, err := r.Output(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantOut := map[string]string{"items.a": "a1", "items.b": "b1", "items.c": "c1"}
	if !equalMap(out, wantOut) {
		t.Errorf("outputs = %v, want %v (sensitive ones left out)", out, wantOut)
	}

	p, err = r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Empty() {
		t.Fatalf("second plan = %v, want no changes", p.Changes)
	}

	// a: update in place; b: replaced (trigger); c: destroyed; d: created.
	writeVars(t, dir, map[string]any{"items": map[string]item{
		"a": {"a2", "t"}, "b": {"b1", "t2"}, "d": {"d1", "t"},
	}})
	p, err = r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]terraform.Action{
		`terraform_data.item["a"]`: terraform.Update,
		`terraform_data.item["b"]`: terraform.Replace,
		`terraform_data.item["c"]`: terraform.Destroy,
		`terraform_data.item["d"]`: terraform.Create,
	}
	if got := summary(p); !equalMap(got, want) {
		t.Fatalf("third plan = %v, want %v", got, want)
	}
	order := []terraform.Action{terraform.Destroy, terraform.Replace, terraform.Create, terraform.Update}
	for i, c := range p.Changes {
		if c.Action != order[i] {
			t.Errorf("change %d is %s, want %s first (loudest first)", i, c.Action, order[i])
		}
		switch c.Action {
		case terraform.Replace:
			if strings.Join(c.Forcing, ",") != "triggers_replace" {
				t.Errorf("replace of %s forced by %v, want triggers_replace", c.Address, c.Forcing)
			}
		case terraform.Update:
			if strings.Join(c.Attrs, ",") != "input,output" {
				t.Errorf("update of %s changes %v, want input,output", c.Address, c.Attrs)
			}
		}
	}
	var b bytes.Buffer
	terraform.WriteSummary(&b, p)
	for _, s := range []string{
		"1 to create, 1 to update, 1 to REPLACE, 1 to DESTROY",
		`!! REPLACE terraform_data.item["b"]: destroyed and created again, forced by triggers_replace`,
		`!! DESTROY terraform_data.item["c"]`,
		`~ update   terraform_data.item["a"] (input, output)`,
		`+ create   terraform_data.item["d"]`,
		"WARNING: 2 resource(s) will be DESTROYED",
	} {
		if !strings.Contains(b.String(), s) {
			t.Errorf("summary lacks %q:\n%s", s, b.String())
		}
	}
	if err := r.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}

	d, err := r.PlanDestroy(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Count(terraform.Destroy) != 3 || len(d.Changes) != 3 {
		t.Fatalf("destroy plan = %v, want 3 destroys", d.Changes)
	}
	if err := r.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	out, err = r.Output(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 0 {
		t.Errorf("outputs after destroy = %v, want none", out)
	}
}

// Terraform's own output is detail for the log file, not for the terminal:
// every line is a debug record (secrets masked), none is at info level or
// above.
func TestTerraformOutputIsLoggedAtDebug(t *testing.T) {
	r, dir, logs := fixture(t, nil)
	ctx := t.Context()
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{"a": {"a1", "t"}}})
	p, err := r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	debug := 0
	for _, l := range lines {
		if !strings.Contains(l, "level=DEBUG") {
			t.Errorf("terraform line logged above debug level: %s", l)
			continue
		}
		debug++
	}
	if debug < 10 || !strings.Contains(logs.String(), "Apply complete!") {
		t.Errorf("%d debug records, want terraform's output line by line:\n%s", debug, logs.String())
	}
}

func TestFailingApplyKeepsTerraformsMessage(t *testing.T) {
	secret := "s3cr3t-" + strings.Repeat("x", 8)
	r, dir, logs := fixture(t, map[string]string{"PROVISION_TEST_SECRET": secret}, secret)
	ctx := t.Context()
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{}, "fail_message": "disk pool vmdata is full"})
	p, err := r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	err = r.Apply(ctx, p)
	if err == nil {
		t.Fatal("apply succeeded, want the provisioner's failure")
	}
	msg := err.Error()
	flat := strings.Join(strings.Fields(msg), " ") // terraform wraps long lines
	for _, s := range []string{"terraform apply in " + dir, "exit status 1", "disk pool vmdata is full", "(secret: [redacted], checkpoint disabled: 1)"} {
		if !strings.Contains(flat, s) {
			t.Errorf("error lacks %q:\n%s", s, msg)
		}
	}
	var te *terraform.Error
	if !errors.As(err, &te) || te.Command != "apply" {
		t.Errorf("error is not a *terraform.Error for apply: %#v", err)
	}
	if strings.Contains(msg, secret) || strings.Contains(logs.String(), secret) {
		t.Errorf("the secret leaked into the error or the log")
	}
}

func TestCancelInterruptsTerraform(t *testing.T) {
	r, dir, logs := fixture(t, nil)
	if err := r.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{}, "sleep_seconds": 117})
	p, err := r.Plan(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for !strings.Contains(logs.String(), "slow-started") && ctx.Err() == nil {
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
	}()
	err = r.Apply(ctx, p)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("apply = %v, want context.Canceled", err)
	}
	// SIGINT, not a kill: terraform says it is stopping and releases the
	// state lock, so the next plan (no lock wait) works.
	if !strings.Contains(logs.String(), "Interrupt received") {
		t.Errorf("terraform did not report the interrupt:\n%s", logs.String())
	}
	if _, err := os.Stat(filepath.Join(dir, ".terraform.tfstate.lock.info")); err == nil {
		t.Errorf("state lock left behind")
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{}})
	if _, err := r.Plan(t.Context(), false); err != nil {
		t.Fatalf("plan after cancel: %v", err)
	}
	if out, _ := exec.Command("pgrep", "-x", "-f", "sleep 117").Output(); len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("the provisioner's sleep still runs: pids %s", out)
	}
}

func TestRefusalChangesNothing(t *testing.T) {
	r, dir, _ := fixture(t, nil)
	ctx := t.Context()
	if err := r.Init(ctx); err != nil {
		t.Fatal(err)
	}
	writeVars(t, dir, map[string]any{"items": map[string]item{"a": {"a1", "t"}}})
	p, err := r.Plan(ctx, false)
	if err != nil {
		t.Fatal(err)
	}
	err = terraform.ApplyConfirmed(ctx, r, p, ui.Prompt{In: strings.NewReader("y\n")}, "Apply?")
	if !errors.Is(err, ui.ErrNeedYes) {
		t.Fatalf("ApplyConfirmed without a terminal and --yes = %v, want ErrNeedYes", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "terraform.tfstate")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a state file exists after the refusal: %v", err)
	}
	if _, err := os.Stat(p.File); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused plan was kept: %v", err)
	}
}

func TestCLIConfigAndMirror(t *testing.T) {
	got := terraform.CLIConfig("/srv/mirror", []string{"registry.terraform.io/telmate/proxmox"})
	want := `# Written by provision: providers from a local mirror (no download).
provider_installation {
  filesystem_mirror {
    path    = "/srv/mirror"
    include = ["registry.terraform.io/telmate/proxmox"]
  }
  direct {
    exclude = ["registry.terraform.io/telmate/proxmox"]
  }
}
`
	if got != want {
		t.Errorf("CLIConfig =\n%s\nwant\n%s", got, want)
	}

	// An empty mirror cannot provide the provider: init fails offline and
	// says so, and the generated config is what terraform read.
	exe := requireTerraform(t)
	dir, mirror := t.TempDir(), t.TempDir()
	mod := `terraform {
  required_providers {
    proxmox = { source = "telmate/proxmox", version = "3.0.2-rc07" }
  }
}
`
	if err := os.WriteFile(filepath.Join(dir, "versions.tf"), []byte(mod), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := terraform.New(terraform.Config{Dir: dir, ExecPath: exe, Mirror: mirror})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Init(t.Context())
	if err == nil {
		t.Fatal("init with an empty mirror succeeded")
	}
	for _, s := range []string{"terraform init in " + dir, "telmate/proxmox", mirror} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("init error lacks %q:\n%v", s, err)
		}
	}
	if fi, err := os.Stat(filepath.Join(dir, terraform.CLIConfigName)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("CLI config: %v", err)
	}

	if _, err := terraform.New(terraform.Config{Dir: dir, ExecPath: exe, Env: map[string]string{"TF_VAR_x": "1"}}); err == nil {
		t.Error("New accepted TF_VAR_x in Env")
	}
	r, _ = terraform.New(terraform.Config{Dir: dir, ExecPath: exe, Mirror: filepath.Join(mirror, "missing")})
	if err := r.Init(t.Context()); err == nil || !strings.Contains(err.Error(), "terraform provider mirror") {
		t.Errorf("init with a missing mirror = %v, want it named", err)
	}
}

// With a relative working directory and mirror (the default state dir is
// .provision/<lab>) every path terraform is handed must still work from
// terraform's own working directory: the CLI configuration (else the mirror
// is silently ignored and terraform goes to the registry) and the saved plan.
func TestRelativeDirUnderMirror(t *testing.T) {
	exe := requireTerraform(t)
	module, err := os.ReadFile("testdata/module/main.tf")
	if err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	for _, d := range []string{"mirror", "state/empty", "state/terraform"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	absMirror, err := filepath.Abs("mirror")
	if err != nil {
		t.Fatal(err)
	}

	// A provider only the mirror could hold: the (empty) mirror is where
	// terraform looked, and it could open the CLI configuration.
	mod := "terraform {\n  required_providers {\n    proxmox = { source = \"telmate/proxmox\", version = \"3.0.2-rc07\" }\n  }\n}\n"
	if err := os.WriteFile("state/empty/versions.tf", []byte(mod), 0o600); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	r, err := terraform.New(terraform.Config{Dir: "state/empty", ExecPath: exe, Mirror: "mirror", Log: log})
	if err != nil {
		t.Fatal(err)
	}
	err = r.Init(t.Context())
	if err == nil {
		t.Fatal("init with an empty mirror succeeded")
	}
	for _, s := range []string{"not found in any of the search locations", absMirror} {
		if !strings.Contains(strings.Join(strings.Fields(err.Error()), " "), s) {
			t.Errorf("init error lacks %q (terraform did not use the mirror):\n%v", s, err)
		}
	}
	if s := "Unable to open CLI configuration file"; strings.Contains(err.Error()+logs.String(), s) {
		t.Errorf("terraform could not open the CLI configuration:\n%v\n%s", err, logs.String())
	}

	// The whole cycle in a relative directory: init, plan, apply of the
	// saved plan; terraform finds the CLI configuration from its working
	// directory.
	if err := os.WriteFile("state/terraform/main.tf", module, 0o600); err != nil {
		t.Fatal(err)
	}
	writeVars(t, "state/terraform", map[string]any{"items": map[string]item{"a": {"a1", "t"}}, "show_cli_config": true})
	logs = &logBuffer{}
	log = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	// A CA file named relative to here (proxmox.caFile beside a relative
	// inventory) reaches the provider as SSL_CERT_FILE.
	if err := os.WriteFile("ca.pem", []byte("not checked here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err = terraform.New(terraform.Config{Dir: "state/terraform", ExecPath: exe, Mirror: "mirror", Log: log, Env: map[string]string{"SSL_CERT_FILE": "ca.pem"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Init(t.Context()); err != nil {
		t.Fatal(err)
	}
	p, err := r.Plan(t.Context(), false)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(p.File) {
		t.Errorf("plan file %q is not absolute", p.File)
	}
	if err := r.Apply(t.Context(), p); err != nil {
		t.Fatalf("apply of the saved plan in a relative directory: %v", err)
	}
	base := filepath.Dir(absMirror)
	for _, want := range []string{
		"TF_CLI_CONFIG_FILE=" + filepath.Join(base, "state", "terraform", terraform.CLIConfigName) + " exists=yes",
		"SSL_CERT_FILE=" + filepath.Join(base, "ca.pem") + " exists=yes",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("terraform's local-exec did not report %q:\n%s", want, logs.String())
		}
	}
	if s := "Unable to open CLI configuration file"; strings.Contains(logs.String(), s) {
		t.Errorf("terraform could not open the CLI configuration:\n%s", logs.String())
	}
}

func TestFind(t *testing.T) {
	if _, err := terraform.Find(t.Context(), terraform.FindOptions{Path: filepath.Join(t.TempDir(), "terraform")}); err == nil ||
		!strings.Contains(err.Error(), "the configured binary") {
		t.Errorf("Find with a missing configured path = %v", err)
	}
	exe := requireTerraform(t)
	got, err := terraform.Find(t.Context(), terraform.FindOptions{Path: exe})
	if err != nil || got != exe {
		t.Errorf("Find(%s) = %q, %v", exe, got, err)
	}
	t.Setenv("PATH", t.TempDir())
	if _, err := terraform.Find(t.Context(), terraform.FindOptions{}); err == nil || !strings.Contains(err.Error(), "--install-terraform") {
		t.Errorf("Find with an empty PATH = %v, want advice", err)
	}
}

func equalMap[V comparable](a, b map[string]V) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
