package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
)

// modelsFile is the schema of models.hcl: nothing but model blocks.
type modelsFile struct {
	Models []*modelBlock `hcl:"model,block"`
}

type modelBlock struct {
	Name      string    `hcl:"name,label"`
	NameRange hcl.Range `hcl:"name,label_range"`
	DefRange  hcl.Range `hcl:",def_range"`

	// Aliases stays an expression so each alias can be reported at its own
	// position.
	Aliases hcl.Expression `hcl:"aliases,optional"`

	ServedName          *string       `hcl:"served_name,optional"`
	ServedNameRange     hcl.Range     `hcl:"served_name,attr_value_range"`
	Jobspec             *string       `hcl:"jobspec,optional"`
	JobspecRange        hcl.Range     `hcl:"jobspec,attr_value_range"`
	Source              *sourceBlock  `hcl:"source,block"`
	Backend             *backendBlock `hcl:"backend,block"`
	Quantization        *string       `hcl:"quantization,optional"`
	QuantizationRange   hcl.Range     `hcl:"quantization,attr_value_range"`
	MaxConcurrency      *int          `hcl:"max_concurrency,optional"`
	MaxConcurrencyRange hcl.Range     `hcl:"max_concurrency,attr_value_range"`
	Memory              *string       `hcl:"memory,optional"`
	MemoryRange         hcl.Range     `hcl:"memory,attr_value_range"`

	// Command and Env are evaluated per model with the variables
	// switchboard and model; see modelEvalContext.
	Command hcl.Expression `hcl:"command,optional"`
	Env     hcl.Expression `hcl:"env,optional"`
	// Variables are extra jobspec variables (nomad runtime), evaluated
	// like Env.
	Variables hcl.Expression `hcl:"variables,optional"`
}

type sourceBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	Type       *string   `hcl:"type"`
	TypeRange  hcl.Range `hcl:"type,attr_value_range"`
	Value      *string   `hcl:"value"`
	ValueRange hcl.Range `hcl:"value,attr_value_range"`
}

type backendBlock struct {
	DefRange   hcl.Range `hcl:",def_range"`
	Image      *string   `hcl:"image,optional"`
	ImageRange hcl.Range `hcl:"image,attr_value_range"`
	Port       *int      `hcl:"port"`
	PortRange  hcl.Range `hcl:"port,attr_value_range"`
	VLLMArgs   []string  `hcl:"vllm_args,optional"`
}

// declared remembers where a name was first declared, to explain a clash.
type declared struct {
	model *Model
	rng   hcl.Range
}

// aliasDecl is one alias and where it is written.
type aliasDecl struct {
	name string
	rng  hcl.Range
}

// loadModels decodes the models file at path and checks every model on its
// own and against the others.
func (l *loader) loadModels(path string, body hcl.Body) {
	var mf modelsFile
	diags := gohcl.DecodeBody(body, nil, &mf)
	l.diags = append(l.diags, diags...)
	if len(mf.Models) == 0 {
		if !diags.HasErrors() {
			l.diags = append(l.diags, errorDiag(fileRange(path), "no models declared",
				`declare at least one model "name" { ... } block`))
		}
		return
	}

	dir := filepath.Dir(path)
	names := make(map[string]declared, len(mf.Models))
	aliases := make(map[*Model][]aliasDecl, len(mf.Models))
	for _, mb := range mf.Models {
		m, as := l.decodeModel(dir, mb)
		if first, dup := names[m.Name]; dup {
			l.diags = append(l.diags, errorDiag(mb.NameRange, "duplicate model",
				fmt.Sprintf("model %q is declared twice; first declared at %s", m.Name, shortPos(first.rng))))
			continue
		}
		names[m.Name] = declared{model: m, rng: mb.NameRange}
		aliases[m] = as
		l.cfg.Models = append(l.cfg.Models, m)
	}
	l.checkAliases(names, aliases)
}

// failFunc reports a problem of one model at rng; the detail is prefixed
// with the model's name.
type failFunc func(rng hcl.Range, summary, format string, args ...any)

// newModel returns a model with the per-model defaults applied.
func newModel(name string, declRange hcl.Range) *Model {
	return &Model{
		Name:           name,
		ServedName:     name,
		MaxConcurrency: defaultMaxConcurrency,
		DeclRange:      declRange,
	}
}

