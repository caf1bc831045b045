package fakenomad

import (
	"fmt"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/nomad/api"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/gocty"
)

// decoder fills nomad/api structs from HCL bodies, driven by the `hcl`
// struct tags the api package carries (the same tags Nomad's own decoder,
// a patched gohcl, reads). It adds what jobspec2 adds on top of gohcl:
// durations written as strings, meta/env/config/header blocks decoded as
// free-form maps, volume blocks keyed by label, and the constraint and
// affinity shorthands. Values that are unknown (they depend on an unset
// variable, already reported) are skipped silently, as Nomad does.
type decoder struct {
	ctx *hcl.EvalContext
}

type fieldKind int

const (
	attrField fieldKind = iota
	blockField
	labelField
)

type structField struct {
	index    int
	name     string
	kind     fieldKind
	required bool
}

var (
	durationType   = reflect.TypeFor[time.Duration]()
	constraintType = reflect.TypeFor[api.Constraint]()
	affinityType   = reflect.TypeFor[api.Affinity]()
	taskType       = reflect.TypeFor[api.Task]()
	groupType      = reflect.TypeFor[api.TaskGroup]()

	fieldsCache sync.Map // reflect.Type -> []structField
)

func structFields(t reflect.Type) []structField {
	if cached, ok := fieldsCache.Load(t); ok {
		return cached.([]structField)
	}
	var out []structField
	for i := range t.NumField() {
		tag, ok := t.Field(i).Tag.Lookup("hcl")
		if !ok || tag == "-" {
			continue
		}
		name, kind, _ := strings.Cut(tag, ",")
		f := structField{index: i, name: name}
		switch kind {
		case "", "attr":
			f.kind, f.required = attrField, true
		case "optional":
			f.kind = attrField
		case "block":
			f.kind = blockField
		case "label":
			f.kind = labelField
		default:
			continue
		}
		if f.name == "" && f.kind != labelField {
			continue
		}
		out = append(out, f)
	}
	fieldsCache.Store(t, out)
	return out
}

// labelNames is the block header schema of a struct: one name per label
// field.
func labelNames(t reflect.Type) []string {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for _, f := range structFields(t) {
		if f.kind == labelField {
			name := f.name
			if name == "" {
				name = "name"
			}
			names = append(names, name)
		}
	}
	return names
}

// decodeInto decodes body into the struct target points to.
func (d *decoder) decodeInto(body hcl.Body, target any) hcl.Diagnostics {
	return d.decodeStruct(body, reflect.ValueOf(target).Elem())
}

func (d *decoder) decodeStruct(body hcl.Body, sv reflect.Value) hcl.Diagnostics {
	t := sv.Type()
	switch t {
	case constraintType:
		return d.decodeConstraint(body, sv.Addr().Interface().(*api.Constraint))
	case affinityType:
		return d.decodeAffinity(body, sv.Addr().Interface().(*api.Affinity))
	}

	var diags hcl.Diagnostics
	var meta, env map[string]string
	if t == taskType || t == groupType {
		var mdiags hcl.Diagnostics
		meta, body, mdiags = d.decodeAsAttribute(body, "meta")
		diags = append(diags, mdiags...)
		if t == taskType {
			env, body, mdiags = d.decodeAsAttribute(body, "env")
			diags = append(diags, mdiags...)
		}
	}
	var groupVault *api.Vault
	if t == groupType {
		extra, remain, ediags := body.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "vault"}}})
		diags = append(diags, ediags...)
		body = remain
		for _, b := range extra.Blocks {
			groupVault = &api.Vault{}
			diags = append(diags, d.decodeInto(b.Body, groupVault)...)
		}
	}

	fields := structFields(t)
	schema := &hcl.BodySchema{}
	for _, f := range fields {
		switch f.kind {
		case attrField:
			schema.Attributes = append(schema.Attributes, hcl.AttributeSchema{Name: f.name, Required: f.required})
		case blockField:
			schema.Blocks = append(schema.Blocks, hcl.BlockHeaderSchema{Type: f.name, LabelNames: labelNames(t.Field(f.index).Type)})
		}
	}
	body, restore := d.expandDynamic(body)
	content, cdiags := body.Content(schema)
	diags = append(diags, cdiags...)
	if content == nil {
		return diags
	}
	restore(content)
	for _, f := range fields {
		fv := sv.Field(f.index)
		switch f.kind {
		case attrField:
			if attr, ok := content.Attributes[f.name]; ok {
				diags = append(diags, d.decodeExpr(attr.Expr, fv)...)
			}
		case blockField:
			var blocks hcl.Blocks
			for _, b := range content.Blocks {
				if b.Type == f.name {
					blocks = append(blocks, b)
				}
			}
			diags = append(diags, d.decodeBlocks(blocks, f.name, fv)...)
		}
	}

	switch v := sv.Addr().Interface().(type) {
	case *api.Task:
		if meta != nil {
			v.Meta = meta
		}
		if env != nil {
			v.Env = env
		}
	case *api.TaskGroup:
		if meta != nil {
			v.Meta = meta
		}
		if groupVault != nil {
			for _, task := range v.Tasks {
				if task.Vault == nil {
					task.Vault = groupVault
				}
			}
		}
		if v.Scaling != nil && v.Scaling.Type == "" {
			v.Scaling.Type = "horizontal"
		}
	}
	return diags
}

