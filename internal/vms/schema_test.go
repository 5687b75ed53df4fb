package vms_test

// The schema check: terraform/ and the generated variables against the
// telmate/proxmox 3.0.2-rc07 schema (the output of `terraform providers
// schema -json`, in testdata), with hashicorp/hcl/v2. It needs no provider
// binary, so it runs everywhere; `terraform validate` cannot run here.

import (
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	tfjson "github.com/hashicorp/terraform-json"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	tfmodule "github.com/fhlab/provision/terraform"
)

const providerAddr = "registry.terraform.io/telmate/proxmox"

func loadSchema(t *testing.T) *tfjson.ProviderSchema {
	t.Helper()
	f, err := os.Open("testdata/telmate-proxmox-3.0.2-rc07.schema.json.gz")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var ps tfjson.ProviderSchemas
	if err := json.Unmarshal(data, &ps); err != nil {
		t.Fatal(err)
	}
	s := ps.Schemas[providerAddr]
	if s == nil || s.ConfigSchema == nil || s.ResourceSchemas["proxmox_vm_qemu"] == nil {
		t.Fatalf("schema has no %s provider with proxmox_vm_qemu", providerAddr)
	}
	return s
}

// conflicts are the provider's ConflictsWith sets (not in the JSON schema;
// from proxmox/Internal/resource/guest/**/schema.go and provider.go).
var conflicts = map[string][][]string{
	"proxmox_vm_qemu": {
		{"cpu", "cores"}, {"cpu", "sockets"}, {"cpu", "cpu_type"}, {"cpu", "numa"}, {"cpu", "vcpus"},
		{"disks", "disk"}, {"target_node", "target_nodes"}, {"clone", "clone_id"},
		{"start_at_node_boot", "onboot"}, {"description", "desc"},
	},
	"provider": {{"pm_api_token_id", "pm_user"}, {"pm_api_token_secret", "pm_password"}},
}

// fromEnvironment are provider arguments the project never writes in HCL.
var fromEnvironment = []string{"pm_api_token_id", "pm_api_token_secret", "pm_user", "pm_password", "pm_otp"}

// Meta-arguments of resource blocks.
var metaAttrs = map[string]bool{"count": true, "for_each": true, "depends_on": true, "provider": true}
var metaBlocks = map[string]bool{"lifecycle": true, "provisioner": true, "connection": true}

type checker struct {
	schema   *tfjson.ProviderSchema
	vars     map[string]cty.Type
	problems []string
}

func (c *checker) addf(r hcl.Range, format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf("%s:%d: %s", filepath.Base(r.Filename), r.Start.Line, fmt.Sprintf(format, args...)))
}

