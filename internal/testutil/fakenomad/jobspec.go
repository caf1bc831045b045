package fakenomad

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// The jobspec parser reproduces what POST /v1/jobs/parse does in Nomad
// v2.0.6: jobspec2 with Path "input.hcl", the request's Variables text as
// the content of a variables file, Strict off (a set but undeclared variable
// is only a warning) and no file system functions. Error texts are Nomad's,
// recorded against a real agent:
//
//	Failed to parse job: input.hcl:24,9-10: Argument or block definition required; An argument or block definition is required here.
//	Failed to parse job: <nil>: Unset variable "model"; A used variable must be set or have a default value; see https://developer.hashicorp.com/nomad/docs/reference/hcl2/variables  for details.
//	Failed to parse job: input.hcl:2,8-22: Invalid value for variable; The value for port is not compatible with the variable's type constraint: a number is required.
//	Failed to parse job: unable to parse var content: input.hcl:1,11-11: Missing expression; Expected the start of an expression, but found the end of the file.
//
// (the "Failed to parse job: " prefix is added by the HTTP handler). Runtime
// interpolations such as "${NOMAD_PORT_http}" or "${attr.kernel.name}" are
// kept literally: Nomad's HCL fork turns every reference to an unknown root
// variable into the string "${<reference>}"; upstream HCL has no such hook,
// so the parser pre-computes those strings for every unknown root it finds.

// jobspecFilename is the name Nomad gives both the jobspec and the variables
// content in diagnostics.
const jobspecFilename = "input.hcl"

var topLevelSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "variables"},
		{Type: "variable", LabelNames: []string{"name"}},
		{Type: "locals"},
		{Type: "job", LabelNames: []string{"name"}},
	},
}

var variableBlockSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{{Name: "description"}, {Name: "default"}, {Name: "type"}, {Name: "sensitive"}},
	Blocks:     []hcl.BlockHeaderSchema{{Type: "validation"}},
}

var validationBlockSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "condition", Required: true},
		{Name: "error_message", Required: true},
	},
}

// parseJobspec turns an HCL2 jobspec and the text of a variables file into
// the api.Job Nomad's parse endpoint answers (before Canonicalize).
func parseJobspec(src, varContent string) (*api.Job, error) {
	file, diags := hclsyntax.ParseConfig([]byte(src), jobspecFilename, hcl.InitialPos)

	var varFile *hcl.File
	if varContent != "" {
		f, vdiags := hclsyntax.ParseConfig([]byte(varContent), jobspecFilename, hcl.InitialPos)
		if vdiags.HasErrors() {
			return nil, fmt.Errorf("unable to parse var content: %v", vdiags.Error())
		}
		varFile = f
	}
	if diags.HasErrors() {
		return nil, diags
	}

	p := &jobspecParser{
		vars:     map[string]*variable{},
		locals:   map[string]cty.Value{},
		literals: unknownRootLiterals(file.Body.(*hclsyntax.Body)),
	}
	diags = p.decodeBody(file.Body, varFile)
	if diags.HasErrors() {
		// jobspec2 joins every diagnostic, warnings included, one a line.
		lines := make([]string, len(diags))
		for i, d := range diags {
			lines[i] = d.Error()
		}
		return nil, errors.New(strings.Join(lines, "\n"))
	}
	p.normalize()
	return p.job, nil
}

type jobspecParser struct {
	vars     map[string]*variable
	locals   map[string]cty.Value
	literals map[string]cty.Value

	jobID      string
	job        *api.Job
	extraTasks []*api.Task
	vault      *api.Vault
}

type variable struct {
	name        string
	typ         cty.Type
	values      []cty.Value
	exprs       []hcl.Expression
	validations []*variableValidation
	declRange   hcl.Range
}

type variableValidation struct {
	condition    hcl.Expression
	errorMessage string
	declRange    hcl.Range
}