// expandDynamic expands the dynamic blocks written directly in body, as
// jobspec2 does for the whole job. The static blocks keep their syntax
// bodies (restore puts them back into the decoded content) so that a task
// config in them keeps its nested blocks; only blocks a dynamic block
// generates are decoded through dynblock's bodies.
func (d *decoder) expandDynamic(body hcl.Body) (hcl.Body, func(*hcl.BodyContent)) {
	sb, ok := body.(*hclsyntax.Body)
	if !ok || !slices.ContainsFunc(sb.Blocks, func(b *hclsyntax.Block) bool { return b.Type == "dynamic" }) {
		return body, func(*hcl.BodyContent) {}
	}
	static := map[hcl.Range]hcl.Body{}
	for _, b := range sb.Blocks {
		if b.Type != "dynamic" {
			static[b.DefRange()] = b.Body
		}
	}
	return dynblock.Expand(sb, d.ctx), func(c *hcl.BodyContent) {
		for _, b := range c.Blocks {
			if orig, ok := static[b.DefRange]; ok {
				b.Body = orig
			}
		}
	}
}

func duplicateBlock(blocks hcl.Blocks, name string) *hcl.Diagnostic {
	return &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  fmt.Sprintf("Duplicate %s block", name),
		Detail:   fmt.Sprintf("Only one %s block is allowed. Another was defined at %s.", name, blocks[0].DefRange.String()),
		Subject:  &blocks[1].DefRange,
	}
}

