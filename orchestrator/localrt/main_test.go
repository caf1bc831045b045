package localrt_test

import (
	"github.com/llm-switchboard/llm-switchboard/orchestrator/runtimetest"

	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the model backend: Start runs it again with
// envBackend set, and TestMain then serves a tiny fake of vLLM's health and
// model list instead of running the tests. The backends are real processes
// with real pids, process groups and sockets, and need nothing installed.
const (
	// envBackend selects the backend's behaviour (one of the modes below).
	envBackend = "LOCALRT_TEST_BACKEND"
	// envPort is the port the backend listens on, on 127.0.0.1.
	envPort = "LOCALRT_TEST_PORT"
	// envServed is the model name /v1/models lists.
	envServed = "LOCALRT_TEST_SERVED"
	// envLoadDelay is how long /health answers 503 (a Go duration, or
	// "forever"); in modeCrash, how long before the crash.
	envLoadDelay = "LOCALRT_TEST_LOAD_DELAY"
	// envLifeline is the pid of the test binary; a worker exits once it is
	// gone.
	envLifeline = "LOCALRT_TEST_LIFELINE"
)

// Backend modes.
const (
	// modeNormal loads, then serves; SIGTERM kills it.
	modeNormal = "normal"
	// modeCrash prints a fatal error while loading and exits with status 3.
	modeCrash = "crash"
	// modeIgnoreTerm serves like modeNormal but ignores SIGTERM, so only
	// SIGKILL stops it.
	modeIgnoreTerm = "ignore-term"
	// modeWrongName serves, but lists another model than envServed.
	modeWrongName = "wrong-name"
	// modeWrongNameThenHang lists another model than envServed once, then
	// stops answering /health: every later probe hangs until the client
	// gives up, as a wedged server's would.
	modeWrongNameThenHang = "wrong-name-then-hang"
	// modeWorkers serves like modeNormal (SIGTERM kills it) and starts a
	// worker process in its process group, as vLLM starts its engine
	// core; the worker ignores SIGTERM and shares the backend's output.
	modeWorkers = "workers"
	// modeQuietWorkers is modeWorkers with a worker that writes nowhere,
	// so it does not hold the backend's output open.
	modeQuietWorkers = "quiet-workers"
	// modeWorker is that worker: it ignores SIGTERM and blocks.
	modeWorker = "worker"
)

// crashStatus and crashLine are what a modeCrash backend exits with and
// prints last.
const (
	crashStatus = 3
	crashLine   = "fatal: out of memory"
)

// pidsReply is the body of a backend's GET /pids, so tests can check from
// the operating system that every process of a stopped backend is gone.
type pidsReply struct {
	PID     int   `json:"pid"`
	Workers []int `json:"workers"`
}

func TestMain(m *testing.M) {
	runtimetest.BackendMain() // the conformance suite's backends
	if mode := os.Getenv(envBackend); mode != "" {
		os.Exit(runBackend(mode))
	}
	os.Exit(m.Run())
}

// runBackend is the fake backend's main; it returns the exit status.
func runBackend(mode string) int {
	switch mode {
	case modeNormal, modeCrash, modeIgnoreTerm, modeWrongName, modeWrongNameThenHang,
		modeWorkers, modeQuietWorkers, modeWorker:
	default:
		fmt.Fprintf(os.Stderr, "unknown %s %q\n", envBackend, mode)
		return 2
	}
	if mode == modeWorker {
		signal.Ignore(syscall.SIGTERM)
		// Tell the backend that SIGTERM can no longer stop us.
		ready := os.NewFile(3, "ready")
		_, _ = ready.Write([]byte{1})
		ready.Close()
		// Only the group's SIGKILL ends a worker; should the test binary
		// die before, the worker follows it instead of lingering.
		lifeline, _ := strconv.Atoi(os.Getenv(envLifeline))
		for range time.Tick(100 * time.Millisecond) {
			if lifeline <= 0 || errors.Is(syscall.Kill(lifeline, 0), syscall.ESRCH) {
				return 0
			}
		}
	}
	if mode == modeIgnoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}

	var delay time.Duration
	forever := false
	switch s := os.Getenv(envLoadDelay); s {
	case "":
	case "forever":
		forever = true
	default:
		d, err := time.ParseDuration(s)
		if err != nil {
			fmt.Fprintf(os.Stderr, "bad %s: %v\n", envLoadDelay, err)
			return 2
		}
		delay = d
	}
	served := os.Getenv(envServed)
	if mode == modeWrongName || mode == modeWrongNameThenHang {
		served = "not-" + served
	}

	reply := pidsReply{PID: os.Getpid()}
	if mode == modeWorkers || mode == modeQuietWorkers {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(os.Stderr, "executable: %v\n", err)
			return 2
		}
		w := exec.Command(exe)
		w.Env = append(os.Environ(), envBackend+"="+modeWorker)
		if mode == modeWorkers {
			w.Stdout, w.Stderr = os.Stdout, os.Stderr // inherited, as vLLM's are
		}
		pr, pw, err := os.Pipe()
		if err != nil {
			fmt.Fprintf(os.Stderr, "pipe: %v\n", err)
			return 2
		}
		w.ExtraFiles = []*os.File{pw}
		if err := w.Start(); err != nil {
			fmt.Fprintf(os.Stderr, "start worker: %v\n", err)
			return 2
		}
		pw.Close()
		// Serve only once the worker ignores SIGTERM, so a test that
		// stops a healthy backend always meets a worker that survives it.
		if _, err := pr.Read(make([]byte, 1)); err != nil {
			fmt.Fprintf(os.Stderr, "worker never ready: %v\n", err)
			return 2
		}
		pr.Close()
		reply.Workers = append(reply.Workers, w.Process.Pid)
	}

	ln, err := net.Listen("tcp", "127.0.0.1:"+os.Getenv(envPort))
	if err != nil {
		fmt.Fprintf(os.Stderr, "listen: %v\n", err)
		return 2
	}
	fmt.Printf("loading weights for %s\n", served)

	var ready atomic.Bool
	switch {
	case mode == modeCrash:
		time.AfterFunc(delay, func() {
			fmt.Fprintln(os.Stderr, crashLine)
			os.Exit(crashStatus)
		})
	case !forever:
		time.AfterFunc(delay, func() { ready.Store(true) })
	}

	var listed atomic.Bool // /v1/models answered once
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		if mode == modeWrongNameThenHang && listed.Load() {
			<-r.Context().Done()
			return
		}
		if !ready.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, _ *http.Request) {
		defer listed.Store(true)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"object": "list",
			"data":   []map[string]string{{"id": served, "object": "model"}},
		})
	})
	mux.HandleFunc("GET /pids", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(reply)
	})
	err = http.Serve(ln, mux)
	if errors.Is(err, net.ErrClosed) {
		return 0
	}
	fmt.Fprintf(os.Stderr, "serve: %v\n", err)
	return 1
}