// checkModule parses every .tf file of fsys and checks the provider block,
// every proxmox_vm_qemu resource and the outputs. It returns the problems,
// sorted by file and line, and the declared variables' types.
func checkModule(t *testing.T, fsys fs.FS, schema *tfjson.ProviderSchema) ([]string, map[string]cty.Type, map[string]bool) {
	t.Helper()
	p := hclparse.NewParser()
	var bodies []*hclsyntax.Body
	names, err := fs.Glob(fsys, "*.tf")
	if err != nil || len(names) == 0 {
		t.Fatalf("no .tf files: %v", err)
	}
	for _, name := range names {
		src, err := fs.ReadFile(fsys, name)
		if err != nil {
			t.Fatal(err)
		}
		f, diags := p.ParseHCL(src, name)
		if diags.HasErrors() {
			t.Fatalf("parse %s: %s", name, diags.Error())
		}
		bodies = append(bodies, f.Body.(*hclsyntax.Body))
	}
	c := &checker{schema: schema, vars: map[string]cty.Type{}}
	hasDefault := map[string]bool{}
	for _, b := range bodies {
		for _, blk := range b.Blocks {
			if blk.Type != "variable" {
				continue
			}
			typ := cty.DynamicPseudoType
			if a, ok := blk.Body.Attributes["type"]; ok {
				ty, diags := typeexpr.TypeConstraint(a.Expr)
				if diags.HasErrors() {
					c.addf(a.SrcRange, "variable %s: type: %s", blk.Labels[0], diags.Error())
				}
				typ = ty
			} else {
				c.addf(blk.DefRange(), "variable %s has no type", blk.Labels[0])
			}
			c.vars[blk.Labels[0]] = typ
			_, hasDefault[blk.Labels[0]] = blk.Body.Attributes["default"]
		}
	}
	for _, b := range bodies {
		for _, blk := range b.Blocks {
			switch {
			case blk.Type == "provider" && blk.Labels[0] == "proxmox":
				c.checkBlock(blk.Body, schema.ConfigSchema.Block, "provider proxmox", "provider", nil)
				for _, name := range fromEnvironment {
					if a, ok := blk.Body.Attributes[name]; ok {
						c.addf(a.SrcRange, "provider proxmox: %s is set in HCL; credentials come from the environment only", name)
					}
				}
			case blk.Type == "resource" && blk.Labels[0] == "proxmox_vm_qemu":
				ctx := c.evalContext(blk.Body)
				c.checkBlock(blk.Body, schema.ResourceSchemas["proxmox_vm_qemu"].Block, "proxmox_vm_qemu."+blk.Labels[1], "proxmox_vm_qemu", ctx)
			case blk.Type == "resource":
				c.addf(blk.DefRange(), "resource type %s is not checked", blk.Labels[0])
			case blk.Type == "output":
				ctx := c.evalContext(nil)
				ctx.Variables["proxmox_vm_qemu"] = resourceValues(bodies, schema)
				if a, ok := blk.Body.Attributes["value"]; ok {
					c.checkExpr(a, cty.DynamicPseudoType, "output "+blk.Labels[0], ctx)
				}
			}
		}
	}
	sort.SliceStable(c.problems, func(i, j int) bool { return lineKey(c.problems[i]) < lineKey(c.problems[j]) })
	return c.problems, c.vars, hasDefault
}

func lineKey(p string) string {
	parts := strings.SplitN(p, ":", 3)
	return fmt.Sprintf("%s:%06s", parts[0], parts[1])
}

// evalContext has the variables as unknown values of their declared types,
// each.key/each.value for a for_each body, and the functions the module uses.
func (c *checker) evalContext(body *hclsyntax.Body) *hcl.EvalContext {
	vars := map[string]cty.Value{}
	for name, typ := range c.vars {
		vars[name] = cty.UnknownVal(typ)
	}
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars), "path": cty.ObjectVal(map[string]cty.Value{"module": cty.StringVal(".")})},
		Functions: map[string]function.Function{"join": stdlib.JoinFunc, "lower": stdlib.LowerFunc, "format": stdlib.FormatFunc},
	}
	if body == nil {
		return ctx
	}
	if fe, ok := body.Attributes["for_each"]; ok {
		v, diags := fe.Expr.Value(ctx)
		elem := cty.DynamicPseudoType
		if !diags.HasErrors() && (v.Type().IsMapType() || v.Type().IsSetType() || v.Type().IsListType()) {
			elem = v.Type().ElementType()
		}
		ctx.Variables["each"] = cty.ObjectVal(map[string]cty.Value{"key": cty.UnknownVal(cty.String), "value": cty.UnknownVal(elem)})
	}
	return ctx
}

// resourceValues is proxmox_vm_qemu.<name> as a map of one unknown VM of the
// schema's type, so outputs can only use attributes that exist.
func resourceValues(bodies []*hclsyntax.Body, schema *tfjson.ProviderSchema) cty.Value {
	typ := impliedType(schema.ResourceSchemas["proxmox_vm_qemu"].Block)
	res := map[string]cty.Value{}
	for _, b := range bodies {
		for _, blk := range b.Blocks {
			if blk.Type == "resource" && blk.Labels[0] == "proxmox_vm_qemu" {
				res[blk.Labels[1]] = cty.MapVal(map[string]cty.Value{"example": cty.UnknownVal(typ)})
			}
		}
	}
	return cty.ObjectVal(res)
}

