package localrt_test

import (
	"fmt"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/localrt"
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"
)

var conformanceModels atomic.Int32

// The local runtime passes the conformance suite every runtime must.
func TestRuntime_Conformance(t *testing.T) {
	runtimetest.Run(t, func(t *testing.T) runtimetest.Harness {
		rt := localrt.New(localrt.Options{StopGrace: 500 * time.Millisecond, Log: hclog.NewNullLogger()})
		return runtimetest.Harness{
			Runtime: rt,
			Timeout: 30 * time.Second,
			Model: func(t *testing.T, flags ...string) *config.Model {
				n := conformanceModels.Add(1)
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				port := l.Addr().(*net.TCPAddr).Port
				l.Close()
				served := fmt.Sprintf("served-%d", n)
				cmd := append([]string{os.Args[0], "mockllm", "--port", fmt.Sprint(port), "--model", served}, flags...)
				return &config.Model{
					Name: fmt.Sprintf("conf-%d", n), ServedName: served, MaxConcurrency: 1,
					Backend: config.Backend{Port: port}, Command: cmd,
					Env: map[string]string{runtimetest.AsMainEnv: "1"},
				}
			},
		}
	})
}
