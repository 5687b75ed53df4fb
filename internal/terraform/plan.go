package terraform

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-exec/tfexec"
	tfjson "github.com/hashicorp/terraform-json"
)

// Plan file names inside the working directory.
const (
	PlanFile        = "provision.tfplan"
	DestroyPlanFile = "provision-destroy.tfplan"
)

// Action is what a plan does to one resource.
type Action string

// The actions a summary lists, loudest first.
const (
	Destroy Action = "destroy"
	Replace Action = "replace"
	Create  Action = "create"
	Update  Action = "update"
	Read    Action = "read"
)

// Change is one resource's line in a plan summary.
type Change struct {
	Address string // e.g. proxmox_vm_qemu.vm["mgr-1"]
	Type    string // e.g. proxmox_vm_qemu
	Name    string // e.g. vm
	Key     string // the for_each key or count index; "" without
	Action  Action
	// Forcing are the attributes that force a replacement, or why it is
	// replaced when no attribute does (tainted, requested).
	Forcing []string
	// Attrs are the changed top-level attributes of an update or replace.
	Attrs []string
	// Before and After are the resource's attributes now and as planned
	// (unknown values absent from After), for an update or replace.
	Before, After map[string]any
}

// Plan is a saved plan and what it would do.
type Plan struct {
	File    string // absolute path of the plan file
	Destroy bool   // a destroy plan
	Changes []Change
	JSON    *tfjson.Plan
}

// Empty reports whether the plan changes nothing.
func (p *Plan) Empty() bool { return len(p.Changes) == 0 }

// Count returns how many changes have action a.
func (p *Plan) Count(a Action) int {
	n := 0
	for _, c := range p.Changes {
		if c.Action == a {
			n++
		}
	}
	return n
}

// Plan runs `terraform plan -out` (with -destroy for a destroy plan) and
// reads the saved plan back. The plan file is readable by its owner only.
// With targets (resource addresses), only they and what they depend on
// are planned (-target).
func (r *Runner) Plan(ctx context.Context, destroy bool, targets ...string) (*Plan, error) {
	name, cmd := PlanFile, "plan"
	if destroy {
		name, cmd = DestroyPlanFile, "plan -destroy"
	}
	file := filepath.Join(r.cfg.Dir, name)
	os.Remove(file) // a stale plan must never be applied
	opts := []tfexec.PlanOption{tfexec.Out(name), tfexec.Destroy(destroy)}
	for _, t := range targets {
		opts = append(opts, tfexec.Target(t))
	}
	if r.cfg.Parallelism > 0 {
		opts = append(opts, tfexec.Parallelism(r.cfg.Parallelism))
	}
	_, err := r.tf.Plan(ctx, opts...)
	r.flush()
	if err != nil {
		return nil, r.fail(cmd, err)
	}
	if err := os.Chmod(file, 0o600); err != nil {
		return nil, fmt.Errorf("terraform %s: %w", cmd, err)
	}
	r.tf.SetStdout(io.Discard) // the plan's JSON is data, not log
	js, err := r.tf.ShowPlanFile(ctx, name)
	r.tf.SetStdout(r.stdout)
	r.flush()
	if err != nil {
		return nil, r.fail("show "+name, err)
	}
	return &Plan{File: file, Destroy: destroy, Changes: Summarize(js), JSON: js}, nil
}