func impliedType(b *tfjson.SchemaBlock) cty.Type {
	attrs := map[string]cty.Type{}
	for name, a := range b.Attributes {
		attrs[name] = a.AttributeType
	}
	for name, nb := range b.NestedBlocks {
		inner := impliedType(nb.Block)
		switch nb.NestingMode {
		case tfjson.SchemaNestingModeSingle, tfjson.SchemaNestingModeGroup:
			attrs[name] = inner
		case tfjson.SchemaNestingModeSet:
			attrs[name] = cty.Set(inner)
		case tfjson.SchemaNestingModeMap:
			attrs[name] = cty.Map(inner)
		default:
			attrs[name] = cty.List(inner)
		}
	}
	return cty.Object(attrs)
}

// checkBlock checks one block's body against its schema, recursively.
func (c *checker) checkBlock(body *hclsyntax.Body, s *tfjson.SchemaBlock, where, kind string, ctx *hcl.EvalContext) {
	top := kind == "proxmox_vm_qemu" && strings.Count(where, ".") == 1
	for name, a := range body.Attributes {
		if top && metaAttrs[name] {
			continue
		}
		sa, ok := s.Attributes[name]
		if !ok {
			if _, isBlock := s.NestedBlocks[name]; isBlock {
				c.addf(a.SrcRange, "%s: %s is a block, not an attribute", where, name)
			} else {
				c.addf(a.SrcRange, "%s: unknown attribute %q", where, name)
			}
			continue
		}
		if sa.Computed && !sa.Optional && !sa.Required {
			c.addf(a.SrcRange, "%s: %s is computed by the provider and cannot be set", where, name)
		}
		if sa.Deprecated {
			c.addf(a.SrcRange, "%s: %s is deprecated", where, name)
		}
		c.checkExpr(a, sa.AttributeType, where, ctx)
	}
	for name, sa := range s.Attributes {
		if _, ok := body.Attributes[name]; sa.Required && !ok {
			c.addf(body.SrcRange, "%s: required attribute %q is not set", where, name)
		}
	}
	counts := map[string]int{}
	dynamic := map[string]bool{}
	for _, blk := range body.Blocks {
		typ, inner, r := blk.Type, blk.Body, blk.TypeRange
		if top && metaBlocks[typ] {
			continue
		}
		if typ == "dynamic" {
			typ = blk.Labels[0]
			dynamic[typ] = true
			inner = nil
			for _, cb := range blk.Body.Blocks {
				if cb.Type == "content" {
					inner = cb.Body
				}
			}
			if inner == nil {
				c.addf(r, "%s: dynamic %q has no content block", where, typ)
				continue
			}
			if ctx != nil {
				ctx = ctx.NewChild()
				ctx.Variables = map[string]cty.Value{typ: cty.ObjectVal(map[string]cty.Value{"key": cty.DynamicVal, "value": cty.DynamicVal})}
			}
		} else {
			counts[typ]++
		}
		nb, ok := s.NestedBlocks[typ]
		if !ok {
			if _, isAttr := s.Attributes[typ]; isAttr {
				c.addf(r, "%s: %s is an attribute, not a block", where, typ)
			} else {
				c.addf(r, "%s: unknown block %q", where, typ)
			}
			continue
		}
		if nb.Block.Deprecated {
			c.addf(r, "%s: block %s is deprecated", where, typ)
		}
		c.checkBlock(inner, nb.Block, where+"."+typ, kind, ctx)
	}
	for name, nb := range s.NestedBlocks {
		n := counts[name]
		if dynamic[name] {
			continue
		}
		if uint64(n) < nb.MinItems {
			c.addf(body.SrcRange, "%s: needs at least %d %s block(s), has %d", where, nb.MinItems, name, n)
		}
		if nb.MaxItems > 0 && uint64(n) > nb.MaxItems {
			c.addf(body.SrcRange, "%s: at most %d %s block(s), has %d", where, nb.MaxItems, name, n)
		}
	}
	for _, set := range conflicts[kind] {
		if top || kind == "provider" {
			if has(body, set[0]) && has(body, set[1]) {
				c.addf(body.SrcRange, "%s: %s conflicts with %s", where, set[1], set[0])
			}
		}
	}
}

