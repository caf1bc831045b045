package config

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"slices"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
)

// Key scopes.
const (
	ScopeUser  = "user"
	ScopeAdmin = "admin"
)

// APIKey is one accepted key: only its SHA-256 is kept, with a name that
// logs, /queue and /status show instead of the key.
type APIKey struct {
	Name   string
	SHA256 [32]byte
	Admin  bool
	// Models the key may use (logical names); empty means all.
	Models []string
	// MaySwitch is whether the key's requests may make the switchboard
	// load another model; without it, only the loaded model serves it.
	MaySwitch bool
	// SwitchesPerHour caps the switches the key's requests cause; 0 means
	// no cap.
	SwitchesPerHour int
}

// MayUse reports whether the key may use model (a logical name).
func (k *APIKey) MayUse(model string) bool {
	return len(k.Models) == 0 || slices.Contains(k.Models, model)
}

// AllKeys returns every accepted key: the keys file's and the environment's
// (named env-user-N and env-admin-N; all models, may switch, no cap).
func (g *Gateway) AllKeys() []APIKey {
	out := slices.Clone(g.Keys)
	add := func(keys []Secret, admin bool, prefix string) {
		for i, s := range keys {
			out = append(out, APIKey{Name: fmt.Sprintf("%s-%d", prefix, i+1), SHA256: sha256.Sum256([]byte(s.Reveal())),
				Admin: admin, MaySwitch: true})
		}
	}
	add(g.AdminKeys, true, "env-admin")
	add(g.UserKeys, false, "env-user")
	return out
}

type keysFile struct {
	Keys []*keyBlock `hcl:"key,block"`
}

type keyBlock struct {
	Name            string    `hcl:"name,label"`
	DefRange        hcl.Range `hcl:",def_range"`
	SHA256          string    `hcl:"sha256"`
	SHA256Range     hcl.Range `hcl:"sha256,attr_value_range"`
	Scope           *string   `hcl:"scope,optional"`
	ScopeRange      hcl.Range `hcl:"scope,attr_value_range"`
	Models          []string  `hcl:"models,optional"`
	ModelsRange     hcl.Range `hcl:"models,attr_value_range"`
	MaySwitch       *bool     `hcl:"may_switch,optional"`
	SwitchesPerHour *int      `hcl:"switches_per_hour,optional"`
	SwitchesRange   hcl.Range `hcl:"switches_per_hour,attr_value_range"`
}

var (
	keyNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)
	sha256Pattern  = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// loadKeys reads the keys file (after the models, whose names it checks).
func (l *loader) loadKeys(path string) {
	l.cfg.Files = append(l.cfg.Files, path)
	body, ok := l.parse(path)
	if !ok {
		return
	}
	var kf keysFile
	if diags := gohcl.DecodeBody(body, nil, &kf); diags.HasErrors() {
		l.diags = append(l.diags, diags...)
		return
	}
	names := map[string]hcl.Range{}
	hashes := map[[32]byte]string{}
	for _, kb := range kf.Keys {
		fail := func(rng hcl.Range, summary, format string, args ...any) {
			l.diags = append(l.diags, errorDiag(rng, summary, fmt.Sprintf("key %q: ", kb.Name)+fmt.Sprintf(format, args...)))
		}
		if !keyNamePattern.MatchString(kb.Name) {
			fail(kb.DefRange, "invalid key name", "names are 1 to 64 letters, digits and . _ @ -")
		}
		if prev, dup := names[kb.Name]; dup {
			fail(kb.DefRange, "duplicate key name", "already declared at %s", shortPos(prev))
			continue
		}
		names[kb.Name] = kb.DefRange
		k := APIKey{Name: kb.Name, MaySwitch: true}
		if !sha256Pattern.MatchString(kb.SHA256) {
			fail(kb.SHA256Range, "invalid sha256", "want the 64 lowercase hex digits of the key's SHA-256 (printf %%s \"$KEY\" | sha256sum)")
		} else {
			b, _ := hex.DecodeString(kb.SHA256)
			copy(k.SHA256[:], b)
			if other, dup := hashes[k.SHA256]; dup {
				fail(kb.SHA256Range, "duplicate key", "the same key as %q", other)
			}
			hashes[k.SHA256] = kb.Name
		}
		if kb.Scope != nil {
			switch *kb.Scope {
			case ScopeUser:
			case ScopeAdmin:
				k.Admin = true
			default:
				fail(kb.ScopeRange, "invalid scope", "%q is not a scope; want %q or %q", *kb.Scope, ScopeUser, ScopeAdmin)
			}
		}
		for _, name := range kb.Models {
			m := l.cfg.Model(name)
			if m == nil {
				fail(kb.ModelsRange, "unknown model", "%q is neither a model nor an alias; models: %s", name, quoteAll(l.cfg.ModelNames()))
				continue
			}
			if !slices.Contains(k.Models, m.Name) {
				k.Models = append(k.Models, m.Name)
			}
		}
		if kb.MaySwitch != nil {
			k.MaySwitch = *kb.MaySwitch
		}
		if kb.SwitchesPerHour != nil {
			if *kb.SwitchesPerHour < 0 {
				fail(kb.SwitchesRange, "invalid switches_per_hour", "%d must not be negative (0 = no cap)", *kb.SwitchesPerHour)
			}
			k.SwitchesPerHour = *kb.SwitchesPerHour
		}
		l.cfg.Gateway.Keys = append(l.cfg.Gateway.Keys, k)
	}
}
