package config_test

import (
	"crypto/sha256"
	"encoding/hex"
	"testing"
)

func hash(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

const keysModels = "model \"a\" {\n  aliases = [\"alpha\"]\n  backend {\n    port = 9001\n  }\n  command = [\"/bin/a\"]\n}\nmodel \"b\" {\n  backend {\n    port = 9002\n  }\n  command = [\"/bin/b\"]\n}\n"

const keysGateway = "gateway {\n  keys_file = \"keys.hcl\"\n}\norchestrator {\n  runtime = \"local\"\n}\n"

func TestLoad_KeysFile(t *testing.T) {
	cfg := mustLoad(t, files{
		"gateway.hcl": keysGateway,
		"models.hcl":  keysModels,
		"keys.hcl": lines(
			`key "alice" {`,
			`  sha256            = "`+hash("sk-alice")+`"`,
			`  models            = ["alpha"]`,
			`  may_switch        = false`,
			`  switches_per_hour = 3`,
			`}`,
			`key "ops" {`,
			`  sha256 = "`+hash("sk-ops")+`"`,
			`  scope  = "admin"`,
			`}`,
		),
	}, map[string]string{"GATEWAY_API_KEY": "sk-env"})
	keys := cfg.Gateway.AllKeys()
	if len(keys) != 3 {
		t.Fatalf("keys = %d, want alice, ops and one from the environment", len(keys))
	}
	alice, ops, env := keys[0], keys[1], keys[2]
	if alice.Name != "alice" || alice.Admin || alice.MaySwitch || alice.SwitchesPerHour != 3 ||
		!alice.MayUse("a") || alice.MayUse("b") || alice.SHA256 != sha256.Sum256([]byte("sk-alice")) {
		t.Fatalf("alice = %+v", alice)
	}
	if !ops.Admin || !ops.MaySwitch || !ops.MayUse("b") {
		t.Fatalf("ops = %+v", ops)
	}
	if env.Name != "env-user-1" || env.SHA256 != sha256.Sum256([]byte("sk-env")) {
		t.Fatalf("env key = %+v", env)
	}
}

func TestLoad_KeysFileErrors(t *testing.T) {
	tests := []struct {
		name string
		keys string
		line int
		want string
	}{
		{"bad hash", lines(`key "a" {`, `  sha256 = "abc"`, `}`), 2, "64 lowercase hex digits"},
		{"bad scope", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `  scope = "root"`, `}`), 3, `"root" is not a scope`},
		{"unknown model", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `  models = ["gamma"]`, `}`), 3, `"gamma" is neither a model nor an alias`},
		{"duplicate name", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `}`, `key "a" {`, `  sha256 = "`+hash("y")+`"`, `}`), 4, "duplicate key name"},
		{"same key twice", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `}`, `key "b" {`, `  sha256 = "`+hash("x")+`"`, `}`), 5, `the same key as "a"`},
		{"negative budget", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `  switches_per_hour = -1`, `}`), 3, "must not be negative"},
		{"unknown attribute", lines(`key "a" {`, `  sha256 = "`+hash("x")+`"`, `  secret = "x"`, `}`), 3, "Unsupported argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, dir, err := load(t, files{"gateway.hcl": keysGateway, "models.hcl": keysModels, "keys.hcl": tt.keys}, nil)
			requireDiag(t, err, pos(dir, "keys.hcl", tt.line), tt.want)
		})
	}
}