// decodeModel turns one model block into a Model, reporting what is wrong
// with it alone. Name clashes across models are checkAliases' job.
func (l *loader) decodeModel(dir string, mb *modelBlock) (*Model, []aliasDecl) {
	m := newModel(mb.Name, mb.DefRange)
	nomad := l.runtimeOK && l.cfg.Orchestrator.Runtime == RuntimeNomad
	local := l.runtimeOK && l.cfg.Orchestrator.Runtime == RuntimeLocal
	fail := func(rng hcl.Range, summary, format string, args ...any) {
		l.diags = append(l.diags, errorDiag(rng, summary,
			fmt.Sprintf("model %q: ", mb.Name)+fmt.Sprintf(format, args...)))
	}

	if err := checkName(mb.Name); err != nil {
		fail(mb.NameRange, "invalid model name", "%v", err)
	}

	aliases := l.decodeAliases(mb, fail)
	for _, a := range aliases {
		m.Aliases = append(m.Aliases, a.name)
	}

	if mb.ServedName != nil {
		if err := checkNonEmpty(*mb.ServedName); err != nil {
			fail(mb.ServedNameRange, "invalid served_name", "served_name %v; leave it out to serve the model under its own name", err)
		} else {
			m.ServedName = *mb.ServedName
		}
	}

	switch {
	case mb.Jobspec != nil && *mb.Jobspec == "":
		fail(mb.JobspecRange, "invalid jobspec", "jobspec must not be empty")
	case mb.Jobspec != nil:
		m.Jobspec = resolvePath(dir, *mb.Jobspec)
		if nomad {
			l.checkJobspec(m, *mb.Jobspec, mb.JobspecRange, fail)
		}
	case nomad:
		fail(mb.DefRange, "missing jobspec", "jobspec is required with the nomad runtime; point it at a file in jobs.nomad.d/")
	}

	m.Source = decodeSource(mb, nomad, fail)
	portOK := decodeBackend(m, mb, nomad, fail)

	if mb.Quantization != nil {
		if err := checkNonEmpty(*mb.Quantization); err != nil {
			fail(mb.QuantizationRange, "invalid quantization", "quantization %v; leave it out to let vLLM detect it", err)
		} else {
			m.Quantization = *mb.Quantization
		}
	}

	if mb.MaxConcurrency != nil {
		if *mb.MaxConcurrency < 1 {
			fail(mb.MaxConcurrencyRange, "invalid max_concurrency", "max_concurrency %d must be at least 1", *mb.MaxConcurrency)
		} else {
			m.MaxConcurrency = *mb.MaxConcurrency
		}
	}

	if mb.Memory != nil {
		if n, err := parseSize(*mb.Memory); err != nil {
			fail(mb.MemoryRange, "invalid memory", "memory %v", err)
		} else {
			m.MemoryBytes = n
		}
	}

	// command and env are checked with either runtime, so a mistake in them
	// does not wait for the first dev run; only the local runtime keeps them.
	ctx := l.modelEvalContext(m, portOK)
	command := l.evalCommand(mb, ctx, fail)
	env := l.evalEnv(mb, ctx, fail)
	m.Variables = l.evalVariables(mb, ctx, fail)
	if local {
		m.Command, m.Env = command, env
		if command == nil && isNull(mb.Command) {
			fail(mb.DefRange, "missing command", "command is required with the local runtime, e.g. command = [switchboard, \"mockllm\", \"--port\", model.port]")
		}
	}
	return m, aliases
}

