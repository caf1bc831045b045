package fakeconsul_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"

	"github.com/llm-switchboard/llm-switchboard/internal/testutil/fakeconsul"
)

// TestMain fails the package when a goroutine of the fake outlives the tests.
func TestMain(m *testing.M) {
	code := m.Run()
	if code == 0 {
		if err := noLeakedGoroutines(5 * time.Second); err != nil {
			fmt.Fprintln(os.Stderr, err)
			code = 1
		}
	}
	os.Exit(code)
}

// noLeakedGoroutines gives exiting goroutines up to grace to finish, as
// goleak does, then reports those still running the fake's code.
func noLeakedGoroutines(grace time.Duration) error {
	deadline := time.Now().Add(grace)
	for {
		buf := make([]byte, 1<<20)
		for {
			n := runtime.Stack(buf, true)
			if n < len(buf) {
				buf = buf[:n]
				break
			}
			buf = make([]byte, 2*len(buf))
		}
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			if strings.Contains(g, "/internal/testutil/fakeconsul.") {
				leaked = append(leaked, g)
			}
		}
		if len(leaked) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("fakeconsul: %d goroutines leaked:\n\n%s", len(leaked), strings.Join(leaked, "\n\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func newClient(t *testing.T, srv *fakeconsul.Server) *api.Client {
	t.Helper()
	c, err := api.NewClient(srv.Config())
	if err != nil {
		t.Fatalf("new consul client: %v", err)
	}
	return c
}

// parks reports every blocking query of srv that starts waiting.
func parks(srv *fakeconsul.Server) <-chan *http.Request {
	ch := make(chan *http.Request, 64)
	srv.SetParkHook(func(r *http.Request) {
		select {
		case ch <- r:
		default:
		}
	})
	return ch
}

// awaitPark waits until a blocking query on path starts waiting; keep
// filters further (nil keeps all).
func awaitPark(t *testing.T, ch <-chan *http.Request, path string, keep func(*http.Request) bool) {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-ch:
			if r.URL.Path == path && (keep == nil || keep(r)) {
				return
			}
		case <-timeout:
			t.Fatalf("no blocking query parked on %s", path)
		}
	}
}

type rawResponse struct {
	status int
	header http.Header
	body   []byte
}

// do sends a raw request, for wire shapes the client hides.
func do(t *testing.T, method, url, body string) rawResponse {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s %s: %v", method, url, err)
	}
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: bytes.TrimSpace(b)}
}

// statusError unwraps the client's error for an HTTP status.
func statusError(t *testing.T, err error) api.StatusError {
	t.Helper()
	var se api.StatusError
	if !errors.As(err, &se) {
		t.Fatalf("want an api.StatusError, got %v", err)
	}
	return se
}

func createSession(t *testing.T, c *api.Client, se *api.SessionEntry) string {
	t.Helper()
	id, _, err := c.Session().Create(se, nil)
	if err != nil {
		t.Fatalf("create session: %v", err)
	}
	return id
}

func acquire(t *testing.T, c *api.Client, key, session, value string) bool {
	t.Helper()
	ok, _, err := c.KV().Acquire(&api.KVPair{Key: key, Session: session, Value: []byte(value)}, nil)
	if err != nil {
		t.Fatalf("acquire %s with %s: %v", key, session, err)
	}
	return ok
}

func getKV(t *testing.T, c *api.Client, key string) (*api.KVPair, *api.QueryMeta) {
	t.Helper()
	p, meta, err := c.KV().Get(key, nil)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	return p, meta
}
