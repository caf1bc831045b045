package consulsvc_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/consulsvc"
	"github.com/llm-switchboard/llm-switchboard/internal/jobstore"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

func client(t *testing.T, srv *fakeconsul.Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestHealth_WaitPassing(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{MinCheckInterval: 10 * time.Millisecond})
	var healthy atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(backend.Close)
	host, portStr, _ := net.SplitHostPort(backend.Listener.Addr().String())
	port, _ := strconv.Atoi(portStr)
	// Another allocation's instance of the same service must not count.
	srv.Register(fakeconsul.ServiceRegistration{ID: "_nomad-task-other-vllm-vllm-http", Name: "vllm", Address: host, Port: 1,
		Checks: []fakeconsul.Check{{Name: "h", HTTP: "http://127.0.0.1:1/health", Interval: 10 * time.Millisecond, Timeout: time.Second}}})
	srv.Register(fakeconsul.ServiceRegistration{ID: "_nomad-task-abc-vllm-vllm-http", Name: "vllm", Address: host, Port: port,
		Checks: []fakeconsul.Check{{Name: "h", HTTP: backend.URL + "/health", Interval: 10 * time.Millisecond, Timeout: time.Second}}})

	h := &consulsvc.Health{Client: client(t, srv), Wait: time.Second}
	// Critical: the wait must not end yet.
	short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := h.WaitPassing(short, "vllm", "_nomad-task-abc"); err == nil {
		t.Fatal("WaitPassing returned while the check was critical")
	}
	healthy.Store(true)
	ctx, cancel2 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel2()
	addr, err := h.WaitPassing(ctx, "vllm", "_nomad-task-abc")
	if err != nil {
		t.Fatal(err)
	}
	if addr != backend.Listener.Addr().String() {
		t.Fatalf("addr = %s, want %s", addr, backend.Listener.Addr())
	}
}

func TestStateKV_Publish(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{})
	s := &consulsvc.StateKV{Client: client(t, srv), Prefix: "llm-switchboard/state/"}
	st := &jobstore.SlotState{Slot: "spark", Active: "qwen3-30b", Generation: 4, Phase: jobstore.PhaseReady}
	if err := s.PublishState(context.Background(), st); err != nil {
		t.Fatal(err)
	}
	v, _, ok := srv.KV("llm-switchboard/state/spark")
	if !ok {
		t.Fatal("state not in KV")
	}
	var got jobstore.SlotState
	if err := json.Unmarshal(v, &got); err != nil || got.Active != "qwen3-30b" || got.Generation != 4 || got.Phase != jobstore.PhaseReady {
		t.Fatalf("kv state = %+v, %v", got, err)
	}
}

func TestRegister_Deregister(t *testing.T) {
	srv := fakeconsul.New(t, fakeconsul.Options{MinCheckInterval: 10 * time.Millisecond})
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(gw.Close)
	c := client(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	deregister, err := consulsvc.Register(ctx, c, consulsvc.Registration{
		Name: "llm-switchboard-gateway", ID: "gw-1", Addr: gw.Listener.Addr().String(), CheckPath: "/health",
		Interval: 10 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	h := &consulsvc.Health{Client: c, Wait: time.Second}
	if _, err := h.WaitPassing(ctx, "llm-switchboard-gateway", "gw-1"); err != nil {
		t.Fatalf("gateway service never passed: %v", err)
	}
	if err := deregister(ctx); err != nil {
		t.Fatal(err)
	}
	svcs, _, err := c.Health().Service("llm-switchboard-gateway", "", false, nil)
	if err != nil || len(svcs) != 0 {
		t.Fatalf("after deregister: %v, %v", svcs, err)
	}
	if _, err := consulsvc.Register(ctx, c, consulsvc.Registration{Name: "x", ID: "x", Addr: "no-port"}); err == nil {
		t.Fatal("a bad address was accepted")
	}
}
