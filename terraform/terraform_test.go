// Package terraform_test checks the Terraform configuration without
// Terraform (its providers cannot be downloaded in CI): every .tf file
// parses with hcl/v2, is canonically formatted, and every var.X and local.X
// it refers to is declared.
package terraform_test

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
)

// reference is one var.X or local.X found in an expression.
type reference struct {
	root, name string
	rng        hcl.Range
}

// module is what the test gathered from all .tf files of the directory.
type module struct {
	files     map[string]*hclsyntax.Body
	variables map[string]*hclsyntax.Block
	locals    map[string]hcl.Range
	refs      []reference
	blocks    map[string][]*hclsyntax.Block // by type
}

func loadModule(t *testing.T) *module {
	t.Helper()
	paths, err := filepath.Glob("*.tf")
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal("no .tf files")
	}
	m := &module{
		files: map[string]*hclsyntax.Body{}, variables: map[string]*hclsyntax.Block{},
		locals: map[string]hcl.Range{}, blocks: map[string][]*hclsyntax.Block{},
	}
	parser := hclparse.NewParser()
	for _, path := range paths {
		f, diags := parser.ParseHCLFile(path)
		if diags.HasErrors() {
			t.Fatalf("%s does not parse:\n%s", path, diags.Error())
		}
		body := f.Body.(*hclsyntax.Body)
		m.files[path] = body
		for _, b := range body.Blocks {
			m.blocks[b.Type] = append(m.blocks[b.Type], b)
			switch b.Type {
			case "variable":
				if prev, dup := m.variables[b.Labels[0]]; dup {
					t.Errorf("%s: variable %q declared again (first at %s)", b.DefRange(), b.Labels[0], prev.DefRange())
				}
				m.variables[b.Labels[0]] = b
			case "locals":
				for name, a := range b.Body.Attributes {
					if prev, dup := m.locals[name]; dup {
						t.Errorf("%s: local %q defined again (first at %s)", a.SrcRange, name, prev)
					}
					m.locals[name] = a.SrcRange
				}
			}
		}
		m.walk(body)
	}
	return m
}

// walk collects the var and local references of every attribute
// expression in body and its nested blocks.
func (m *module) walk(body *hclsyntax.Body) {
	for _, a := range body.Attributes {
		for _, tr := range a.Expr.Variables() {
			root := tr.RootName()
			if root != "var" && root != "local" {
				continue
			}
			name := ""
			if len(tr) > 1 {
				if step, ok := tr[1].(hcl.TraverseAttr); ok {
					name = step.Name
				}
			}
			m.refs = append(m.refs, reference{root: root, name: name, rng: tr.SourceRange()})
		}
	}
	for _, b := range body.Blocks {
		m.walk(b.Body)
	}
}

func TestTerraform_CanonicalFormat(t *testing.T) {
	paths, err := filepath.Glob("*.tf")
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range paths {
		t.Run(path, func(t *testing.T) {
			src, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := hclwrite.Format(src); !bytes.Equal(got, src) {
				t.Fatalf("not canonically formatted (terraform fmt); want:\n%s", got)
			}
		})
	}
}

func TestTerraform_ReferencesAreDeclared(t *testing.T) {
	m := loadModule(t)
	if len(m.refs) == 0 {
		t.Fatal("found no var or local references: the walk is broken")
	}
	used := map[string]bool{}
	for _, r := range m.refs {
		switch {
		case r.name == "":
			t.Errorf("%s: %s used without an attribute name", r.rng, r.root)
		case r.root == "var":
			used[r.name] = true
			if m.variables[r.name] == nil {
				t.Errorf("%s: var.%s is not declared by a variable block", r.rng, r.name)
			}
		case r.root == "local":
			if _, ok := m.locals[r.name]; !ok {
				t.Errorf("%s: local.%s is not defined in a locals block", r.rng, r.name)
			}
		}
	}
	var unused []string
	for name := range m.variables {
		if !used[name] {
			unused = append(unused, name)
		}
	}
	sort.Strings(unused)
	if len(unused) > 0 {
		t.Errorf("variables declared but never used: %v", unused)
	}
}

// Every variable says what it is for and has a type; those that hold
// secrets are sensitive.
func TestTerraform_VariablesDocumented(t *testing.T) {
	m := loadModule(t)
	for name, b := range m.variables {
		for _, attr := range []string{"description", "type"} {
			if b.Body.Attributes[attr] == nil {
				t.Errorf("%s: variable %q has no %s", b.DefRange(), name, attr)
			}
		}
		secret := strings.Contains(name, "token") || strings.Contains(name, "key")
		if s := b.Body.Attributes["sensitive"]; secret && s == nil {
			t.Errorf("%s: variable %q holds a secret but is not sensitive", b.DefRange(), name)
		}
		for _, v := range b.Body.Blocks {
			if v.Type != "validation" {
				continue
			}
			if v.Body.Attributes["condition"] == nil || v.Body.Attributes["error_message"] == nil {
				t.Errorf("%s: validation of %q needs condition and error_message", v.DefRange(), name)
			}
		}
	}
}

