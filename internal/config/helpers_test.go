package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm-switchboard/llm-switchboard/internal/config"
)

// testBin is the switchboard binary the tests pretend to be.
const testBin = "/opt/switchboard/bin/switchboard"

// files maps a file name, relative to a test's directory, to its content.
type files map[string]string

// lines joins lines into a file, so a test can count line numbers.
func lines(ls ...string) string { return strings.Join(ls, "\n") + "\n" }

// writeFiles writes fs into a fresh temporary directory and returns it.
func writeFiles(t *testing.T, fs files) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range fs {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("mkdir: %v", err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatalf("write %s: %v", name, err)
		}
	}
	return dir
}

// envOf is a LookupEnv over vars only, so the real environment cannot leak
// into a test.
func envOf(vars map[string]string) func(string) (string, bool) {
	return func(key string) (string, bool) {
		v, ok := vars[key]
		return v, ok
	}
}

// load writes fs and loads gateway.hcl from it with vars as environment.
func load(t *testing.T, fs files, vars map[string]string) (*config.Config, string, error) {
	t.Helper()
	dir := writeFiles(t, fs)
	cfg, err := config.Load(filepath.Join(dir, "gateway.hcl"), config.LoadOptions{
		LookupEnv:      envOf(vars),
		SwitchboardBin: testBin,
	})
	return cfg, dir, err
}

// mustLoad loads fs and fails the test on any error.
func mustLoad(t *testing.T, fs files, vars map[string]string) *config.Config {
	t.Helper()
	cfg, _, err := load(t, fs, vars)
	if err != nil {
		t.Fatalf("Load: unexpected error:\n%v", err)
	}
	return cfg
}

// requireDiag asserts that err is a *config.Error with a diagnostic line
// that starts with prefix and contains text.
func requireDiag(t *testing.T, err error, prefix, text string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load: want an error containing %q, got none", text)
	}
	var cerr *config.Error
	if !errors.As(err, &cerr) {
		t.Fatalf("Load: error is %T, want *config.Error: %v", err, err)
	}
	for _, line := range strings.Split(cerr.Error(), "\n") {
		if strings.HasPrefix(line, prefix) && strings.Contains(line, text) {
			return
		}
	}
	t.Fatalf("no diagnostic starting with %q and containing %q in:\n%v", prefix, text, err)
}

// pos is the prefix a diagnostic at file:line has.
func pos(dir, file string, line int) string {
	if line == 0 {
		return filepath.Join(dir, file) + ": "
	}
	return fmt.Sprintf("%s:%d:", filepath.Join(dir, file), line)
}

// Common fixtures.
var (
	localGateway = lines(
		`orchestrator {`,
		`  runtime = "local"`,
		`}`,
	)
	// localModel is the smallest valid model for the local runtime.
	localModel = lines(
		`model "a" {`,
		`  backend {`,
		`    port = 9001`,
		`  }`,
		`  command = ["/bin/a"]`,
		`}`,
	)
	jobspec = lines(
		`job "x" {`,
		`  type = "service"`,
		`}`,
	)
	// nomadModel is the smallest valid model for the nomad runtime.
	nomadModel = lines(
		`model "n" {`,
		`  jobspec = "jobs/vllm.hcl"`,
		`  source {`,
		`    type  = "huggingface_repo"`,
		`    value = "org/n"`,
		`  }`,
		`  backend {`,
		`    image = "vllm:1"`,
		`    port  = 8000`,
		`  }`,
		`}`,
	)
)
