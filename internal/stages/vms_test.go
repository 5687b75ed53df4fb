package stages_test

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
	"github.com/fhlab/provision/internal/ui"
	"github.com/fhlab/provision/templates"
)

// Without a token terraform cannot plan; the stage's plan says why and
// estimates from the state file instead of failing the whole plan.
func TestVMsPlanEstimatesWhenTerraformCannotPlan(t *testing.T) {
	t.Setenv("PM_API_TOKEN_ID", "")
	t.Setenv("PM_API_TOKEN_SECRET", "")
	inv, err := inventory.Load("../../inventory/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	st := state.New(inv.Lab.Metadata.Name)
	st.Terraform = map[string]string{"vms.mgr-1.id": "pve1/qemu/9100"}
	env := &pipeline.Env{
		Inventory: inv, State: st, StateDir: t.TempDir(), Concurrency: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: io.Discard,
		Status: pipeline.NewStatus(io.Discard, time.Now), Now: time.Now,
	}
	p, err := stages.VMs{Renderer: r}.Plan(t.Context(), env)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Notes) != 1 || !strings.Contains(p.Notes[0], "$PM_API_TOKEN_ID") {
		t.Errorf("notes = %q, want why terraform could not plan", p.Notes)
	}
	c := p.Counts()
	if c[pipeline.Create] != 8 || c[pipeline.Keep] != 1 {
		t.Errorf("counts = %v, want 8 create (estimated), 1 unchanged", c)
	}
}

// A missing SSH key for the snippet upload is found before terraform runs
// (no module written, no init, no plan) and the message says which flags
// fix it.
func TestVMsApplyMissingKeyFailsBeforeTerraform(t *testing.T) {
	t.Setenv("PM_API_TOKEN_ID", "provision@pve!terraform")
	t.Setenv("PM_API_TOKEN_SECRET", "key-test-"+strings.Repeat("3", 8))
	inv, err := inventory.Load("../../inventory/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.New(templates.FS)
	if err != nil {
		t.Fatal(err)
	}
	stateDir := t.TempDir()
	var out strings.Builder
	env := &pipeline.Env{
		Inventory: inv, State: state.New(inv.Lab.Metadata.Name), StateDir: stateDir, Concurrency: 4,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Out: &out,
		Status: pipeline.NewStatus(io.Discard, time.Now), Now: time.Now,
	}
	missing := filepath.Join(t.TempDir(), "id_missing")
	s := stages.VMs{Renderer: r, TF: stages.Terraform{KeyPath: missing, Prompt: ui.Prompt{Yes: true}}}
	err = s.Apply(t.Context(), env)
	if err == nil {
		t.Fatal("apply without the SSH key succeeded")
	}
	for _, want := range []string{missing, "--ssh-key", "--no-snippets", "nothing was planned or changed"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "terraform")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("terraform's module directory exists (%v): terraform ran before the key was checked", err)
	}
	if out.Len() > 0 {
		t.Errorf("a plan was printed before the key was checked:\n%s", out.String())
	}
}
