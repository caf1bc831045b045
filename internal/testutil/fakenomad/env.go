package fakenomad

import (
	"fmt"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/nomad/api"
)

// taskEnv is the task's runtime environment: Nomad's NOMAD_* variables
// (ports, addresses, directories, names, limits, meta) plus the task's own
// env block, itself interpolated.
func (ar *allocRunner) taskEnv(tr *taskRunner) map[string]string {
	s := ar.s
	a := ar.rec.alloc
	env := map[string]string{
		"NOMAD_ALLOC_ID":       a.ID,
		"NOMAD_SHORT_ALLOC_ID": shortID(a.ID),
		"NOMAD_ALLOC_NAME":     a.Name,
		"NOMAD_ALLOC_INDEX":    strconv.Itoa(allocIndex(a.Name)),
		"NOMAD_ALLOC_DIR":      filepath.Join(ar.dir, "alloc"),
		"NOMAD_TASK_DIR":       filepath.Join(tr.dir, "local"),
		"NOMAD_SECRETS_DIR":    filepath.Join(tr.dir, "secrets"),
		"NOMAD_TASK_NAME":      tr.task.Name,
		"NOMAD_GROUP_NAME":     a.TaskGroup,
		"NOMAD_JOB_ID":         *ar.job.ID,
		"NOMAD_JOB_NAME":       *ar.job.Name,
		"NOMAD_JOB_PARENT_ID":  *ar.job.ParentID,
		"NOMAD_NAMESPACE":      *ar.job.Namespace,
		"NOMAD_REGION":         *ar.job.Region,
		"NOMAD_DC":             s.node.Datacenter,
		"NOMAD_NODE_ID":        s.node.ID,
		"NOMAD_NODE_NAME":      s.node.Name,
	}
	if r := tr.task.Resources; r != nil {
		if r.CPU != nil {
			env["NOMAD_CPU_LIMIT"] = strconv.Itoa(*r.CPU)
		}
		if r.MemoryMB != nil {
			env["NOMAD_MEMORY_LIMIT"] = strconv.Itoa(*r.MemoryMB)
		}
		if r.MemoryMaxMB != nil && *r.MemoryMaxMB > 0 {
			env["NOMAD_MEMORY_MAX_LIMIT"] = strconv.Itoa(*r.MemoryMaxMB)
		}
	}
	if a.AllocatedResources != nil {
		for _, p := range a.AllocatedResources.Shared.Ports {
			port := p.Value
			if p.To > 0 {
				port = p.To
			}
			env["NOMAD_PORT_"+p.Label] = strconv.Itoa(port)
			env["NOMAD_HOST_PORT_"+p.Label] = strconv.Itoa(p.Value)
			env["NOMAD_IP_"+p.Label] = p.HostIP
			env["NOMAD_HOST_IP_"+p.Label] = p.HostIP
			env["NOMAD_ADDR_"+p.Label] = net.JoinHostPort(p.HostIP, strconv.Itoa(p.Value))
			env["NOMAD_HOST_ADDR_"+p.Label] = net.JoinHostPort(p.HostIP, strconv.Itoa(p.Value))
			env["NOMAD_ALLOC_PORT_"+p.Label] = strconv.Itoa(port)
			env["NOMAD_ALLOC_IP_"+p.Label] = p.HostIP
			env["NOMAD_ALLOC_ADDR_"+p.Label] = net.JoinHostPort(p.HostIP, strconv.Itoa(port))
		}
	}
	meta := map[string]string{}
	maps.Copy(meta, ar.job.Meta)
	maps.Copy(meta, ar.tg.Meta)
	maps.Copy(meta, tr.task.Meta)
	for k, v := range meta {
		env["NOMAD_META_"+k] = v
		env["NOMAD_META_"+strings.ToUpper(k)] = v
	}
	base := maps.Clone(env)
	for k, v := range tr.task.Env {
		env[k] = interpolate(v, base, s)
	}
	return env
}

func allocIndex(name string) int {
	open := strings.LastIndexByte(name, '[')
	if open < 0 || !strings.HasSuffix(name, "]") {
		return 0
	}
	n, _ := strconv.Atoi(name[open+1 : len(name)-1])
	return n
}

var interpolationRE = regexp.MustCompile(`\$\{([^{}]+)\}`)

// interpolate replaces the runtime references Nomad's client resolves:
// ${NOMAD_*} and other task environment variables, ${node.*}, ${attr.*},
// ${meta.*} and ${env.X}; an unknown reference stays as written, as in
// Nomad.
func interpolate(in string, env map[string]string, s *Server) string {
	return interpolationRE.ReplaceAllStringFunc(in, func(m string) string {
		key := strings.TrimSpace(m[2 : len(m)-1])
		if v, ok := env[key]; ok {
			return v
		}
		if v, ok := s.nodeValue(key); ok {
			return v
		}
		if name, ok := strings.CutPrefix(key, "env."); ok {
			if v, ok := env[name]; ok {
				return v
			}
			if v, ok := os.LookupEnv(name); ok {
				return v
			}
		}
		return m
	})
}

// nodeValue resolves ${node.*}, ${attr.*} and ${meta.*} against the fake
// node.
func (s *Server) nodeValue(key string) (string, bool) {
	switch key {
	case "node.unique.id":
		return s.node.ID, true
	case "node.unique.name":
		return s.node.Name, true
	case "node.datacenter":
		return s.node.Datacenter, true
	case "node.region":
		return "global", true
	case "node.class":
		return s.node.NodeClass, true
	case "node.pool":
		return s.node.NodePool, true
	}
	if name, ok := strings.CutPrefix(key, "attr."); ok {
		v, ok := s.node.Attributes[name]
		return v, ok
	}
	if name, ok := strings.CutPrefix(key, "meta."); ok {
		v, ok := s.node.Meta[name]
		return v, ok
	}
	return "", false
}

// interpolateTask returns a copy of t whose config strings and env are
// interpolated, as a driver sees it.
func interpolateTask(t *api.Task, env map[string]string, s *Server) *api.Task {
	c := *t
	if t.Config != nil {
		c.Config = interpolateValue(t.Config, env, s).(map[string]any)
	}
	c.Env = map[string]string{}
	for k := range t.Env {
		c.Env[k] = env[k]
	}
	return &c
}

func interpolateValue(v any, env map[string]string, s *Server) any {
	switch x := v.(type) {
	case string:
		return interpolate(x, env, s)
	case []any:
		out := make([]any, len(x))
		for i, e := range x {
			out[i] = interpolateValue(e, env, s)
		}
		return out
	case []map[string]any:
		out := make([]map[string]any, len(x))
		for i, e := range x {
			out[i] = interpolateValue(e, env, s).(map[string]any)
		}
		return out
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[k] = interpolateValue(e, env, s)
		}
		return out
	default:
		return x
	}
}

// portOf resolves a service or check port: a port label of the allocation
// or a literal number.
func portOf(a *api.Allocation, label string) (int, bool) {
	if a.AllocatedResources != nil {
		for _, p := range a.AllocatedResources.Shared.Ports {
			if p.Label == label {
				return p.Value, true
			}
		}
	}
	if n, err := strconv.Atoi(label); err == nil {
		return n, true
	}
	return 0, false
}

func httpURL(protocol, host string, port int, path string) string {
	if protocol == "" {
		protocol = "http"
	}
	if path != "" && !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	return fmt.Sprintf("%s://%s%s", protocol, net.JoinHostPort(host, strconv.Itoa(port)), path)
}