// decodeSource reads a model's source block, required with the nomad
// runtime.
func decodeSource(mb *modelBlock, nomad bool, fail failFunc) Source {
	s := mb.Source
	if s == nil {
		if nomad {
			fail(mb.DefRange, "missing source", "a source block with type (%q or %q) and value is required with the nomad runtime",
				SourceHuggingFaceRepo, SourceLocalPath)
		}
		return Source{}
	}
	// Pointers make gohcl treat type and value as optional; a nil one with a
	// range was present but not a string, which gohcl reported.
	if s.Type == nil && s.TypeRange.Filename == "" {
		fail(s.DefRange, "missing source type", "source.type is required: %q or %q", SourceHuggingFaceRepo, SourceLocalPath)
	}
	if s.Value == nil && s.ValueRange.Filename == "" {
		fail(s.DefRange, "missing source value", "source.value is required: a Hugging Face repository or an absolute path")
	}
	if s.Type == nil || s.Value == nil {
		return Source{}
	}
	src := Source{Type: *s.Type, Value: *s.Value}
	switch src.Type {
	case SourceHuggingFaceRepo:
		if strings.TrimSpace(src.Value) == "" || strings.ContainsAny(src.Value, " \t\n") {
			fail(s.ValueRange, "invalid source", "source.value %q is not a Hugging Face repository such as \"Qwen/Qwen3-30B-A3B\"", src.Value)
		}
	case SourceLocalPath:
		if !strings.HasPrefix(src.Value, "/") {
			fail(s.ValueRange, "invalid source", "source.value %q must be an absolute path on the GPU host", src.Value)
		}
	default:
		fail(s.TypeRange, "invalid source", "source.type %q is not one of %q or %q", src.Type, SourceHuggingFaceRepo, SourceLocalPath)
	}
	return src
}

// decodeBackend reads a model's backend block into m.Backend and reports
// whether the port is valid, so expressions may use it.
func decodeBackend(m *Model, mb *modelBlock, nomad bool, fail failFunc) (portOK bool) {
	b := mb.Backend
	if b == nil {
		fail(mb.DefRange, "missing backend", "a backend block with at least a port is required, e.g. backend { port = 8000 }")
		return false
	}
	m.Backend.VLLMArgs = b.VLLMArgs
	switch {
	case b.Image != nil && strings.TrimSpace(*b.Image) == "":
		fail(b.ImageRange, "invalid backend image", "backend.image must not be empty")
	case b.Image != nil:
		m.Backend.Image = *b.Image
	case nomad:
		fail(b.DefRange, "missing backend image", "backend.image is required with the nomad runtime, e.g. \"nvcr.io/nvidia/vllm:25.10-py3\"")
	}
	// A pointer makes gohcl treat port as optional; a nil port with a range
	// was present but not a number, which gohcl reported.
	switch {
	case b.Port == nil && b.PortRange.Filename == "":
		fail(b.DefRange, "missing backend port", "backend.port is required, e.g. port = 8000")
	case b.Port == nil:
	case *b.Port < 1 || *b.Port > 65535:
		fail(b.PortRange, "invalid backend port", "backend.port %d is out of range 1..65535", *b.Port)
	default:
		m.Backend.Port = *b.Port
		portOK = true
	}
	return portOK
}

// decodeAliases reads the aliases list element by element so each problem
// points at the alias itself.
func (l *loader) decodeAliases(mb *modelBlock, fail failFunc) []aliasDecl {
	if isNull(mb.Aliases) {
		return nil
	}
	elems, diags := hcl.ExprList(mb.Aliases)
	if diags.HasErrors() {
		fail(mb.Aliases.Range(), "invalid aliases", "aliases must be a list of names, such as [\"qwen3\", \"Qwen/Qwen3-30B-A3B\"]")
		return nil
	}
	aliases := make([]aliasDecl, 0, len(elems))
	for _, e := range elems {
		v, diags := e.Value(nil)
		if diags.HasErrors() {
			l.diags = append(l.diags, diags...)
			continue
		}
		if v.IsNull() || v.Type() != cty.String {
			fail(e.Range(), "invalid alias", "aliases must be strings, such as \"qwen3\"")
			continue
		}
		alias := v.AsString()
		if err := checkName(alias); err != nil {
			fail(e.Range(), "invalid alias", "alias %v", err)
			continue
		}
		aliases = append(aliases, aliasDecl{name: alias, rng: e.Range()})
	}
	return aliases
}