func (p *jobspecParser) decodeBody(body hcl.Body, varFile *hcl.File) hcl.Diagnostics {
	content, diags := body.Content(topLevelSchema)
	if len(diags) != 0 {
		return diags
	}
	diags = append(diags, p.decodeVariables(content)...)
	localExprs, ldiags := p.collectLocals(content)
	diags = append(diags, ldiags...)
	if varFile != nil {
		diags = append(diags, p.collectVarFile(varFile)...)
	}
	_, vdiags := p.varValues()
	diags = append(diags, vdiags...)
	diags = append(diags, p.evaluateLocals(localExprs)...)
	diags = append(diags, p.decodeJob(content)...)
	return diags
}

func (p *jobspecParser) decodeVariables(content *hcl.BodyContent) hcl.Diagnostics {
	var diags hcl.Diagnostics
	for _, block := range content.Blocks {
		switch block.Type {
		case "variable":
			diags = append(diags, p.decodeVariableBlock(block)...)
		case "variables":
			attrs, adiags := block.Body.JustAttributes()
			diags = append(diags, adiags...)
			for _, attr := range sortedAttributes(attrs) {
				if _, dup := p.vars[attr.Name]; dup {
					diags = append(diags, &hcl.Diagnostic{
						Severity: hcl.DiagError,
						Summary:  "Duplicate variable",
						Detail:   "Duplicate " + attr.Name + " variable definition found.",
						Subject:  attr.NameRange.Ptr(),
					})
					continue
				}
				val, vdiags := attr.Expr.Value(nil)
				diags = append(diags, vdiags...)
				if vdiags.HasErrors() {
					continue
				}
				p.vars[attr.Name] = &variable{
					name: attr.Name, typ: val.Type(), values: []cty.Value{val},
					exprs: []hcl.Expression{attr.Expr}, declRange: attr.Range,
				}
			}
		}
	}
	return diags
}

func (p *jobspecParser) decodeVariableBlock(block *hcl.Block) hcl.Diagnostics {
	name := block.Labels[0]
	if _, dup := p.vars[name]; dup {
		return hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  "Duplicate variable",
			Detail:   "Duplicate " + name + " variable definition found.",
			Context:  block.DefRange.Ptr(),
		}}
	}
	content, diags := block.Body.Content(variableBlockSchema)
	if !hclsyntax.ValidIdentifier(name) {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Invalid variable name",
			Detail:   "A name must start with a letter or underscore and may contain only letters, digits, underscores, and dashes.",
			Subject:  &block.LabelRanges[0],
		})
	}
	v := &variable{name: name, typ: cty.NilType, declRange: block.DefRange}
	if attr, ok := content.Attributes["type"]; ok {
		ty, tdiags := typeexpr.Type(attr.Expr)
		diags = append(diags, tdiags...)
		if tdiags.HasErrors() {
			return diags
		}
		v.typ = ty
	}
	if attr, ok := content.Attributes["default"]; ok {
		val, ddiags := attr.Expr.Value(nil)
		diags = append(diags, ddiags...)
		if ddiags.HasErrors() {
			return diags
		}
		if v.typ != cty.NilType {
			conv, err := convert.Convert(val, v.typ)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid default value for variable",
					Detail:   fmt.Sprintf("This default value is not compatible with the variable's type constraint: %s.", err),
					Subject:  attr.Expr.Range().Ptr(),
				})
				conv = cty.DynamicVal
			}
			val = conv
		} else {
			v.typ = val.Type()
		}
		v.values = append(v.values, val)
		v.exprs = append(v.exprs, attr.Expr)
	}
	for _, vb := range content.Blocks {
		vc, vdiags := vb.Body.Content(validationBlockSchema)
		diags = append(diags, vdiags...)
		val := &variableValidation{declRange: vb.DefRange}
		if attr, ok := vc.Attributes["condition"]; ok {
			val.condition = attr.Expr
		}
		if attr, ok := vc.Attributes["error_message"]; ok {
			msg, mdiags := attr.Expr.Value(nil)
			diags = append(diags, mdiags...)
			if !mdiags.HasErrors() && msg.Type() == cty.String && msg.IsKnown() && !msg.IsNull() {
				val.errorMessage = msg.AsString()
			}
		}
		v.validations = append(v.validations, val)
	}
	p.vars[name] = v
	return diags
}

