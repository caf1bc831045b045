package fakeconsul

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"sort"
	"strings"
	"time"
)

// Check statuses.
const (
	statusPassing  = "passing"
	statusWarning  = "warning"
	statusCritical = "critical"
)

// ServiceRegistration is a service as a Nomad agent registers it with its
// local Consul agent; Register treats it exactly like
// PUT /v1/agent/service/register.
type ServiceRegistration struct {
	ID      string // defaults to Name, as in Consul
	Name    string
	Tags    []string
	Address string
	Port    int
	Meta    map[string]string
	Checks  []Check
}

// Check is an HTTP check of a registered service; the fake runs it like the
// Consul agent would, from a random point within the first interval.
type Check struct {
	Name     string // defaults to "Service '<name>' check"
	HTTP     string // full URL, GET
	Interval time.Duration
	Timeout  time.Duration // defaults to 10s, Consul's default
}

// Register registers (or replaces) a service and starts its checks, as the
// Nomad agent does through the local Consul agent. An invalid registration
// (no name, a check without URL or interval) is a test error.
func (s *Server) Register(reg ServiceRegistration) {
	def := serviceDef{
		ID:      reg.ID,
		Name:    reg.Name,
		Tags:    slices.Clone(reg.Tags),
		Address: reg.Address,
		Port:    reg.Port,
		Meta:    maps.Clone(reg.Meta),
	}
	for _, c := range reg.Checks {
		if c.HTTP == "" {
			s.t.Errorf("fakeconsul: register service %q: check %q has no HTTP URL", reg.Name, c.Name)
			return
		}
		if c.Interval <= 0 {
			s.t.Errorf("fakeconsul: register service %q: check %q: Interval must be > 0", reg.Name, c.Name)
			return
		}
		def.Checks = append(def.Checks, checkDef{Name: c.Name, HTTP: c.HTTP, Interval: c.Interval, Timeout: c.Timeout})
	}
	if def.Name == "" {
		s.t.Errorf("fakeconsul: register service %+v: missing service name", reg)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registerLocked(def)
}

// Deregister removes a service and stops its checks, as the Nomad agent does
// when the allocation stops. Unknown IDs are ignored.
func (s *Server) Deregister(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deregisterLocked(id)
}

// serviceDef is a validated registration; stored as given so that an
// identical re-registration is recognised and changes nothing.
type serviceDef struct {
	ID      string
	Name    string
	Tags    []string
	Address string
	Port    int
	Meta    map[string]string
	Checks  []checkDef
}

type checkDef struct {
	ID       string
	Name     string
	HTTP     string
	Method   string
	Header   map[string][]string
	Body     string
	TCP      string
	Interval time.Duration
	Timeout  time.Duration
	Status   string // initial status; "" is critical
	Notes    string
}

type service struct {
	def         serviceDef
	createIndex uint64
	modifyIndex uint64
	checks      []*check
	stop        context.CancelFunc // stops the check runners
}

// check is a running service check. status and output change under s.mu.
type check struct {
	def         checkDef
	id          string
	name        string
	svc         *service
	status      string
	output      string
	createIndex uint64
	modifyIndex uint64
}

// registerLocked stores a service like the agent's anti-entropy sync does: an
// identical registration is no write; otherwise the service (and its
// checks) are written at a new index, checks that keep their ID keep their
// status, and sessions linked to checks that went away are invalidated.
func (s *Server) registerLocked(def serviceDef) {
	if s.closed {
		return
	}
	if def.ID == "" {
		def.ID = def.Name
	}
	old := s.services[def.ID]
	if old != nil && reflect.DeepEqual(old.def, def) {
		return
	}
	idx := s.commitLocked()
	prev := map[string]*check{}
	svc := &service{def: def, createIndex: idx, modifyIndex: idx}
	if old != nil {
		old.stop()
		for _, c := range old.checks {
			prev[c.id] = c
		}
		svc.createIndex = old.createIndex
		s.nameIndex[old.def.Name] = idx
	}
	for i, cd := range def.Checks {
		c := &check{def: cd, id: cd.ID, name: cd.Name, svc: svc, status: statusCritical, createIndex: idx, modifyIndex: idx}
		if c.id == "" {
			c.id = "service:" + def.ID
			if len(def.Checks) > 1 {
				c.id += fmt.Sprintf(":%d", i+1)
			}
		}
		if c.name == "" {
			c.name = fmt.Sprintf("Service '%s' check", def.Name)
		}
		if cd.Status != "" {
			c.status = cd.Status
		}
		if p, ok := prev[c.id]; ok {
			c.status, c.output, c.createIndex, c.modifyIndex = p.status, p.output, p.createIndex, p.modifyIndex
			delete(prev, c.id)
		}
		svc.checks = append(svc.checks, c)
	}
	s.services[def.ID] = svc
	s.svcIndex = idx
	s.nameIndex[def.Name] = idx
	for _, id := range slices.Sorted(maps.Keys(prev)) {
		s.invalidateSessionsForCheckLocked(id)
	}
	ctx, cancel := context.WithCancel(s.ctx)
	svc.stop = cancel
	for _, c := range svc.checks {
		s.wg.Go(func() { s.runCheck(ctx, c) })
	}
}

func (s *Server) deregisterLocked(id string) bool {
	svc, ok := s.services[id]
	if !ok {
		return false
	}
	svc.stop()
	idx := s.commitLocked()
	delete(s.services, id)
	s.svcIndex = idx
	s.nameIndex[svc.def.Name] = idx
	for _, c := range svc.checks {
		s.invalidateSessionsForCheckLocked(c.id)
	}
	return true
}

// checkStatusLocked finds a check on the node by ID.
func (s *Server) checkStatusLocked(id string) (string, bool) {
	if id == serfCheckID {
		return statusPassing, true
	}
	for _, svc := range s.services {
		for _, c := range svc.checks {
			if c.id == id {
				return c.status, true
			}
		}
	}
	return "", false
}

// setCheckResult records a check run. Only a status change is a catalog
// write (new index, blocking health queries wake); a check going critical
// invalidates the sessions linked to it. It reports false once the check is
// gone (its service deregistered or replaced).
func (s *Server) setCheckResult(c *check, status, output string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.services[c.svc.def.ID] != c.svc {
		return false
	}
	c.output = output
	if c.status == status {
		return true
	}
	idx := s.commitLocked()
	c.status = status
	c.modifyIndex = idx
	s.nameIndex[c.svc.def.Name] = idx
	if status == statusCritical {
		s.invalidateSessionsForCheckLocked(c.id)
	}
	return true
}

// serviceIndexLocked is the X-Consul-Index of a service's health and catalog
// queries: the index of its last change, else the services table index.
func (s *Server) serviceIndexLocked(name string) uint64 {
	if idx, ok := s.nameIndex[name]; ok {
		return idx
	}
	return max(nodeIndex, s.svcIndex)
}

func (s *Server) sortedServicesLocked() []*service {
	out := slices.Collect(maps.Values(s.services))
	sort.Slice(out, func(i, j int) bool { return out[i].def.ID < out[j].def.ID })
	return out
}

func hasTags(have, want []string) bool {
	for _, w := range want {
		if !slices.ContainsFunc(have, func(h string) bool { return strings.EqualFold(h, w) }) {
			return false
		}
	}
	return true
}

// jsonDuration decodes a Consul duration: a string ("10s") or nanoseconds.
type jsonDuration time.Duration

func (d *jsonDuration) UnmarshalJSON(b []byte) error {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	switch v := v.(type) {
	case nil:
		*d = 0
	case string:
		if v == "" {
			*d = 0
			return nil
		}
		p, err := time.ParseDuration(v)
		if err != nil {
			return err
		}
		*d = jsonDuration(p)
	case float64:
		*d = jsonDuration(time.Duration(v))
	default:
		return fmt.Errorf("invalid duration %s", b)
	}
	return nil
}

// registerRequest is the body of PUT /v1/agent/service/register (the api's
// AgentServiceRegistration); field names match case-insensitively.
type registerRequest struct {
	ID      string
	Name    string
	Kind    string
	Tags    []string
	Port    int
	Address string
	Meta    map[string]string
	Check   *checkRequest
	Checks  []*checkRequest
	Connect json.RawMessage
}

type checkRequest struct {
	CheckID                        string
	Name                           string
	HTTP                           string
	Method                         string
	Header                         map[string][]string
	Body                           string
	TCP                            string
	Interval                       jsonDuration
	Timeout                        jsonDuration
	TTL                            jsonDuration
	Status                         string
	Notes                          string
	ScriptArgs                     []string
	UDP                            string
	GRPC                           string
	H2PING                         string
	OSService                      string
	AliasNode                      string
	AliasService                   string
	DeregisterCriticalServiceAfter jsonDuration
}

// invalidCheck carries Consul's own (capitalised) check validation text.
type invalidCheck string

func (e invalidCheck) Error() string { return string(e) }

// toDef validates a check like Consul's CheckType.Validate, then refuses the
// kinds the fake does not run.
func (c *checkRequest) toDef() (checkDef, error) {
	intervalCheck := c.HTTP != "" || c.TCP != "" || c.UDP != "" || c.GRPC != "" || c.H2PING != "" || c.OSService != "" || len(c.ScriptArgs) > 0
	switch {
	case c.Interval > 0 && c.TTL > 0:
		return checkDef{}, invalidCheck("Interval and TTL cannot both be specified")
	case intervalCheck && c.Interval <= 0:
		return checkDef{}, invalidCheck("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or OSService checks")
	case !intervalCheck && c.AliasNode == "" && c.AliasService == "" && c.TTL <= 0:
		return checkDef{}, invalidCheck("TTL must be > 0 for TTL checks")
	case c.HTTP == "" && c.TCP == "":
		return checkDef{}, invalidCheck("fakeconsul runs only HTTP and TCP checks")
	}
	switch c.Status {
	case "", statusPassing, statusWarning, statusCritical:
	default:
		return checkDef{}, invalidCheck("Status for checks must 'passing', 'warning', 'critical'")
	}
	return checkDef{
		ID: c.CheckID, Name: c.Name, HTTP: c.HTTP, Method: c.Method, Header: c.Header, Body: c.Body, TCP: c.TCP,
		Interval: time.Duration(c.Interval), Timeout: time.Duration(c.Timeout), Status: c.Status, Notes: c.Notes,
	}, nil
}

func (s *Server) agentServiceRegister(_ http.ResponseWriter, r *http.Request) (any, error) {
	var req registerRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		return nil, badRequest("Request decode failed: %v", err)
	}
	if req.Name == "" {
		return nil, badRequest("Missing service name")
	}
	if req.Kind != "" || (len(req.Connect) > 0 && string(req.Connect) != "null") {
		return nil, badRequest("fakeconsul: Connect services are not supported")
	}
	def := serviceDef{ID: req.ID, Name: req.Name, Tags: req.Tags, Address: req.Address, Port: req.Port, Meta: req.Meta}
	var checks []*checkRequest
	if req.Check != nil {
		checks = append(checks, req.Check)
	}
	for _, c := range req.Checks {
		if c != nil {
			checks = append(checks, c)
		}
	}
	for _, c := range checks {
		cd, err := c.toDef()
		if err != nil {
			return nil, badRequest("Invalid check: %v", err)
		}
		def.Checks = append(def.Checks, cd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.registerLocked(def)
	return nil, nil
}

func (s *Server) agentServiceDeregister(_ http.ResponseWriter, r *http.Request) (any, error) {
	id := r.PathValue("id")
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deregisterLocked(id) {
		return nil, &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("Unknown service ID %q. Ensure that the service ID is passed, not the service name.", id)}
	}
	return nil, nil
}

// Wire forms, shaped like Consul 1.22.7's answers.

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type serviceAddress struct {
	Address string
	Port    int
}

type weights struct {
	Passing int
	Warning int
}

type proxyJSON struct {
	Mode        string
	MeshGateway struct{}
	Expose      struct{}
}

type agentServiceJSON struct {
	ID                string
	Service           string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	Meta              map[string]string
	Port              int
	Weights           weights
	EnableTagOverride bool
	Proxy             *proxyJSON `json:",omitempty"`
	Connect           *struct{}  `json:",omitempty"`
	CreateIndex       uint64     `json:",omitempty"`
	ModifyIndex       uint64     `json:",omitempty"`
	Datacenter        string     `json:",omitempty"`
}

type healthCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string
	Timeout     string
	ExposedPort int
	Definition  struct{}
	CreateIndex uint64
	ModifyIndex uint64
}