// checkJobspec makes sure the jobspec a model names exists and is HCL, so a
// typo fails at start rather than at the first switch to the model. What
// the jobspec means is for Nomad to judge when it parses it.
func (l *loader) checkJobspec(m *Model, given string, rng hcl.Range, fail failFunc) {
	src, err := l.opts.ReadFile(m.Jobspec)
	if err != nil {
		where := fmt.Sprintf("%q", given)
		if m.Jobspec != given {
			where = fmt.Sprintf("%q (resolved to %s)", given, m.Jobspec)
		}
		if errors.Is(err, fs.ErrNotExist) {
			fail(rng, "jobspec not found", "jobspec %s does not exist; paths are relative to the models file", where)
		} else {
			fail(rng, "jobspec not readable", "jobspec %s: %v", where, err)
		}
		return
	}
	// The parser caches by file name, so a jobspec shared by several models
	// is parsed, and its errors reported, once.
	if strings.HasSuffix(m.Jobspec, ".json") {
		_, diags := l.parser.ParseJSON(src, m.Jobspec)
		l.diags = append(l.diags, diags...)
		return
	}
	_, diags := l.parser.ParseHCL(src, m.Jobspec)
	l.diags = append(l.diags, diags...)
}

// Variable names a model's command and env may use.
const (
	varSwitchboard = "switchboard"
	varModel       = "model"
)

// modelEvalContext offers a model's command and env the variables
// switchboard (path of the running binary) and model (name, served_name,
// port). An invalid port stays unknown, so its own diagnostic is not
// repeated by every expression that uses it.
func (l *loader) modelEvalContext(m *Model, portOK bool) *hcl.EvalContext {
	port := cty.UnknownVal(cty.Number)
	if portOK {
		port = cty.NumberIntVal(int64(m.Backend.Port))
	}
	return &hcl.EvalContext{
		Variables: map[string]cty.Value{
			varSwitchboard: cty.StringVal(l.opts.SwitchboardBin),
			varModel: cty.ObjectVal(map[string]cty.Value{
				"name":        cty.StringVal(m.Name),
				"served_name": cty.StringVal(m.ServedName),
				"port":        port,
			}),
		},
	}
}

// checkVariables reports every variable expr refers to other than the ones
// modelEvalContext offers; it reports false if there was any.
func (l *loader) checkVariables(attr string, expr hcl.Expression, fail failFunc) bool {
	ok := true
	for _, tr := range expr.Variables() {
		if name := tr.RootName(); name != varSwitchboard && name != varModel {
			fail(tr.SourceRange(), "unknown variable", "%s may use only the variables %s and %s (with .name, .served_name, .port), not %q",
				attr, varSwitchboard, varModel, name)
			ok = false
		}
	}
	return ok
}

// evalCommand evaluates a model's command into argv; numbers become strings.
// It returns nil when the command is absent, invalid or depends on an
// invalid value.
func (l *loader) evalCommand(mb *modelBlock, ctx *hcl.EvalContext, fail failFunc) []string {
	if isNull(mb.Command) || !l.checkVariables("command", mb.Command, fail) {
		return nil
	}
	v, diags := mb.Command.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil
	}
	v, err := convert.Convert(v, cty.List(cty.String))
	if err != nil {
		fail(mb.Command.Range(), "invalid command", "command must be a list of strings, such as [switchboard, \"mockllm\", \"--port\", model.port]: %v", err)
		return nil
	}
	if !v.IsWhollyKnown() {
		return nil
	}
	if v.LengthInt() == 0 {
		fail(mb.Command.Range(), "invalid command", "command must not be empty; its first element is the program to run")
		return nil
	}
	argv := make([]string, 0, v.LengthInt())
	for _, e := range v.AsValueSlice() {
		if e.IsNull() {
			fail(mb.Command.Range(), "invalid command", "command must not contain null")
			return nil
		}
		argv = append(argv, e.AsString())
	}
	if argv[0] == "" {
		fail(mb.Command.Range(), "invalid command", "the program (first element of command) must not be empty")
		return nil
	}
	return argv
}

// evalEnv evaluates a model's env into a map; numbers become strings.
func (l *loader) evalEnv(mb *modelBlock, ctx *hcl.EvalContext, fail failFunc) map[string]string {
	if isNull(mb.Env) || !l.checkVariables("env", mb.Env, fail) {
		return nil
	}
	v, diags := mb.Env.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil
	}
	v, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		fail(mb.Env.Range(), "invalid env", "env must be a map of strings, such as { HF_HOME = \"/data/hf\" }: %v", err)
		return nil
	}
	if !v.IsWhollyKnown() {
		return nil
	}
	env := make(map[string]string, v.LengthInt())
	for k, e := range v.AsValueMap() {
		if !envNamePattern.MatchString(k) {
			fail(mb.Env.Range(), "invalid env", "%q is not an environment variable name", k)
			continue
		}
		if e.IsNull() {
			fail(mb.Env.Range(), "invalid env", "env %s must not be null", k)
			continue
		}
		env[k] = e.AsString()
	}
	return env
}