// collectVarFile applies the assignments of the variables content, the way
// a -var-file does: an undeclared name is a warning (Strict is off on the
// HTTP endpoint), a value of the wrong type an error.
func (p *jobspecParser) collectVarFile(f *hcl.File) hcl.Diagnostics {
	var diags hcl.Diagnostics
	probe, _, _ := f.Body.PartialContent(&hcl.BodySchema{
		Blocks: []hcl.BlockHeaderSchema{{Type: "variable", LabelNames: []string{"name"}}},
	})
	for _, block := range probe.Blocks {
		name := block.Labels[0]
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Variable declaration in a .var file",
			Detail: fmt.Sprintf("A .var file is used to assign values to variables that have already been declared "+
				"in job files, not to declare new variables. To declare variable %q, place this block in one of your"+
				" job files\n\nTo set a value for this variable in %s, use the definition syntax instead:\n    %s = <value>",
				name, block.TypeRange.Filename, name),
			Subject: &block.TypeRange,
		})
	}
	if diags.HasErrors() {
		return diags
	}
	attrs, adiags := f.Body.JustAttributes()
	diags = append(diags, adiags...)
	for _, attr := range sortedAttributes(attrs) {
		v, ok := p.vars[attr.Name]
		if !ok {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagWarning,
				Summary:  "Undefined variable",
				Detail: fmt.Sprintf("A %q variable was set but was not found in known variables. To declare "+
					"variable %q, place this block in your job files", attr.Name, attr.Name),
				Context: attr.Range.Ptr(),
			})
			continue
		}
		val, vdiags := attr.Expr.Value(nil)
		diags = append(diags, vdiags...)
		if v.typ != cty.NilType {
			conv, err := convert.Convert(val, v.typ)
			if err != nil {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Invalid value for variable",
					Detail:   fmt.Sprintf("The value for %s is not compatible with the variable's type constraint: %s.", attr.Name, err),
					Subject:  attr.Expr.Range().Ptr(),
				})
				conv = cty.DynamicVal
			}
			val = conv
		}
		v.values = append(v.values, val)
		v.exprs = append(v.exprs, attr.Expr)
	}
	return diags
}

// varValues returns the value of every declared variable; an unset one is
// unknown (so nothing that uses it fails a second time) and an error.
func (p *jobspecParser) varValues() (map[string]cty.Value, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	out := make(map[string]cty.Value, len(p.vars))
	names := make([]string, 0, len(p.vars))
	for name := range p.vars {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		v := p.vars[name]
		if len(v.values) == 0 {
			ty := v.typ
			if ty == cty.NilType {
				ty = cty.DynamicPseudoType
			}
			out[name] = cty.UnknownVal(ty)
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  fmt.Sprintf("Unset variable %q", name),
				Detail: "A used variable must be set or have a default value; see " +
					"https://developer.hashicorp.com/nomad/docs/reference/hcl2/variables  for details.",
				Context: v.declRange.Ptr(),
			})
			continue
		}
		last := len(v.values) - 1
		out[name] = v.values[last]
		diags = append(diags, v.validate(v.values[last], v.exprs[last])...)
	}
	return out, diags
}

func (v *variable) validate(val cty.Value, expr hcl.Expression) hcl.Diagnostics {
	var diags hcl.Diagnostics
	ctx := &hcl.EvalContext{
		Variables: map[string]cty.Value{"var": cty.ObjectVal(map[string]cty.Value{v.name: val})},
		Functions: jobspecFunctions(),
	}
	for _, rule := range v.validations {
		if rule.condition == nil {
			continue
		}
		res, rdiags := rule.condition.Value(ctx)
		diags = append(diags, rdiags...)
		if rdiags.HasErrors() || !res.IsKnown() || res.IsNull() {
			continue
		}
		res, err := convert.Convert(res, cty.Bool)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid variable validation result",
				Detail:   fmt.Sprintf("Invalid validation condition result value: %s.", err),
				Subject:  rule.condition.Range().Ptr(),
			})
			continue
		}
		if res.False() {
			subject := rule.declRange.Ptr()
			if expr != nil {
				subject = expr.Range().Ptr()
			}
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Invalid value for variable",
				Detail:   fmt.Sprintf("%s\n\nThis was checked by the validation rule at %s.", rule.errorMessage, rule.declRange.String()),
				Subject:  subject,
			})
		}
	}
	return diags
}

