package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

type scope int

const (
	scopeUser scope = iota
	scopeAdmin
)

// principal is who made a request: a key's name (never the key), scope
// and rights (nil when the gateway runs without keys).
type principal struct {
	id    string
	admin bool
	key   *config.APIKey
}

type principalKey struct{}

func principalFrom(ctx context.Context) principal {
	p, _ := ctx.Value(principalKey{}).(principal)
	return p
}

// keyring holds the SHA-256 of every accepted key, so comparisons run in
// constant time over equal-length values and the keys themselves are not
// kept around.
type keyring struct {
	entries []keyEntry
}

type keyEntry struct {
	hash [32]byte
	key  *config.APIKey
}

func newKeyring(keys []config.APIKey) *keyring {
	k := &keyring{}
	for i := range keys {
		k.entries = append(k.entries, keyEntry{hash: keys[i].SHA256, key: &keys[i]})
	}
	return k
}

func (k *keyring) empty() bool { return len(k.entries) == 0 }

// lookup finds the key presented; every entry is compared so the time
// taken does not depend on which one matched.
func (k *keyring) lookup(key string) (principal, bool) {
	h := sha256.Sum256([]byte(key))
	var found principal
	ok := false
	for _, e := range k.entries {
		if subtle.ConstantTimeCompare(h[:], e.hash[:]) == 1 && !ok {
			found, ok = principal{id: e.key.Name, admin: e.key.Admin, key: e.key}, true
		}
	}
	return found, ok
}

// presentedKey reads the key from Authorization: Bearer (OpenAI SDKs) or
// X-API-Key (curl examples).
func presentedKey(r *http.Request) string {
	if v := r.Header.Get("Authorization"); v != "" {
		scheme, token, ok := strings.Cut(v, " ")
		if ok && strings.EqualFold(scheme, "Bearer") {
			return strings.TrimSpace(token)
		}
	}
	return strings.TrimSpace(r.Header.Get("X-API-Key"))
}

// auth lets a request through only with a key of the needed scope. With no
// keys configured (loopback only, see New) everyone is an admin.
func (s *Server) auth(need scope, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p principal
		if s.keys.empty() {
			p = principal{id: "anonymous", admin: true}
		} else {
			key := presentedKey(r)
			if key == "" {
				openai.WriteError(w, openai.Errorf(http.StatusUnauthorized, openai.TypeAuthentication, "missing_api_key", "",
					"missing API key: send Authorization: Bearer <key> or X-API-Key: <key>"))
				return
			}
			var ok bool
			if p, ok = s.keys.lookup(key); !ok {
				openai.WriteError(w, openai.Errorf(http.StatusUnauthorized, openai.TypeAuthentication, "invalid_api_key", "",
					"incorrect API key provided"))
				return
			}
		}
		if need == scopeAdmin && r.Header.Get("Tailscale-Funnel-Request") != "" && !s.cfg.Gateway.AdminViaFunnel {
			// The admin surface stays on the tailnet unless configured.
			openai.WriteError(w, openai.Errorf(http.StatusForbidden, openai.TypePermission, "admin_not_public", "",
				"admin routes are not served through Tailscale Funnel; use the tailnet address (or set gateway.admin_via_funnel)"))
			return
		}
		if need == scopeAdmin && !p.admin {
			openai.WriteError(w, openai.Errorf(http.StatusForbidden, openai.TypePermission, "admin_required", "",
				"this route needs an admin key"))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), principalKey{}, p)))
	})
}
