package openai

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
)

// Done is the payload of the last event of an OpenAI stream.
var Done = []byte("[DONE]")

// SSEReader reads the data payloads of a server-sent event stream, one
// event at a time. Comment lines and fields other than data are skipped;
// multi-line data joins with "\n" as the SSE spec says.
type SSEReader struct {
	r   *bufio.Reader
	buf bytes.Buffer
}

// NewSSEReader reads events from r.
func NewSSEReader(r io.Reader) *SSEReader {
	return &SSEReader{r: bufio.NewReaderSize(r, 64<<10)}
}

// Next returns the next event's data (valid until the next call), or
// io.EOF at a clean end of stream.
func (s *SSEReader) Next() ([]byte, error) {
	s.buf.Reset()
	have := false
	for {
		line, err := s.r.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			// A very long line: gather it whole.
			rest, err2 := s.r.ReadBytes('\n')
			line = append(append([]byte(nil), line...), rest...)
			err = err2
		}
		if len(line) == 0 && err != nil {
			if err == io.EOF && have {
				return s.buf.Bytes(), nil
			}
			return nil, err
		}
		trimmed := bytes.TrimRight(line, "\r\n")
		switch {
		case len(trimmed) == 0:
			if have {
				return s.buf.Bytes(), nil
			}
		case trimmed[0] == ':':
			// comment / keep-alive
		case bytes.HasPrefix(trimmed, []byte("data:")):
			v := trimmed[5:]
			if len(v) > 0 && v[0] == ' ' {
				v = v[1:]
			}
			if have {
				s.buf.WriteByte('\n')
			}
			s.buf.Write(v)
			have = true
		}
		if err != nil {
			if have {
				return s.buf.Bytes(), nil
			}
			return nil, err
		}
	}
}

// SSEHeaders prepares w for an event stream that no proxy buffers.
func SSEHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
}

// WriteEvent writes one "data:" event; a payload with newlines becomes
// several data lines, which readers join back.
func WriteEvent(w io.Writer, data []byte) error {
	buf := make([]byte, 0, len(data)+8)
	buf = append(buf, "data: "...)
	if bytes.IndexByte(data, '\n') >= 0 {
		data = bytes.ReplaceAll(data, []byte("\n"), []byte("\ndata: "))
	}
	buf = append(buf, data...)
	buf = append(buf, '\n', '\n')
	_, err := w.Write(buf)
	return err
}

// WriteComment writes an SSE comment line, which clients ignore: a
// keep-alive that may carry progress for a person reading the stream.
func WriteComment(w io.Writer, text string) error {
	_, err := io.WriteString(w, ": "+text+"\n\n")
	return err
}
