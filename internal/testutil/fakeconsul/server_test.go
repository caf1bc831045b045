package fakeconsul_test

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

func TestServer_StatusAndSelf(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	c := newClient(t, srv)
	leader, err := c.Status().Leader()
	if err != nil || leader != "127.0.0.1:8300" {
		t.Fatalf("leader = %q, %v", leader, err)
	}
	self, err := c.Agent().Self()
	if err != nil || self["Config"]["Datacenter"] != "dc1" || self["Config"]["NodeName"] == "" {
		t.Fatalf("self = %v, %v", self, err)
	}
	if _, err := c.KV().Put(&api.KVPair{Key: "k", Value: []byte("v")}, &api.WriteOptions{Datacenter: "dc2"}); err == nil {
		t.Fatalf("write to an unknown datacenter succeeded")
	}
}

func TestServer_SetDown(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	parked := parks(srv)
	c := newClient(t, srv)
	put(t, c, "state", "kept")
	_, meta := getKV(t, c, "state")

	// A blocking query in flight when the agent goes away fails too.
	inflight := make(chan error, 1)
	go func() {
		_, _, err := c.KV().Get("state", &api.QueryOptions{WaitIndex: meta.LastIndex, WaitTime: 10 * time.Second})
		inflight <- err
	}()
	awaitPark(t, parked, "/v1/kv/state", nil)
	srv.SetDown(true)
	select {
	case err := <-inflight:
		if err == nil {
			t.Fatalf("blocking query survived SetDown(true)")
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("blocking query still waiting after SetDown(true)")
	}

	calls := []struct {
		name string
		call func() error
	}{
		{name: "kv get", call: func() error { _, _, err := c.KV().Get("state", nil); return err }},
		{name: "kv put", call: func() error { _, err := c.KV().Put(&api.KVPair{Key: "state", Value: []byte("lost")}, nil); return err }},
		{name: "session create", call: func() error { _, _, err := c.Session().Create(nil, nil); return err }},
		{name: "leader", call: func() error { _, err := c.Status().Leader(); return err }},
	}
	for _, tt := range calls {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var se api.StatusError
			if err == nil || errors.As(err, &se) {
				t.Fatalf("%s while down = %v, want a connection error", tt.name, err)
			}
		})
	}

	srv.SetDown(false)
	p, _ := getKV(t, c, "state")
	if p == nil || string(p.Value) != "kept" {
		t.Fatalf("after recovery state = %+v, want the value kept", p)
	}
}
