package stages_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fhlab/provision/internal/inventory"
	"github.com/fhlab/provision/internal/pipeline"
	"github.com/fhlab/provision/internal/render"
	"github.com/fhlab/provision/internal/stages"
	"github.com/fhlab/provision/internal/state"
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
