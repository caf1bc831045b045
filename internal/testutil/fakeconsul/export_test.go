package fakeconsul

import "net/http"

// SetParkHook makes every blocking query call f once, when it starts to
// wait, so tests can change state exactly while a query is parked.
func (s *Server) SetParkHook(f func(r *http.Request)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.parkHook = f
}
