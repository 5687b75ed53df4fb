package ci

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/rhysd/actionlint"
)

const workflowsDir = "../../.github/workflows"

// lint runs actionlint on the files and returns its findings, formatted.
func lint(t *testing.T, files []string) []string {
	t.Helper()
	opts := &actionlint.LinterOptions{}
	if p, err := exec.LookPath("shellcheck"); err == nil {
		opts.Shellcheck = p
	} else if os.Getenv("CI") == "true" {
		t.Fatal("shellcheck is not installed (scripts/install-deps.sh installs it): run: scripts go unchecked")
	} else {
		t.Log("shellcheck is not installed: run: scripts are not checked")
	}
	var out strings.Builder
	l, err := actionlint.NewLinter(&out, opts)
	if err != nil {
		t.Fatal(err)
	}
	errs, err := l.LintFiles(files, nil)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range errs {
		found = append(found, e.Error())
	}
	return found
}

func workflows(t *testing.T) []string {
	t.Helper()
	var files []string
	for _, pat := range []string{"*.yml", "*.yaml"} {
		m, err := filepath.Glob(filepath.Join(workflowsDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

func TestWorkflowsLintClean(t *testing.T) {
	files := workflows(t)
	found := false
	for _, f := range files {
		found = found || filepath.Base(f) == "golden.yml"
	}
	if !found {
		t.Fatalf("no golden.yml among %v", files)
	}
	if errs := lint(t, files); len(errs) > 0 {
		t.Errorf("actionlint found %d problems:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// The linter must catch what a broken workflow looks like, or a clean
// result above means nothing.
func TestLintCatchesMistakes(t *testing.T) {
	tests := []struct {
		name, workflow, want string
	}{
		{"unknown runner key", `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    step:
      - run: echo hi
`, "step"},
		{"undefined step output", `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ steps.nope.outputs.hash }}"
`, "nope"},
		{"bad cache input", `on: push
jobs:
  a:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/cache@v4
        with:
          pth: out
          key: k
`, "pth"},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "-")+".yml")
			if err := os.WriteFile(p, []byte(tt.workflow), 0o644); err != nil {
				t.Fatal(err)
			}
			errs := lint(t, []string{p})
			if len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), tt.want) {
				t.Errorf("actionlint: %q, want a finding about %q", errs, tt.want)
			}
		})
	}
}

// golden.yml does what issue 10 asks of it.
func TestGoldenWorkflowContent(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(workflowsDir, "golden.yml"))
	if err != nil {
		t.Fatal(err)
	}
	wf, errs := actionlint.Parse(b)
	if len(errs) > 0 {
		t.Fatalf("parse: %v", errs)
	}
	job := wf.Jobs["golden"]
	if job == nil || job.RunsOn == nil || len(job.RunsOn.Labels) != 1 || job.RunsOn.Labels[0].Value != "ubuntu-latest" {
		t.Fatalf("want one job golden on ubuntu-latest")
	}
	if job.Container != nil {
		t.Error("the job runs in a container; the build needs the runner VM (no privileged container)")
	}
	var uses, runs []string
	for _, s := range job.Steps {
		switch e := s.Exec.(type) {
		case *actionlint.ExecAction:
			uses = append(uses, e.Uses.Value)
		case *actionlint.ExecRun:
			runs = append(runs, e.Run.Value)
		}
	}
	all := strings.Join(runs, "\n")
	for _, want := range []string{"make golden ", "make golden-test", "mmdebstrap", "qemu-user-static", "qemu-system-arm", "debian-archive-keyring"} {
		if !strings.Contains(all, want) {
			t.Errorf("no run step has %q", want)
		}
	}
	for _, want := range []string{"actions/checkout@", "actions/setup-go@", "actions/cache@", "actions/upload-artifact@"} {
		if !strings.Contains(strings.Join(uses, " "), want) {
			t.Errorf("no step uses %s", want)
		}
	}
	for _, want := range []string{"*.bmap", "*.sha256", "*.json", "hashFiles('images/**', 'templates/**', 'internal/rpi/**'"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("golden.yml lacks %q", want)
		}
	}
}