func (d *decoder) decodeBlocks(blocks hcl.Blocks, name string, fv reflect.Value) hcl.Diagnostics {
	if len(blocks) == 0 {
		return nil
	}
	ft := fv.Type()
	var diags hcl.Diagnostics
	switch ft.Kind() {
	case reflect.Map:
		elem := ft.Elem()
		switch {
		case elem.Kind() == reflect.String, elem.Kind() == reflect.Slice && elem.Elem().Kind() == reflect.String:
			// meta, env, headers: a block of free-form attributes
			if len(blocks) > 1 {
				return hcl.Diagnostics{duplicateBlock(blocks, name)}
			}
			attrs, adiags := blocks[0].Body.JustAttributes()
			diags = append(diags, adiags...)
			m := reflect.MakeMapWithSize(ft, len(attrs))
			for _, attr := range sortedAttributes(attrs) {
				ev := reflect.New(elem).Elem()
				vdiags := d.decodeExpr(attr.Expr, ev)
				diags = append(diags, vdiags...)
				if !vdiags.HasErrors() {
					m.SetMapIndex(reflect.ValueOf(attr.Name), ev)
				}
			}
			fv.Set(m)
		case elem.Kind() == reflect.Interface:
			// task driver config: arbitrary nesting, no schema
			if len(blocks) > 1 {
				return hcl.Diagnostics{duplicateBlock(blocks, name)}
			}
			m, cdiags := d.freeformMap(blocks[0].Body)
			diags = append(diags, cdiags...)
			fv.Set(reflect.ValueOf(m))
		default:
			// volume "name" { ... }: keyed by the first label
			if fv.IsNil() {
				fv.Set(reflect.MakeMap(ft))
			}
			for _, b := range blocks {
				ev, bdiags := d.decodeLabeledBlock(b, elem)
				diags = append(diags, bdiags...)
				fv.SetMapIndex(reflect.ValueOf(b.Labels[0]), ev)
			}
		}
	case reflect.Slice:
		for _, b := range blocks {
			ev, bdiags := d.decodeLabeledBlock(b, ft.Elem())
			diags = append(diags, bdiags...)
			fv.Set(reflect.Append(fv, ev))
		}
	case reflect.Pointer, reflect.Struct:
		if len(blocks) > 1 {
			diags = append(diags, duplicateBlock(blocks, name))
		}
		ev, bdiags := d.decodeLabeledBlock(blocks[0], ft)
		diags = append(diags, bdiags...)
		fv.Set(ev)
	default:
		panic(fmt.Sprintf("fakenomad: unsupported block field type %s", ft))
	}
	return diags
}

// decodeLabeledBlock decodes b into a new value of type t (a struct or a
// pointer to one) and assigns its labels.
func (d *decoder) decodeLabeledBlock(b *hcl.Block, t reflect.Type) (reflect.Value, hcl.Diagnostics) {
	st := t
	if t.Kind() == reflect.Pointer {
		st = t.Elem()
	}
	ptr := reflect.New(st)
	diags := d.decodeStruct(b.Body, ptr.Elem())
	labels := b.Labels
	for _, f := range structFields(st) {
		if f.kind != labelField || len(labels) == 0 {
			continue
		}
		lv := ptr.Elem().Field(f.index)
		if lv.Kind() == reflect.Pointer {
			lv.Set(reflect.ValueOf(new(labels[0])))
		} else {
			lv.SetString(labels[0])
		}
		labels = labels[1:]
	}
	if t.Kind() == reflect.Pointer {
		return ptr, diags
	}
	return ptr.Elem(), diags
}

// decodeExpr evaluates expr and stores it in fv, converting as gohcl does.
func (d *decoder) decodeExpr(expr hcl.Expression, fv reflect.Value) hcl.Diagnostics {
	val, diags := expr.Value(d.ctx)
	if diags.HasErrors() || !val.IsWhollyKnown() || val.IsNull() {
		return diags
	}
	unsuitable := func(detail string) hcl.Diagnostics {
		return append(diags, &hcl.Diagnostic{
			Severity: hcl.DiagError,
			Summary:  "Unsuitable value type",
			Detail:   detail,
			Subject:  expr.StartRange().Ptr(),
			Context:  expr.Range().Ptr(),
		})
	}

	base := fv.Type()
	if base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	if base == durationType {
		var dur time.Duration
		switch val.Type() {
		case cty.String:
			parsed, err := time.ParseDuration(val.AsString())
			if err != nil {
				return unsuitable("Unsuitable duration value: " + err.Error())
			}
			dur = parsed
		case cty.Number:
			n, _ := val.AsBigFloat().Int64()
			dur = time.Duration(n)
		default:
			return unsuitable(fmt.Sprintf("Unsuitable value: expected a string but found %s", val.Type().FriendlyName()))
		}
		if fv.Kind() == reflect.Pointer {
			fv.Set(reflect.ValueOf(new(dur)))
		} else {
			fv.SetInt(int64(dur))
		}
		return diags
	}

	target := fv.Addr().Interface()
	ty, err := gocty.ImpliedType(target)
	if err != nil {
		return unsuitable("Unsuitable value: " + err.Error())
	}
	conv, err := convert.Convert(val, ty)
	if err != nil {
		return unsuitable("Unsuitable value: " + err.Error())
	}
	if err := gocty.FromCtyValue(conv, target); err != nil {
		return unsuitable("Unsuitable value: " + err.Error())
	}
	return diags
}

