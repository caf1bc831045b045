package fakenomad_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/nomad/api"
	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakenomad"
)

// waitTimeout bounds every wait of these tests; the events they wait for
// come within milliseconds, or within a kill timeout of a second.
const waitTimeout = 20 * time.Second

func newClient(t *testing.T, srv *fakenomad.Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatalf("api.NewClient: %v", err)
	}
	return c
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return string(b)
}

// backendVars renders the variables file for testdata/backend.nomad.hcl.
func backendVars(t *testing.T, jobName string, extra ...string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("os.Executable: %v", err)
	}
	vars := fmt.Sprintf("job_name = %q\ncommand = %q\n", jobName, exe)
	for _, e := range extra {
		vars += e + "\n"
	}
	return vars
}

// parseBackend parses the backend jobspec through the fake's parse
// endpoint.
func parseBackend(t *testing.T, c *api.Client, jobName string, extra ...string) *api.Job {
	t.Helper()
	job, err := c.Jobs().ParseHCLOpts(&api.JobsParseRequest{
		JobHCL:       readFile(t, "testdata/backend.nomad.hcl"),
		Variables:    backendVars(t, jobName, extra...),
		Canonicalize: true,
	})
	if err != nil {
		t.Fatalf("parse backend jobspec: %v", err)
	}
	return job
}

func register(t *testing.T, c *api.Client, job *api.Job) *api.JobRegisterResponse {
	t.Helper()
	resp, _, err := c.Jobs().Register(job, nil)
	if err != nil {
		t.Fatalf("register %s: %v", *job.ID, err)
	}
	return resp
}

// waitAllocs follows a job's allocations with blocking queries until cond
// holds, and returns them.
func waitAllocs(t *testing.T, c *api.Client, jobID string, what string, cond func([]*api.AllocationListStub) bool) []*api.AllocationListStub {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	var idx uint64
	var last []*api.AllocationListStub
	for {
		q := (&api.QueryOptions{WaitIndex: idx, WaitTime: 5 * time.Second}).WithContext(ctx)
		allocs, meta, err := c.Jobs().Allocations(jobID, true, q)
		if err != nil {
			if ctx.Err() != nil {
				t.Fatalf("job %s: never %s; allocations: %s", jobID, what, describeStubs(last))
			}
			t.Fatalf("allocations of %s: %v", jobID, err)
		}
		last = allocs
		if cond(allocs) {
			return allocs
		}
		if meta.LastIndex < idx {
			idx = 0
		} else {
			idx = meta.LastIndex
		}
	}
}

func describeStubs(allocs []*api.AllocationListStub) string {
	var parts []string
	for _, a := range allocs {
		parts = append(parts, fmt.Sprintf("%s desired=%s client=%s", a.ID[:8], a.DesiredStatus, a.ClientStatus))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func oneWith(status string) func([]*api.AllocationListStub) bool {
	return func(allocs []*api.AllocationListStub) bool {
		return len(allocs) == 1 && allocs[0].ClientStatus == status
	}
}

// waitRunning registers job and waits until its one allocation runs and
// its backend answers.
func waitRunning(t *testing.T, c *api.Client, job *api.Job) *api.Allocation {
	t.Helper()
	register(t, c, job)
	stubs := waitAllocs(t, c, *job.ID, "running", oneWith("running"))
	alloc, _, err := c.Allocations().Info(stubs[0].ID, nil)
	if err != nil {
		t.Fatalf("allocation info: %v", err)
	}
	// Running is not listening: wait until the backend serves, so that it
	// has its signal handlers when the test stops it.
	for _, p := range alloc.AllocatedResources.Shared.Ports {
		waitHealthy(t, p.Value)
	}
	return alloc
}

func eventTypes(ts *api.TaskState) []string {
	var out []string
	for _, e := range ts.Events {
		out = append(out, e.Type)
	}
	return out
}

func findEvent(ts *api.TaskState, typ string) *api.TaskEvent {
	for _, e := range ts.Events {
		if e.Type == typ {
			return e
		}
	}
	return nil
}

// unexpected returns the status code and body of an API error.
func unexpected(t *testing.T, err error) (int, string) {
	t.Helper()
	var ure api.UnexpectedResponseError
	if !errors.As(err, &ure) {
		t.Fatalf("error %v (%T) is not an api.UnexpectedResponseError", err, err)
	}
	return ure.StatusCode(), ure.Body()
}

// rawGet does a plain HTTP GET against the fake, for what the client hides
// (headers, exact bodies).
func rawGet(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", url, err)
	}
	return resp, string(b)
}

func assertEqual[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s = %v, want %v", what, got, want)
	}
}

func freeTCPPort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// waitHealthy polls a backend's /health until it answers 200: a task is
// "running" once its process started, not once it listens.
func waitHealthy(t *testing.T, port int) {
	t.Helper()
	url := fmt.Sprintf("http://127.0.0.1:%d/health", port)
	deadline := time.Now().Add(waitTimeout)
	for {
		resp, err := http.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never healthy: %v", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
