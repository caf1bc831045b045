package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/julienschmidt/httprouter"

	"github.com/llm-switchboard/llm-switchboard/internal/openai"
)

// Admin routes record what an operator asks in Redis and wake the leader,
// which acts on it in its own loop (and says what it did in /status).

// adminModel resolves the {model} of an admin route.
func (s *Server) adminModel(r *http.Request) (string, error) {
	name := httprouter.ParamsFromContext(r.Context()).ByName("model")
	m := s.cfg.Model(name)
	if m == nil {
		return "", unknownModel(name, s.cfg.ModelNames())
	}
	return m.Name, nil
}

func (s *Server) adminSet(r *http.Request, field, value string) (any, error) {
	slot := s.cfg.Orchestrator.Slot
	if err := s.store.SetAdmin(r.Context(), slot, field, value); err != nil {
		return nil, err
	}
	a, err := s.store.Admin(r.Context(), slot)
	if err != nil {
		return nil, err
	}
	s.log.Info("admin request", "key", principalFrom(r.Context()).id, "field", field, "value", value)
	return statusValue{http.StatusAccepted, a}, nil
}

// adminLoad asks the leader to load a model now (quarantine and a pin on
// another model refuse it; residency and the switch budget do not).
func (s *Server) adminLoad(r *http.Request) (any, error) {
	m, err := s.adminModel(r)
	if err != nil {
		return nil, err
	}
	return s.adminSet(r, "load", m)
}

// adminUnload asks the leader to unload the active model.
func (s *Server) adminUnload(r *http.Request) (any, error) { return s.adminSet(r, "unload", "1") }

// adminPin keeps a model loaded until unpinned.
func (s *Server) adminPin(r *http.Request) (any, error) {
	m, err := s.adminModel(r)
	if err != nil {
		return nil, err
	}
	return s.adminSet(r, "pinned", m)
}

func (s *Server) adminUnpin(r *http.Request) (any, error) { return s.adminSet(r, "pinned", "") }

// adminMaintenance turns maintenance on or off: {"enabled": true} drains
// and holds the slot (no new dispatch, no switch).
func (s *Server) adminMaintenance(r *http.Request) (any, error) {
	var body struct {
		Enabled *bool `json:"enabled"`
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 4096))
	if err != nil || json.NewDecoder(strings.NewReader(string(b))).Decode(&body) != nil || body.Enabled == nil {
		return nil, openai.BadRequest("enabled", `send {"enabled": true} or {"enabled": false}`)
	}
	v := ""
	if *body.Enabled {
		v = "1"
	}
	return s.adminSet(r, "maintenance", v)
}