// decodeAsAttribute reads `name = { ... }` (the attribute form of meta and
// env, which allows keys HCL block syntax does not); it returns nil and the
// body unchanged when name is written as a block.
func (d *decoder) decodeAsAttribute(body hcl.Body, name string) (map[string]string, hcl.Body, hcl.Diagnostics) {
	content, remain, diags := body.PartialContent(&hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: name}}})
	if diags.HasErrors() || content.Attributes[name] == nil {
		return nil, body, nil
	}
	attr := content.Attributes[name]
	blocks, _, _ := remain.PartialContent(&hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: name}}})
	if len(blocks.Blocks) != 0 {
		return nil, remain, hcl.Diagnostics{{
			Severity: hcl.DiagError,
			Summary:  fmt.Sprintf("Duplicate %v block", name),
			Detail: fmt.Sprintf("%v may not be defined more than once. Another definition is defined at %s.",
				name, attr.Range.String()),
			Subject: &blocks.Blocks[0].DefRange,
		}}
	}
	out := map[string]string{}
	diags = d.decodeExpr(attr.Expr, reflect.ValueOf(&out).Elem())
	return out, remain, diags
}

var constraintSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "attribute"}, {Name: "value"}, {Name: "operator"},
	{Name: api.ConstraintDistinctProperty}, {Name: api.ConstraintDistinctHosts},
	{Name: api.ConstraintRegex}, {Name: api.ConstraintVersion}, {Name: api.ConstraintSemver},
	{Name: api.ConstraintSetContains}, {Name: api.ConstraintSetContainsAll}, {Name: api.ConstraintSetContainsAny},
	{Name: api.ConstraintAttributeIsSet}, {Name: api.ConstraintAttributeIsNotSet},
}}

var affinitySchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{
	{Name: "attribute"}, {Name: "value"}, {Name: "operator"}, {Name: "weight"},
	{Name: api.ConstraintVersion}, {Name: api.ConstraintSemver}, {Name: api.ConstraintRegex},
	{Name: api.ConstraintSetContains}, {Name: api.ConstraintSetContainsAll}, {Name: api.ConstraintSetContainsAny},
}}

// shorthandAttrs evaluates the attributes of a constraint or affinity block
// as strings (distinct_hosts is a bool, weight a number).
func (d *decoder) shorthandAttrs(body hcl.Body, schema *hcl.BodySchema) (map[string]cty.Value, hcl.Diagnostics) {
	content, diags := body.Content(schema)
	out := map[string]cty.Value{}
	for name, attr := range content.Attributes {
		val, vdiags := attr.Expr.Value(d.ctx)
		diags = append(diags, vdiags...)
		if vdiags.HasErrors() || !val.IsWhollyKnown() || val.IsNull() {
			continue
		}
		want := cty.String
		switch name {
		case api.ConstraintDistinctHosts:
			want = cty.Bool
		case "weight":
			want = cty.Number
		}
		conv, err := convert.Convert(val, want)
		if err != nil {
			diags = append(diags, &hcl.Diagnostic{
				Severity: hcl.DiagError,
				Summary:  "Incorrect attribute value type",
				Detail:   fmt.Sprintf("Inappropriate value for attribute %q: %s.", name, err),
				Subject:  attr.Expr.Range().Ptr(),
			})
			continue
		}
		out[name] = conv
	}
	return out, diags
}