type healthEntry struct {
	Node    nodeJSON
	Service agentServiceJSON
	Checks  []healthCheckJSON
}

type catalogServiceJSON struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	ServiceWeights           weights
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	ServiceProxy             proxyJSON
	ServiceConnect           struct{}
	CreateIndex              uint64
	ModifyIndex              uint64
}

func theNode() nodeJSON {
	return nodeJSON{
		ID: nodeID, Node: nodeName, Address: nodeAddr, Datacenter: datacenter,
		TaggedAddresses: map[string]string{"lan": nodeAddr, "lan_ipv4": nodeAddr, "wan": nodeAddr, "wan_ipv4": nodeAddr},
		Meta:            map[string]string{"consul-network-segment": "", "consul-version": consulVersion},
		CreateIndex:     nodeIndex, ModifyIndex: nodeIndex,
	}
}

func serfCheck() healthCheckJSON {
	return healthCheckJSON{
		Node: nodeName, CheckID: serfCheckID, Name: "Serf Health Status", Status: statusPassing,
		Output: "Agent alive and reachable", ServiceTags: []string{},
		CreateIndex: nodeIndex, ModifyIndex: nodeIndex,
	}
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (svc *service) taggedAddresses() map[string]serviceAddress {
	if svc.def.Address == "" {
		return nil
	}
	a := serviceAddress{Address: svc.def.Address, Port: svc.def.Port}
	return map[string]serviceAddress{"lan_ipv4": a, "wan_ipv4": a}
}

func (svc *service) meta() map[string]string {
	if svc.def.Meta == nil {
		return map[string]string{}
	}
	return svc.def.Meta
}

// catalogJSON is the service as the catalog (health endpoints) shows it.
func (svc *service) catalogJSON() agentServiceJSON {
	return agentServiceJSON{
		ID: svc.def.ID, Service: svc.def.Name, Tags: nonNil(svc.def.Tags), Address: svc.def.Address,
		TaggedAddresses: svc.taggedAddresses(), Meta: svc.meta(), Port: svc.def.Port,
		Weights: weights{Passing: 1, Warning: 1}, Proxy: &proxyJSON{}, Connect: &struct{}{},
		CreateIndex: svc.createIndex, ModifyIndex: svc.modifyIndex,
	}
}

// agentJSON is the service as the local agent's endpoints show it.
func (svc *service) agentJSON() agentServiceJSON {
	return agentServiceJSON{
		ID: svc.def.ID, Service: svc.def.Name, Tags: nonNil(svc.def.Tags), Address: svc.def.Address,
		TaggedAddresses: svc.taggedAddresses(), Meta: svc.meta(), Port: svc.def.Port,
		Weights: weights{Passing: 1, Warning: 1}, Datacenter: datacenter,
	}
}

func (c *check) json(withIndexes bool) healthCheckJSON {
	typ := "http"
	if c.def.TCP != "" {
		typ = "tcp"
	}
	h := healthCheckJSON{
		Node: nodeName, CheckID: c.id, Name: c.name, Status: c.status, Notes: c.def.Notes, Output: c.output,
		ServiceID: c.svc.def.ID, ServiceName: c.svc.def.Name, ServiceTags: nonNil(c.svc.def.Tags),
		Type: typ, Interval: c.def.Interval.String(), Timeout: c.def.Timeout.String(),
	}
	if c.def.Timeout == 0 {
		h.Timeout = ""
	}
	if withIndexes {
		h.CreateIndex, h.ModifyIndex = c.createIndex, c.modifyIndex
	}
	return h
}

func (s *Server) healthService(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	passing, err := boolParam(r, statusPassing)
	if err != nil {
		return nil, err
	}
	tags := r.URL.Query()["tag"]
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		out := []healthEntry{}
	services:
		for _, svc := range s.sortedServicesLocked() {
			if svc.def.Name != name || !hasTags(svc.def.Tags, tags) {
				continue
			}
			checks := []healthCheckJSON{serfCheck()}
			for _, c := range svc.checks {
				checks = append(checks, c.json(true))
			}
			sort.Slice(checks, func(i, j int) bool { return checks[i].CheckID < checks[j].CheckID })
			if passing {
				for _, c := range checks {
					if c.Status != statusPassing {
						continue services
					}
				}
			}
			out = append(out, healthEntry{Node: theNode(), Service: svc.catalogJSON(), Checks: checks})
		}
		return s.serviceIndexLocked(name), out, nil
	})
}

