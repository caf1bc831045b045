// Package redistest gives tests a Redis of their own: a real redis-server
// started on a free loopback port, stopped when the test ends.
//
// Where no redis-server binary exists it falls back to the embedded
// miniredis with a loud warning, so `make test` still passes on a bare
// machine; under CI=true a missing redis-server fails the test instead,
// because CI must prove the code against the real server.
package redistest

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is one Redis for one test.
type Server struct {
	// URL is the redis:// URL to connect to.
	URL string
	// Addr is host:port.
	Addr string
	// Real reports whether this is a real redis-server (false: miniredis).
	Real bool

	dir     string
	port    int
	cmd     *exec.Cmd
	outDone chan struct{} // closed when the log reader saw EOF
	t       testing.TB
}

// Start starts a Redis for t and stops it in t.Cleanup.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("redis-server not found on PATH and CI=true: CI must test against real Redis (install redis-server): %v", err)
		}
		t.Logf("WARNING: redis-server not found on PATH; falling back to miniredis. Install redis-server to test against real Redis.")
		mr := miniredis.RunT(t)
		return &Server{URL: "redis://" + mr.Addr(), Addr: mr.Addr(), t: t}
	}
	s := &Server{Real: true, dir: t.TempDir(), t: t}
	s.start(bin, 0)
	t.Cleanup(s.stop)
	return s
}

// Client returns a go-redis client for the server, closed at cleanup.
func (s *Server) Client() *redis.Client {
	s.t.Helper()
	opt, err := redis.ParseURL(s.URL)
	if err != nil {
		s.t.Fatalf("parse %s: %v", s.URL, err)
	}
	c := redis.NewClient(opt)
	s.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Restart stops the server (SIGTERM, so the append-only file is flushed)
// and starts it again on the same port with the same data directory.
func (s *Server) Restart() {
	s.t.Helper()
	if !s.Real {
		s.t.Fatalf("Restart needs a real redis-server")
	}
	bin := s.cmd.Path
	s.stop()
	s.start(bin, s.port)
}

func (s *Server) start(bin string, port int) {
	s.t.Helper()
	// Let redis-server pick nothing: it has no "port 0 then tell me"
	// mode, so find a free port and retry on the rare collision.
	for attempt := 0; attempt < 5; attempt++ {
		p := port
		if p == 0 {
			p = freePort(s.t)
		}
		cmd := exec.Command(bin,
			"--port", strconv.Itoa(p),
			"--bind", "127.0.0.1",
			"--dir", s.dir,
			"--save", "",
			"--appendonly", "yes",
			"--appendfsync", "always",
			"--daemonize", "no",
			"--logfile", "",
		)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			s.t.Fatalf("redis-server pipe: %v", err)
		}
		cmd.Stderr = cmd.Stdout
		if err := cmd.Start(); err != nil {
			s.t.Fatalf("start redis-server: %v", err)
		}
		ready := make(chan struct{})
		var log strings.Builder
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			signalled := false
			for sc.Scan() {
				line := sc.Text()
				if log.Len() < 8192 {
					log.WriteString(line + "\n")
				}
				if !signalled && strings.Contains(line, "Ready to accept connections") {
					signalled = true
					close(ready)
				}
			}
		}()
		select {
		case <-ready:
			s.cmd, s.port, s.outDone = cmd, p, done
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
			s.URL = "redis://" + s.Addr
			return
		case <-done:
			_ = cmd.Wait()
			if port != 0 {
				s.t.Fatalf("redis-server did not start on port %d:\n%s", p, log.String())
			}
			// Port taken between our probe and its bind: try another.
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			s.t.Fatalf("redis-server not ready after 20s:\n%s", log.String())
		}
	}
	s.t.Fatalf("redis-server: no free port after 5 attempts")
}

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Interrupt)
	select {
	case <-s.outDone: // the pipe closes when the server exits
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.outDone
	}
	_ = s.cmd.Wait()
	s.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Ping checks the server answers; tests use it after Restart.
func (s *Server) Ping(ctx context.Context) error {
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping %s: %w", s.Addr, err)
	}
	return nil
}

// DataDir is the server's working directory (AOF lives here).
func (s *Server) DataDir() string { return filepath.Clean(s.dir) }
