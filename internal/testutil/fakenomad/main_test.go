package fakenomad_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"testing"
)

// TestMain doubles as the stand-in model backend: when a task runs the test
// binary with FAKENOMAD_TEST_BACKEND set, it serves /health instead of
// running tests.
func TestMain(m *testing.M) {
	if os.Getenv("FAKENOMAD_TEST_BACKEND") != "" {
		os.Exit(runBackend(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// runBackend serves GET /health on --port until SIGINT or SIGTERM, then
// exits 0. --mode ignore-signals makes it ignore both (only SIGKILL stops
// it); --mode exit1 makes it fail at once like a model that cannot load.
func runBackend(args []string) int {
	fs := flag.NewFlagSet("backend", flag.ContinueOnError)
	port := fs.String("port", "", "port to listen on")
	mode := fs.String("mode", "serve", "serve, ignore-signals or exit1")
	_ = fs.String("alloc", "", "allocation ID, for ps")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	switch *mode {
	case "exit1":
		fmt.Fprintln(os.Stderr, "model weights not found")
		return 1
	case "ignore-signals":
		signal.Ignore(syscall.SIGINT, syscall.SIGTERM)
	}
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", *port))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("backend listening on", ln.Addr())
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Handler: mux}
	if *mode != "ignore-signals" {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		go func() {
			<-ctx.Done()
			_ = srv.Close()
		}()
	}
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("backend stopped")
	return 0
}