func (s *Server) healthChecks(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		out := []healthCheckJSON{}
		for _, svc := range s.sortedServicesLocked() {
			if svc.def.Name != name {
				continue
			}
			for _, c := range svc.checks {
				out = append(out, c.json(true))
			}
		}
		sort.Slice(out, func(i, j int) bool { return out[i].CheckID < out[j].CheckID })
		return s.serviceIndexLocked(name), out, nil
	})
}

func (s *Server) catalogService(w http.ResponseWriter, r *http.Request) (any, error) {
	name := r.PathValue("name")
	tags := r.URL.Query()["tag"]
	return s.blockingQuery(w, r, func() (uint64, any, error) {
		out := []catalogServiceJSON{}
		n := theNode()
		for _, svc := range s.sortedServicesLocked() {
			if svc.def.Name != name || !hasTags(svc.def.Tags, tags) {
				continue
			}
			out = append(out, catalogServiceJSON{
				ID: n.ID, Node: n.Node, Address: n.Address, Datacenter: n.Datacenter,
				TaggedAddresses: n.TaggedAddresses, NodeMeta: n.Meta,
				ServiceID: svc.def.ID, ServiceName: svc.def.Name, ServiceTags: nonNil(svc.def.Tags),
				ServiceAddress: svc.def.Address, ServiceTaggedAddresses: svc.taggedAddresses(),
				ServiceWeights: weights{Passing: 1, Warning: 1}, ServiceMeta: svc.meta(), ServicePort: svc.def.Port,
				CreateIndex: svc.createIndex, ModifyIndex: svc.modifyIndex,
			})
		}
		return s.serviceIndexLocked(name), out, nil
	})
}

func (s *Server) agentServices(http.ResponseWriter, *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]agentServiceJSON{}
	for id, svc := range s.services {
		out[id] = svc.agentJSON()
	}
	return out, nil
}

func (s *Server) agentChecks(http.ResponseWriter, *http.Request) (any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]healthCheckJSON{}
	for _, svc := range s.services {
		for _, c := range svc.checks {
			out[c.id] = c.json(false)
		}
	}
	return out, nil
}

func (s *Server) agentSelf(http.ResponseWriter, *http.Request) (any, error) {
	return map[string]map[string]any{
		"Config": {
			"Datacenter": datacenter, "PrimaryDatacenter": datacenter, "NodeName": nodeName, "NodeID": nodeID,
			"Server": true, "Version": consulVersion, "Revision": "fakeconsul",
		},
		"Member": {"Name": nodeName, "Addr": nodeAddr, "Port": 8301, "Status": 1},
		"Meta":   {"consul-network-segment": "", "consul-version": consulVersion},
	}, nil
}