// The configuration has what the deployment needs: both providers pinned,
// the resources, and sensitive token outputs.
func TestTerraform_Inventory(t *testing.T) {
	m := loadModule(t)
	var providers []string
	for _, tf := range m.blocks["terraform"] {
		for _, b := range tf.Body.Blocks {
			if b.Type != "required_providers" {
				continue
			}
			for name, a := range b.Body.Attributes {
				obj, ok := a.Expr.(*hclsyntax.ObjectConsExpr)
				if !ok {
					t.Errorf("%s: provider %s must be { source, version }", a.SrcRange, name)
					continue
				}
				var keys []string
				for _, item := range obj.Items {
					k := hcl.ExprAsKeyword(item.KeyExpr)
					keys = append(keys, k)
				}
				sort.Strings(keys)
				if !slices.Equal(keys, []string{"source", "version"}) {
					t.Errorf("%s: provider %s has %v, want source and a version constraint", a.SrcRange, name, keys)
				}
				providers = append(providers, name)
			}
		}
	}
	sort.Strings(providers)
	if !slices.Equal(providers, []string{"consul", "nomad"}) {
		t.Errorf("required providers %v, want consul and nomad", providers)
	}

	resources := map[string]bool{}
	for _, b := range append(m.blocks["resource"], m.blocks["data"]...) {
		resources[b.Labels[0]] = true
	}
	for _, want := range []string{
		"nomad_namespace", "nomad_acl_policy", "nomad_acl_token", "nomad_variable", "nomad_job",
		"consul_acl_policy", "consul_acl_token", "consul_acl_token_secret_id", "consul_keys",
	} {
		if !resources[want] {
			t.Errorf("no %s resource", want)
		}
	}

	outputs := map[string]*hclsyntax.Block{}
	for _, b := range m.blocks["output"] {
		outputs[b.Labels[0]] = b
	}
	if outputs["gateway_url"] == nil {
		t.Error("no gateway_url output")
	}
	for name, b := range outputs {
		if b.Body.Attributes["description"] == nil {
			t.Errorf("output %s has no description", name)
		}
		if !strings.Contains(name, "token") {
			continue
		}
		s := b.Body.Attributes["sensitive"]
		if s == nil {
			t.Errorf("output %s is a token but not sensitive", name)
			continue
		}
		if v, diags := s.Expr.Value(nil); diags.HasErrors() || !v.True() {
			t.Errorf("output %s: sensitive must be true", name)
		}
	}
}

// The jobspecs terraform deploys exist, and every hcl2 var it passes is a
// variable the jobspec declares.
func TestTerraform_JobVarsMatchJobspecs(t *testing.T) {
	m := loadModule(t)
	jobs := 0
	for _, b := range m.blocks["resource"] {
		if b.Labels[0] != "nomad_job" {
			continue
		}
		jobs++
		spec := b.Body.Attributes["jobspec"]
		if spec == nil {
			t.Fatalf("%s: nomad_job without jobspec", b.DefRange())
		}
		var file string
		hclsyntax.VisitAll(spec.Expr, func(n hclsyntax.Node) hcl.Diagnostics {
			if lit, ok := n.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type().FriendlyName() == "string" {
				if s := lit.Val.AsString(); strings.HasSuffix(s, ".nomad.hcl") {
					file = strings.TrimPrefix(s, "/")
				}
			}
			return nil
		})
		if file == "" {
			t.Fatalf("%s: jobspec is not file(\"${path.module}/...nomad.hcl\")", spec.SrcRange)
		}
		declared := jobspecVariables(t, file)
		for _, hb := range b.Body.Blocks {
			if hb.Type != "hcl2" {
				continue
			}
			vars, ok := hb.Body.Attributes["vars"]
			if !ok {
				continue
			}
			obj, ok := vars.Expr.(*hclsyntax.ObjectConsExpr)
			if !ok {
				t.Fatalf("%s: hcl2.vars must be an object literal", vars.SrcRange)
			}
			for _, item := range obj.Items {
				k := hcl.ExprAsKeyword(item.KeyExpr)
				if !declared[k] {
					t.Errorf("%s: %s sets var %q that %s does not declare", item.KeyExpr.Range(), b.Labels[1], k, file)
				}
			}
		}
	}
	if jobs != 2 {
		t.Errorf("%d nomad_job resources, want redis and the switchboard", jobs)
	}
}

func jobspecVariables(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, diags := hclparse.NewParser().ParseHCLFile(path)
	if diags.HasErrors() {
		t.Fatalf("jobspec %s: %s", path, diags.Error())
	}
	out := map[string]bool{}
	for _, b := range f.Body.(*hclsyntax.Body).Blocks {
		if b.Type == "variable" {
			out[b.Labels[0]] = true
		}
	}
	return out
}