// Summarize lists the managed resources a plan changes, loudest first
// (destroy, replace, create, update), then by address.
func Summarize(p *tfjson.Plan) []Change {
	var out []Change
	for _, rc := range p.ResourceChanges {
		if rc.Change == nil || rc.Mode == tfjson.DataResourceMode {
			continue
		}
		a := rc.Change.Actions
		c := Change{Address: rc.Address, Type: rc.Type, Name: rc.Name, Key: indexKey(rc.Index)}
		switch {
		case a.Replace():
			c.Action = Replace
			c.Forcing = paths(rc.Change.ReplacePaths)
			if len(c.Forcing) == 0 {
				c.Forcing = []string{reason(rc.ActionReason)}
			}
			c.Attrs = changedAttrs(rc.Change)
		case a.Create():
			c.Action = Create
		case a.Delete():
			c.Action = Destroy
		case a.Update():
			c.Action = Update
			c.Attrs = changedAttrs(rc.Change)
		default: // no-op, read, forget
			continue
		}
		if c.Action == Update || c.Action == Replace {
			c.Before, _ = rc.Change.Before.(map[string]any)
			c.After, _ = rc.Change.After.(map[string]any)
		}
		out = append(out, c)
	}
	order := map[Action]int{Destroy: 0, Replace: 1, Create: 2, Update: 3}
	sort.SliceStable(out, func(i, j int) bool {
		if order[out[i].Action] != order[out[j].Action] {
			return order[out[i].Action] < order[out[j].Action]
		}
		return out[i].Address < out[j].Address
	})
	return out
}

func indexKey(idx any) string {
	switch v := idx.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func reason(r tfjson.ActionReason) string {
	switch r {
	case tfjson.ActionReasonReplaceBecauseTainted:
		return "(tainted)"
	case tfjson.ActionReasonReplaceByRequest:
		return "(replacement requested)"
	case tfjson.ActionReasonReplaceByTriggers:
		return "(replace_triggered_by)"
	case "":
		return "(no reason given)"
	}
	return "(" + string(r) + ")"
}

// paths renders replace paths as attr.sub[0].leaf.
func paths(ps []any) []string {
	var out []string
	seen := map[string]bool{}
	for _, p := range ps {
		steps, ok := p.([]any)
		if !ok {
			continue
		}
		var b strings.Builder
		for i, s := range steps {
			switch v := s.(type) {
			case string:
				if i > 0 {
					b.WriteByte('.')
				}
				b.WriteString(v)
			case float64:
				fmt.Fprintf(&b, "[%d]", int(v))
			default:
				fmt.Fprintf(&b, "[%v]", v)
			}
		}
		if s := b.String(); s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// changedAttrs lists the top-level attributes whose planned value differs
// from the current one (or is unknown until apply).
func changedAttrs(c *tfjson.Change) []string {
	before, _ := c.Before.(map[string]any)
	after, _ := c.After.(map[string]any)
	unknown, _ := c.AfterUnknown.(map[string]any)
	keys := map[string]bool{}
	for k := range before {
		keys[k] = true
	}
	for k := range after {
		keys[k] = true
	}
	var out []string
	for k := range keys {
		if u, ok := unknown[k].(bool); ok && u {
			if before[k] != nil && k != "id" {
				out = append(out, k)
			}
			continue
		}
		if !reflect.DeepEqual(before[k], after[k]) {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

// WriteSummary prints a plan for a person: counts, then one line per
// resource; replacements and destructions are called out loudly with what
// forces them.
func WriteSummary(w io.Writer, p *Plan) {
	if p.Empty() {
		fmt.Fprintln(w, "Terraform plan: no changes.")
		return
	}
	fmt.Fprintf(w, "Terraform plan: %d to create, %d to update, %d to REPLACE, %d to DESTROY.\n",
		p.Count(Create), p.Count(Update), p.Count(Replace), p.Count(Destroy))
	for _, c := range p.Changes {
		name := c.Address
		switch c.Action {
		case Create:
			fmt.Fprintf(w, "  + create   %s\n", name)
		case Update:
			fmt.Fprintf(w, "  ~ update   %s (%s)\n", name, strings.Join(c.Attrs, ", "))
		case Replace:
			fmt.Fprintf(w, "  !! REPLACE %s: destroyed and created again, forced by %s\n", name, strings.Join(c.Forcing, ", "))
		case Destroy:
			fmt.Fprintf(w, "  !! DESTROY %s\n", name)
		}
	}
	if n := p.Count(Replace) + p.Count(Destroy); n > 0 {
		fmt.Fprintf(w, "WARNING: %d resource(s) will be DESTROYED (replacements included): their data is lost.\n", n)
	}
}