func (d *decoder) decodeConstraint(body hcl.Body, c *api.Constraint) hcl.Diagnostics {
	v, diags := d.shorthandAttrs(body, constraintSchema)
	str := func(name string) string {
		if val, ok := v[name]; ok {
			return val.AsString()
		}
		return ""
	}
	c.LTarget, c.RTarget, c.Operand = str("attribute"), str("value"), str("operator")
	for _, op := range []string{api.ConstraintVersion, api.ConstraintSemver, api.ConstraintRegex, api.ConstraintSetContains} {
		if s := str(op); s != "" {
			c.Operand, c.RTarget = op, s
		}
	}
	if dh, ok := v[api.ConstraintDistinctHosts]; ok {
		c.Operand, c.RTarget = api.ConstraintDistinctHosts, fmt.Sprint(dh.True())
	}
	if p := str(api.ConstraintDistinctProperty); p != "" {
		c.Operand, c.LTarget = api.ConstraintDistinctProperty, p
	}
	if c.Operand == "" {
		c.Operand = "="
	}
	return diags
}

func (d *decoder) decodeAffinity(body hcl.Body, a *api.Affinity) hcl.Diagnostics {
	v, diags := d.shorthandAttrs(body, affinitySchema)
	str := func(name string) string {
		if val, ok := v[name]; ok {
			return val.AsString()
		}
		return ""
	}
	a.LTarget, a.RTarget, a.Operand = str("attribute"), str("value"), str("operator")
	if w, ok := v["weight"]; ok {
		n, _ := w.AsBigFloat().Int64()
		a.Weight = new(int8(n))
	}
	for _, op := range []string{api.ConstraintVersion, api.ConstraintSemver, api.ConstraintRegex,
		api.ConstraintSetContainsAny, api.ConstraintSetContainsAll, api.ConstraintSetContains} {
		if s := str(op); s != "" {
			a.Operand, a.RTarget = op, s
		}
	}
	if a.Operand == "" {
		a.Operand = "="
	}
	return diags
}

// freeformMap decodes a schema-less block (a task's config) the way
// jobspec2 does: attributes become values, nested blocks become lists of
// maps (labels nest one map level each), and an attribute holding an
// object literal becomes a one-element list of maps.
func (d *decoder) freeformMap(body hcl.Body) (map[string]any, hcl.Diagnostics) {
	out := map[string]any{}
	var diags hcl.Diagnostics
	sb, ok := body.(*hclsyntax.Body)
	if !ok {
		attrs, adiags := body.JustAttributes()
		diags = append(diags, adiags...)
		for name, attr := range attrs {
			if v, ok, vdiags := d.freeformValue(attr.Expr); ok {
				out[name] = v
			} else {
				diags = append(diags, vdiags...)
			}
		}
		return out, diags
	}
	for name, attr := range sb.Attributes {
		if v, ok, vdiags := d.freeformValue(wrapObjectLiteral(attr.Expr)); ok {
			out[name] = v
		} else {
			diags = append(diags, vdiags...)
		}
	}
	for typ, blocks := range groupBlocks(sb.Blocks) {
		if v, ok, vdiags := d.freeformValue(blocksExpr(blocks)); ok {
			out[typ] = v
		} else {
			diags = append(diags, vdiags...)
		}
	}
	return out, diags
}

func (d *decoder) freeformValue(expr hcl.Expression) (any, bool, hcl.Diagnostics) {
	val, diags := expr.Value(d.ctx)
	if diags.HasErrors() || !val.IsWhollyKnown() {
		return nil, false, diags
	}
	return ctyToGo(val), true, diags
}

func groupBlocks(blocks hclsyntax.Blocks) map[string]hclsyntax.Blocks {
	out := map[string]hclsyntax.Blocks{}
	for _, b := range blocks {
		out[b.Type] = append(out[b.Type], b)
	}
	return out
}

func keyExpr(name string, rng hcl.Range) *hclsyntax.ObjectConsKeyExpr {
	return &hclsyntax.ObjectConsKeyExpr{Wrapped: &hclsyntax.ScopeTraversalExpr{
		Traversal: hcl.Traversal{hcl.TraverseRoot{Name: name, SrcRange: rng}},
		SrcRange:  rng,
	}}
}

func wrapObjectLiteral(expr hclsyntax.Expression) hclsyntax.Expression {
	if _, ok := expr.(*hclsyntax.ObjectConsExpr); ok {
		return &hclsyntax.TupleConsExpr{Exprs: []hclsyntax.Expression{expr}, SrcRange: expr.Range(), OpenRange: expr.StartRange()}
	}
	return expr
}

