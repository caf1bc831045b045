package localrt

import (
	"bytes"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// tail keeps the last lines a backend printed, for error messages, and
// forwards each line to the log at debug level.
type tail struct {
	mu      sync.Mutex
	max     int
	lines   []string
	partial []byte
	log     hclog.Logger
}

func newTail(max int, log hclog.Logger) *tail { return &tail{max: max, log: log} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.partial = append(t.partial, p...)
	for {
		i := bytes.IndexByte(t.partial, '\n')
		if i < 0 {
			break
		}
		t.add(string(bytes.TrimRight(t.partial[:i], "\r")))
		t.partial = t.partial[i+1:]
	}
	if len(t.partial) > 4096 { // a runaway line without newline
		t.add(string(t.partial))
		t.partial = nil
	}
	return len(p), nil
}

func (t *tail) add(line string) {
	t.log.Debug(line)
	t.lines = append(t.lines, line)
	if len(t.lines) > t.max {
		t.lines = t.lines[len(t.lines)-t.max:]
	}
}

// String returns the kept lines, and any unterminated last line.
func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := strings.Join(t.lines, "\n")
	if len(t.partial) > 0 {
		out += "\n" + string(t.partial)
	}
	return out
}