// evalVariables evaluates a model's extra jobspec variables; names must be
// HCL identifiers, values are strings (numbers become strings; Nomad
// converts them to the variable's declared type).
func (l *loader) evalVariables(mb *modelBlock, ctx *hcl.EvalContext, fail failFunc) map[string]string {
	if isNull(mb.Variables) || !l.checkVariables("variables", mb.Variables, fail) {
		return nil
	}
	v, diags := mb.Variables.Value(ctx)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() || v.IsNull() {
		return nil
	}
	v, err := convert.Convert(v, cty.Map(cty.String))
	if err != nil {
		fail(mb.Variables.Range(), "invalid variables", "variables must be a map of strings, such as { hf_cache_dir = \"/data/hf\" }: %v", err)
		return nil
	}
	if !v.IsWhollyKnown() {
		return nil
	}
	vars := make(map[string]string, v.LengthInt())
	for k, e := range v.AsValueMap() {
		if !hclsyntax.ValidIdentifier(k) {
			fail(mb.Variables.Range(), "invalid variables", "%q is not a jobspec variable name", k)
			continue
		}
		if e.IsNull() {
			fail(mb.Variables.Range(), "invalid variables", "variable %s must not be null", k)
			continue
		}
		vars[k] = e.AsString()
	}
	return vars
}

// isNull reports whether an optional expression is absent (gohcl fills in a
// null) or explicitly null.
func isNull(expr hcl.Expression) bool {
	if expr == nil {
		return true
	}
	if len(expr.Variables()) > 0 {
		return false
	}
	v, diags := expr.Value(nil)
	return !diags.HasErrors() && v.IsNull()
}

// checkAliases makes every name a client may use resolve to exactly one
// model: an alias may not repeat its model's name, another model's name or
// another alias.
func (l *loader) checkAliases(names map[string]declared, aliases map[*Model][]aliasDecl) {
	seen := make(map[string]declared)
	for _, m := range l.cfg.Models {
		for _, a := range aliases[m] {
			fail := func(format string, args ...any) {
				l.diags = append(l.diags, errorDiag(a.rng, "alias collision",
					fmt.Sprintf("model %q: alias %q ", m.Name, a.name)+fmt.Sprintf(format, args...)))
			}
			if a.name == m.Name {
				fail("repeats the model's own name; remove it")
				continue
			}
			if other, ok := names[a.name]; ok {
				fail("collides with model %q declared at %s", other.model.Name, shortPos(other.rng))
				continue
			}
			if prev, ok := seen[a.name]; ok {
				if prev.model == m {
					fail("is listed twice (first at %s)", shortPos(prev.rng))
				} else {
					fail("is already an alias of model %q at %s", prev.model.Name, shortPos(prev.rng))
				}
				continue
			}
			seen[a.name] = declared{model: m, rng: a.rng}
		}
	}
}

// checkDefaultModel resolves scheduler.default_model, which may be a name or
// an alias, to the logical name.
func (l *loader) checkDefaultModel() {
	name := l.cfg.Scheduler.DefaultModel
	if name == "" || len(l.cfg.Models) == 0 {
		return
	}
	m := l.cfg.Model(name)
	if m == nil {
		l.diags = append(l.diags, errorDiag(l.defaultModelRange, "unknown default_model",
			fmt.Sprintf("scheduler.default_model %q is neither a model nor an alias; models: %s",
				name, strings.Join(quoteAll(l.cfg.ModelNames()), ", "))))
		return
	}
	l.cfg.Scheduler.DefaultModel = m.Name
}

func quoteAll(ss []string) []string {
	out := slices.Clone(ss)
	for i, s := range out {
		out[i] = fmt.Sprintf("%q", s)
	}
	return out
}