func blocksExpr(blocks hclsyntax.Blocks) hclsyntax.Expression {
	exprs := make([]hclsyntax.Expression, len(blocks))
	for i, b := range blocks {
		exprs[i] = blockExpr(b)
	}
	return &hclsyntax.TupleConsExpr{
		Exprs:     exprs,
		SrcRange:  hcl.RangeBetween(blocks[0].OpenBraceRange, blocks[len(blocks)-1].CloseBraceRange),
		OpenRange: blocks[0].OpenBraceRange,
	}
}

func blockExpr(b *hclsyntax.Block) hclsyntax.Expression {
	var items []hclsyntax.ObjectConsItem
	for _, attr := range b.Body.Attributes {
		items = append(items, hclsyntax.ObjectConsItem{KeyExpr: keyExpr(attr.Name, attr.NameRange), ValueExpr: wrapObjectLiteral(attr.Expr)})
	}
	for typ, nested := range groupBlocks(b.Body.Blocks) {
		items = append(items, hclsyntax.ObjectConsItem{KeyExpr: keyExpr(typ, nested[0].TypeRange), ValueExpr: blocksExpr(nested)})
	}
	var obj hclsyntax.Expression = &hclsyntax.ObjectConsExpr{Items: items, SrcRange: b.Body.SrcRange}
	for i := len(b.Labels) - 1; i >= 0; i-- {
		obj = &hclsyntax.ObjectConsExpr{Items: []hclsyntax.ObjectConsItem{{
			KeyExpr:   keyExpr(b.Labels[i], b.LabelRanges[i]),
			ValueExpr: &hclsyntax.TupleConsExpr{Exprs: []hclsyntax.Expression{obj}, SrcRange: b.Body.SrcRange},
		}}, SrcRange: b.Body.SrcRange}
	}
	return obj
}

// ctyToGo converts a known value to the Go types Nomad stores in a task's
// config: string, bool, int/int64/float64, []any or []map[string]any, and
// map[string]any.
func ctyToGo(val cty.Value) any {
	if val.IsNull() {
		return nil
	}
	t := val.Type()
	switch {
	case t == cty.String:
		return val.AsString()
	case t == cty.Bool:
		return val.True()
	case t == cty.Number:
		if val.RawEquals(cty.PositiveInfinity) {
			return math.Inf(1)
		}
		if val.RawEquals(cty.NegativeInfinity) {
			return math.Inf(-1)
		}
		bf := val.AsBigFloat()
		if n, acc := bf.Int64(); acc == big.Exact {
			if int64(int(n)) == n {
				return int(n)
			}
			return n
		}
		f, _ := bf.Float64()
		return f
	case t.IsListType() || t.IsSetType() || t.IsTupleType():
		if isCollectionOfMaps(t) {
			out := []map[string]any{}
			for it := val.ElementIterator(); it.Next(); {
				_, ev := it.Element()
				m, _ := ctyToGo(ev).(map[string]any)
				out = append(out, m)
			}
			return out
		}
		out := []any{}
		for it := val.ElementIterator(); it.Next(); {
			_, ev := it.Element()
			out = append(out, ctyToGo(ev))
		}
		return out
	case t.IsMapType() || t.IsObjectType():
		out := map[string]any{}
		for it := val.ElementIterator(); it.Next(); {
			k, ev := it.Element()
			out[k.AsString()] = ctyToGo(ev)
		}
		return out
	}
	return nil
}

func isCollectionOfMaps(t cty.Type) bool {
	switch {
	case t.IsCollectionType():
		et := t.ElementType()
		return et.IsMapType() || et.IsObjectType()
	case t.IsTupleType():
		ets := t.TupleElementTypes()
		for _, et := range ets {
			if !et.IsMapType() && !et.IsObjectType() {
				return false
			}
		}
		return len(ets) > 0
	}
	return false
}