func has(body *hclsyntax.Body, name string) bool {
	if _, ok := body.Attributes[name]; ok {
		return true
	}
	for _, b := range body.Blocks {
		if b.Type == name || (b.Type == "dynamic" && b.Labels[0] == name) {
			return true
		}
	}
	return false
}

// checkExpr evaluates an attribute's expression with the variables'
// types (values unknown) and checks that the result converts to the
// attribute's type. References to missing variables or attributes are
// reported; calls to functions the checker does not know are not.
func (c *checker) checkExpr(a *hclsyntax.Attribute, want cty.Type, where string, ctx *hcl.EvalContext) {
	if ctx == nil {
		ctx = c.evalContext(nil)
	}
	v, diags := a.Expr.Value(ctx)
	for _, d := range diags {
		if d.Severity == hcl.DiagError && d.Summary != "Call to unknown function" {
			c.addf(a.SrcRange, "%s: %s: %s: %s", where, a.Name, d.Summary, d.Detail)
		}
	}
	if diags.HasErrors() || want == cty.DynamicPseudoType {
		return
	}
	if _, err := convert.Convert(v, want); err != nil {
		c.addf(a.SrcRange, "%s: %s: %s does not fit %s: %v", where, a.Name, v.Type().FriendlyName(), want.FriendlyName(), err)
	}
}

func TestSchemaModule(t *testing.T) {
	problems, vars, _ := checkModule(t, tfmodule.FS, loadSchema(t))
	for _, p := range problems {
		t.Errorf("terraform/%s", p)
	}
	for _, name := range []string{"vms", "hardware", "pm_api_url"} {
		if _, ok := vars[name]; !ok {
			t.Errorf("variables.tf lacks %s", name)
		}
	}
}

func TestSchemaCheckCatchesMistakes(t *testing.T) {
	problems, _, _ := checkModule(t, os.DirFS("testdata/badmodule"), loadSchema(t))
	want := []string{
		`main.tf:12: provider proxmox: pm_api_token_secret is set in HCL; credentials come from the environment only`,
		`main.tf:13: provider proxmox: unknown attribute "pm_parallell"`,
		`main.tf:16: proxmox_vm_qemu.bad: cores conflicts with cpu`,
		`main.tf:19: proxmox_vm_qemu.bad: unknown attribute "cpu_cores"`,
		`main.tf:20: proxmox_vm_qemu.bad: memory: string does not fit number: a number is required`,
		`main.tf:21: proxmox_vm_qemu.bad: onboot is deprecated`,
		`main.tf:22: proxmox_vm_qemu.bad: cores is deprecated`,
		`main.tf:23: proxmox_vm_qemu.bad: tags: Unsupported attribute: This object does not have an attribute named "tag".`,
		`main.tf:32: proxmox_vm_qemu.bad.disks.scsi.scsi0.disk: required attribute "size" is not set`,
		`main.tf:34: proxmox_vm_qemu.bad.disks.scsi.scsi0.disk: unknown attribute "sise"`,
		`main.tf:40: proxmox_vm_qemu.bad.network: required attribute "model" is not set`,
		`main.tf:48: proxmox_vm_qemu.bad.serial: unknown attribute "kind"`,
		`main.tf:52: proxmox_vm_qemu.bad: unknown block "nic"`,
	}
	if strings.Join(problems, "\n") != strings.Join(want, "\n") {
		t.Errorf("problems:\n%s\n\nwant:\n%s", strings.Join(problems, "\n"), strings.Join(want, "\n"))
	}
}