type localExpr struct {
	name string
	expr hcl.Expression
}

func (p *jobspecParser) collectLocals(content *hcl.BodyContent) ([]localExpr, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	var out []localExpr
	seen := map[string]bool{}
	for _, block := range content.Blocks {
		if block.Type != "locals" {
			continue
		}
		attrs, adiags := block.Body.JustAttributes()
		diags = append(diags, adiags...)
		for _, attr := range sortedAttributes(attrs) {
			if seen[attr.Name] {
				diags = append(diags, &hcl.Diagnostic{
					Severity: hcl.DiagError,
					Summary:  "Duplicate value in locals",
					Detail:   "Duplicate " + attr.Name + " definition found.",
					Subject:  attr.NameRange.Ptr(),
					Context:  block.DefRange.Ptr(),
				})
				return out, diags
			}
			seen[attr.Name] = true
			out = append(out, localExpr{name: attr.Name, expr: attr.Expr})
		}
	}
	return out, diags
}

// evaluateLocals evaluates locals in dependency order by retrying the ones
// that fail until no progress is made, like jobspec2.
func (p *jobspecParser) evaluateLocals(pending []localExpr) hcl.Diagnostics {
	for len(pending) > 0 {
		var failed []localExpr
		var lastDiags hcl.Diagnostics
		for _, l := range pending {
			val, diags := l.expr.Value(p.evalContext())
			if diags.HasErrors() {
				failed = append(failed, l)
				lastDiags = append(lastDiags, diags...)
				continue
			}
			p.locals[l.name] = val
		}
		if len(failed) == len(pending) {
			return lastDiags
		}
		pending = failed
	}
	return nil
}

func (p *jobspecParser) evalContext() *hcl.EvalContext {
	vars, _ := p.varValues()
	values := map[string]cty.Value{
		"var":   cty.ObjectVal(vars),
		"local": cty.ObjectVal(p.locals),
	}
	for name, v := range p.literals {
		values[name] = v
	}
	return &hcl.EvalContext{Variables: values, Functions: jobspecFunctions()}
}

func (p *jobspecParser) decodeJob(content *hcl.BodyContent) hcl.Diagnostics {
	var diags hcl.Diagnostics
	ctx := p.evalContext()
	d := &decoder{ctx: ctx}
	p.job = &api.Job{}

	var found *hcl.Block
	for _, b := range content.Blocks {
		if b.Type != "job" {
			continue
		}
		if found != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Duplicate job block",
				Detail:   fmt.Sprintf("Only one block of type %q is allowed. Previous definition was at %s.", b.Type, found.DefRange.String()),
				Subject:  &b.DefRange,
			})
			continue
		}
		found = b
		p.jobID = b.Labels[0]

		meta, body, mdiags := d.decodeAsAttribute(b.Body, "meta")
		diags = append(diags, mdiags...)

		extra, remain, ediags := body.PartialContent(&hcl.BodySchema{
			Blocks: []hcl.BlockHeaderSchema{{Type: "vault"}, {Type: "task", LabelNames: []string{"name"}}},
		})
		diags = append(diags, ediags...)
		for _, eb := range extra.Blocks {
			switch eb.Type {
			case "vault":
				v := &api.Vault{}
				diags = append(diags, d.decodeInto(eb.Body, v)...)
				p.vault = v
			case "task":
				t := &api.Task{}
				diags = append(diags, d.decodeInto(eb.Body, t)...)
				t.Name = eb.Labels[0]
				p.extraTasks = append(p.extraTasks, t)
			}
		}
		diags = append(diags, d.decodeInto(remain, p.job)...)
		if meta != nil {
			p.job.Meta = meta
		}
	}
	if found == nil {
		diags = append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Missing job block",
			Detail:   "A job block is required",
		})
	}
	return diags
}

