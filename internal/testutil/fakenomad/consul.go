package fakenomad

import (
	"fmt"
	"maps"
	"time"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

// Service registration with Consul, as the Nomad client does it (recorded
// against Nomad v2.0.6 + Consul v1.22.7): a group service of allocation A
// in group G is registered as
//
//	ID   _nomad-task-<A>-group-<G>-<service>-<port label>
//	Meta {"external-source": "nomad", ...the service's meta}
//	check name, when the jobspec gives none: service: "<service>" check
//
// with the allocation's host address and port; a task service's ID has the
// task name where "group-<G>" is. Group services are registered before the
// tasks start and deregistered when the allocation is told to stop, task
// services after their task started and when it exits. Only Consul-provider
// services with HTTP checks are modelled (the fake Consul runs HTTP checks).

// serviceID is the Consul service ID Nomad gives a service.
func serviceID(allocID, owner, service, portLabel string) string {
	return fmt.Sprintf("_nomad-task-%s-%s-%s-%s", allocID, owner, service, portLabel)
}

// consulServices lists the registrations of the group's services (tr nil)
// or of one task's services.
func (ar *allocRunner) consulServices(tr *taskRunner) []fakeconsul.ServiceRegistration {
	a := ar.rec.alloc
	services := ar.tg.Services
	owner := "group-" + a.TaskGroup
	var env map[string]string
	if tr != nil {
		services = tr.task.Services
		owner = tr.task.Name
		env = ar.taskEnv(tr)
	} else if len(ar.tasks) > 0 {
		env = ar.taskEnv(ar.tasks[0])
	}
	var out []fakeconsul.ServiceRegistration
	for _, svc := range services {
		if svc.Provider != "" && svc.Provider != "consul" {
			continue
		}
		name := interpolate(svc.Name, env, ar.s)
		port, _ := portOf(a, svc.PortLabel)
		reg := fakeconsul.ServiceRegistration{
			ID:      serviceID(a.ID, owner, name, svc.PortLabel),
			Name:    name,
			Address: ar.s.hostIP,
			Port:    port,
			Meta:    map[string]string{"external-source": "nomad"},
		}
		for _, tag := range svc.Tags {
			reg.Tags = append(reg.Tags, interpolate(tag, env, ar.s))
		}
		for k, v := range svc.Meta {
			reg.Meta[k] = interpolate(v, env, ar.s)
		}
		for _, c := range svc.Checks {
			if c.Type != "http" {
				continue
			}
			checkPort := port
			if c.PortLabel != "" {
				checkPort, _ = portOf(a, c.PortLabel)
			}
			checkName := c.Name
			if checkName == "" {
				checkName = fmt.Sprintf("service: %q check", name)
			}
			timeout := c.Timeout
			if timeout == 0 {
				timeout = 5 * time.Second
			}
			reg.Checks = append(reg.Checks, fakeconsul.Check{
				Name:     checkName,
				HTTP:     httpURL(c.Protocol, ar.s.hostIP, checkPort, interpolate(c.Path, env, ar.s)),
				Interval: c.Interval,
				Timeout:  timeout,
			})
		}
		out = append(out, reg)
	}
	return out
}

func (ar *allocRunner) registerServices(tr *taskRunner) {
	c := ar.s.opts.Consul
	if c == nil {
		return
	}
	for _, reg := range ar.consulServices(tr) {
		reg.Meta = maps.Clone(reg.Meta)
		c.Register(reg)
	}
}

func (ar *allocRunner) deregisterServices(tr *taskRunner) {
	c := ar.s.opts.Consul
	if c == nil {
		return
	}
	for _, reg := range ar.consulServices(tr) {
		c.Deregister(reg.ID)
	}
}
