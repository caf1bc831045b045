package config_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

func TestSecret_Redaction(t *testing.T) {
	const userKey, adminKey = "sk-user-0123456789", "sk-admin-9876543210"
	cfg := mustLoad(t, files{"gateway.hcl": localGateway, "models.hcl": localModel}, map[string]string{
		"GATEWAY_API_KEY":       userKey,
		"GATEWAY_ADMIN_API_KEY": adminKey,
	})
	if got := cfg.Gateway.UserKeys[0].Reveal(); got != userKey {
		t.Fatalf("Reveal() = %q, want the key", got)
	}
	values := []struct {
		name string
		v    any
	}{
		{name: "secret", v: cfg.Gateway.UserKeys[0]},
		{name: "secret pointer", v: &cfg.Gateway.AdminKeys[0]},
		{name: "secret slice", v: cfg.Gateway.AdminKeys},
		{name: "gateway", v: cfg.Gateway},
		{name: "config", v: *cfg},
		{name: "config pointer", v: cfg},
	}
	verbs := []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"}
	for _, val := range values {
		for _, verb := range verbs {
			t.Run(val.name+" "+verb, func(t *testing.T) {
				out := fmt.Sprintf(verb, val.v)
				for _, key := range []string{userKey, adminKey, fmt.Sprintf("%x", userKey), fmt.Sprintf("%x", adminKey)} {
					if strings.Contains(strings.ToLower(out), strings.ToLower(key)) {
						t.Fatalf("%s of %s leaks a key: %s", verb, val.name, out)
					}
				}
			})
		}
	}
	if got := fmt.Sprint(cfg.Gateway.UserKeys[0]); got != "<redacted>" {
		t.Fatalf("Sprint(secret) = %q, want <redacted>", got)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatalf("json.Marshal(config): %v", err)
	}
	if strings.Contains(string(out), userKey) || strings.Contains(string(out), adminKey) {
		t.Fatalf("json.Marshal(config) leaks a key: %s", out)
	}
	if !strings.Contains(string(out), `"UserKeys":["\u003credacted\u003e"]`) {
		t.Fatalf("json.Marshal(config) does not show the redacted key: %s", out)
	}
}