// normalize applies jobspec2's post-processing: the label is the fallback
// ID and name, ports with a static value are reserved ports, templates get
// their defaults.
func (p *jobspecParser) normalize() {
	j := p.job
	if j.Name == nil {
		j.Name = new(p.jobID)
	}
	if j.ID == nil {
		j.ID = new(p.jobID)
	}
	if j.Periodic != nil && (j.Periodic.Spec != nil || j.Periodic.Specs != nil) {
		j.Periodic.SpecType = new("cron")
	}
	for _, t := range p.extraTasks {
		j.TaskGroups = append([]*api.TaskGroup{{Name: new(t.Name), Tasks: []*api.Task{t}}}, j.TaskGroups...)
	}
	for _, tg := range j.TaskGroups {
		normalizePorts(tg.Networks)
		for _, t := range tg.Tasks {
			if t.Resources != nil {
				normalizePorts(t.Resources.Networks)
			}
			for _, tmpl := range t.Templates {
				if tmpl.ChangeMode == nil {
					tmpl.ChangeMode = new("restart")
				}
				if tmpl.Perms == nil {
					tmpl.Perms = new("0644")
				}
				if tmpl.Splay == nil {
					tmpl.Splay = new(5 * time.Second)
				}
				if tmpl.ErrMissingKey == nil {
					tmpl.ErrMissingKey = new(false)
				}
			}
			if t.Vault == nil && p.vault != nil {
				t.Vault = p.vault
			}
			for i, wid := range t.Identities {
				if wid.Name == "" || wid.Name == "default" {
					t.Identity = wid
					t.Identities = append(t.Identities[:i:i], t.Identities[i+1:]...)
					break
				}
			}
		}
	}
}

// normalizePorts moves `port "x" { static = N }` blocks (decoded as dynamic
// ports) to ReservedPorts.
func normalizePorts(networks []*api.NetworkResource) {
	for _, n := range networks {
		if len(n.DynamicPorts) == 0 {
			continue
		}
		var dynamic, reserved []api.Port
		for _, port := range n.DynamicPorts {
			if port.Value > 0 {
				reserved = append(reserved, port)
			} else {
				dynamic = append(dynamic, port)
			}
		}
		n.DynamicPorts = dynamic
		n.ReservedPorts = reserved
	}
}

func sortedAttributes(attrs hcl.Attributes) []*hcl.Attribute {
	out := make([]*hcl.Attribute, 0, len(attrs))
	for _, a := range attrs {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Range.Start.Byte < out[j].Range.Start.Byte })
	return out
}

// unknownRootLiterals finds every reference whose root is neither var nor
// local (NOMAD_PORT_http, attr.kernel.name, node.unique.id, meta.x, env.Y,
// ...) and gives each root a value under which the reference evaluates to
// its own text, "${attr.kernel.name}", so it survives parsing and is
// interpolated by the client at run time.
func unknownRootLiterals(body *hclsyntax.Body) map[string]cty.Value {
	type node struct {
		path     string
		children map[string]*node
	}
	roots := map[string]*node{}
	hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		expr, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			return nil
		}
		root := expr.Traversal.RootName()
		if root == "var" || root == "local" {
			return nil
		}
		cur, ok := roots[root]
		if !ok {
			cur = &node{path: root}
			roots[root] = cur
		}
		for _, step := range expr.Traversal[1:] {
			var key, text string
			switch s := step.(type) {
			case hcl.TraverseAttr:
				key, text = s.Name, "."+s.Name
			case hcl.TraverseIndex:
				if s.Key.Type() != cty.String || !s.Key.IsKnown() {
					return nil
				}
				key, text = s.Key.AsString(), fmt.Sprintf("[%q]", s.Key.AsString())
			default:
				return nil
			}
			if cur.children == nil {
				cur.children = map[string]*node{}
			}
			next, ok := cur.children[key]
			if !ok {
				next = &node{path: cur.path + text}
				cur.children[key] = next
			}
			cur = next
		}
		return nil
	})
	var build func(n *node) cty.Value
	build = func(n *node) cty.Value {
		if len(n.children) == 0 {
			return cty.StringVal("${" + n.path + "}")
		}
		attrs := make(map[string]cty.Value, len(n.children))
		for k, c := range n.children {
			attrs[k] = build(c)
		}
		return cty.ObjectVal(attrs)
	}
	out := make(map[string]cty.Value, len(roots))
	for name, n := range roots {
		out[name] = build(n)
	}
	return out
}