// TestSchemaTFVars checks the generated variables of both shipped
// inventories against variables.tf: every variable without a default is
// set, nothing undeclared is set, and every value has the declared type.
func TestSchemaTFVars(t *testing.T) {
	_, vars, hasDefault := checkModule(t, tfmodule.FS, loadSchema(t))
	for _, inv := range []string{"../../inventory/local.yaml", "../../inventory/example.yaml"} {
		t.Run(filepath.Base(inv), func(t *testing.T) {
			d := build(t, inv)
			data, err := d.JSON()
			if err != nil {
				t.Fatal(err)
			}
			if problems := checkTFVars(data, vars, hasDefault); len(problems) > 0 {
				t.Errorf("generated %s:\n%s", inv, strings.Join(problems, "\n"))
			}
		})
	}
	bad := []byte(`{"pm_api_url": "x", "lab": "l", "template": "t", "hardware": {"scsihw": "s"}, "vms": {"a": {"vmid": "nine"}}, "extra": 1}`)
	problems := checkTFVars(bad, vars, hasDefault)
	joined := strings.Join(problems, "\n")
	for _, s := range []string{"extra: not declared", "hardware:", "vms:"} {
		if !strings.Contains(joined, s) {
			t.Errorf("problems of a bad tfvars lack %q:\n%s", s, joined)
		}
	}
}

func checkTFVars(data []byte, vars map[string]cty.Type, hasDefault map[string]bool) []string {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		return []string{err.Error()}
	}
	var problems []string
	for name, typ := range vars {
		v, ok := raw[name]
		if !ok {
			if !hasDefault[name] {
				problems = append(problems, name+": required, not set")
			}
			continue
		}
		if err := strictUnmarshal(v, typ); err != nil {
			problems = append(problems, fmt.Sprintf("%s: %v", name, err))
		}
	}
	for name := range raw {
		if _, ok := vars[name]; !ok {
			problems = append(problems, name+": not declared in variables.tf")
		}
	}
	sort.Strings(problems)
	return problems
}

// strictUnmarshal decodes JSON as typ, failing on missing or extra object
// attributes (terraform would drop extras silently: a typo'd key is lost).
func strictUnmarshal(data []byte, typ cty.Type) error {
	v, err := ctyjson.Unmarshal(data, cty.DynamicPseudoType)
	if err != nil {
		// DynamicPseudoType expects {"value":…,"type":…}; decode the
		// implied type instead.
		it, err := ctyjson.ImpliedType(data)
		if err != nil {
			return err
		}
		if v, err = ctyjson.Unmarshal(data, it); err != nil {
			return err
		}
	}
	return fits(v, typ, cty.Path{})
}

func fits(v cty.Value, typ cty.Type, path cty.Path) error {
	switch {
	case typ.IsObjectType():
		if !v.Type().IsObjectType() && !v.Type().IsMapType() {
			return path.NewErrorf("object required, got %s", v.Type().FriendlyName())
		}
		got := v.AsValueMap()
		for name, at := range typ.AttributeTypes() {
			av, ok := got[name]
			if !ok {
				return path.NewErrorf("attribute %q is missing", name)
			}
			if err := fits(av, at, path.GetAttr(name)); err != nil {
				return err
			}
		}
		for name := range got {
			if !typ.HasAttribute(name) {
				return path.NewErrorf("attribute %q is not declared", name)
			}
		}
		return nil
	case typ.IsMapType():
		if !v.Type().IsObjectType() && !v.Type().IsMapType() {
			return path.NewErrorf("map required, got %s", v.Type().FriendlyName())
		}
		for k, ev := range v.AsValueMap() {
			if err := fits(ev, typ.ElementType(), path.Index(cty.StringVal(k))); err != nil {
				return err
			}
		}
		return nil
	case typ.IsListType() || typ.IsSetType():
		if !v.Type().IsTupleType() && !v.Type().IsListType() {
			return path.NewErrorf("list required, got %s", v.Type().FriendlyName())
		}
		for i, ev := range v.AsValueSlice() {
			if err := fits(ev, typ.ElementType(), path.Index(cty.NumberIntVal(int64(i)))); err != nil {
				return err
			}
		}
		return nil
	}
	if _, err := convert.Convert(v, typ); err != nil {
		return path.NewError(err)
	}
	if typ == cty.Number && v.Type() != cty.Number || typ == cty.Bool && v.Type() != cty.Bool {
		return path.NewErrorf("%s required, got %s", typ.FriendlyName(), v.Type().FriendlyName())
	}
	return nil
}
